"""Model loading and dataset passes shared by the tools."""
from .inference import (build_test_dataloader, check_checkpoint_fits,
                        collect_outputs, insert_corruption, load_classifier,
                        plain_preprocessor_cfg, shape_mismatches,
                        transform_name)
from .robustness import run_robustness_sweep

__all__ = [
    'build_test_dataloader', 'check_checkpoint_fits', 'collect_outputs',
    'insert_corruption', 'load_classifier', 'plain_preprocessor_cfg',
    'run_robustness_sweep', 'shape_mismatches', 'transform_name'
]
