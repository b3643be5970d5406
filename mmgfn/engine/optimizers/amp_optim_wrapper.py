"""Automatic mixed precision that also runs on the CPU.

mmengine's :class:`~mmengine.optim.AmpOptimWrapper` refuses to run without
an accelerator. :class:`DeviceAmpOptimWrapper` behaves exactly like it on
CUDA/NPU/MLU/MUSA and, on a machine without any of them, autocasts to
``torch.bfloat16`` on the CPU (the only dtype CPU autocast supports) with
loss scaling disabled: bfloat16 has float32's exponent range, so gradients
do not underflow the way float16 ones do. ``tools/train.py --amp`` selects
it.
"""
from typing import Optional, Union

import torch
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmgfn.registry import OPTIM_WRAPPERS
from mmgfn.utils.compat import run_mmcv_cpu_ops_in_float32


def accelerator_available() -> bool:
    """Whether mmengine's AmpOptimWrapper can run on this machine."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module()
class DeviceAmpOptimWrapper(AmpOptimWrapper):
    """AmpOptimWrapper with a CPU fallback.

    Args:
        loss_scale (str | float | dict): Loss scaling on an accelerator, as
            in :class:`~mmengine.optim.AmpOptimWrapper`. Ignored on the CPU,
            where scaling is disabled. Defaults to ``'dynamic'``.
        dtype (str | torch.dtype, optional): Autocast dtype. On the CPU it
            must be None or bfloat16 (None means bfloat16). Defaults to None.
        use_fsdp (bool): As in mmengine's wrapper. Defaults to False.
        **kwargs: Passed to :class:`~mmengine.optim.OptimWrapper`
            (``optimizer``, ``accumulative_counts``, ``clip_grad``).

    Raises:
        ValueError: If a dtype other than bfloat16 is asked for on the CPU.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        if accelerator_available():
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
            return
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError('mixed precision on the CPU supports only '
                             f'dtype=bfloat16, got dtype={dtype}')
        OptimWrapper.__init__(self, **kwargs)
        # mmcv's CPU RoIAlign/nms have float32 kernels only
        run_mmcv_cpu_ops_in_float32()
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
