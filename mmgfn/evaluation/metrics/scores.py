"""The class scores that ranking metrics rank: logits first.

The reference ImageNet-P and ImageNet-A/R evaluations rank (or mask) the raw
logits. mmpretrain's data samples carry only ``pred_score``, the float32
softmax, which underflows on a confident model (every class but one at
exactly 0) and then ties. :class:`mmgfn.engine.KeepLogitsHook` adds
``pred_logits``; the functions here read it when present. Ranking
``pred_score`` instead gives the same order wherever it does not tie
(softmax is monotone), so a tie that decides the kept classes is refused
instead of being broken arbitrarily.
"""
from typing import Tuple

import numpy as np

#: The remedy named by the refusal.
HOOK_HINT = ('keep the logits with custom_hooks=[dict('
             'type="mmgfn.KeepLogitsHook")] (tools/test_robustness.py adds '
             'it)')


def sample_scores(sample: dict) -> Tuple[np.ndarray, str]:
    """The scores of one data sample, as float64.

    Args:
        sample (dict): A predicted data sample (``to_dict()`` form) with
            ``pred_logits`` (``(C,)``, preferred) or ``pred_score``
            (``(C,)`` probabilities in [0, 1]).

    Returns:
        tuple[np.ndarray, str]: ``(C,)`` float64 scores and their source,
        ``'logits'`` or ``'probabilities'``.

    Raises:
        KeyError: If the sample has neither.
    """
    for key, source in (('pred_logits', 'logits'),
                        ('pred_score', 'probabilities')):
        if key in sample:
            value = sample[key]
            if hasattr(value, 'detach'):
                value = value.detach().float().cpu().numpy()
            return np.asarray(value, dtype=np.float64).reshape(-1), source
    raise KeyError('the data sample has no pred_logits or pred_score')


def ranking_ties(scores: np.ndarray, k: int) -> bool:
    """Whether equal scores make the top-``k`` classes or their order
    ambiguous.

    Args:
        scores (np.ndarray): ``(C,)`` scores.
        k (int): How many classes are kept (capped at C).

    Returns:
        bool: True if two of the ``min(k + 1, C)`` highest scores are equal
        at neighbouring ranks within the first ``k + 1``.
    """
    top = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = min(k, len(top) - 1)
    return bool(np.any(top[:k] == top[1:k + 1]))
