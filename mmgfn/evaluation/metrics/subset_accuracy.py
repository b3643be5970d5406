"""Top-k accuracy over a subset of a classifier's classes.

ImageNet-A and ImageNet-R (Hendrycks et al., CVPR 2021 / ICCV 2021) hold
200 of the 1000 ImageNet-1k classes. The reference evaluation keeps only
the 200 matching logits of a 1000-way classifier (``output[:,
indices_in_1k]``) and scores top-1 against the ImageFolder labels 0..199
of the sorted wnids; :class:`SubsetAccuracy` does the same inside an
mmengine evaluator.

Shapes: C = classes of the model (scores ``(C,)``), N = size of the subset
(labels in ``[0, N)``).

Scores: the reference masks the logits. The metric masks ``pred_logits``
(kept by :class:`mmgfn.engine.KeepLogitsHook`) when the sample has them;
otherwise mmpretrain's ``pred_score`` (float32 softmax). On a confident
model whose top class lies outside the subset, the subset's probabilities
underflow to 0 and tie, so a tie that decides the kept top-k is refused
instead of falling to the lowest label. The result's ``scores`` key says
which were masked (``'logits'``, ``'probabilities'`` or ``'mixed'``).
"""
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric

from mmgfn.datasets.wnids import indices_in_1k
from mmgfn.evaluation.functional import topk_classes
from mmgfn.registry import METRICS
from .scores import HOOK_HINT, ranking_ties, sample_scores


@METRICS.register_module()
class SubsetAccuracy(BaseMetric):
    """Top-k accuracy (%) after keeping only the scores of a class subset.

    Args:
        indices (str | Sequence[int]): The kept score positions, in label
            order: ``'imagenet-a'`` / ``'imagenet-r'`` (their 200
            ``indices_in_1k``) or an explicit sequence (label ``i`` is
            scored by ``pred_score[indices[i]]``).
        topk (int | Sequence[int]): The k of top-k. Defaults to ``(1, )``.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Metric key prefix. Defaults to
            ``'accuracy'`` (keys ``accuracy/top1``, ...), so that tools and
            hooks that read mmpretrain's ``Accuracy`` read this one too.

    Raises:
        ValueError: For an empty or repeated ``indices``, an unknown subset
            name, a model with too few scores (both numbers are named), a
            label outside ``[0, N)``, or tied probabilities that decide the
            kept top-k (see the module docstring).
    """
    default_prefix: Optional[str] = 'accuracy'

    def __init__(self,
                 indices: Union[str, Sequence[int]],
                 topk: Union[int, Sequence[int]] = (1, ),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(indices, str):
            self.subset = indices
            indices = indices_in_1k(indices)
        else:
            self.subset = None
        self.indices = np.asarray(list(indices), dtype=np.int64)
        if self.indices.size == 0 or len(set(self.indices.tolist())) != len(
                self.indices) or self.indices.min() < 0:
            raise ValueError('indices must be distinct non-negative '
                             'integers, at least one')
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's top-k subset labels and its label.

        Args:
            data_batch: A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs with
                ``pred_logits`` or ``pred_score`` (``(C,)``) and
                ``gt_label``.
        """
        for sample in data_samples:
            scores, source = sample_scores(sample)
            if scores.shape[-1] <= self.indices.max():
                name = f' of {self.subset}' if self.subset else ''
                raise ValueError(
                    f'the model outputs {scores.shape[-1]} class scores but '
                    f'the {len(self.indices)} kept indices{name} need at '
                    f'least {int(self.indices.max()) + 1} (a 1000-way '
                    'ImageNet-1k classifier for ImageNet-A/R)')
            label = int(np.asarray(sample['gt_label'].cpu()).reshape(-1)[0])
            if not 0 <= label < len(self.indices):
                raise ValueError(f'label {label} is outside the '
                                 f'{len(self.indices)} subset classes')
            kept = scores[self.indices]
            if source == 'probabilities' and ranking_ties(
                    kept, max(self.topk)):
                raise ValueError(
                    f'"{sample.get("img_path", "a sample")}" has tied '
                    f'probabilities among the top-{max(self.topk)} of the '
                    f'{len(self.indices)} kept classes (float32 softmax '
                    'underflow), so its prediction would be arbitrary; ' +
                    HOOK_HINT)
            self.results.append(
                dict(
                    top=topk_classes(kept, max(self.topk)).tolist(),
                    gt_label=label,
                    scores=source))

    def compute_metrics(self, results: List[dict]) -> dict:
        """Top-k accuracies in percent.

        Args:
            results (list[dict]): Collected per-sample results.

        Returns:
            dict: ``{'top1': float, ...}`` in [0, 100], and ``scores``
            (what was masked).
        """
        sources = sorted({r.get('scores', 'probabilities') for r in results})
        metrics = {'scores': sources[0] if len(sources) == 1 else 'mixed'}
        for k in self.topk:
            hits = [r['gt_label'] in r['top'][:k] for r in results]
            metrics[f'top{k}'] = 100.0 * float(np.mean(hits))
        return metrics
