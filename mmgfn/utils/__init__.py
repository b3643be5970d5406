from .checkpoint import load_from_local, register_local_checkpoint_loader
from .compat import skip_mmpretrain_multimodal_with_transformers5
from .config_prefix import register_config_prefix
from .mmcv_ops import install_torchvision_fallback
from .setup_env import register_all_modules

__all__ = [
    'install_torchvision_fallback', 'load_from_local',
    'register_config_prefix', 'register_local_checkpoint_loader',
    'register_all_modules',
    'skip_mmpretrain_multimodal_with_transformers5'
]
