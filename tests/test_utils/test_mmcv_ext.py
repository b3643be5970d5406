"""The default install's stand-in for mmcv's compiled ops
(:mod:`mmgfn.utils.mmcv_ext`), checked against reference implementations
written here (greedy NMS, RoIAlign's bilinear sampling and its gradient), and
the install itself: import order, a detector trained and tested through the
tools, the one-line error of an op it does not have.

Runs on either install: with mmcv's full build the stand-in is put in place
(``ext_module`` of mmcv's op modules in-process, ``mmcv._ext`` through a
``sitecustomize`` in subprocesses), which is what the default install has.
"""
import importlib
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmcv.ops import RoIAlign, nms

from conftest import ROOT, write_coco, write_det_config
from mmgfn.utils import mmcv_ext, mmcv_ops

STANDIN_FILE = osp.join(ROOT, 'mmgfn', 'utils', 'mmcv_ext.py')
nms_module = importlib.import_module('mmcv.ops.nms')
roi_align_module = importlib.import_module('mmcv.ops.roi_align')
deform_conv_module = importlib.import_module('mmcv.ops.deform_conv')

# what tools/setup_env.sh writes into mmcv's wheel as mmcv/_ext.py, run
# before anything imports mmcv (a sitecustomize) where mmcv has its own
SITECUSTOMIZE = f'''
import importlib.util, sys
spec = importlib.util.spec_from_file_location('mmcv._ext', {STANDIN_FILE!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules['mmcv._ext'] = module
'''


@pytest.fixture
def standin(monkeypatch):
    """mmcv's op modules on the stand-in, as on the default install."""
    for module in (nms_module, roi_align_module, deform_conv_module):
        monkeypatch.setattr(module, 'ext_module', mmcv_ext)
    return mmcv_ext


def standin_env(tmp_path) -> dict:
    """Environment of a subprocess that runs on the stand-in whatever mmcv
    is installed."""
    env = {k: v for k, v in os.environ.items()
           if k != mmcv_ops.FORCE_ENV}
    if mmcv_ops.is_standin():
        return env
    folder = tmp_path / 'standin_site'
    folder.mkdir()
    (folder / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(folder), env.get('PYTHONPATH', '')) if p)
    return env


# ------------------------------------------------------------- references


def reference_nms(boxes, scores, iou_threshold, offset=0):
    """Greedy NMS as mmcv's CPU kernel runs it: boxes visited in the order
    of torch's default descending sort of the scores, IoU computed in
    float32 and compared with the float32 threshold, sides
    ``x2 - x1 + offset``."""
    boxes = boxes.float().numpy()
    order = scores.float().sort(0, descending=True)[1].numpy()
    thr = np.float32(iou_threshold)
    area = ((boxes[:, 2] - boxes[:, 0] + offset) *
            (boxes[:, 3] - boxes[:, 1] + offset)).astype(np.float32)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for n, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        for j in order[n + 1:]:
            if suppressed[j]:
                continue
            w = max(np.float32(0), min(boxes[i, 2], boxes[j, 2]) -
                    max(boxes[i, 0], boxes[j, 0]) + np.float32(offset))
            h = max(np.float32(0), min(boxes[i, 3], boxes[j, 3]) -
                    max(boxes[i, 1], boxes[j, 1]) + np.float32(offset))
            inter = np.float32(w * h)
            iou = np.float32(inter / np.float32(area[i] + area[j] - inter))
            if iou > thr:
                suppressed[j] = True
    return torch.tensor(keep, dtype=torch.long)


def _bilinear(feat, y, x):
    """mmcv's ``bilinear_interpolate`` of ``feat (C, H, W)`` at one point;
    differentiable in ``feat``."""
    height, width = feat.shape[1:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feat.new_zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feat[:, y_low, x_low] + hy * lx * feat[:, y_low, x_high]
            + ly * hx * feat[:, y_high, x_low] +
            ly * lx * feat[:, y_high, x_high])


def reference_roi_align(feats, rois, out_h, out_w, spatial_scale,
                        sampling_ratio, aligned):
    """RoIAlign (average) as mmcv's CPU kernel computes it, in float64 with
    Python loops; differentiable in ``feats``.

    Returns:
        Tensor: ``(K, C, out_h, out_w)``.
    """
    outputs = []
    shift = 0.5 if aligned else 0.0
    for roi in rois.tolist():
        feat = feats[int(roi[0])]
        x1, y1, x2, y2 = (v * spatial_scale - shift for v in roi[1:])
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:  # force malformed RoIs to be 1 x 1
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(
            roi_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(
            roi_w / out_w)
        count = max(grid_h * grid_w, 1)
        bins = []
        for ph in range(out_h):
            row = []
            for pw in range(out_w):
                total = feat.new_zeros(feat.shape[0])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total = total + _bilinear(feat, y, x)
                row.append(total / count)
            bins.append(torch.stack(row, -1))
        outputs.append(torch.stack(bins, -2))
    return torch.stack(outputs)


# -------------------------------------------------------------------- nms


@pytest.mark.parametrize('second, threshold', [
    ([7., 0., 10., 1.], 0.3),  # IoU 3/10
    ([4., 0., 10., 1.], 0.6),  # IoU 6/10
    ([5., 0., 15., 1.], 1 / 3),  # IoU 5/15
])
def test_nms_keeps_a_box_whose_iou_equals_the_threshold(
        standin, second, threshold):
    """mmcv compares a float32 IoU with a float32 threshold: equal is kept.
    A double threshold (torchvision's) would drop the second box."""
    boxes = torch.tensor([[0., 0., 10., 1.], second])
    scores = torch.tensor([0.9, 0.8])
    assert reference_nms(boxes, scores, threshold).tolist() == [0, 1]
    assert standin.nms(boxes, scores, threshold, 0).tolist() == [0, 1]
    dets, keep = nms(boxes, scores, threshold)  # through mmcv's NMSop
    assert keep.tolist() == [0, 1] and dets.shape == (2, 5)
    # just above the threshold: dropped
    assert nms(boxes, scores, threshold - 1e-3)[1].tolist() == [0]


@pytest.mark.parametrize('offset', [0, 1])
@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
def test_nms_matches_the_reference(standin, iou, offset):
    rng = np.random.default_rng(int(iou * 10) + offset)
    xy = rng.uniform(0, 60, (200, 2))
    wh = rng.uniform(2, 40, (200, 2))
    boxes = torch.from_numpy(np.hstack([xy, xy + wh])).float()
    boxes[100:120] = boxes[80:100]  # duplicates
    # ties: mmcv's order is torch's sort's, not a stable one
    scores = torch.from_numpy(rng.integers(0, 6, 200) / 5).float()
    ref = reference_nms(boxes, scores, iou, offset)
    assert 1 < len(ref) < 200
    assert torch.equal(standin.nms(boxes, scores, iou, offset), ref)
    dets, keep = nms(boxes, scores, iou, offset=offset)
    assert torch.equal(keep, ref)
    torch.testing.assert_close(dets[:, 4], scores[ref])
    # integer-valued boxes: many IoUs land exactly on the threshold
    grid = torch.from_numpy(rng.integers(0, 12, (150, 2))).float()
    boxes = torch.cat([grid, grid + torch.from_numpy(
        rng.integers(1, 6, (150, 2))).float()], 1)
    scores = torch.rand(150, generator=torch.Generator().manual_seed(3))
    assert torch.equal(standin.nms(boxes, scores, iou, offset),
                       reference_nms(boxes, scores, iou, offset))


# -------------------------------------------------------------- RoIAlign


def _roi_case(seed, spatial_scale):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    size = torch.tensor([11., 9.]) / spatial_scale
    xy = torch.rand(6, 2, generator=gen, dtype=torch.float64) * size * 0.8
    wh = torch.rand(6, 2, generator=gen, dtype=torch.float64) * size * 0.6
    rois = torch.cat([torch.tensor([0., 1, 0, 1, 1, 0]).double()[:, None],
                      xy - 1.0, xy + wh], 1)
    # hand-made: a point-sized RoI, one beyond the map, one on its border
    rois = torch.cat([rois, torch.tensor(
        [[1., 2, 2, 2, 2], [0, 30, 30, 60, 60], [1, -3, -3, 1, 1]]).double() /
        torch.tensor([1., *([spatial_scale] * 4)]).double()])
    return feats, rois


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('spatial_scale', [1.0, 0.5])
def test_roi_align_and_its_gradient_match_the_reference(
        standin, aligned, sampling_ratio, spatial_scale):
    feats, rois = _roi_case(int(spatial_scale * 10) + sampling_ratio,
                            spatial_scale)
    out_h, out_w = 2, 3
    leaf = feats.clone().requires_grad_()
    ref = reference_roi_align(leaf, rois, out_h, out_w, spatial_scale,
                              sampling_ratio, aligned)
    upstream = torch.randn(ref.shape, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    (ref * upstream).sum().backward()
    # the stand-in's kernels, called as mmcv's RoIAlignFunction calls them
    output = feats.new_zeros(ref.shape)
    empty = feats.new_zeros(0)
    standin.roi_align_forward(
        feats, rois, output, empty, empty, aligned_height=out_h,
        aligned_width=out_w, spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio, pool_mode=1, aligned=aligned)
    torch.testing.assert_close(output, ref.detach(), rtol=0, atol=1e-10)
    grad_input = torch.zeros_like(feats)
    standin.roi_align_backward(
        upstream, rois, empty, empty, grad_input, aligned_height=out_h,
        aligned_width=out_w, spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio, pool_mode=1, aligned=aligned)
    torch.testing.assert_close(grad_input, leaf.grad, rtol=0, atol=1e-10)
    assert leaf.grad.abs().sum() > 0
    # and through mmcv's RoIAlign module (float32, channels-last input)
    layer = RoIAlign((out_h, out_w), spatial_scale, sampling_ratio,
                     aligned=aligned)
    x = feats.float().contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = layer(x, rois.float())
    torch.testing.assert_close(out, ref.detach().float(), rtol=0, atol=1e-5)
    (out * upstream.float()).sum().backward()
    torch.testing.assert_close(x.grad, leaf.grad.float(), rtol=0, atol=1e-5)


def test_roi_align_max_pooling_is_refused_in_one_line(standin):
    with pytest.raises(NotImplementedError, match="pool_mode='max'") as err:
        RoIAlign((2, 2), pool_mode='max')(torch.randn(1, 2, 8, 8),
                                          torch.tensor([[0., 0, 0, 4, 4]]))
    assert '\n' not in str(err.value)


# -------------------------------------------------------- the other ops


def test_other_ops_import_and_fail_at_their_first_call():
    # mmcv's op modules check their names with hasattr when imported
    assert hasattr(mmcv_ext, 'deform_conv_forward')
    assert not hasattr(mmcv_ext, '__path__')  # not taken for a package
    with pytest.raises(mmcv_ext.MissingMmcvOpError) as err:
        mmcv_ext.sigmoid_focal_loss_forward(torch.zeros(1))
    message = str(err.value)
    assert '\n' not in message
    assert 'sigmoid_focal_loss_forward' in message
    assert 'MMGFN_MMCV_OPS=1 bash tools/setup_env.sh' in message
    assert mmcv_ext.get_compiling_cuda_version() == 'not available'


def test_a_detector_needing_another_op_fails_with_one_line(
        standin, tmp_path):
    """Faster R-CNN with deformable convolutions (``mmcv.ops.DeformConv2d``)
    builds on the stand-in and fails at its first forward, naming the op."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmgfn.registry import MODELS
    cfg = Config.fromfile(write_det_config(tmp_path, str(tmp_path))).model
    cfg.backbone.update(  # ResNet-50's bottlenecks take DCN, as in mmdet's
        depth=50,  # faster-rcnn_r50-dconv-c3-c5 configs
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, False, False, True))
    cfg.neck.in_channels = [256, 512, 1024, 2048]
    init_default_scope('mmdet')
    model = MODELS.build(cfg)
    with pytest.raises(RuntimeError) as err:
        model.extract_feat(torch.randn(1, 3, 64, 64))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith('mmcv op deform_conv_forward needs')
    assert 'MMGFN_MMCV_OPS=1' in message


# ---------------------------------------------------------- the install

# imports mmdet's detectors before mmgfn, then trains and tests a Faster
# R-CNN through the two tools, in one process
TRAIN_THEN_TEST = '''
import importlib, runpy, sys
import mmdet.models  # noqa: F401  before mmgfn
ext = importlib.import_module('mmcv._ext')
assert getattr(ext, 'MMGFN_STANDIN', False), ext
import mmgfn  # noqa: F401
from mmgfn.utils.mmcv_ops import active_path, has_compiled_ops, is_standin
assert is_standin() and not has_compiled_ops()
print('path', active_path('nms', 'cpu'))
config, work_dir = sys.argv[1:3]
for argv in (['tools/train.py', config, '--work-dir', work_dir],
             ['tools/test.py', config, work_dir + '/epoch_1.pth',
              '--work-dir', work_dir, '--out-metrics',
              work_dir + '/metrics.json']):
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as e:
        assert not e.code, e.code
'''


def test_default_install_imports_mmdet_first_trains_and_tests(tmp_path):
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    config = write_det_config(tmp_path, root, epochs=1)
    work_dir = str(tmp_path / 'work')
    proc = subprocess.run(
        [sys.executable, '-c', TRAIN_THEN_TEST, config, work_dir], cwd=ROOT,
        env=standin_env(tmp_path), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert 'path torchvision (mmcv installed without compiled ops)' in \
        proc.stdout
    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    assert 'coco/bbox_mAP' in metrics
    assert 'loss_rpn_cls' in proc.stdout + proc.stderr


def test_collect_env_reports_the_standin(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'mmgfn.utils.collect_env'], cwd=ROOT,
        env=standin_env(tmp_path), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'MMCV CUDA Compiler: n/a (mmcv installed without compiled ops)' \
        in proc.stdout
    for op in mmcv_ops.FALLBACK_OPS:
        assert (f'mmcv op {op} on cpu: torchvision (mmcv installed without '
                'compiled ops)\n') in proc.stdout


def test_the_install_is_the_one_asked_for():
    """``tools/setup_env.sh`` installs the stand-in unless
    ``MMGFN_MMCV_OPS=1`` or ``MMGFN_MMCV_CUDA=1`` asks for mmcv's own ops;
    the suite runs under the same variables as the setup."""
    full = '1' in (os.environ.get('MMGFN_MMCV_OPS'),
                   os.environ.get('MMGFN_MMCV_CUDA'))
    assert mmcv_ops.is_standin() is not full
    assert mmcv_ops.has_compiled_ops() is full
    assert mmcv_ops.install_torchvision_fallback() is full
