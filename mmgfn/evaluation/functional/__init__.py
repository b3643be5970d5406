"""Pure python/numpy robustness aggregates (mCE, mFR, mPC / rPC)."""
from .robustness import (ALEXNET_ERRORS, IMAGENET_P_HOLDOUT,
                         IMAGENET_P_PERTURBATIONS, SEVERITIES,
                         IncompleteResultsError, compared_frame_pairs,
                         flip_probability, is_noise_perturbation,
                         mean_flip_rate, summarize_corruption_errors,
                         summarize_detection_robustness, summarize_flip_rates,
                         top5_distance, topk_classes)

__all__ = [
    'ALEXNET_ERRORS', 'IMAGENET_P_HOLDOUT', 'IMAGENET_P_PERTURBATIONS',
    'SEVERITIES', 'IncompleteResultsError', 'compared_frame_pairs',
    'flip_probability', 'is_noise_perturbation', 'mean_flip_rate',
    'summarize_corruption_errors', 'summarize_detection_robustness',
    'summarize_flip_rates', 'top5_distance', 'topk_classes'
]
