from .attack import (AttackGradScaler, ce_sign_gradient, frozen_model,
                     padding_mask, sign_gradient_attack, step_and_bounds)
from .deferred_check import deferred_check, flush_deferred_checks
from .features import forward_batch
from .neighbor_table import (NeighborTable, class_means, find_modules,
                             compute_class_embeddings,
                             head_class_weights, neighbors_from_embeddings,
                             similarity_matrix, similarity_ranks)

__all__ = [
    'AttackGradScaler', 'NeighborTable', 'ce_sign_gradient', 'class_means',
    'compute_class_embeddings', 'deferred_check', 'find_modules',
    'flush_deferred_checks', 'forward_batch', 'frozen_model',
    'head_class_weights', 'neighbors_from_embeddings', 'padding_mask',
    'sign_gradient_attack',
    'similarity_matrix', 'similarity_ranks', 'step_and_bounds'
]
