"""Run mmcv's detection ops through torchvision where mmcv has no kernel.

Two installs, two mechanisms:

* **Default** (``tools/setup_env.sh``): mmcv 2.1.0 without compiled ops and
  mmgfn's stand-in ``mmcv._ext`` (:mod:`mmgfn.utils.mmcv_ext`), whose
  ``nms`` and RoIAlign run through torchvision on every device. Nothing
  here is patched then (:func:`install_torchvision_fallback` returns
  False, :func:`active_path` reports :data:`STANDIN`).
* **Full build** (``MMGFN_MMCV_OPS=1``, or ``MMGFN_MMCV_CUDA=1`` for CUDA
  ops too): mmcv's own compiled ops. A CPU-only build raises ``RuntimeError:
  nms_impl: implementation for device cuda:0 not found.`` on CUDA tensors;
  this module swaps *only the kernel* under mmcv's Python code for such
  devices: mmcv's ``score_threshold`` / ``max_num`` handling,
  ``batched_nms``, shape checks and the ``RoIAlignFunction`` autograd
  Function stay mmcv's own. The kernels are the stand-in's.

Which mmcv ops the shipped detection configs reach: recorded with
:func:`record_ext_calls` around a training step and a prediction of small
versions of both detector families of ``configs/detection`` (Faster R-CNN
R-50 FPN and ViT-B + ``mmgfn.SimpleFPN``; see
``tests/test_utils/test_mmcv_ops_fallback.py``), the ``mmcv._ext`` functions called
are exactly

* ``nms`` (``mmcv.ops.nms`` / ``batched_nms`` in the RPN and in the RoI
  head's ``multiclass_nms``, through ``NMSop``),
* ``roi_align_forward`` and ``roi_align_backward`` (``mmcv.ops.RoIAlign``
  in ``SingleRoIExtractor``, through ``RoIAlignFunction``),

and each of them has a torchvision path here
(``torch.ops.torchvision.nms``, ``torch.ops.torchvision.roi_align`` and
``torch.ops.torchvision._roi_align_backward``).

How the path is chosen, per call: with ``MMGFN_FORCE_TORCHVISION_OPS=1``
(read at every call, so a process can compare both paths) torchvision runs on
every device. Otherwise mmcv's kernel is tried first; if it raises the device
registry's ``implementation for device ... not found`` error, that (op,
device type) pair switches to torchvision for the rest of the process and
this is logged once. Trying first, rather than deciding up front from
``mmcv.ops.get_compiling_cuda_version() == 'not available'``, keeps mmcv's
kernel wherever it exists (a CUDA build of mmcv keeps its own kernels, a
build for another accelerator too), needs no list of device types and
catches exactly the failure it fixes; it costs one failed call per pair and
process. The registry checks the device before it runs anything, so the
failed call has written nothing.

Both paths get contiguous ``RoIAlign`` inputs: mmcv 2.1.0's kernels (CPU
and CUDA) read ``input.data_ptr()`` as if it were contiguous NCHW and return
wrong features for any other layout (open-mmlab/mmcv#2203, still open), such
as the channels-last feature maps of ``mmgfn.SimpleFPN``; torchvision's
kernels make their inputs contiguous themselves.

mmcv's nms visits boxes in the order of torch's default (unstable)
descending sort of the scores, torchvision's in a stable sort's order; the
torchvision path sorts first, as mmcv does, so boxes of equal scores are
kept the same. mmcv's kernels take the IoU threshold as a C ``float``,
torchvision's as a ``double``; the threshold is rounded to float32 first, so
that an IoU equal to it (0.3, 0.6, 1/3 computed in float32) keeps the box
in both (:func:`mmgfn.utils.mmcv_ext.float32_threshold`).

Differences from mmcv's kernels: torchvision's RoIAlign averages only, so
``pool_mode='max'`` raises a :class:`NotImplementedError` on the torchvision
path; ``aligned`` and ``sampling_ratio`` (``0``: adaptive,
``ceil(roi_size / output_size)`` samples per bin) mean the same in both.
mmcv's ``offset=1`` for nms (box sides ``x2 - x1 + 1``) is kept by shifting
the boxes' far corners by 1 for torchvision. Inputs of two floating dtypes
(RoIs in float32 beside float64 features) are computed in the wider one,
where mmcv's kernels would refuse them; half precision (float16, bfloat16)
is computed in float32 and returned in the input's dtype, as torchvision's
own autocast wrappers do (its CUDA RoIAlign backward has no bfloat16).

The fallback composes with
:func:`mmgfn.utils.compat.run_mmcv_cpu_ops_in_float32` (which casts
bfloat16 CPU inputs to float32 above ``NMSop`` / ``RoIAlign``): the two
patch different layers.

Installation (full build): ``import mmgfn`` calls
:func:`install_torchvision_fallback`, which imports ``mmcv.ops`` and patches
it. That adds about 0.07 s to
``import mmgfn`` (measured with ``python -X importtime``: ``mmcv.ops`` after
mmgfn's own imports, which already load torch and mmengine), so it is done
eagerly rather than through an import hook. Without mmcv's compiled ops
(the stand-in, or ``mmcv-lite``) nothing is done; if they fail to load (an mmcv built against
another torch) a warning says so and nothing is done either.
"""
import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import warnings
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, Tuple

import torch
from torch import Tensor

from .mmcv_ext import (torchvision_nms, torchvision_roi_align_backward,
                       torchvision_roi_align_forward)

#: Environment variable that forces the torchvision path on every device.
FORCE_ENV = 'MMGFN_FORCE_TORCHVISION_OPS'

#: mmcv ext functions that have a torchvision path.
FALLBACK_OPS = ('nms', 'roi_align_forward', 'roi_align_backward')

#: The mmcv modules whose ``ext_module`` is replaced, and the ops each uses.
PATCHED_MODULES = {
    'mmcv.ops.nms': ('nms', ),
    'mmcv.ops.roi_align': ('roi_align_forward', 'roi_align_backward'),
}

MMCV = 'mmcv'
FORCED = 'torchvision (forced)'
STANDIN = 'torchvision (mmcv installed without compiled ops)'

# (op, device type) -> reason, for pairs switched to torchvision for good
_switched: Dict[Tuple[str, str], str] = {}
# (op, device type, path) already logged
_logged: set = set()
_lock = threading.Lock()


def force_torchvision_ops() -> bool:
    """Whether ``MMGFN_FORCE_TORCHVISION_OPS`` asks for the torchvision path.

    Read at every call, so that setting or clearing the variable (e.g.
    pytest's ``monkeypatch.setenv``) takes effect at once.

    Returns:
        bool: True for ``1``, ``true``, ``yes`` or ``on`` (any case).
    """
    return os.environ.get(FORCE_ENV,
                          '').strip().lower() in ('1', 'true', 'yes', 'on')


def _fallback_reason(device_type: str) -> str:
    if device_type == 'cuda':
        return 'torchvision (mmcv built without CUDA ops)'
    return f'torchvision (mmcv has no {device_type} kernel)'


def _is_missing_device_impl(error: RuntimeError) -> bool:
    """mmcv's device registry: ``<op>_impl: implementation for device
    cuda:0 not found.``"""
    message = str(error)
    return 'implementation for device' in message and 'not found' in message


def _log_once(op: str, device_type: str, path: str) -> None:
    key = (op, device_type, path)
    with _lock:
        if key in _logged:
            return
        _logged.add(key)
    from mmengine.logging import print_log
    if path == FORCED:
        why = f'{FORCE_ENV} is set'
    else:
        why = f"mmcv's compiled ops have no {device_type} kernel for it"
    print_log(
        f'mmcv op {op} on {device_type} runs through torchvision '
        f'({why})',
        logger='current',
        level=logging.INFO)


_TORCHVISION_KERNELS: Dict[str, Callable[..., Any]] = {
    'nms': torchvision_nms,
    'roi_align_forward': torchvision_roi_align_forward,
    'roi_align_backward': torchvision_roi_align_backward,
}


class TorchvisionFallbackExt:
    """Stands for ``mmcv._ext`` in an mmcv ops module.

    Every attribute is the real ext module's, except the functions in
    :data:`FALLBACK_OPS`, which run mmcv's kernel or torchvision's (see the
    module docstring for the rule).

    Args:
        ext (ModuleType): The real ``mmcv._ext`` module.
    """

    def __init__(self, ext: ModuleType) -> None:
        self._ext = ext

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ext, name)

    def __dir__(self):
        return sorted(set(dir(self._ext)) | set(FALLBACK_OPS))

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self._ext!r})'

    def _dispatch(self, op: str, device: torch.device, *args, **kwargs):
        device_type = device.type
        if force_torchvision_ops():
            _log_once(op, device_type, FORCED)
            return _TORCHVISION_KERNELS[op](*args, **kwargs)
        reason = _switched.get((op, device_type))
        if reason is None:
            try:
                return getattr(self._ext, op)(*args, **kwargs)
            except RuntimeError as error:
                if not _is_missing_device_impl(error):
                    raise
            reason = _fallback_reason(device_type)
            with _lock:
                _switched[(op, device_type)] = reason
            _log_once(op, device_type, reason)
        return _TORCHVISION_KERNELS[op](*args, **kwargs)

    def nms(self, boxes: Tensor, scores: Tensor, *args, **kwargs) -> Tensor:
        """``mmcv._ext.nms(boxes, scores, iou_threshold, offset)``."""
        return self._dispatch('nms', boxes.device, boxes, scores, *args,
                              **kwargs)

    def roi_align_forward(self, input: Tensor, rois: Tensor, *args,
                          **kwargs) -> None:
        """``mmcv._ext.roi_align_forward(input, rois, output, ...)``, on
        contiguous ``input`` and ``rois``."""
        return self._dispatch('roi_align_forward', input.device,
                              input.contiguous(), rois.contiguous(), *args,
                              **kwargs)

    def roi_align_backward(self, grad_output: Tensor, rois: Tensor, *args,
                           **kwargs) -> None:
        """``mmcv._ext.roi_align_backward(grad_output, rois, ...)``, on
        contiguous ``grad_output`` and ``rois``."""
        return self._dispatch('roi_align_backward', grad_output.device,
                              grad_output.contiguous(), rois.contiguous(),
                              *args, **kwargs)


def _find_ext() -> bool:
    if 'mmcv._ext' in sys.modules:
        return True
    try:  # without importing mmcv itself (its __init__ is not free)
        spec = importlib.util.find_spec('mmcv')
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return importlib.machinery.PathFinder.find_spec(
        'mmcv._ext', list(spec.submodule_search_locations)) is not None


def is_standin() -> bool:
    """Whether mmcv was installed without its compiled ops and with
    mmgfn's stand-in ``mmcv._ext`` (:mod:`mmgfn.utils.mmcv_ext`), as
    ``tools/setup_env.sh`` does by default.

    Returns:
        bool: True if ``mmcv._ext`` is the stand-in.
    """
    if not _find_ext():
        return False
    try:
        ext = importlib.import_module('mmcv._ext')
    except (ImportError, OSError):
        return False
    return bool(getattr(ext, 'MMGFN_STANDIN', False))


def has_compiled_ops() -> bool:
    """Whether mmcv's own compiled ops (``mmcv._ext``) are installed.

    Returns:
        bool: False without mmcv, with ``mmcv-lite`` and with mmgfn's
        stand-in ``mmcv._ext`` (:func:`is_standin`).
    """
    if not _find_ext():
        return False
    ext = sys.modules.get('mmcv._ext')
    if ext is not None:
        return not getattr(ext, 'MMGFN_STANDIN', False)
    return not is_standin()


def _patch_module(module: ModuleType) -> bool:
    ext = getattr(module, 'ext_module', None)
    if ext is None:
        return False
    if not isinstance(ext, TorchvisionFallbackExt):
        module.ext_module = TorchvisionFallbackExt(ext)
    return True


def install_torchvision_fallback() -> bool:
    """Give mmcv's ``nms`` and ``RoIAlign`` torchvision kernels wherever
    mmcv has none (or everywhere, with ``MMGFN_FORCE_TORCHVISION_OPS=1``).

    Imports ``mmcv.ops`` and replaces the ``ext_module`` of the modules in
    :data:`PATCHED_MODULES` by a :class:`TorchvisionFallbackExt`.
    Idempotent.

    Returns:
        bool: True if installed (now or before); False if mmcv's compiled
        ops are missing or fail to load (then with a warning).
    """
    if not has_compiled_ops():
        return False
    try:
        modules = [importlib.import_module(name) for name in PATCHED_MODULES]
    except (ImportError, OSError) as error:  # e.g. built for another torch
        warnings.warn(f"mmcv's compiled ops failed to load ({error}); "
                      "mmgfn's torchvision fallback for mmcv's nms and "
                      'RoIAlign is not installed.')
        return False
    return all([_patch_module(module) for module in modules])


def _probe_args(op: str, device: torch.device) -> tuple:
    new = dict(device=device, dtype=torch.float32)
    if op == 'nms':
        boxes = torch.tensor([[0., 0., 1., 1.]], **new)
        return (boxes, torch.ones(1, **new)), dict(iou_threshold=0.5, offset=0)
    rois = torch.tensor([[0., 0., 0., 1., 1.]], **new)
    kwargs = dict(
        aligned_height=1,
        aligned_width=1,
        spatial_scale=1.0,
        sampling_ratio=0,
        pool_mode=1,
        aligned=True)
    empty = torch.zeros(0, **new)
    if op == 'roi_align_forward':
        return (torch.zeros(1, 1, 2, 2, **new), rois,
                torch.zeros(1, 1, 1, 1, **new), empty, empty), kwargs
    return (torch.zeros(1, 1, 1, 1, **new), rois, empty, empty,
            torch.zeros(1, 1, 2, 2, **new)), kwargs


def active_path(op: str, device: str) -> str:
    """Which kernel runs ``op`` on ``device`` now.

    Runs the op once on a tiny input of that device to find out (which
    switches the pair to torchvision if mmcv has no kernel for it).

    Args:
        op (str): One of :data:`FALLBACK_OPS`.
        device (str): A device such as ``'cpu'`` or ``'cuda'``.

    Returns:
        str: ``'torchvision (mmcv installed without compiled ops)'`` (the
        default install), ``'mmcv'``, ``'torchvision (forced)'`` or
        ``'torchvision (mmcv built without CUDA ops)'`` (for another device
        type: ``'torchvision (mmcv has no <type> kernel)'``). ``'mmcv'``
        also where mmcv is not installed at all.
    """
    if op not in FALLBACK_OPS:
        raise ValueError(f'{op!r} is not one of {FALLBACK_OPS}')
    device = torch.device(device)
    if is_standin():
        return STANDIN
    if force_torchvision_ops():
        return FORCED
    if not install_torchvision_fallback():
        return MMCV
    reason = _switched.get((op, device.type))
    if reason is not None:
        return reason
    module = next(m for m, ops in PATCHED_MODULES.items() if op in ops)
    args, kwargs = _probe_args(op, device)
    getattr(sys.modules[module].ext_module, op)(*args, **kwargs)
    return _switched.get((op, device.type), MMCV)


class _RecordingExt:
    """Counts calls of an ext module's functions, then forwards them."""

    def __init__(self, ext: Any, calls: Counter) -> None:
        self._ext = ext
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._ext, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            self._calls[name] += 1
            return value(*args, **kwargs)

        return call


@contextlib.contextmanager
def record_ext_calls() -> Iterator[Counter]:
    """Count the ``mmcv._ext`` functions called inside the block.

    Imports ``mmcv.ops`` (all of its op modules) and wraps the
    ``ext_module`` of every ``mmcv.*`` module while the block runs; used to
    list which compiled ops a model reaches.

    Yields:
        Counter: Calls per ext function name, filled as the block runs.
    """
    importlib.import_module('mmcv.ops')
    calls: Counter = Counter()
    wrapped = {}
    for name, module in list(sys.modules.items()):
        if name.startswith('mmcv.') and isinstance(module, ModuleType) \
                and hasattr(module, 'ext_module'):
            wrapped[name] = module.ext_module
            module.ext_module = _RecordingExt(module.ext_module, calls)
    try:
        yield calls
    finally:
        for name, ext in wrapped.items():
            sys.modules[name].ext_module = ext


def reset_fallback_state() -> None:
    """Forget which (op, device type) pairs switched to torchvision and
    what was logged (for tests)."""
    with _lock:
        _switched.clear()
        _logged.clear()


__all__ = [
    'FORCE_ENV', 'FALLBACK_OPS', 'TorchvisionFallbackExt', 'active_path',
    'force_torchvision_ops', 'has_compiled_ops', 'is_standin', 'STANDIN',
    'install_torchvision_fallback', 'record_ext_calls', 'reset_fallback_state',
    'torchvision_nms', 'torchvision_roi_align_backward',
    'torchvision_roi_align_forward'
]
