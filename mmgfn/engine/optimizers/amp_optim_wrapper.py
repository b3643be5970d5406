"""Automatic mixed precision that also runs on the CPU.

mmengine's :class:`~mmengine.optim.AmpOptimWrapper` refuses to run without
an accelerator, and mmengine's ``autocast`` allows only bfloat16 on the CPU.
:class:`DeviceAmpOptimWrapper` behaves exactly like mmengine's wrapper on
CUDA/NPU/MLU/MUSA and, on a machine without any of them, autocasts on the
CPU to ``torch.bfloat16`` (the default; loss scaling off, since bfloat16
has float32's exponent range) or to ``torch.float16`` (with
:class:`torch.amp.GradScaler` loss scaling, as on CUDA, so that CPU runs
can reproduce what float16 does on a GPU). ``tools/train.py --amp``
selects it.
"""
from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from mmgfn.registry import OPTIM_WRAPPERS
from mmgfn.utils.compat import run_mmcv_cpu_ops_in_float32

CPU_DTYPES = (torch.bfloat16, torch.float16)


def accelerator_available() -> bool:
    """Whether mmengine's AmpOptimWrapper can run on this machine."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module()
class DeviceAmpOptimWrapper(AmpOptimWrapper):
    """AmpOptimWrapper with a CPU fallback.

    Args:
        loss_scale (str | float | dict): Loss scaling, as in
            :class:`~mmengine.optim.AmpOptimWrapper`. On the CPU it applies
            to float16 only (bfloat16 is not scaled). Defaults to
            ``'dynamic'``.
        dtype (str | torch.dtype, optional): Autocast dtype. On the CPU it
            must be None, bfloat16 or float16 (None means bfloat16).
            Defaults to None.
        use_fsdp (bool): As in mmengine's wrapper. Defaults to False.
        **kwargs: Passed to :class:`~mmengine.optim.OptimWrapper`
            (``optimizer``, ``accumulative_counts``, ``clip_grad``).

    Raises:
        ValueError: If a dtype other than bfloat16/float16 is asked for on
            the CPU.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        self._on_cpu = not accelerator_available()
        if not self._on_cpu:
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
            return
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        dtype = torch.bfloat16 if dtype is None else dtype
        if dtype not in CPU_DTYPES:
            raise ValueError('mixed precision on the CPU supports dtype '
                             f'bfloat16 or float16, got dtype={dtype}')
        OptimWrapper.__init__(self, **kwargs)
        # mmcv's CPU RoIAlign/nms have float32 kernels only
        run_mmcv_cpu_ops_in_float32()
        self._scale_update_param = None
        scaled = dtype == torch.float16
        if not scaled or loss_scale == 'dynamic':
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=scaled)
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            self.loss_scaler = torch.amp.GradScaler(
                'cpu', init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler('cpu', **loss_scale)
        else:
            raise TypeError('loss_scale must be of type float, dict, or '
                            f'"dynamic", but got {loss_scale}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        """mmengine's context; on the CPU, ``torch.autocast('cpu')`` with
        :attr:`cast_dtype` (mmengine's ``autocast`` refuses float16 there).
        """
        if not self._on_cpu:
            with super().optim_context(model):
                yield
            return
        with OptimWrapper.optim_context(self, model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
