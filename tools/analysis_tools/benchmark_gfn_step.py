"""Cost of a GFN training step against the plain step of the same model.

For each model, the same weights and the same batch go through mmengine's
``train_step`` twice over: once with mmpretrain's ``ClsDataPreprocessor``
and cross-entropy (plain), once with
:class:`~mmgfn.models.NeighborAdversarialDataPreprocessor` and
:class:`~mmgfn.models.NeighborWeightedCELoss` (GFN). Printed: ms/step of
both and their ratio, and the peak memory of both and their ratio, all
measured in this run.

* Time: median over ``--steps`` steps after ``--warmup`` steps; plain and
  GFN blocks alternate so that drift affects both.
* Memory: on a GPU, ``torch.cuda.max_memory_allocated`` over the steps; on a
  CPU, each variant runs in a fresh subprocess and the peak is the growth of
  the resident set (``ru_maxrss``) over the steps above the resident set
  after the model was built.

Models: ``resnet-tiny`` and ``vit-tiny`` (the digits configs, 32x32 inputs)
and ``vit-b16`` (mmpretrain's ViT-B/16, 224x224, 1000 classes; for a GPU).

Example::

    python tools/analysis_tools/benchmark_gfn_step.py               # CPU
    python tools/analysis_tools/benchmark_gfn_step.py --device cuda \\
        --models vit-b16 --batch-size 64 --amp                      # GPU
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {
    'resnet-tiny': dict(
        config='configs/digits/resnet-tiny_1xb32_digits.py', size=32,
        num_classes=10, topk=3),
    'vit-tiny': dict(
        config='configs/digits/vit-tiny_1xb32_digits.py', size=32,
        num_classes=10, topk=3),
    'vit-b16': dict(
        config='mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py',
        size=224, num_classes=1000, topk=20),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', choices=list(MODELS),
                        help='defaults to resnet-tiny vit-tiny on a CPU, '
                        'vit-b16 on a GPU')
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-size', type=int,
                        help='defaults to 32 (tiny models) / 64 (vit-b16)')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--amp', action='store_true',
                        help='bfloat16 autocast (mmgfn.DeviceAmpOptimWrapper)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--memory-probe', choices=['plain', 'gfn'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--model', help=argparse.SUPPRESS)
    return parser.parse_args()


def build(name: str, variant: str, device: str, amp: bool):
    """The model and its optimizer wrapper for one variant."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmgfn.registry import MODELS as GFN_MODELS
    from mmgfn.registry import OPTIM_WRAPPERS
    from mmgfn.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    spec = MODELS[name]
    if spec['config'].startswith('mmpretrain::'):
        from mmengine.hub import get_config
        cfg = get_config(spec['config'])
    else:
        cfg = Config.fromfile(osp.join(ROOT, spec['config']))
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
    DefaultScope.get_instance(f'bench-{variant}-{time.time()}',
                              scope_name='mmgfn')
    torch.manual_seed(0)
    model = GFN_MODELS.build(model_cfg).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    wrapper = dict(type='mmgfn.DeviceAmpOptimWrapper',
                   dtype='bfloat16') if amp else dict(type='OptimWrapper')
    wrapper = OPTIM_WRAPPERS.build(dict(wrapper, optimizer=optimizer))
    return model, wrapper


def batch(name: str, batch_size: int):
    from mmpretrain.structures import DataSample
    spec = MODELS[name]
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


def rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory_probe(args) -> None:
    """Subprocess: print the peak RSS growth of ``steps`` training steps."""
    model, wrapper = build(args.model, args.memory_probe, 'cpu', args.amp)
    data = batch(args.model, args.batch_size)
    base = rss_bytes()
    time_steps(model, wrapper, data, max(3, args.warmup), 'cpu')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(peak=max(peak - base, 1))))


def cpu_peak(args, name: str, variant: str, batch_size: int) -> int:
    cmd = [
        sys.executable, __file__, '--model', name, '--memory-probe', variant,
        '--batch-size', str(batch_size), '--warmup', str(args.warmup)
    ] + (['--amp'] if args.amp else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])['peak']


def measure(args, name: str) -> dict:
    device = args.device
    batch_size = args.batch_size or (64 if name == 'vit-b16' else 32)
    data = batch(name, batch_size)
    runs = {v: build(name, v, device, args.amp) for v in ('plain', 'gfn')}
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
        del runs
        peaks = {v: cpu_peak(args, name, v, batch_size)
                 for v in ('plain', 'gfn')}
    ms = {v: 1000 * statistics.median(t) for v, t in times.items()}
    return dict(
        model=name, device=device, batch_size=batch_size,
        amp=bool(args.amp), steps=len(times['plain']),
        plain_ms=ms['plain'], gfn_ms=ms['gfn'],
        time_ratio=ms['gfn'] / ms['plain'],
        plain_peak_mb=peaks['plain'] / 2**20,
        gfn_peak_mb=peaks['gfn'] / 2**20,
        memory_ratio=peaks['gfn'] / peaks['plain'])


def main() -> None:
    args = parse_args()
    if args.memory_probe:
        memory_probe(args)
        return
    torch.backends.cudnn.benchmark = True
    names = args.models or (['vit-b16'] if args.device.startswith('cuda')
                            else ['resnet-tiny', 'vit-tiny'])
    results = []
    device_name = (torch.cuda.get_device_name()
                   if args.device.startswith('cuda') else 'CPU, '
                   f'{torch.get_num_threads()} threads')
    print(f'device: {device_name}; torch {torch.__version__}')
    header = ('model', 'batch', 'plain ms', 'GFN ms', 'time ratio',
              'plain peak MB', 'GFN peak MB', 'memory ratio')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for name in names:
        r = measure(args, name)
        results.append(r)
        print(f"| {name}{' (bf16)' if r['amp'] else ''} | {r['batch_size']} "
              f"| {r['plain_ms']:.1f} | {r['gfn_ms']:.1f} "
              f"| {r['time_ratio']:.2f}x | {r['plain_peak_mb']:.0f} "
              f"| {r['gfn_peak_mb']:.0f} | {r['memory_ratio']:.2f}x |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=device_name, results=results), f, indent=2)


if __name__ == '__main__':
    main()
