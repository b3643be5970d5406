"""A stand-in for ``mmcv._ext``: mmcv's three detection ops in torchvision.

mmgfn's default install (``tools/setup_env.sh``) builds mmcv 2.1.0 without
its compiled ops (``MMCV_WITH_OPS=0``: pure Python, seconds to build, no C++
compiler) and puts a two-line ``mmcv/_ext.py`` into that wheel which executes
*this file* in its own namespace. mmcv's op modules then find an ``_ext``
module as they do with the full build, so ``import mmcv.ops``, ``import
mmdet.models`` and ``import mmgfn`` work in any order: nothing has to be
patched at run time, because the stand-in is a file of the installed mmcv.

What it provides, on every device (CPU, CUDA, ...):

* ``nms``, ``roi_align_forward`` and ``roi_align_backward``: the three
  compiled ops that mmdet's two-stage detectors reach (recorded in
  ``tests/test_utils/test_mmcv_ops_fallback.py``), computed by ``torchvision::nms``,
  ``torchvision::roi_align`` and ``torchvision::_roi_align_backward`` with
  mmcv's calling conventions (see the functions' docstrings);
* ``get_compiler_version`` and ``get_compiling_cuda_version``, which report
  ``'n/a (...)'`` and ``'not available'`` (the latter is what a CPU-only
  build of mmcv returns, so code that asks whether mmcv has CUDA ops gets
  the right answer);
* every other name mmcv's op modules ask for (``deform_conv_forward``,
  ``sigmoid_focal_loss_forward``, ...): an attribute, so that importing
  those modules works, whose *call* raises :class:`MissingMmcvOpError`
  with one line naming the op and the opt-in full build
  (``MMGFN_MMCV_OPS=1 bash tools/setup_env.sh``).

This file must stay self-contained: it is executed as ``mmcv._ext`` while
``mmcv.ops`` is being imported, so it imports only the standard library and
torch (torchvision when an op first runs), never mmcv, mmdet or mmgfn's
package (whose ``__init__`` imports those). ``mmgfn.utils.mmcv_ops`` imports
the kernels from here, so they exist once.
"""
from typing import Any, Callable

import torch
from torch import Tensor

#: Marks this module (and the ``mmcv._ext`` that executes it).
MMGFN_STANDIN = True

#: The ops this stand-in computes.
STANDIN_OPS = ('nms', 'roi_align_forward', 'roi_align_backward')

#: How to get mmcv's own compiled ops instead.
FULL_BUILD = 'MMGFN_MMCV_OPS=1 bash tools/setup_env.sh'


class MissingMmcvOpError(RuntimeError):
    """A compiled mmcv op that this install does not have was called."""


def _common_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype torchvision's kernel computes in: the widest of the
    inputs', float32 for half precisions (torchvision's CUDA kernels have no
    bfloat16, and its autocast wrappers compute these ops in float32)."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return dtype


def _import_torchvision_ops() -> None:
    """Importing torchvision registers ``torch.ops.torchvision``."""
    import torchvision  # noqa: F401


def float32_threshold(iou_threshold: float) -> float:
    """An IoU threshold rounded to float32, as mmcv's kernels take it.

    mmcv's ``nms`` kernels declare the threshold ``float``, so ``0.3``
    becomes ``0.30000001192...``; torchvision's take a ``double``. An IoU
    of exactly ``0.3`` computed in float32 is that same float, so mmcv keeps
    the box (``iou > threshold`` is false) and torchvision, comparing with
    the double ``0.3``, would drop it. Rounding first makes both keep it.

    Args:
        iou_threshold (float): The threshold as given.

    Returns:
        float: The nearest float32 value, as a Python float.
    """
    return float(torch.tensor(float(iou_threshold), dtype=torch.float32))


def torchvision_nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
                    offset: int) -> Tensor:
    """mmcv's ``ext_module.nms`` computed by ``torchvision::nms``.

    Args:
        boxes (Tensor): Boxes ``(N, 4)`` as ``x1, y1, x2, y2``.
        scores (Tensor): Scores ``(N, )``.
        iou_threshold (float): Boxes overlapping a kept box by more than
            this IoU are dropped; compared in float32, as in mmcv
            (:func:`float32_threshold`).
        offset (int): 0 or 1; a box's width is ``x2 - x1 + offset``.

    Returns:
        Tensor: Indices (int64) of the kept boxes, by decreasing score.
    """
    _import_torchvision_ops()
    dtype = _common_dtype(boxes, scores)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    if offset:
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:] + offset], dim=1)
    # mmcv's kernels visit the boxes in the order of torch's default
    # (unstable) descending sort, torchvision's in a stable sort's, so boxes
    # of equal scores would be visited (and kept) differently. Hand them over
    # in mmcv's order: a stable sort keeps a sorted input as it is.
    order = scores.sort(0, descending=True)[1]
    keep = torch.ops.torchvision.nms(boxes[order], scores[order],
                                     float32_threshold(iou_threshold))
    return order[keep]


def _check_avg(op: str, pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError(
            f"mmcv op {op} with pool_mode='max' has no torchvision path: "
            "torchvision's roi_align averages only. Use RoIAlign(pool_mode="
            "'avg'), or mmcv's own compiled ops for this device "
            f'({FULL_BUILD}; MMGFN_MMCV_CUDA=1 for CUDA) and unset '
            'MMGFN_FORCE_TORCHVISION_OPS.')


def torchvision_roi_align_forward(input: Tensor, rois: Tensor, output: Tensor,
                                  argmax_y: Tensor, argmax_x: Tensor,
                                  aligned_height: int, aligned_width: int,
                                  spatial_scale: float, sampling_ratio: int,
                                  pool_mode: int, aligned: bool) -> None:
    """mmcv's ``ext_module.roi_align_forward`` computed by
    ``torchvision::roi_align``; writes into ``output`` as mmcv does.

    Args:
        input (Tensor): Features ``(N, C, H, W)``.
        rois (Tensor): RoIs ``(K, 5)`` as ``batch_index, x1, y1, x2, y2``.
        output (Tensor): Buffer ``(K, C, aligned_height, aligned_width)``.
        argmax_y (Tensor): Unused (max pooling only).
        argmax_x (Tensor): Unused (max pooling only).
        aligned_height (int): Output height.
        aligned_width (int): Output width.
        spatial_scale (float): Scale from RoI to feature coordinates.
        sampling_ratio (int): Samples per bin side; 0 for adaptive
            (``ceil(roi_size / output_size)``).
        pool_mode (int): mmcv's code: 1 for average (supported), 0 for max.
        aligned (bool): Shift RoIs by -0.5 pixel (detectron2's alignment).
    """
    _check_avg('roi_align_forward', pool_mode)
    _import_torchvision_ops()
    dtype = _common_dtype(input, rois)
    result = torch.ops.torchvision.roi_align(
        input.contiguous().to(dtype),
        rois.contiguous().to(dtype), float(spatial_scale),
        int(aligned_height), int(aligned_width), int(sampling_ratio),
        bool(aligned))
    output.copy_(result)


def torchvision_roi_align_backward(grad_output: Tensor, rois: Tensor,
                                   argmax_y: Tensor, argmax_x: Tensor,
                                   grad_input: Tensor, aligned_height: int,
                                   aligned_width: int, spatial_scale: float,
                                   sampling_ratio: int, pool_mode: int,
                                   aligned: bool) -> None:
    """mmcv's ``ext_module.roi_align_backward`` computed by
    ``torchvision::_roi_align_backward``; writes into ``grad_input``.

    Args:
        grad_output (Tensor): Gradient of the output ``(K, C, h, w)``.
        rois (Tensor): RoIs ``(K, 5)``.
        argmax_y (Tensor): Unused (max pooling only).
        argmax_x (Tensor): Unused (max pooling only).
        grad_input (Tensor): Buffer ``(N, C, H, W)`` for the features'
            gradient.
        aligned_height, aligned_width, spatial_scale, sampling_ratio,
            pool_mode, aligned: The forward's, see
            :func:`torchvision_roi_align_forward`.
    """
    _check_avg('roi_align_backward', pool_mode)
    _import_torchvision_ops()
    dtype = _common_dtype(grad_output, rois)
    batch, channels, height, width = grad_input.shape
    result = torch.ops.torchvision._roi_align_backward(
        grad_output.contiguous().to(dtype),
        rois.contiguous().to(dtype), float(spatial_scale),
        int(aligned_height), int(aligned_width), batch, channels, height,
        width, int(sampling_ratio), bool(aligned))
    grad_input.copy_(result)


def missing_op(name: str) -> Callable[..., Any]:
    """A function standing for compiled mmcv op ``name``: raises when
    called.

    Args:
        name (str): The op's name in ``mmcv._ext``.

    Returns:
        callable: Raises :class:`MissingMmcvOpError` naming ``name``.
    """

    def call(*args, **kwargs):
        raise MissingMmcvOpError(
            f'mmcv op {name} needs mmcv\'s compiled ops, which this install '
            'does not have (it runs only nms and roi_align, through '
            f'torchvision); build them with: {FULL_BUILD}')

    call.__name__ = call.__qualname__ = name
    return call


def get_compiler_version() -> str:
    """What mmcv's full build reports as its C++ compiler."""
    return 'n/a (mmcv installed without compiled ops)'


def get_compiling_cuda_version() -> str:
    """``'not available'``: what mmcv's build without CUDA ops returns."""
    return 'not available'


nms = torchvision_nms
roi_align_forward = torchvision_roi_align_forward
roi_align_backward = torchvision_roi_align_backward


def __getattr__(name: str) -> Callable[..., Any]:
    """Any other op: present (importing mmcv's op modules checks that with
    ``hasattr``), failing at its first call."""
    if name.startswith('_'):
        raise AttributeError(name)
    return missing_op(name)
