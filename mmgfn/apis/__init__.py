"""Model loading and dataset passes shared by the tools."""
from .inference import (build_test_dataloader, check_checkpoint_fits,
                        collect_outputs, insert_corruption, load_classifier,
                        plain_preprocessor_cfg)

__all__ = [
    'build_test_dataloader', 'check_checkpoint_fits', 'collect_outputs',
    'insert_corruption', 'load_classifier', 'plain_preprocessor_cfg'
]
