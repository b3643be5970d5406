"""ImageNet-P stability: flip probability, top-5 distance, mFR.

Works on the frames of :class:`mmgfn.datasets.ImageNetP`: every data
sample carries ``perturbation``, ``step``, ``sequence_idx``, ``frame_idx``
and ``num_frames`` in its metainfo, and the model's class scores (``(C,)``,
C classes). The metric keeps each frame's top-k classes (k = ``min(topk,
C)``), rebuilds the sequences once every frame is in and computes, per
perturbation, the flip probability (FP) and top-5 distance (T5D) of
:mod:`mmgfn.evaluation.functional` (Hendrycks & Dietterich, ICLR 2019).
mFR / mT5D are computed only from baseline rates: a second model's, or
AlexNet's flip probabilities (``baseline_fp='alexnet'``, the table of
:data:`mmgfn.evaluation.functional.ALEXNET_FLIP_PROBABILITIES`).

Scores: like the reference, which ranks the logits, the metric ranks
``pred_logits`` (kept by :class:`mmgfn.engine.KeepLogitsHook`) when the
sample has them; otherwise mmpretrain's ``pred_score`` (float32 softmax),
which ranks the same unless it ties, and a tie that decides a frame's
top-k (softmax underflow on a confident model) is refused. The key
``scores`` of the result says which were ranked (``'logits'``,
``'probabilities'`` or ``'mixed'``).
"""
from collections import defaultdict
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric

from mmgfn.evaluation.functional import (ALEXNET_FLIP_PROBABILITIES,
                                         flip_probability,
                                         is_noise_perturbation,
                                         summarize_flip_rates, top5_distance,
                                         topk_classes)
from mmgfn.registry import METRICS
from .scores import HOOK_HINT, ranking_ties, sample_scores

_META = ('perturbation', 'step', 'sequence_idx', 'frame_idx', 'num_frames')


@METRICS.register_module()
class FlipRate(BaseMetric):
    """Flip probability and top-5 distance of ImageNet-P sequences.

    Keys (after the prefix): ``FP_<p>`` and ``T5D_<p>`` per perturbation p,
    ``mean_FP`` and ``mean_T5D`` over the perturbations present, ``scores``
    (what was ranked); with ``baseline_fp`` also ``FR_<p>`` and ``mFR``
    (left out where a baseline rate is 0: the ratio is undefined), with
    ``baseline_t5d`` ``mT5D``.

    Args:
        topk (int): Classes kept per frame for the top-k distance; capped
            at the number of classes. Defaults to 5.
        baseline_fp (str | Mapping[str, float], optional): Baseline flip
            probability per perturbation (e.g. a second model's), or
            ``'alexnet'`` for AlexNet's published rates (difficulty 1
            only). Defaults to None (no mFR).
        baseline_t5d (Mapping[str, float], optional): Baseline top-5
            distance per perturbation. Defaults to None (no mT5D).
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Metric key prefix. Defaults to
            ``'imagenet_p'``.

    Raises:
        ValueError: If data samples lack the ImageNet-P metainfo, a
            sequence misses frames, a baseline lacks a perturbation, a
            frame's top-k probabilities tie (see the module docstring) or
            AlexNet's rates meet a difficulty other than 1.
    """
    default_prefix: Optional[str] = 'imagenet_p'

    def __init__(self,
                 topk: int = 5,
                 baseline_fp: Union[str, Mapping[str, float], None] = None,
                 baseline_t5d: Optional[Mapping[str, float]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if topk < 1:
            raise ValueError(f'topk must be >= 1, got {topk}')
        self.topk = topk
        self.baseline_fp_name = None
        if isinstance(baseline_fp, str):
            if baseline_fp != 'alexnet':
                raise ValueError('baseline_fp must be "alexnet" or a mapping '
                                 f'of flip probabilities, got "{baseline_fp}"')
            self.baseline_fp_name = 'alexnet'
            baseline_fp = ALEXNET_FLIP_PROBABILITIES
        self.baseline_fp = None if baseline_fp is None else dict(baseline_fp)
        self.baseline_t5d = None if baseline_t5d is None else dict(
            baseline_t5d)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each frame's top-k classes and its place in a sequence.

        Args:
            data_batch: A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs of ImageNet-P
                frames (``pred_score`` ``(C,)`` and the frame metainfo).
        """
        for sample in data_samples:
            missing = [key for key in _META if key not in sample]
            if missing:
                raise ValueError(
                    'FlipRate needs the frames of mmgfn.ImageNetP: the data '
                    f'sample has no {", ".join(missing)}')
            if self.baseline_fp_name == 'alexnet' and int(
                    sample['step']) != 1:
                raise ValueError(
                    'AlexNet\'s flip probabilities are for difficulty 1; '
                    f'"{sample["perturbation"]}" is evaluated at step '
                    f'{sample["step"]}')
            scores, source = sample_scores(sample)
            if source == 'probabilities' and ranking_ties(scores, self.topk):
                raise ValueError(
                    f'frame {sample["frame_idx"]} of '
                    f'"{sample.get("video_path", sample["sequence_idx"])}" '
                    f'has tied top-{self.topk} probabilities (float32 '
                    'softmax underflow), so its ranks would be arbitrary; '
                    + HOOK_HINT)
            result = {key: sample[key] for key in _META}
            result['top'] = topk_classes(scores, self.topk).tolist()
            result['scores'] = source
            self.results.append(result)

    def compute_metrics(self,
                        results: List[dict]) -> Dict[str, Union[float, str]]:
        """FP and T5D per perturbation (and mFR / mT5D with baselines).

        Args:
            results (list[dict]): Collected per-frame results, any order;
                frames repeated by distributed padding are dropped.

        Returns:
            dict[str, float | str]: The metrics (see the class docstring).
        """
        frames: Dict[tuple, Dict[int, List[int]]] = defaultdict(dict)
        info = {}
        for r in results:
            key = (r['perturbation'], int(r['sequence_idx']))
            frames[key][int(r['frame_idx'])] = r['top']
            info[key] = (int(r['num_frames']), int(r['step']))
        per_perturbation: Dict[str, List[np.ndarray]] = defaultdict(list)
        steps: Dict[str, int] = {}
        for key in sorted(frames):
            num_frames, step = info[key]
            if sorted(frames[key]) != list(range(num_frames)):
                raise ValueError(
                    f'sequence {key[1]} of "{key[0]}" has '
                    f'{len(frames[key])} of its {num_frames} frames; '
                    'FlipRate needs every frame of a sequence')
            per_perturbation[key[0]].append(
                np.asarray([frames[key][t] for t in range(num_frames)]))
            steps[key[0]] = step
        fp, t5d = {}, {}
        for p, sequences in per_perturbation.items():
            noise = is_noise_perturbation(p)
            fp[p] = flip_probability([s[:, 0] for s in sequences], noise,
                                     steps[p])
            t5d[p] = top5_distance(sequences, noise, steps[p])
        summary = summarize_flip_rates(
            fp,
            t5d,
            baseline_fp=self.baseline_fp,
            baseline_t5d=self.baseline_t5d,
            perturbations=sorted(fp))
        metrics = {}
        for p in sorted(fp):
            metrics[f'FP_{p}'] = fp[p]
            metrics[f'T5D_{p}'] = t5d[p]
            if summary['FR'] is not None and summary['FR'][p] is not None:
                metrics[f'FR_{p}'] = summary['FR'][p]
        sources = sorted({r.get('scores', 'probabilities') for r in results})
        metrics['scores'] = sources[0] if len(sources) == 1 else 'mixed'
        metrics['mean_FP'] = summary['mean_FP']
        metrics['mean_T5D'] = summary['mean_T5D']
        if summary['mFR'] is not None:
            metrics['mFR'] = summary['mFR']
        if summary['mT5D'] is not None:
            metrics['mT5D'] = summary['mT5D']
        return metrics
