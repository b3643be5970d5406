"""Paired statistics of two models evaluated on the same images.

Shorthand: ``K`` cells (corruption x severity), ``N`` images per cell, the
same ``N`` images (in the same order) in every cell and for both models.
An outcome array holds, per cell and image, whether the model was *wrong*
(``(K, N)`` bool).

An image that both models get right, or both wrong, says nothing about
which one errs less; only the *discordant* images do. Per cell, with
``b`` = images model A gets right and model B wrong, ``c`` = images A gets
wrong and B right::

    err_A - err_B = (c - b) / N

* :func:`mcnemar_table` / :func:`mcnemar_exact_p`: McNemar's exact test
  (the sign test on the discordant images): under "no difference" each
  discordant image is A's error or B's with probability 1/2, so
  ``X ~ Bin(b + c, 1/2)`` and the two-sided p is
  ``min(1, 2 P(X <= min(b, c)))`` (1 without discordant images).
* :func:`paired_difference_interval`: the exact interval of
  ``err_A - err_B`` conditional on the number of discordant images
  ``d = b + c``: the Clopper-Pearson interval ``[t_l, t_u]`` of
  ``theta = c / d`` mapped through ``(d / N) (2 theta - 1)``. It excludes 0
  exactly when the exact McNemar p is below ``1 - level`` (both come from
  the same binomial tails). It covers the split of the discordant images,
  not the variation of their number; the bootstrap below covers both.
* :func:`paired_bootstrap`: a percentile interval for a statistic of the
  whole benchmark (the difference of the mean corruption error, of a
  relative mCE) that resamples *images*: one resample draws ``N`` image
  indices with replacement and keeps every cell of each drawn image, so
  an image seen under 75 corruptions is one unit, not 75. Resample ``r``
  draws ``rng.integers(0, N, size=N)`` from
  ``rng = numpy.random.default_rng(seed)``, ``r = 0, 1, ...`` in order.
* :func:`holm_adjust`: Holm's step-down adjustment of the cells' p-values.
  Holm (not Benjamini-Hochberg) because a report that names the cells
  where two models differ makes one claim per cell, and Holm bounds the
  probability that *any* named cell is a false claim (family-wise error)
  under any dependence between the cells. The cells share their images,
  so their tests are dependent; BH controls only the expected share of
  false claims, and under positive dependence only.

All errors are fractions in [0, 1]; counts are non-negative integers.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def mcnemar_table(wrong_a: np.ndarray,
                  wrong_b: np.ndarray) -> Dict[str, int]:
    """The paired 2 x 2 table of one cell.

    Args:
        wrong_a (np.ndarray): ``(N,)`` bool, model A wrong on each image.
        wrong_b (np.ndarray): ``(N,)`` bool, model B wrong, same images.

    Returns:
        dict: ``both_right``, ``b`` (A right, B wrong), ``c`` (A wrong,
        B right), ``both_wrong`` and ``n`` (= N).
    """
    a = np.asarray(wrong_a, dtype=bool)
    b = np.asarray(wrong_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f'outcomes of shapes {a.shape} and {b.shape}: '
                         'expected two (N,) arrays over the same images')
    return dict(both_right=int(np.sum(~a & ~b)), b=int(np.sum(~a & b)),
                c=int(np.sum(a & ~b)), both_wrong=int(np.sum(a & b)),
                n=int(a.size))


def _binom_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Bin(n, p)``, summed in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    # log i! for i = 0..n, summed in float64 (vectorised, exact enough)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1)))))
    i = np.arange(k + 1)
    logs = (log_fact[n] - log_fact[i] - log_fact[n - i]
            + i * math.log(p) + (n - i) * math.log1p(-p))
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p: ``min(1, 2 P(X <= min(b, c)))``,
    ``X ~ Bin(b + c, 1/2)``; 1.0 without discordant images."""
    for name, v in (('b', b), ('c', c)):
        if int(v) != v or v < 0:
            raise ValueError(f'{name} must be a non-negative count, got {v!r}')
    b, c = int(b), int(c)
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf(min(b, c), b + c, 0.5))


def _clopper_pearson(x: int, n: int, level: float) -> Tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion ``x / n``
    by bisection on the binomial tails."""
    alpha = (1.0 - level) / 2.0

    def solve(f: Callable[[float], float]) -> float:
        lo, hi = 0.0, 1.0  # f increasing in p
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if f(mid) < 0:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    # lower: P(X >= x | p) = alpha; upper: P(X <= x | p) = alpha
    low = 0.0 if x == 0 else solve(
        lambda p: (1.0 - _binom_cdf(x - 1, n, p)) - alpha)
    high = 1.0 if x == n else solve(
        lambda p: alpha - _binom_cdf(x, n, p))
    return low, high


def paired_difference_interval(b: int, c: int, n: int,
                               level: float = 0.95) -> Tuple[float, float]:
    """Exact interval of ``err_A - err_B = (c - b) / n`` given ``b + c``
    discordant images (see the module docstring).

    Args:
        b (int): Images A gets right and B wrong.
        c (int): Images A gets wrong and B right.
        n (int): Images of the cell (> 0, >= b + c).
        level (float): Coverage in (0, 1). Defaults to 0.95.

    Returns:
        tuple[float, float]: The interval, in [-1, 1]; ``(0, 0)`` without
        discordant images.
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f'paired counts b={b}, c={c} of n={n} images are '
                         'not a 2 x 2 table')
    if not 0.0 < level < 1.0:
        raise ValueError(f'level must be in (0, 1), got {level}')
    d = b + c
    if d == 0:
        return 0.0, 0.0
    low, high = _clopper_pearson(c, d, level)
    return d / n * (2.0 * low - 1.0), d / n * (2.0 * high - 1.0)


def holm_adjust(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted value of rank
    ``i`` (1-based) is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a cell
    differs at family-wise level ``alpha`` when its adjusted p is below
    ``alpha``.
    """
    p = [float(v) for v in p_values]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_bootstrap(statistic: Callable[..., float],
                     outcomes: Sequence[np.ndarray],
                     num_resamples: int = 1000,
                     seed: int = 0,
                     level: float = 0.95) -> dict:
    """Percentile bootstrap over images of a benchmark statistic.

    Args:
        statistic (callable): ``statistic(*errors) -> float`` where each
            ``errors`` is a ``(K,)`` float array of the cells' errors of
            one model on a resample (same order as ``outcomes``); may
            return NaN where undefined (e.g. a zero denominator).
        outcomes (sequence[np.ndarray]): Per model, ``(K, N)`` bool
            (wrong), the same ``N`` images in every cell and model.
        num_resamples (int): Resamples (> 0). Defaults to 1000.
        seed (int): Seed of ``numpy.random.default_rng``. Defaults to 0.
        level (float): Coverage in (0, 1). Defaults to 0.95.

    Returns:
        dict: ``estimate`` (the statistic on all images), ``ci`` (the
        ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the
        defined resamples, ``numpy.percentile``'s linear rule),
        ``num_resamples``, ``num_undefined`` (NaN resamples, left out) and
        ``seed``.
    """
    arrays = [np.asarray(o, dtype=bool) for o in outcomes]
    if not arrays or any(a.ndim != 2 or a.shape != arrays[0].shape
                         for a in arrays):
        raise ValueError('paired_bootstrap needs (K, N) outcome arrays of '
                         'one shape, got ' +
                         ', '.join(str(a.shape) for a in arrays))
    if num_resamples <= 0:
        raise ValueError(f'num_resamples must be > 0, got {num_resamples}')
    n = arrays[0].shape[1]
    wrong = [a.astype(np.float64) for a in arrays]
    estimate = float(statistic(*[w.mean(axis=1) for w in wrong]))
    rng = np.random.default_rng(seed)
    values = np.empty(num_resamples)
    for r in range(num_resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        values[r] = statistic(*[w @ counts / n for w in wrong])
    defined = values[np.isfinite(values)]
    tail = 100.0 * (1.0 - level) / 2.0
    ci = ([float(v) for v in np.percentile(defined, [tail, 100.0 - tail])]
          if defined.size else [math.nan, math.nan])
    return dict(estimate=estimate, ci=ci, num_resamples=num_resamples,
                num_undefined=int(num_resamples - defined.size), seed=seed)


def mean_error(errors: np.ndarray) -> float:
    """Mean over cells: the unnormalised mean corruption error."""
    return float(np.mean(errors))


def corruption_error_ratio(errors: np.ndarray, base: np.ndarray,
                           groups: np.ndarray,
                           clean: Optional[Tuple[float, float]] = None
                           ) -> float:
    """Mean over corruptions of ``sum_s err / sum_s err_base`` (the
    sweep's ``mCE_vs_baseline``), or with ``clean = (clean_error,
    base_clean_error)`` of ``sum_s (err - clean) / sum_s (err_base -
    base_clean)`` (``relative_mCE_vs_baseline``); NaN where a denominator
    is 0.

    Args:
        errors (np.ndarray): ``(K,)`` errors of the model.
        base (np.ndarray): ``(K,)`` errors of the baseline model.
        groups (np.ndarray): ``(K,)`` int, the corruption of each cell
            (0..G-1).
        clean (tuple, optional): Clean errors of model and baseline.
    """
    num = np.asarray(errors, dtype=np.float64)
    den = np.asarray(base, dtype=np.float64)
    if clean is not None:
        num, den = num - clean[0], den - clean[1]
    g = int(np.max(groups)) + 1
    top = np.bincount(groups, weights=num, minlength=g)
    bottom = np.bincount(groups, weights=den, minlength=g)
    if np.any(bottom == 0):
        return math.nan
    return float(np.mean(top / bottom))
