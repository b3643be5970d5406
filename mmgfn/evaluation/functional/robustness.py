"""Robustness aggregates: mCE, flip probability / mFR, mPC / rPC.

The single place where the robustness numbers of mmgfn are computed from
per-cell results; the metrics, ``tools/test_robustness.py`` and the
reports all call these functions. Pure python/numpy, no model involved.

Notation: a *cell* is one ``(corruption, severity)`` pair, severities 1-5
(0 is the clean image in the COCO-C convention). ``err(c, s)`` is a top-1
error in [0, 1].

ImageNet-C (Hendrycks & Dietterich, ICLR 2019):

* ``CE_c = sum_s err(c, s) / sum_s err_base(c, s)``, ``mCE = mean_c CE_c``
  over the 15 benchmark corruptions (:data:`BENCHMARK_CORRUPTIONS`); the
  4 held-out corruptions are never part of mCE.
* With the AlexNet baseline, :data:`ALEXNET_ERRORS` holds AlexNet's error
  *averaged over the 5 severities*, so ``sum_s err_AlexNet(c, s) = 5 *
  ALEXNET_ERRORS[c]`` and ``CE_c = mean_s err(c, s) / ALEXNET_ERRORS[c]``.
* Relative CE subtracts the clean error on both sides: ``rel CE_c =
  sum_s (err(c, s) - err_clean) / sum_s (err_base(c, s) - err_base_clean)``,
  ``relative mCE = mean_c rel CE_c``. No public reference code ships
  AlexNet's clean error, so it must be supplied (torchvision's AlexNet,
  the model behind the constants, reports 56.52 % top-1 accuracy on the
  ImageNet validation set, i.e. a clean error of 0.4348).
* The mean corruption error (Hendrycks' "mCE (unnormalized)") is
  ``mean_c mean_s err(c, s)``.
* With a baseline *model* instead of AlexNet (e.g. the pretrained model
  before fine-tuning), ``CE_c`` is the same ratio of error sums and ``mCE``
  their mean: the "relative mCE" column of the project's measurements in
  ``method.md`` is this ``mCE`` with the pretrained model as baseline.

ImageNet-P (same paper; ``hendrycks/robustness`` ``ImageNet-P/test.py``):

* Flip probability ``FP = mean over sequences of (mean over compared frame
  pairs of [pred_a != pred_b])``. For the noise perturbations (name
  contains ``noise``: gaussian_noise, shot_noise, speckle_noise and their
  ``_2``/``_3`` difficulty folders) every frame ``t >= 1`` is compared with
  frame 0; for the others consecutive frames are compared, within each of
  the ``step`` interleaved sub-sequences ``i, i+step, ...`` of a
  difficulty level ``step`` (1 for the standard benchmark).
* Top-5 distance: for a compared pair (a, b), let ``sigma_i`` (i = 1..5)
  be the rank in frame b of the class ranked i-th in frame a (ranks start
  at 1, ties broken towards the lower class index as in
  ``scipy.stats.rankdata(method='ordinal')``). Then ``d = sum_i |min(
  sigma_i, 6) - i|`` (Hendrycks' ``cum_sum_top5`` formula; equivalently
  the paper's double sum). ``T5D`` averages ``d`` like FP. With fewer than
  5 classes, k = number of classes replaces 5 (and 6 becomes k + 1).
* ``FR_p = FP_p / FP_base_p``, ``mFR = mean_p FR_p`` over the 10 benchmark
  perturbations; likewise ``mT5D`` from T5D. Raw FP and T5D are always
  reported; a baseline rate of 0 leaves its ratio (and mFR) undefined but
  keeps the raw means. Baselines: a second model's rates, or AlexNet's
  flip probabilities :data:`ALEXNET_FLIP_PROBABILITIES`, a table published
  in clovaai/assembled-cnn (opt-in: the reference ImageNet-P code does not
  ship it, and no AlexNet top-5 distances are published, so no mT5D).
* Difficulty ``d`` (Hendrycks' ``--difficulty``): the noise perturbations
  read the folders ``<p>_<d>`` (d >= 2) and compare with frame 0; the
  others read ``<p>`` with stride ``step = d``.
  :func:`imagenet_p_perturbations` gives the 10 folders of a difficulty and
  :func:`imagenet_p_difficulty` the difficulty of a folder.

COCO-C (Michaelis et al., 2019; mmdet's robustness benchmark):

* ``P`` = clean mAP (severity 0), ``mPC = mean_c mean_{s=1..5} mAP(c, s)``
  over the 15 benchmark corruptions, ``rPC = mPC / P``. The cells are a
  mapping, so the order in which they were evaluated (mmdet's scripts
  need severity 0 first) does not matter.

Every summary counts what it averages (``num_corruptions``,
``num_cells``). A missing cell raises :class:`IncompleteResultsError`
naming it unless ``allow_partial=True``; a partial summary says
``partial: True`` and lists ``covered_cells`` and ``missing_cells``.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mmgfn.datasets.benchmarks import (ALEXNET_ERRORS,
                                       ALEXNET_FLIP_PROBABILITIES,
                                       BENCHMARK_CORRUPTIONS,
                                       HOLDOUT_CORRUPTIONS,
                                       IMAGENET_P_HOLDOUT,
                                       IMAGENET_P_PERTURBATIONS, SEVERITIES,
                                       Cell, imagenet_p_difficulty,
                                       imagenet_p_perturbations,
                                       is_noise_perturbation)

__all__ = [
    'ALEXNET_ERRORS', 'BENCHMARK_CORRUPTIONS', 'HOLDOUT_CORRUPTIONS',
    'SEVERITIES', 'IMAGENET_P_PERTURBATIONS', 'IMAGENET_P_HOLDOUT',
    'ALEXNET_FLIP_PROBABILITIES', 'imagenet_p_perturbations',
    'imagenet_p_difficulty',
    'IncompleteResultsError', 'summarize_corruption_errors',
    'summarize_detection_robustness', 'is_noise_perturbation',
    'compared_frame_pairs', 'topk_classes', 'flip_probability',
    'top5_distance', 'mean_flip_rate', 'summarize_flip_rates'
]


class IncompleteResultsError(ValueError):
    """Cells a summary needs are missing.

    Attributes:
        missing (list[tuple]): The missing cells (or perturbations).
    """

    def __init__(self, message: str, missing: Sequence) -> None:
        super().__init__(message)
        self.missing = list(missing)


def _cell_name(cell: Cell) -> str:
    return f'{cell[0]}/{cell[1]}'


def _check_value(cell: Cell, value: float, what: str, upper: float = 1.0):
    """Refuse a value that is not finite or outside [0, upper]."""
    if not isinstance(value, (int, float, np.floating, np.integer)) or \
            not math.isfinite(float(value)) or \
            not 0.0 <= float(value) <= upper:
        raise ValueError(f'{what} of cell {_cell_name(cell)} must be a '
                         f'number in [0, {upper:g}], got {value!r}')
    return float(value)


def _describe_missing(missing: Sequence[Cell],
                      severities: Sequence[int]) -> str:
    """``'fog/3,4, snow (all)'``: the missing cells grouped by corruption."""
    grouped: Dict[str, List[int]] = {}
    for corruption, severity in missing:
        grouped.setdefault(corruption, []).append(severity)
    parts = []
    for corruption, sevs in grouped.items():
        if len(sevs) == len(severities) and len(sevs) > 1:
            parts.append(f'{corruption} (all)')
        else:
            parts.append(f'{corruption}/' + ','.join(str(s) for s in sevs))
    return ', '.join(parts)


def _split_cells(cells: Mapping[Cell, float], corruptions: Sequence[str],
                 severities: Sequence[int], allow_partial: bool,
                 what: str) -> Tuple[List[Cell], List[Cell]]:
    """Covered and missing cells of the requested grid.

    Raises:
        IncompleteResultsError: If cells are missing and not
            ``allow_partial``, or if no cell is covered at all.
    """
    if not corruptions or not severities:
        raise ValueError(f'{what} needs at least one corruption and one '
                         'severity')
    grid = [(c, s) for c in corruptions for s in severities]
    covered = [cell for cell in grid if cell in cells]
    missing = [cell for cell in grid if cell not in cells]
    if missing and (not allow_partial or not covered):
        shown = _describe_missing(missing, severities)
        hint = ('' if not covered else
                '; pass allow_partial=True to summarise the covered cells '
                '(the result is labelled partial)')
        raise IncompleteResultsError(
            f'{what} needs {len(grid)} cells ({len(corruptions)} '
            f'corruptions x severities '
            f'{",".join(str(s) for s in severities)}); missing '
            f'{len(missing)}: {shown}{hint}', missing)
    return covered, missing


def summarize_corruption_errors(
        cell_errors: Mapping[Cell, float],
        clean_error: Optional[float] = None,
        baseline: Union[str, Mapping[Cell, float], None] = 'alexnet',
        baseline_clean_error: Optional[float] = None,
        corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
        severities: Sequence[int] = SEVERITIES,
        allow_partial: bool = False) -> dict:
    """Corruption errors, CE, mCE and relative mCE of a classifier.

    Args:
        cell_errors (Mapping[tuple[str, int], float]): Top-1 error in
            [0, 1] per ``(corruption, severity)``. Cells outside the
            requested grid (held-out corruptions, severity 0) are ignored.
        clean_error (float, optional): Top-1 error on the clean images, in
            [0, 1]. Given together with a baseline, the relative CE / mCE
            are computed (and ``baseline_clean_error`` is then required).
            Defaults to None.
        baseline (str | Mapping | None): ``'alexnet'`` (normalise by
            :data:`ALEXNET_ERRORS`), a mapping of a baseline model's cell
            errors (same keys as ``cell_errors``), or None (unnormalised
            errors only). Defaults to ``'alexnet'``.
        baseline_clean_error (float, optional): The baseline's clean error
            in [0, 1], needed for the relative CE. Defaults to None.
        corruptions (Sequence[str]): The corruptions averaged into mCE.
            Defaults to the 15 :data:`BENCHMARK_CORRUPTIONS`.
        severities (Sequence[int]): The severities summed per corruption.
            Defaults to (1, 2, 3, 4, 5).
        allow_partial (bool): Summarise the covered cells when some are
            missing instead of raising; the result says ``partial: True``.
            Defaults to False.

    Returns:
        dict: JSON-serialisable summary with keys

        - ``corruptions`` (list[str]): corruptions averaged, in order;
          ``num_corruptions`` (int) their count.
        - ``severities`` (list[int]); ``num_cells`` (int) cells used.
        - ``partial`` (bool), ``covered_cells`` and ``missing_cells``
          (lists of ``[corruption, severity]``).
        - ``mean_error`` (dict): ``mean_s err(c, s)`` per corruption.
        - ``mean_corruption_error`` (float): mean of ``mean_error``.
        - ``baseline`` (str | None): ``'alexnet'``, ``'model'`` or None.
        - ``ce`` (dict | None) and ``mCE`` (float | None): normalised CE
          per corruption and their mean (None without a baseline).
        - ``clean_error``, ``baseline_clean_error`` (float | None).
        - ``relative_ce`` (dict | None), ``relative_mCE`` (float | None).

    Raises:
        IncompleteResultsError: For missing cells without
            ``allow_partial`` (names them).
        ValueError: For an error outside [0, 1], a corruption without
            AlexNet constant, a baseline without a needed cell, a zero
            denominator, or a relative CE requested without
            ``baseline_clean_error``.
    """
    corruptions = list(corruptions)
    severities = [int(s) for s in severities]
    if 0 in severities:
        raise ValueError('severity 0 is the clean image: pass its error as '
                         'clean_error, not as a severity')
    if isinstance(baseline, str) and baseline != 'alexnet':
        raise ValueError(f'baseline must be "alexnet", a mapping of cell '
                         f'errors or None, got "{baseline}"')
    if baseline == 'alexnet':
        unknown = [c for c in corruptions if c not in ALEXNET_ERRORS]
        if unknown:
            raise ValueError(
                f'no AlexNet error for {", ".join(unknown)}: AlexNet '
                'normalisation covers only the 15 benchmark corruptions')
    covered, missing = _split_cells(cell_errors, corruptions, severities,
                                    allow_partial, 'mCE')
    errors = {
        cell: _check_value(cell, cell_errors[cell], 'error')
        for cell in covered
    }
    if clean_error is not None:
        clean_error = _check_value(('clean', 0), clean_error, 'error')
    used = [c for c in corruptions if any(cell[0] == c for cell in covered)]
    by_corruption = {
        c: [errors[(c, s)] for s in severities if (c, s) in errors]
        for c in used
    }
    mean_error = {c: float(np.mean(v)) for c, v in by_corruption.items()}

    ce = relative_ce = None
    kind = None
    if baseline is not None:
        kind = 'alexnet' if baseline == 'alexnet' else 'model'
        base = {}
        for cell in covered:
            if kind == 'alexnet':
                base[cell] = ALEXNET_ERRORS[cell[0]]
            elif cell not in baseline:
                raise ValueError(f'the baseline has no error for cell '
                                 f'{_cell_name(cell)}')
            else:
                base[cell] = _check_value(cell, baseline[cell],
                                          'baseline error')
        ce = {}
        for c in used:
            den = sum(base[(c, s)] for s in severities if (c, s) in base)
            if den <= 0:
                raise ValueError(f'the baseline error of "{c}" sums to 0; '
                                 'CE is undefined')
            ce[c] = sum(by_corruption[c]) / den
        if clean_error is not None:
            if baseline_clean_error is None:
                raise ValueError(
                    'relative mCE subtracts the clean error on both sides '
                    'and needs the baseline\'s clean error '
                    '(baseline_clean_error); no public reference code '
                    'ships AlexNet\'s, so it must be supplied')
            base_clean = _check_value(('clean', 0), baseline_clean_error,
                                      'baseline clean error')
            relative_ce = {}
            for c in used:
                sev = [s for s in severities if (c, s) in errors]
                num = sum(errors[(c, s)] - clean_error for s in sev)
                den = sum(base[(c, s)] - base_clean for s in sev)
                if den <= 0:
                    raise ValueError(
                        f'the baseline\'s error on "{c}" does not exceed '
                        'its clean error; relative CE is undefined')
                relative_ce[c] = num / den
    return dict(
        corruptions=used,
        num_corruptions=len(used),
        severities=severities,
        num_cells=len(covered),
        partial=bool(missing),
        covered_cells=[list(cell) for cell in covered],
        missing_cells=[list(cell) for cell in missing],
        mean_error=mean_error,
        mean_corruption_error=float(np.mean(list(mean_error.values()))),
        baseline=kind,
        ce=ce,
        mCE=None if ce is None else float(np.mean(list(ce.values()))),
        clean_error=clean_error,
        baseline_clean_error=None if relative_ce is None else float(
            baseline_clean_error),
        relative_ce=relative_ce,
        relative_mCE=None if relative_ce is None else float(
            np.mean(list(relative_ce.values()))))


def summarize_detection_robustness(
        cell_maps: Mapping[Cell, float],
        clean_map: Optional[float] = None,
        corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
        severities: Sequence[int] = SEVERITIES,
        allow_partial: bool = False) -> dict:
    """P, mPC and rPC of a detector (COCO-C protocol).

    Args:
        cell_maps (Mapping[tuple[str, int], float]): mAP in [0, 1] per
            ``(corruption, severity)``. Severity-0 cells (of any corruption
            name, in any order) are the clean mAP.
        clean_map (float, optional): The clean mAP P; if None it is read
            from the severity-0 cells, which must agree. Defaults to None.
        corruptions (Sequence[str]): Corruptions averaged into mPC.
            Defaults to the 15 :data:`BENCHMARK_CORRUPTIONS`.
        severities (Sequence[int]): Severities averaged. Defaults to
            (1, 2, 3, 4, 5).
        allow_partial (bool): Summarise the covered cells when some are
            missing; the result says ``partial: True``. Defaults to False.

    Returns:
        dict: JSON-serialisable summary with keys ``P``, ``mPC`` (mean over
        corruptions of ``mean_map``), ``rPC`` (``mPC / P``; None when P is
        0), ``mean_map`` (per corruption, mean over severities),
        ``corruptions``, ``num_corruptions``, ``severities``, ``num_cells``,
        ``partial``, ``covered_cells``, ``missing_cells``.

    Raises:
        IncompleteResultsError: For missing cells without
            ``allow_partial``.
        ValueError: Without a clean mAP, for disagreeing severity-0 cells,
            or for an mAP outside [0, 1].
    """
    corruptions = list(corruptions)
    severities = [int(s) for s in severities]
    if 0 in severities:
        raise ValueError('severity 0 is the clean mAP (P), not part of mPC')
    if clean_map is None:
        clean = {
            cell: _check_value(cell, v, 'mAP')
            for cell, v in cell_maps.items() if cell[1] == 0
        }
        if not clean:
            raise ValueError('rPC needs the clean mAP P: pass clean_map or '
                             'a severity-0 cell')
        if max(clean.values()) - min(clean.values()) > 1e-9:
            raise ValueError(
                'the severity-0 (clean) cells disagree: ' + ', '.join(
                    f'{_cell_name(c)}={v:.4f}' for c, v in clean.items()))
        clean_map = next(iter(clean.values()))
    clean_map = _check_value(('clean', 0), clean_map, 'mAP')
    covered, missing = _split_cells(cell_maps, corruptions, severities,
                                    allow_partial, 'mPC')
    maps = {cell: _check_value(cell, cell_maps[cell], 'mAP')
            for cell in covered}
    used = [c for c in corruptions if any(cell[0] == c for cell in covered)]
    mean_map = {
        c: float(np.mean([maps[(c, s)] for s in severities
                          if (c, s) in maps]))
        for c in used
    }
    mpc = float(np.mean(list(mean_map.values())))
    return dict(
        P=clean_map,
        mPC=mpc,
        rPC=mpc / clean_map if clean_map > 0 else None,
        mean_map=mean_map,
        corruptions=used,
        num_corruptions=len(used),
        severities=severities,
        num_cells=len(covered),
        partial=bool(missing),
        covered_cells=[list(cell) for cell in covered],
        missing_cells=[list(cell) for cell in missing])


def compared_frame_pairs(num_frames: int, noise: bool,
                         step: int = 1) -> List[Tuple[int, int]]:
    """The ``(a, b)`` frame pairs compared in one sequence.

    Args:
        num_frames (int): Frames of the sequence.
        noise (bool): Noise perturbation: pairs ``(0, t)``, t >= 1.
        step (int): Difficulty stride of a non-noise perturbation: pairs
            of consecutive frames within each sub-sequence ``i, i+step,
            ...``, i < step. Must be 1 for noise. Defaults to 1.

    Returns:
        list[tuple[int, int]]: The pairs, in Hendrycks' order.

    Raises:
        ValueError: For ``step < 1``, ``step != 1`` with noise, or a
            sequence too short to give any pair.
    """
    if step < 1 or (noise and step != 1):
        raise ValueError(f'step must be >= 1 (and 1 for noise '
                         f'perturbations), got {step}')
    if noise:
        pairs = [(0, t) for t in range(1, num_frames)]
    else:
        pairs = []
        for i in range(step):
            frames = list(range(i, num_frames, step))
            pairs += list(zip(frames[:-1], frames[1:]))
    if not pairs:
        raise ValueError(f'a sequence of {num_frames} frame(s) has no frame '
                         f'pair to compare at step {step}')
    return pairs


def topk_classes(scores: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first.

    Ties go to the lower class index (``rankdata(-scores,
    method='ordinal')``, as in the reference code).

    Args:
        scores (np.ndarray): ``(C,)`` or ``(N, C)`` class scores (logits or
            probabilities).
        k (int): How many classes; capped at C. Defaults to 5.

    Returns:
        np.ndarray: ``(min(k, C),)`` or ``(N, min(k, C))`` int64 indices.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=-1, kind='stable')
    return order[..., :min(k, scores.shape[-1])].astype(np.int64)


def flip_probability(predictions: Sequence[Sequence[int]],
                     noise: bool,
                     step: int = 1) -> float:
    """Flip probability FP of a set of sequences.

    Args:
        predictions (Sequence[Sequence[int]]): Per sequence, the top-1 class
            of each frame (``(T,)``, T >= 2; sequences may differ in T).
        noise (bool): Noise perturbation (compare with frame 0).
        step (int): Difficulty stride (non-noise only). Defaults to 1.

    Returns:
        float: FP in [0, 1]: the mean over sequences of the fraction of
        compared pairs whose top-1 differs.

    Raises:
        ValueError: Without sequences or for a too short sequence.
    """
    if len(predictions) == 0:
        raise ValueError('flip probability needs at least one sequence')
    per_sequence = []
    for preds in predictions:
        preds = list(preds)
        pairs = compared_frame_pairs(len(preds), noise, step)
        per_sequence.append(
            np.mean([preds[a] != preds[b] for a, b in pairs]))
    return float(np.mean(per_sequence))


def _topk_distance(top_a: Sequence[int], top_b: Sequence[int]) -> int:
    """``sum_i |min(sigma_i, k+1) - i|`` for one frame pair."""
    k = len(top_a)
    rank_in_b = {cls: r + 1 for r, cls in enumerate(top_b)}
    return sum(
        abs(min(rank_in_b.get(cls, k + 1), k + 1) - i)
        for i, cls in enumerate(top_a, start=1))


def top5_distance(topk: Sequence[np.ndarray],
                  noise: bool,
                  step: int = 1) -> float:
    """Top-5 distance T5D of a set of sequences.

    Args:
        topk (Sequence[np.ndarray]): Per sequence, a ``(T, k)`` array of
            each frame's top-k classes, best first (:func:`topk_classes`);
            k = 5, or the number of classes when it is smaller.
        noise (bool): Noise perturbation (compare with frame 0).
        step (int): Difficulty stride (non-noise only). Defaults to 1.

    Returns:
        float: T5D in [0, k(k+1)/2] (15 for k = 5): the mean over
        sequences of the mean top-k distance over compared pairs (0 =
        identical top-k).

    Raises:
        ValueError: Without sequences, or for a too short sequence.
    """
    if len(topk) == 0:
        raise ValueError('top-5 distance needs at least one sequence')
    per_sequence = []
    for frames in topk:
        frames = np.asarray(frames)
        pairs = compared_frame_pairs(len(frames), noise, step)
        per_sequence.append(
            np.mean([
                _topk_distance(frames[a].tolist(), frames[b].tolist())
                for a, b in pairs
            ]))
    return float(np.mean(per_sequence))


def mean_flip_rate(fp: Mapping[str, float],
                   baseline_fp: Optional[Mapping[str, float]],
                   perturbations: Optional[Sequence[str]] = None) -> float:
    """mFR: mean over perturbations of ``FP_p / FP_baseline_p``.

    Args:
        fp (Mapping[str, float]): The model's FP per perturbation.
        baseline_fp (Mapping[str, float], optional): The baseline's FP per
            perturbation (e.g. AlexNet's, or a second model's).
        perturbations (Sequence[str], optional): Which perturbations;
            defaults to the keys of ``fp``.

    Returns:
        float: mFR (1.0 = as stable as the baseline).

    Raises:
        ValueError: Without baseline rates, for a perturbation missing from
            either mapping, or a zero baseline rate.
    """
    if baseline_fp is None:
        raise ValueError(
            'mFR normalises flip probabilities by a baseline\'s: supply '
            'baseline rates (a baseline model\'s, or AlexNet\'s '
            'ALEXNET_FLIP_PROBABILITIES) or report the raw FP')
    return _mean_ratio(fp, baseline_fp, perturbations, 'flip probability')


def _mean_ratio(values: Mapping[str, float], baseline: Mapping[str, float],
                perturbations: Optional[Sequence[str]], what: str) -> float:
    """Mean over perturbations of ``values[p] / baseline[p]``."""
    perturbations = list(values) if perturbations is None else list(
        perturbations)
    if not perturbations:
        raise ValueError(f'normalising the {what} needs at least one '
                         'perturbation')
    ratios = []
    for p in perturbations:
        if p not in values or p not in baseline:
            side = 'model' if p not in values else 'baseline'
            raise ValueError(f'no {what} of the {side} for "{p}"')
        if not baseline[p] > 0:
            raise ValueError(f'the baseline\'s {what} on "{p}" is 0; the '
                             'ratio is undefined')
        ratios.append(values[p] / baseline[p])
    return float(np.mean(ratios))


def _ratios(values: Mapping[str, float], baseline: Mapping[str, float],
            covered: Sequence[str], what: str,
            notes: List[str]) -> Tuple[Dict[str, Optional[float]],
                                       Optional[float]]:
    """Per-perturbation ratios and their mean; a zero baseline rate gives
    None for its ratio and for the mean (with a note), never an error."""
    ratios: Dict[str, Optional[float]] = {}
    for p in covered:
        if p not in baseline:
            raise ValueError(f'no {what} of the baseline for "{p}"')
        base = _check_value((p, '-'), baseline[p], f'baseline {what}',
                            upper=math.inf)
        ratios[p] = values[p] / base if base > 0 else None
    zero = [p for p, r in ratios.items() if r is None]
    if zero:
        notes.append(f'the baseline\'s {what} is 0 on {", ".join(zero)}: '
                     'the ratio is undefined there, so its mean is not '
                     'reported (the raw means are)')
        return ratios, None
    return ratios, float(np.mean(list(ratios.values())))


def summarize_flip_rates(
        fp: Mapping[str, float],
        t5d: Optional[Mapping[str, float]] = None,
        baseline_fp: Union[str, Mapping[str, float], None] = None,
        baseline_t5d: Optional[Mapping[str, float]] = None,
        perturbations: Sequence[str] = IMAGENET_P_PERTURBATIONS,
        allow_partial: bool = False) -> dict:
    """ImageNet-P summary: raw FP / T5D and, with baselines, mFR / mT5D.

    Args:
        fp (Mapping[str, float]): FP in [0, 1] per perturbation folder.
        t5d (Mapping[str, float], optional): T5D per perturbation folder.
            Defaults to None.
        baseline_fp (str | Mapping[str, float], optional): Baseline FP per
            perturbation, or ``'alexnet'`` for
            :data:`ALEXNET_FLIP_PROBABILITIES` (difficulty 1); enables
            ``FR`` and ``mFR``. Defaults to None.
        baseline_t5d (Mapping[str, float], optional): Baseline T5D;
            enables ``T5D_ratio`` and ``mT5D``. Defaults to None.
        perturbations (Sequence[str]): Perturbation folders averaged.
            Defaults to the 10 :data:`IMAGENET_P_PERTURBATIONS` (difficulty
            1; :func:`imagenet_p_perturbations` gives those of another
            difficulty). Folders of ``fp`` outside it are not averaged.
        allow_partial (bool): Summarise the covered perturbations when some
            are missing (``partial: True``). Defaults to False.

    Returns:
        dict: Keys ``perturbations`` (averaged), ``num_perturbations``,
        ``partial``, ``missing``, ``FP``, ``mean_FP``, ``T5D``,
        ``mean_T5D``, ``baseline`` (``'alexnet'``, ``'rates'`` or None),
        ``FR``, ``mFR``, ``T5D_ratio``, ``mT5D`` (the normalised ones None
        without baseline rates; a ratio whose baseline rate is 0 is None
        and so is its mean) and ``notes`` (list[str]).

    Raises:
        IncompleteResultsError: For missing perturbations without
            ``allow_partial``, or when none is covered.
        ValueError: For an FP outside [0, 1], an unknown baseline name or a
            baseline without a covered perturbation.
    """
    perturbations = list(perturbations)
    covered = [p for p in perturbations if p in fp]
    missing = [p for p in perturbations if p not in fp]
    if missing and (not allow_partial or not covered):
        raise IncompleteResultsError(
            f'mFR needs {len(perturbations)} perturbations; missing '
            f'{len(missing)}: {", ".join(missing)}'
            + ('; pass allow_partial=True to summarise the covered ones'
               if covered else ''), missing)
    kind = None
    if isinstance(baseline_fp, str):
        if baseline_fp != 'alexnet':
            raise ValueError('baseline_fp must be "alexnet", a mapping of '
                             f'flip probabilities or None, got '
                             f'"{baseline_fp}"')
        kind, baseline_fp = 'alexnet', ALEXNET_FLIP_PROBABILITIES
    elif baseline_fp is not None:
        kind = 'rates'
    for p in covered:
        _check_value((p, '-'), fp[p], 'FP')
    fps = {p: float(fp[p]) for p in covered}
    t5ds = None if t5d is None else {p: float(t5d[p]) for p in covered}
    notes: List[str] = []
    fr = t5d_ratio = None
    mfr = mt5d = None
    if baseline_fp is not None:
        fr, mfr = _ratios(fps, baseline_fp, covered, 'flip probability',
                          notes)
    if baseline_t5d is not None and t5ds is not None:
        t5d_ratio, mt5d = _ratios(t5ds, baseline_t5d, covered,
                                  'top-5 distance', notes)
    return dict(
        perturbations=covered,
        num_perturbations=len(covered),
        partial=bool(missing),
        missing=missing,
        FP=fps,
        mean_FP=float(np.mean(list(fps.values()))),
        T5D=t5ds,
        mean_T5D=None if t5ds is None else float(
            np.mean(list(t5ds.values()))),
        baseline=kind,
        FR=fr,
        mFR=mfr,
        T5D_ratio=t5d_ratio,
        mT5D=mt5d,
        notes=notes)
