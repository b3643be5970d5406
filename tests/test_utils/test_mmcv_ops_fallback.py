"""mmcv's nms and RoIAlign through torchvision's kernels
(:mod:`mmgfn.utils.mmcv_ops`), checked against mmcv's own CPU kernels.

Needs mmcv's compiled ops (``MMGFN_MMCV_OPS=1 bash tools/setup_env.sh``);
on the default install (mmgfn's stand-in ``mmcv._ext``) the module is
skipped, and ``tests/test_utils/test_mmcv_ext.py`` checks the same kernels against
reference implementations instead."""
import contextlib
import copy
import importlib
import json
import logging
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope, init_default_scope

from conftest import ROOT, write_coco
from mmgfn.utils import mmcv_ops
from mmgfn.utils.compat import run_mmcv_cpu_ops_in_float32
from mmgfn.utils.mmcv_ops import (FALLBACK_OPS, FORCE_ENV,
                                  TorchvisionFallbackExt, active_path,
                                  record_ext_calls)

pytestmark = pytest.mark.skipif(
    not mmcv_ops.has_compiled_ops(),
    reason="compares with mmcv's compiled ops, which the default install "
    'does not have (MMGFN_MMCV_OPS=1 bash tools/setup_env.sh)')

R50_FPN = osp.join(ROOT, 'configs', 'detection',
                   'faster-rcnn_r50-gfn_fpn_1x_coco.py')
VIT_SFP = osp.join(ROOT, 'configs', 'detection',
                   'faster-rcnn_vit-b-gfn_sfp_1x_coco.py')
CUDA = torch.cuda.is_available()
# the modules (mmcv.ops re-exports functions under the same names)
nms_module = importlib.import_module('mmcv.ops.nms')
roi_align_module = importlib.import_module('mmcv.ops.roi_align')


@contextlib.contextmanager
def forced(flag: bool):
    """Set or clear MMGFN_FORCE_TORCHVISION_OPS inside the block."""
    old = os.environ.pop(FORCE_ENV, None)
    if flag:
        os.environ[FORCE_ENV] = '1'
    try:
        yield
    finally:
        os.environ.pop(FORCE_ENV, None)
        if old is not None:
            os.environ[FORCE_ENV] = old


def both(fn):
    """``fn()`` on mmcv's kernels and on the forced torchvision path."""
    with forced(False):
        reference = fn()
    with forced(True):
        return reference, fn()


@contextlib.contextmanager
def logged(name: str):
    """The messages logged through a new current MMLogger (print_log's
    ``logger='current'``) inside the block."""
    messages = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_instance(name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def random_boxes(rng, n, size=40.0, spread=60.0):
    """Boxes crowded into a small area (many overlaps)."""
    xy = rng.uniform(0, spread, (n, 2))
    wh = rng.uniform(2, size, (n, 2))
    return torch.from_numpy(np.hstack([xy, xy + wh])).float()


def test_import_mmgfn_installs_it_idempotently():
    for module in (nms_module, roi_align_module):  # by `import mmgfn`
        assert isinstance(module.ext_module, TorchvisionFallbackExt)
    assert mmcv_ops.install_torchvision_fallback()
    assert mmcv_ops.install_torchvision_fallback()
    for module in (nms_module, roi_align_module):
        assert isinstance(module.ext_module, TorchvisionFallbackExt)
        assert not isinstance(module.ext_module._ext, TorchvisionFallbackExt)
    # other ext functions pass through
    assert nms_module.ext_module.softnms is nms_module.ext_module._ext.softnms


@pytest.mark.parametrize('offset', [0, 1])
@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
def test_nms_keeps_the_same_boxes(iou, offset):
    rng = np.random.default_rng(int(iou * 10) + offset)
    boxes = random_boxes(rng, 300)
    boxes[100:120] = boxes[80:100]  # duplicates
    scores = torch.from_numpy(rng.integers(0, 6, 300) / 5).float()  # ties
    ref, got = both(lambda: nms(boxes, scores, iou, offset=offset))
    assert len(ref[1]) < 300
    assert torch.equal(ref[1], got[1])
    assert torch.equal(ref[0], got[0])
    # score threshold and max_num (mmcv's Python code around the kernel)
    ref, got = both(lambda: nms(boxes, scores, iou, offset=offset,
                                score_threshold=0.3, max_num=25))
    assert len(ref[1]) == 25
    assert torch.equal(ref[1], got[1])
    # numpy in, numpy out; no boxes
    ref, got = both(lambda: nms(boxes.numpy(), scores.numpy(), iou))
    np.testing.assert_array_equal(ref[1], got[1])
    ref, got = both(lambda: nms(boxes[:0], scores[:0], iou))
    assert got[1].numel() == 0 and got[1].dtype == ref[1].dtype


@pytest.mark.parametrize('split_thr', [10000, 50])
def test_batched_nms_keeps_the_same_boxes(split_thr):
    rng = np.random.default_rng(split_thr)
    boxes = random_boxes(rng, 400)
    scores = torch.from_numpy(rng.integers(0, 10, 400) / 10).float()
    labels = torch.from_numpy(rng.integers(0, 4, 400))
    for cfg in (dict(type='nms', iou_threshold=0.5, split_thr=split_thr),
                dict(type='nms', iou_threshold=0.6, split_thr=split_thr,
                     max_num=30),
                dict(type='nms', iou_threshold=0.4, class_agnostic=True,
                     split_thr=split_thr)):
        ref, got = both(lambda: batched_nms(boxes, scores, labels, cfg))
        assert torch.equal(ref[1], got[1]), cfg
        assert torch.equal(ref[0], got[0]), cfg


def _roi_align_case(dtype, output_size, spatial_scale, sampling_ratio,
                    aligned, seed=0, device='cpu',
                    memory_format=torch.contiguous_format):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 3, 13, 17, generator=gen, dtype=dtype)
    image = torch.tensor([17.0, 13.0]) / spatial_scale
    xy = torch.rand(24, 2, generator=gen) * image * 1.1 - 0.05 * image
    wh = torch.rand(24, 2, generator=gen) * image * 0.6
    rois = torch.cat([torch.randint(0, 2, (24, 1), generator=gen).float(),
                      xy, xy + wh], 1).to(dtype)
    rois[0, 3:] = rois[0, 1:3]  # an empty box
    grad = torch.randn(24, 3, *torch.nn.modules.utils._pair(output_size),
                       generator=gen, dtype=dtype)
    layer = RoIAlign(output_size, spatial_scale, sampling_ratio,
                     aligned=aligned)

    def run():
        x = feats.to(device, copy=True).requires_grad_()
        out = layer(x.to(memory_format=memory_format), rois.to(device))
        out.backward(grad.to(device))
        return out.detach().cpu(), x.grad.cpu()

    return run


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('spatial_scale', [1.0, 0.5, 0.125])
@pytest.mark.parametrize('output_size', [7, (2, 3)])
def test_roi_align_matches_mmcv(aligned, sampling_ratio, spatial_scale,
                                output_size):
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        run = _roi_align_case(dtype, output_size, spatial_scale,
                              sampling_ratio, aligned)
        (ref_out, ref_grad), (out, grad) = both(run)
        assert out.dtype == dtype and out.shape == ref_out.shape
        assert ref_out.abs().sum() > 0 and ref_grad.abs().sum() > 0
        torch.testing.assert_close(out, ref_out, rtol=0, atol=tol)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=tol)


def test_roi_align_of_channels_last_features():
    """mmcv's kernels ignore strides (open-mmlab/mmcv#2203); through
    mmgfn's proxy both paths see contiguous features, as from a conv."""
    ref = _roi_align_case(torch.float32, 7, 0.5, 0, True)()
    run = _roi_align_case(torch.float32, 7, 0.5, 0, True,
                          memory_format=torch.channels_last)
    for out, grad in both(run):
        torch.testing.assert_close(out, ref[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(grad, ref[1], rtol=0, atol=1e-6)


def test_roi_align_of_mixed_dtypes_on_torchvision_path():
    """float32 RoIs beside float64 features: computed in float64 (mmcv's
    kernel refuses them)."""
    feats = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    rois = torch.tensor([[0, 1.3, 1.1, 6.2, 5.7]])
    layer = RoIAlign(3, 1.0, 0)
    with forced(False):
        ref = layer(feats, rois.double())
        with pytest.raises(RuntimeError):
            layer(feats, rois)
    with forced(True):
        out = layer(feats, rois)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_roi_align_and_nms_on_torchvision_path(dtype):
    """Half-precision features outside autocast (the backward of a bfloat16
    detector): torchvision's kernels have no bfloat16 (CUDA), so they are
    computed in float32 and returned in the input's dtype."""
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 12, 12)
    rois = torch.tensor([[0, 1.3, 1.1, 9.2, 8.7], [1, 0.0, 2.0, 11.0, 7.5]])
    layer = RoIAlign(3, 1.0, 0, aligned=True)
    ref_in = feats.to(dtype).float().requires_grad_(True)
    with forced(True):
        ref = layer(ref_in, rois)
        ref.sum().backward()
        low_in = feats.to(dtype).requires_grad_(True)
        out = layer(low_in, rois)
        out.sum().backward()
        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        keep = nms(boxes.to(dtype), scores.to(dtype), 0.5)[1]
    assert out.dtype == dtype and low_in.grad.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=2e-2)
    torch.testing.assert_close(low_in.grad.float(), ref_in.grad, rtol=0,
                               atol=2e-2)
    assert keep.tolist() == [0, 2]


def test_roi_align_max_pooling_has_no_torchvision_path():
    feats, rois = torch.randn(1, 2, 8, 8), torch.tensor([[0, 1., 1, 6, 6]])
    layer = RoIAlign(2, pool_mode='max')
    with forced(False):
        assert layer(feats, rois).shape == (1, 2, 2, 2)  # mmcv's kernel
    with forced(True), pytest.raises(NotImplementedError,
                                     match="roi_align_forward with "
                                     "pool_mode='max'"):
        layer(feats, rois)


def _profiled_op_names(fn):
    with torch.profiler.profile(activities=[
            torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def test_forced_path_runs_torchvision_kernels_and_logs_once():
    mmcv_ops.reset_fallback_state()
    boxes = random_boxes(np.random.default_rng(0), 50)
    scores = torch.rand(50)
    run = _roi_align_case(torch.float32, 7, 0.5, 0, True)

    def ops():
        nms(boxes, scores, 0.5)
        nms(boxes, scores, 0.5)
        run()
        run()

    with logged('test_mmcv_ops_fallback') as messages:
        with forced(False):
            names = _profiled_op_names(ops)
        assert not any(n.startswith('torchvision::') for n in names)
        assert not messages
        with forced(True):
            names = _profiled_op_names(ops)
    assert {'torchvision::nms', 'torchvision::roi_align',
            'torchvision::_roi_align_backward'} <= names
    assert len(messages) == 3, messages  # once per op, not per call
    for op in FALLBACK_OPS:
        assert sum(f'mmcv op {op} on cpu runs through torchvision' in m
                   for m in messages) == 1
    assert all(FORCE_ENV in m for m in messages)
    with forced(True):
        assert active_path('nms', 'cpu') == 'torchvision (forced)'
    with forced(False):
        assert active_path('roi_align_backward', 'cpu') == 'mmcv'


def test_switches_by_itself_where_mmcv_has_no_kernel():
    """The automatic path, on the one device besides CUDA that mmcv's
    registry lacks and torchvision's RoIAlign has: meta."""
    mmcv_ops.reset_fallback_state()
    with logged('test_mmcv_ops_fallback_meta') as messages, forced(False):
        for _ in range(2):
            x = torch.randn(2, 3, 8, 8, device='meta',
                            requires_grad=True)
            rois = torch.zeros(5, 5, device='meta')
            out = RoIAlign((2, 3))(x, rois)
            assert out.shape == (5, 3, 2, 3) and out.is_meta
            out.sum().backward()
            assert x.grad.shape == x.shape
        for op in ('roi_align_forward', 'roi_align_backward'):
            assert active_path(op, 'meta') == \
                'torchvision (mmcv has no meta kernel)'
            assert active_path(op, 'cpu') == 'mmcv'
        # other errors of mmcv's kernels are not taken for a missing one
        # (mmcv's CPU RoIAlign refuses float32 RoIs beside float64 features)
        with pytest.raises(RuntimeError, match='expected scalar type'):
            RoIAlign((2, 3))(torch.randn(1, 3, 8, 8, dtype=torch.float64),
                             torch.zeros(2, 5))
        assert active_path('roi_align_forward', 'cpu') == 'mmcv'
    assert len(messages) == 2, messages
    assert all('on meta runs through torchvision' in m for m in messages)


def test_composes_with_cpu_bfloat16_patch():
    run_mmcv_cpu_ops_in_float32()
    feats = torch.randn(2, 4, 16, 16)
    rois = torch.tensor([[0, 1., 2, 9, 12], [1, 0, 0, 15, 15]])
    layer = RoIAlign((2, 3), 0.5, 0)
    boxes = random_boxes(np.random.default_rng(1), 40)
    scores = torch.rand(40)
    with forced(False):
        ref = layer(feats, rois)
        ref_keep = nms(boxes, scores, 0.5)[1]
    for flag in (False, True):
        with forced(flag), torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(feats.bfloat16(), rois)
            keep = nms(boxes.bfloat16(), scores.bfloat16(), 0.5)[1]
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.05)
        assert len(keep) == len(nms(boxes.bfloat16().float(),
                                    scores.bfloat16().float(), 0.5)[1])
    assert len(ref_keep) > 0


# ---------------------------------------------------------------- detectors


def _tiny_detector(config: str):
    """A small version of a shipped detection config's model."""
    cfg = Config.fromfile(config).model
    if cfg.backbone.type == 'ResNet':
        cfg.backbone.update(depth=18, init_cfg=None)
        cfg.neck.in_channels = [64, 128, 256, 512]
        cfg.neck.out_channels = 64
    else:  # ViT + SimpleFPN, as in tests/test_models/test_detection_backbone.py
        cfg.backbone.update(
            arch=dict(embed_dims=64, num_layers=2, num_heads=4,
                      feedforward_channels=128),
            img_size=64, init_cfg=None)
        cfg.neck.update(backbone_channel=64, in_channels=[16, 32, 64, 64],
                        out_channels=64, norm_cfg=dict(type='GN',
                                                       num_groups=8))
    cfg.rpn_head.in_channels = 64
    # fewer proposals: faster, and still hundreds of boxes through nms
    cfg.train_cfg.rpn_proposal.update(nms_pre=300, max_per_img=200)
    cfg.test_cfg.rpn.update(nms_pre=300, max_per_img=200)
    cfg.roi_head.bbox_roi_extractor.out_channels = 64
    cfg.roi_head.bbox_head.update(in_channels=64, fc_out_channels=128,
                                  num_classes=2)
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    from mmgfn.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _batch(root):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    with open(osp.join(root, 'annotations.json')) as f:
        ann = json.load(f)
    inputs, samples = [], []
    for img, a in zip(ann['images'], ann['annotations']):
        im = cv2.imread(osp.join(root, 'images', img['file_name']))
        inputs.append(torch.from_numpy(im).permute(2, 0, 1))
        sample = DetDataSample(metainfo=dict(
            img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.)))
        x, y, w, h = a['bbox']
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[x, y, x + w, y + h]], dtype=torch.float),
            labels=torch.tensor([a['category_id'] - 1]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _step(model, batch, device='cpu'):
    """Losses and gradients of a training step, then predictions."""
    model.to(device)
    torch.manual_seed(0)  # the RPN's and RoI head's samplers
    model.train()
    model.zero_grad()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    grads = {name: p.grad.cpu().clone()
             for name, p in model.named_parameters() if p.grad is not None}
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        preds = [s.pred_instances.cpu()
                 for s in model(**data, mode='predict')]
    losses = {k: torch.stack(v).detach().cpu() if isinstance(v, list) else
              v.detach().cpu() for k, v in losses.items()}
    return losses, grads, preds


@pytest.fixture(scope='module')
def detector_runs(tmp_path_factory):
    """Both detector families, each on mmcv's kernels and forced onto
    torchvision's, recording the mmcv ext functions they call."""
    root = write_coco(str(tmp_path_factory.mktemp('coco')), num_images=2)
    batch = _batch(root)
    runs = {}
    for name, config in (('r50_fpn', R50_FPN), ('vit_sfp', VIT_SFP)):
        model = _tiny_detector(config)
        for flag in (False, True):
            with forced(flag), record_ext_calls() as calls:
                runs[name, flag] = _step(model, batch) + (calls, )
    return runs


@pytest.mark.parametrize('name', ['r50_fpn', 'vit_sfp'])
def test_detector_same_losses_and_predictions(detector_runs, name):
    ref_losses, ref_grads, ref_preds, _ = detector_runs[name, False]
    losses, grads, preds, _ = detector_runs[name, True]
    assert set(losses) == set(ref_losses)
    for key, value in ref_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=0, atol=1e-5)
    assert set(grads) == set(ref_grads)
    for key, value in ref_grads.items():
        torch.testing.assert_close(grads[key], value, rtol=1e-4, atol=1e-6)
    assert sum(len(p) for p in ref_preds) > 0
    for ref, got in zip(ref_preds, preds):
        assert torch.equal(got.labels, ref.labels)
        torch.testing.assert_close(got.bboxes, ref.bboxes, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=1e-5)


def test_configs_reach_only_covered_ext_ops(detector_runs):
    """The op list in mmgfn.utils.mmcv_ops's docstring."""
    for (name, flag), (*_, calls) in detector_runs.items():
        assert set(calls) == set(FALLBACK_OPS), (name, flag, calls)


# ---------------------------------------------------------------- processes


def _python(code_or_args, **env):
    args = ['-c', code_or_args] if isinstance(code_or_args, str) \
        else code_or_args
    full_env = {k: v for k, v in os.environ.items() if k != FORCE_ENV}
    return subprocess.run([sys.executable, *args], cwd=ROOT,
                          env=dict(full_env, **env), capture_output=True,
                          text=True, timeout=300)


def test_collect_env_names_the_active_path():
    """In-process without forcing; ``python -m`` with forcing."""
    from mmgfn.utils.collect_env import collect_env
    keys = ('Python', 'PyTorch', 'PyTorch CUDA', 'CUDA available',
            'TorchVision', 'MMEngine', 'MMCV', 'MMCV CUDA Compiler',
            'MMDetection', 'MMPretrain', 'MMGFN', FORCE_ENV)
    with forced(False):
        env = collect_env(['cpu'])
    assert set(keys) <= set(env)
    for op in FALLBACK_OPS:
        assert env[f'mmcv op {op} on cpu'] == 'mmcv'
    proc = _python(['-m', 'mmgfn.utils.collect_env'], **{FORCE_ENV: '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key in keys:
        assert f'\n{key}: ' in proc.stdout, key
    for op in FALLBACK_OPS:
        assert f'mmcv op {op} on cpu: torchvision (forced)\n' in proc.stdout


# ------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not CUDA, reason='needs a CUDA device')
def test_cuda_matches_mmcv_cpu():
    """On CUDA (mmcv's kernel if it has one, else torchvision's) against
    mmcv's CPU kernels."""
    from mmcv.ops import get_compiling_cuda_version
    expect = ('mmcv' if get_compiling_cuda_version() != 'not available'
              else 'torchvision (mmcv built without CUDA ops)')
    with forced(False):
        for op in FALLBACK_OPS:
            assert active_path(op, 'cuda') == expect
        rng = np.random.default_rng(0)
        boxes = random_boxes(rng, 300)
        scores = torch.from_numpy(rng.permutation(300) / 300).float()
        labels = torch.from_numpy(rng.integers(0, 4, 300))
        cfg = dict(type='nms', iou_threshold=0.5)
        ref = batched_nms(boxes, scores, labels, cfg)[1]
        got = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), cfg)[1]
        assert torch.equal(got.cpu(), ref)
    for aligned in (True, False):
        ref_out, ref_grad = _roi_align_case(torch.float32, 7, 0.25, 0,
                                            aligned)()
        for flag in (False, True):
            with forced(flag):
                out, grad = _roi_align_case(torch.float32, 7, 0.25, 0,
                                            aligned, device='cuda')()
            torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
            torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)


@pytest.mark.skipif(not CUDA, reason='needs a CUDA device')
def test_cuda_detector_trains_and_predicts(tmp_path):
    """Both detector families on CUDA, on mmcv's CUDA kernels or (with a
    CPU-only mmcv) torchvision's, without forcing. (Their samplers draw from
    the CUDA generator, so the losses are not the CPU run's.)"""
    root = write_coco(str(tmp_path / 'coco'), num_images=2)
    batch = _batch(root)
    for config in (R50_FPN, VIT_SFP):
        model = _tiny_detector(config)
        with forced(False), record_ext_calls() as calls:
            losses, grads, preds = _step(model, batch, 'cuda')
        assert set(calls) == set(FALLBACK_OPS), calls
        assert all(torch.isfinite(v).all() for v in losses.values())
        assert all(torch.isfinite(g).all() for g in grads.values())
        assert grads['roi_head.bbox_head.fc_cls.weight'].abs().sum() > 0
        assert sum(len(p) for p in preds) > 0
        assert all(torch.isfinite(p.bboxes).all() for p in preds)
