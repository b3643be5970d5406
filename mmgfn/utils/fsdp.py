"""Which fully sharded data parallel, if any, shards a module.

The GFN attacks differentiate the whole model with frozen parameters
outside the training forward; with sharded parameters that is not
validated, so both attacks refuse sharded models and name the flavour.
"""
from typing import Optional

from torch import nn


def fsdp_kind(module: nn.Module) -> Optional[str]:
    """The FSDP flavour sharding ``module``.

    Args:
        module (nn.Module): Any module.

    Returns:
        str | None: ``'FullyShardedDataParallel'`` (FSDP1, a wrapper),
        ``'fully_shard'`` (FSDP2, which changes the module's class to a
        subclass of ``FSDPModule``), or None.
    """
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed
        return None
    if isinstance(module, FullyShardedDataParallel):
        return 'FullyShardedDataParallel'
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6
        try:
            from torch.distributed._composable.fsdp import FSDPModule
        except ImportError:
            return None
    return 'fully_shard' if isinstance(module, FSDPModule) else None
