"""Pure python/numpy robustness aggregates (mCE, mFR, mPC / rPC) and
confidence intervals of errors."""
from .intervals import (Z_95, at_chance, chance_error, chance_level_cells,
                        difference_interval, mean_interval,
                        wilson_interval)
from .paired import (corruption_error_ratio, holm_adjust, mcnemar_exact_p,
                     mcnemar_table, mean_error, paired_bootstrap,
                     paired_difference_interval)
from .robustness import (ALEXNET_ERRORS, ALEXNET_FLIP_PROBABILITIES,
                         IMAGENET_P_HOLDOUT, IMAGENET_P_PERTURBATIONS,
                         SEVERITIES,
                         IncompleteResultsError, compared_frame_pairs,
                         flip_probability, imagenet_p_difficulty,
                         imagenet_p_perturbations, is_noise_perturbation,
                         mean_flip_rate, summarize_corruption_errors,
                         summarize_detection_robustness, summarize_flip_rates,
                         top5_distance, topk_classes)

__all__ = [
    'ALEXNET_ERRORS', 'ALEXNET_FLIP_PROBABILITIES', 'IMAGENET_P_HOLDOUT',
    'IMAGENET_P_PERTURBATIONS', 'SEVERITIES', 'IncompleteResultsError', 'compared_frame_pairs',
    'flip_probability', 'imagenet_p_difficulty', 'imagenet_p_perturbations',
    'is_noise_perturbation', 'mean_flip_rate',
    'summarize_corruption_errors', 'summarize_detection_robustness',
    'summarize_flip_rates', 'top5_distance', 'topk_classes', 'Z_95',
    'at_chance', 'chance_error', 'chance_level_cells',
    'difference_interval', 'corruption_error_ratio', 'holm_adjust',
    'mcnemar_exact_p', 'mcnemar_table', 'mean_error', 'paired_bootstrap',
    'paired_difference_interval', 'mean_interval', 'wilson_interval'
]
