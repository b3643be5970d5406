"""Cost of a GFN training step against the plain step of the same model.

For each model, the same initial weights and the same batch go through
mmengine's ``train_step`` twice over, once per variant:

* classifiers: mmpretrain's ``ClsDataPreprocessor`` and cross-entropy
  (plain) against
  :class:`~mmgfn.models.NeighborAdversarialDataPreprocessor` and
  :class:`~mmgfn.models.NeighborWeightedCELoss` (GFN);
* detectors: mmdet's Faster R-CNN (plain) against the same detector with
  :class:`~mmgfn.engine.hooks.BackgroundRoIPerturbationHook` attached (GFN).
  The hook is attached by its own ``before_train``, called with a stand-in
  for the Runner that has the two attributes it reads (``model`` and
  ``train_dataloader.dataset.metainfo['classes']``), so the benchmark runs
  the code path of a real training run.

Printed: ms/step of both and their ratio, and the peak memory of both and
their ratio, all measured in this run.

* Time: median over ``--steps`` steps after ``--warmup`` steps; plain and
  GFN blocks alternate so that drift affects both.
* Memory: on a GPU, ``torch.cuda.max_memory_allocated`` over two steps; on a
  CPU, the peak of the bytes allocated by tensors during one training step
  (after the timed steps), above what was allocated when the step began:
  every allocation and free of the step recorded by ``torch.profiler``
  (``profile_memory=True``) and summed in time order
  (:func:`step_peak_bytes`). Parameters, gradients and optimizer state
  that exist before the step are not counted, so the ratio is that of the
  step's working memory (activations, the attack's graph).
* ``--amp``: autocast through :class:`mmgfn.DeviceAmpOptimWrapper` with
  ``--amp-dtype`` (bfloat16 by default; float16 uses dynamic loss scaling
  on CUDA). Without it the step runs in float32.

Models:

* ``resnet-tiny``, ``vit-tiny``: the digits configs, 32x32 inputs, batch 32;
* ``vit-b16``: mmpretrain's ViT-B/16, 224x224, 1000 classes, batch 64
  (for a GPU);
* ``faster-rcnn-r18``: mmdet's ``faster-rcnn_r50_fpn`` with a ResNet-18
  backbone, 80 classes, batch 2 of 320x320 images (for a CPU);
* ``faster-rcnn-r50``: mmdet's Faster R-CNN R-50-FPN, 80 classes, batch 2
  of 800x1333 images (for a GPU).

Detection batches: seeded uint8 images with 5 ground-truth boxes each, made
by ``mmdet.testing.demo_mm_inputs``; every second image is 3/4 as wide as
``--det-size`` so that the batch is padded as a real one. Backbones start
from random weights (``init_cfg=None``, nothing is downloaded).

Example::

    python tools/analysis_tools/benchmark_gfn_step.py               # CPU
    python tools/analysis_tools/benchmark_gfn_step.py --models faster-rcnn-r18
    python tools/analysis_tools/benchmark_gfn_step.py --device cuda --amp \\
        --models vit-b16 faster-rcnn-r50                            # GPU
"""
import argparse
import json
import os.path as osp
import statistics
import time
from types import SimpleNamespace
from typing import Callable, List, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_BASE = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'
MODELS = {
    'resnet-tiny': dict(
        task='cls', config='configs/digits/resnet-tiny_1xb32_digits.py',
        size=32, num_classes=10, topk=3, batch_size=32),
    'vit-tiny': dict(
        task='cls', config='configs/digits/vit-tiny_1xb32_digits.py',
        size=32, num_classes=10, topk=3, batch_size=32),
    'vit-b16': dict(
        task='cls',
        config='mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py',
        size=224, num_classes=1000, topk=20, batch_size=64),
    'faster-rcnn-r18': dict(
        task='det', config=DET_BASE, depth=18, size=(320, 320),
        num_classes=80, batch_size=2),
    'faster-rcnn-r50': dict(
        task='det', config=DET_BASE, depth=50, size=(800, 1333),
        num_classes=80, batch_size=2),
}
DET_BOXES_PER_IMAGE = 5
AMP_DTYPES = ('bfloat16', 'float16')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', choices=list(MODELS),
                        help='defaults to resnet-tiny vit-tiny on a CPU, '
                        'vit-b16 faster-rcnn-r50 on a GPU')
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-size', type=int,
                        help='defaults to 32 (tiny classifiers), 64 '
                        '(vit-b16), 2 (detectors)')
    parser.add_argument('--det-size', nargs=2, type=int, metavar=('H', 'W'),
                        help='detection image size (defaults: 320 320 for '
                        'faster-rcnn-r18, 800 1333 for faster-rcnn-r50)')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (mmgfn.DeviceAmpOptimWrapper)')
    parser.add_argument('--amp-dtype', choices=AMP_DTYPES,
                        help='autocast dtype; implies --amp (default '
                        'bfloat16; float16 uses dynamic loss scaling on '
                        'CUDA)')
    parser.add_argument('--attack-chunk', type=int, default=1,
                        help='detectors: images per attack forward of '
                        'BackgroundRoIPerturbationHook (0: the whole batch '
                        'at once). Defaults to 1, the hook\'s default')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    if args.amp_dtype:
        args.amp = True
    elif args.amp:
        args.amp_dtype = 'bfloat16'
    return args


def _load_config(path: str):
    from mmengine.config import Config
    if '::' in path:
        from mmengine.hub import get_config
        return get_config(path)
    return Config.fromfile(osp.join(ROOT, path))


def classifier_cfg(spec: dict, variant: str):
    """The config of a classifier and its plain or GFN loss and
    preprocessor."""
    cfg = _load_config(spec['config'])
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('_scope_', 'mmpretrain')
    pre = dict(cfg.get('data_preprocessor') or {})
    pre.update(num_classes=spec['num_classes'])
    if variant == 'gfn':
        pre.update(type='mmgfn.NeighborAdversarialDataPreprocessor',
                   topk=spec['topk'])
        model_cfg.head.loss = dict(
            type='mmgfn.NeighborWeightedCELoss', topk=spec['topk'])
    else:
        pre.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
        model_cfg.head.loss = dict(type='mmpretrain.CrossEntropyLoss')
    pre.pop('batch_augments', None)
    model_cfg.data_preprocessor = pre
    model_cfg.train_cfg = None
    return model_cfg


def detector_cfg(spec: dict):
    """The Faster R-CNN config (the same for both variants)."""
    model_cfg = _load_config(spec['config']).model.copy()
    model_cfg.setdefault('_scope_', 'mmdet')
    width = spec.get('base_channels', 64)
    model_cfg.backbone.update(depth=spec['depth'], init_cfg=None,
                              base_channels=width, stem_channels=width)
    # BasicBlock ResNets (depth < 50) end stage i with width * 2**i
    # channels, Bottleneck ones with 4 times as many
    expansion = 1 if spec['depth'] < 50 else 4
    model_cfg.neck.in_channels = [width * expansion * 2**i for i in range(4)]
    neck = spec.get('neck_channels')
    if neck:  # a narrow detector: FPN, RPN and box head of `neck` channels
        model_cfg.neck.out_channels = neck
        model_cfg.rpn_head.update(in_channels=neck, feat_channels=neck)
        model_cfg.roi_head.bbox_roi_extractor.out_channels = neck
        model_cfg.roi_head.bbox_head.update(in_channels=neck,
                                            fc_out_channels=4 * neck)
    model_cfg.roi_head.bbox_head.num_classes = spec['num_classes']
    return model_cfg


def attach_roi_perturbation(model, attack_chunk: int = 1) -> None:
    """Attach BackgroundRoIPerturbationHook the way the Runner does: its
    ``before_train`` with an object holding what it reads of the Runner."""
    from mmdet.datasets import CocoDataset

    from mmgfn.registry import HOOKS
    hook = HOOKS.build(
        dict(type='mmgfn.BackgroundRoIPerturbationHook', eta=0.01, seed=0,
             attack_chunk=attack_chunk))
    classes = CocoDataset.METAINFO['classes']  # checked against the head
    hook.before_train(SimpleNamespace(
        model=model,
        train_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(metainfo=dict(classes=classes)))))


def build(name: str, variant: str, device: str, amp_dtype=None,
          attack_chunk: int = 1):
    """The model and its optimizer wrapper for one variant (``amp_dtype``
    None: float32; ``attack_chunk`` of the detection hook)."""
    from mmengine.registry import DefaultScope

    from mmgfn.registry import MODELS as GFN_MODELS
    from mmgfn.registry import OPTIM_WRAPPERS
    from mmgfn.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    spec = MODELS[name]
    detector = spec['task'] == 'det'
    model_cfg = detector_cfg(spec) if detector else classifier_cfg(
        spec, variant)
    DefaultScope.get_instance(f'bench-{variant}-{time.time()}',
                              scope_name='mmgfn')
    torch.manual_seed(0)
    model = GFN_MODELS.build(model_cfg)
    if detector:
        model.init_weights()  # mmdet's head and FPN initialisation
    model = model.to(device)
    model.train()
    if detector and variant == 'gfn':
        attach_roi_perturbation(model, attack_chunk)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    wrapper = dict(type='mmgfn.DeviceAmpOptimWrapper',
                   dtype=amp_dtype) if amp_dtype else dict(type='OptimWrapper')
    wrapper = OPTIM_WRAPPERS.build(dict(wrapper, optimizer=optimizer))
    return model, wrapper


def det_size(name: str, args):
    """A detector's (h, w) image size; None for a classifier."""
    spec = MODELS[name]
    if spec['task'] != 'det':
        return None
    return tuple(args.det_size or spec['size'])


def batch(name: str, batch_size: int, size=None) -> dict:
    """The seeded batch of ``batch_size`` uint8 images (``size`` (h, w): a
    detector's image size)."""
    spec = MODELS[name]
    if spec['task'] == 'det':
        return det_batch(batch_size, size or spec['size'],
                         spec['num_classes'])
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    size = spec['size']
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), generator=g,
                          dtype=torch.uint8) for _ in range(batch_size)
        ],
        data_samples=[
            DataSample().set_gt_label(i % spec['num_classes'])
            for i in range(batch_size)
        ])


def det_batch(batch_size: int, size: tuple, num_classes: int) -> dict:
    """mmdet's demo batch (seeded): ``inputs`` ``3 x h x w`` uint8, and
    DetDataSamples with ``gt_instances`` and ``img_shape``; every second
    image is 3/4 as wide."""
    from mmdet.testing import demo_mm_inputs
    h, w = size
    shapes = [(3, h, w if i % 2 == 0 else max(1, w * 3 // 4))
              for i in range(batch_size)]
    return demo_mm_inputs(
        batch_size=batch_size, image_shapes=shapes,
        num_items=[DET_BOXES_PER_IMAGE] * batch_size,
        num_classes=num_classes)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_steps(model, wrapper, data, steps: int, device: str) -> list:
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        model.train_step(data, wrapper)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def allocation_trace(fn: Callable[[], None]) -> List[Tuple[int, int]]:
    """Run ``fn`` under ``torch.profiler`` and return every CPU tensor
    allocation (``+bytes``) and free (``-bytes``) it made, in time order,
    as ``(time_ns, bytes)``."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    trace = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.typed[0] == _EventType.Allocation:
            alloc = event.typed[1]
            if alloc.device.type == 'cpu':
                trace.append((event.start_time_ns, alloc.alloc_size))
        stack.extend(event.children)
    return sorted(trace)


def peak_of(trace: List[Tuple[int, int]]) -> int:
    """The largest running sum of ``trace``'s sizes (bytes above the
    start)."""
    live = peak = 0
    for _, size in trace:
        live += size
        peak = max(peak, live)
    return peak


def step_peak_bytes(model, wrapper, data) -> int:
    """Peak bytes allocated above the start during one CPU training step
    (see :func:`allocation_trace`)."""
    return max(peak_of(allocation_trace(
        lambda: model.train_step(data, wrapper))), 1)


def measure(args, name: str) -> dict:
    device = args.device
    batch_size = args.batch_size or MODELS[name]['batch_size']
    data = batch(name, batch_size, det_size(name, args))
    runs = {v: build(name, v, device, args.amp_dtype, args.attack_chunk)
            for v in ('plain', 'gfn')}
    times = {'plain': [], 'gfn': []}
    peaks = {}
    for v, (model, wrapper) in runs.items():
        time_steps(model, wrapper, data, args.warmup, device)
    block = max(1, args.steps // 4)
    for _ in range(0, args.steps, block):
        for v, (model, wrapper) in runs.items():
            times[v] += time_steps(model, wrapper, data, block, device)
    if device.startswith('cuda'):
        for v, (model, wrapper) in runs.items():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            time_steps(model, wrapper, data, 2, device)
            peaks[v] = torch.cuda.max_memory_allocated()
    else:
        for v, (model, wrapper) in runs.items():
            peaks[v] = step_peak_bytes(model, wrapper, data)
    ms = {v: 1000 * statistics.median(t) for v, t in times.items()}
    result = dict(
        model=name, device=device, dtype=args.amp_dtype or 'float32',
        batch_size=batch_size, amp=bool(args.amp),
        steps=len(times['plain']), plain_ms=ms['plain'], gfn_ms=ms['gfn'],
        time_ratio=ms['gfn'] / ms['plain'],
        plain_peak_mb=peaks['plain'] / 2**20,
        gfn_peak_mb=peaks['gfn'] / 2**20,
        memory_ratio=peaks['gfn'] / peaks['plain'])
    if det_size(name, args):
        result['image_size'] = list(det_size(name, args))
    return result


HEADER = ('model', 'dtype', 'batch', 'plain ms', 'GFN ms', 'time ratio',
          'plain peak MB', 'GFN peak MB', 'memory ratio')


def table_row(r: dict) -> str:
    """One markdown row of :data:`HEADER` for a result of
    :func:`measure`."""
    model = r['model']
    if 'image_size' in r:
        model += ' ({}x{})'.format(*r['image_size'])
    cells = (model, r['dtype'], r['batch_size'], f"{r['plain_ms']:.1f}",
             f"{r['gfn_ms']:.1f}", f"{r['time_ratio']:.2f}x",
             f"{r['plain_peak_mb']:.1f}", f"{r['gfn_peak_mb']:.1f}",
             f"{r['memory_ratio']:.2f}x")
    return '| ' + ' | '.join(map(str, cells)) + ' |'


def main() -> None:
    from mmengine.logging import MMLogger
    args = parse_args()
    # quiet: init_weights() logs every parameter's initialisation
    MMLogger.get_instance('benchmark_gfn_step', log_level='WARNING')
    torch.backends.cudnn.benchmark = True
    names = args.models or (['vit-b16', 'faster-rcnn-r50']
                            if args.device.startswith('cuda') else
                            ['resnet-tiny', 'vit-tiny'])
    results = []
    device_name = (torch.cuda.get_device_name()
                   if args.device.startswith('cuda') else 'CPU, '
                   f'{torch.get_num_threads()} threads')
    print(f'device: {device_name}; torch {torch.__version__}; '
          f'{args.steps} steps after {args.warmup} warm-up steps')
    print('| ' + ' | '.join(HEADER) + ' |')
    print('|' + '---|' * len(HEADER))
    for name in names:
        r = measure(args, name)
        results.append(r)
        print(table_row(r), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=device_name, results=results), f, indent=2)


if __name__ == '__main__':
    main()
