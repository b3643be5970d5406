from .checkpoint import load_from_local, register_local_checkpoint_loader
from .compat import skip_mmpretrain_multimodal_with_transformers5
from .setup_env import register_all_modules

__all__ = [
    'load_from_local', 'register_local_checkpoint_loader',
    'register_all_modules', 'skip_mmpretrain_multimodal_with_transformers5'
]
