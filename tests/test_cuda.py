"""GFN on a CUDA GPU: training and detection through the real tools, the
attack's precision under float16/bfloat16, and no host syncs in the attack,
the loss and the hook. Skipped where no CUDA device is present (CI)."""
import os.path as osp

import pytest
import torch

from conftest import (ROOT, digits_options, run_tool, write_coco,
                      write_det_config, write_image_folder)
from test_models.test_attack_precision import (_bound_preprocessor, _real_batch,
                                   _resnet_tiny, _tiny_detector)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device')

GFN_CONFIG = osp.join(ROOT, 'configs/digits/gfn_resnet-tiny_1xb32_digits.py')


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def test_gfn_classifier_trains_on_cuda_with_amp(tmp_path):
    root = write_image_folder(str(tmp_path / 'images'))
    work_dir = str(tmp_path / 'work')
    opts = digits_options(root, max_epochs=1) + [
        'data_preprocessor.topk=2', 'model.head.loss.topk=2'
    ]
    log = _ok(run_tool(['tools/train.py', GFN_CONFIG, '--amp', '--work-dir',
                        work_dir, '--cfg-options', *opts]))
    assert 'neighbour table built from head weights' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


@pytest.mark.parametrize('amp', [False, True])
def test_faster_rcnn_with_hook_trains_and_tests_on_cuda(tmp_path, amp):
    """mmdet's nms/RoIAlign on CUDA tensors: mmcv's own kernels where it was
    built with CUDA ops, else torchvision's (mmgfn.utils.mmcv_ops)."""
    root = write_coco(str(tmp_path / 'coco'), num_images=8)
    path = write_det_config(tmp_path, root, epochs=1)
    work_dir = str(tmp_path / 'work')
    flags = ['--amp'] if amp else []
    log = _ok(run_tool(['tools/train.py', path, *flags, '--work-dir',
                        work_dir]))
    assert 'Epoch(train) [1][2/2]' in log
    log = _ok(run_tool(['tools/test.py', path,
                        osp.join(work_dir, 'epoch_1.pth'), *flags,
                        '--work-dir', work_dir]))
    assert 'metrics: {"coco/bbox_mAP"' in log


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('head_scale', [1.0, 1e-4])
def test_autocast_step_agrees_with_float32_on_cuda(tmp_path, dtype,
                                                   head_scale):
    model = _resnet_tiny(head_scale).cuda()
    pre = _bound_preprocessor(model, eta=0.01, mean=[77.9] * 3,
                              std=[82.5] * 3).cuda()
    pixels, labels = _real_batch(tmp_path)
    inputs = ((pixels - 77.9) / 82.5).cuda()
    labels = labels.cuda()
    targets = (labels + 1) % 4
    fp32 = pre.perturb(model, inputs, labels, targets) - inputs
    with torch.autocast('cuda', dtype=dtype):
        low = pre.perturb(model, inputs, labels, targets) - inputs
    moved = fp32 != 0
    agree = (low.sign() == fp32.sign())[moved].float().mean().item()
    # float16: the backward is loss-scaled, >= 99 % as on the CPU;
    # bfloat16 (8-bit mantissa) changes the forward itself: about 96 % on
    # the CPU, at either gradient size (no underflow)
    assert agree >= (0.99 if dtype == torch.float16 else 0.94), agree


def _syncs_from_mmgfn(fn):
    """Run ``fn`` with CUDA sync debugging on; return the host syncs that
    mmgfn's own code made (mmdet's RoI extractor syncs by itself)."""
    import warnings
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    package = osp.join(ROOT, 'mmgfn')
    return [f'{w.filename}:{w.lineno}' for w in caught
            if 'synchroniz' in str(w.message)
            and w.filename.startswith(package)]


def test_attack_loss_and_hook_make_no_host_sync(tmp_path):
    """After warm-up, the classification attack (float32 and float16), the
    neighbour-weighted loss and the detection hook's attack make no host
    sync of their own."""
    from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
    from mmgfn.models import NeighborWeightedCELoss
    model = _resnet_tiny(1.0).cuda()
    pre = _bound_preprocessor(model, num_classes=4, eta=0.01,
                              mean=[77.9] * 3, std=[82.5] * 3).cuda()
    loss = NeighborWeightedCELoss(topk=2)
    pixels, labels = _real_batch(tmp_path)
    inputs, labels = ((pixels - 77.9) / 82.5).cuda(), labels.cuda()
    pre._resolve_table(model)
    loss.share_neighbor_table(pre.neighbor_table)

    def classification_step(dtype):
        with torch.autocast('cuda', dtype=dtype, enabled=dtype is not None):
            x = pre.perturb(model, inputs, labels)
            loss(model(x, mode='tensor'), labels).backward()

    for dtype in (None, torch.float16, torch.bfloat16):
        classification_step(dtype)  # warm-up
        assert _syncs_from_mmgfn(lambda: classification_step(dtype)) == []

    det, data = _tiny_detector(tmp_path)
    det = det.cuda()
    data = det.data_preprocessor.cast_data(data)
    hook = BackgroundRoIPerturbationHook(eta=0.01, neighbor_ratio=0.5,
                                         topk=1, seed=0)
    hook.bind(det, ['person', 'car'])
    hook._maybe_build_table(det)
    out = []
    out.append(hook.perturb(data['inputs'], data['data_samples']))
    assert _syncs_from_mmgfn(lambda: out.append(
        hook.perturb(data['inputs'], data['data_samples']))) == []
    assert (out[-1] - data['inputs']).abs().max().item() > 0
