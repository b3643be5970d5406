"""mmgfn: GFN (Gain From Neighbors) for mmpretrain and mmdet.

Importing the package makes mmengine's local checkpoint loading work on
torch >= 2.6 (see :mod:`mmgfn.utils.checkpoint`), keeps mmpretrain
importable beside transformers 5 (see :mod:`mmgfn.utils.compat`), lets
mmcv's ``nms`` and ``RoIAlign`` run through torchvision's kernels where
mmcv's compiled ops have none, e.g. on CUDA with a CPU-only mmcv (see
:mod:`mmgfn.utils.mmcv_ops`), and makes ``mmgfn::`` a config ``_base_``
prefix (see :mod:`mmgfn.utils.config_prefix`).
Components register lazily through the registries' ``locations``; call
:func:`mmgfn.utils.register_all_modules` to import them all at once.
"""
from .utils import (install_torchvision_fallback, register_config_prefix,
                    register_local_checkpoint_loader,
                    skip_mmpretrain_multimodal_with_transformers5)
from .version import __version__

register_local_checkpoint_loader()
register_config_prefix()
skip_mmpretrain_multimodal_with_transformers5()
install_torchvision_fallback()

__all__ = ['__version__']
