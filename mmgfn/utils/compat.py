"""Guards that let the pinned OpenMMLab stack run beside newer packages."""
import warnings
from importlib.metadata import PackageNotFoundError, version


def skip_mmpretrain_multimodal_with_transformers5() -> bool:
    """Stop mmpretrain 1.2.0 from importing its multimodal models beside
    transformers >= 5.

    mmpretrain 1.2.0 imports its BLIP/Flamingo/... models whenever
    ``transformers>=4.28`` is installed, and their code fails under
    transformers 5 (``TypeError: NoneType takes no arguments``), which breaks
    ``import mmpretrain.models`` as a whole. mmgfn uses none of those models,
    so when transformers >= 5 is found this switches mmpretrain's
    ``WITH_MULTIMODAL`` off (they are then registered as placeholders that
    raise a clear error if built) and warns once.

    Must run before ``mmpretrain.models`` is imported; importing :mod:`mmgfn`
    first does that.

    Returns:
        bool: True if the multimodal models were switched off.
    """
    try:
        major = int(version('transformers').split('.')[0])
    except (PackageNotFoundError, ValueError):
        return False
    if major < 5:
        return False
    import mmpretrain.utils.dependency as dependency
    dependency.WITH_MULTIMODAL = False
    warnings.warn(f'transformers {version("transformers")} is installed: '
                  "mmpretrain 1.2.0's multimodal models (BLIP, CLIP, ...) "
                  'do not work with it and are disabled; mmgfn does not use '
                  'them.')
    return True


def run_mmcv_cpu_ops_in_float32() -> None:
    """Let mmcv's RoIAlign and nms run under CPU autocast (``--amp``).

    mmcv 2.1.0's CPU kernels of ``RoIAlign`` and ``nms`` exist for float32
    only (``NotImplementedError: "ROIAlign_forward" not implemented for
    'BFloat16'``), so a two-stage detector cannot train or test under
    bfloat16 autocast on the CPU. After this call, CPU inputs in a half
    precision are computed in float32 and RoIAlign's output is cast back to
    the input's dtype; CUDA inputs and float32 inputs take mmcv's own path.
    Idempotent.
    """
    import importlib

    import torch

    # the modules (mmcv.ops re-exports functions under the same names)
    nms_module = importlib.import_module('mmcv.ops.nms')
    roi_align_module = importlib.import_module('mmcv.ops.roi_align')

    low = (torch.bfloat16, torch.float16)
    roi_align = roi_align_module.RoIAlign
    if not getattr(roi_align.forward, '_mmgfn_float32', False):
        original_forward = roi_align.forward

        def forward(self, input, rois):
            if input.is_cuda or input.dtype not in low:
                return original_forward(self, input, rois)
            with torch.autocast('cpu', enabled=False):
                out = original_forward(self, input.float(), rois.float())
            return out.to(input.dtype)

        forward._mmgfn_float32 = True
        roi_align.forward = forward

    nms_op = nms_module.NMSop
    if not getattr(nms_op.forward, '_mmgfn_float32', False):
        original_nms = nms_op.forward

        def nms_forward(ctx, bboxes, scores, *args, **kwargs):
            if not bboxes.is_cuda and bboxes.dtype in low:
                bboxes = bboxes.float()
            if not scores.is_cuda and scores.dtype in low:
                scores = scores.float()
            return original_nms(ctx, bboxes, scores, *args, **kwargs)

        nms_forward._mmgfn_float32 = True
        nms_op.forward = staticmethod(nms_forward)


def float32_test_outputs(model) -> None:
    """Cast a model's half-precision test outputs to float32 (in place).

    Under CPU autocast (``tools/test.py --amp`` without a GPU) predictions
    come out in bfloat16, which numpy cannot hold, so mmdet's CocoMetric
    fails on ``.numpy()``. Wraps ``model.test_step`` so that every floating
    tensor of the returned data samples (``pred_instances``, ``pred_score``,
    ...) is float32.
    """
    import torch
    from mmengine.structures import BaseDataElement

    if getattr(model.test_step, '_mmgfn_float32', False):
        return
    original = model.test_step

    def cast(value):
        if isinstance(value, torch.Tensor) and value.dtype in (
                torch.bfloat16, torch.float16):
            return value.float()
        if isinstance(value, BaseDataElement):
            for key, item in list(value.items()):
                value.set_field(cast(item), key)
        return value

    def test_step(data):
        return [cast(sample) for sample in original(data)]

    test_step._mmgfn_float32 = True
    model.test_step = test_step
