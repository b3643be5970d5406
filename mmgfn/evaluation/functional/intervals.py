"""Confidence intervals for top-1 errors measured on a finite test set.

A cell's error ``wrong / total`` is a binomial proportion: the same model on
another draw of ``total`` test images would err on a different fraction.
These functions say how far that fraction can move, from the integer counts
alone (no per-image predictions needed), and which cells carry no signal.

* :func:`wilson_interval`: the Wilson score interval of one error (Wilson,
  1927). With ``p = wrong / total``, ``n = total`` and ``z`` the normal
  quantile (1.96 for 95 %)::

      centre = (p + z^2 / (2 n)) / (1 + z^2 / n)
      half   = z * sqrt(p (1 - p) / n + z^2 / (4 n^2)) / (1 + z^2 / n)

  It keeps its coverage near 0 and 1 (0 wrong of 449 gives [0, 0.85 %],
  where the Wald interval collapses to [0, 0]).
* :func:`difference_interval`: Newcombe's hybrid score interval (Newcombe,
  1998, method 10) of ``p_a - p_b`` from the two Wilson intervals
  ``[l_a, u_a]`` and ``[l_b, u_b]``::

      low  = (p_a - p_b) - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)
      high = (p_a - p_b) + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)

  It treats the two errors as independent samples. Two models evaluated
  on the *same* images err together on the hard ones (their errors are
  positively correlated), which makes the true spread of the difference
  smaller: on such paired data the interval is conservative (too wide,
  never too narrow), and a difference it calls significant is one.
* :func:`mean_interval`: an interval for the mean over cells of a
  quantity, as the mean of the cells' lower and upper bounds. When the
  cells are perfectly correlated (the same images fail in every cell) this
  is exact; otherwise it is wider than needed. Corrupted copies of one
  test set are strongly but not perfectly correlated, so the bound is
  conservative.
* :func:`at_chance` / :func:`chance_level_cells`: a model is *at chance
  level* on a cell when the upper end of its Wilson interval reaches the
  error of a uniform guess over ``C`` classes, ``1 - 1 / C`` (its accuracy
  is not significantly above guessing). A cell where every model is at
  chance level says nothing about which model is more robust: reports mark
  it and leave it out of any "model A is better" count.

All errors are fractions in [0, 1]; counts are non-negative integers.
These intervals cover the sampling of test images only, not the variation
between training runs (seeds) of a model.
"""
import math
from numbers import Integral
from typing import Hashable, List, Mapping, Sequence, Tuple

#: The normal quantile of a two-sided 95 % interval, ``Phi^-1(0.975)``.
Z_95 = 1.959963984540054

Counts = Tuple[int, int]


def _check_counts(wrong, total, what: str = 'cell') -> Tuple[int, int]:
    for name, value in (('wrong', wrong), ('total', total)):
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise ValueError(f'{what}: {name} must be an integer count, got '
                             f'{value!r}')
    if total <= 0 or not 0 <= wrong <= total:
        raise ValueError(f'{what}: need 0 <= wrong <= total and total > 0, '
                         f'got wrong={wrong}, total={total}')
    return int(wrong), int(total)


def wilson_interval(wrong: int,
                    total: int,
                    z: float = Z_95) -> Tuple[float, float]:
    """Wilson score interval of the error ``wrong / total``.

    Args:
        wrong (int): Wrongly classified samples, ``0 <= wrong <= total``.
        total (int): Samples of the cell, ``> 0``.
        z (float): Normal quantile of the two-sided level. Defaults to
            :data:`Z_95` (95 %).

    Returns:
        tuple[float, float]: ``(low, high)``, ``0 <= low <= wrong / total
        <= high <= 1``.

    Raises:
        ValueError: For counts that are not integers or out of range.
    """
    wrong, total = _check_counts(wrong, total)
    p, n = wrong / total, total
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the closed form is exact at 0 and 1; clamp float rounding only
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def difference_interval(a: Counts, b: Counts,
                        z: float = Z_95) -> Tuple[float, float]:
    """Newcombe's hybrid score interval of ``error_a - error_b``.

    Args:
        a (tuple[int, int]): ``(wrong, total)`` of model A on the cell.
        b (tuple[int, int]): ``(wrong, total)`` of model B on the cell.
        z (float): Normal quantile. Defaults to :data:`Z_95`.

    Returns:
        tuple[float, float]: ``(low, high)`` in [-1, 1]; ``high < 0`` means
        A errs significantly less than B, ``low > 0`` more. Conservative
        for models evaluated on the same images (see the module docstring).
    """
    (wa, na), (wb, nb) = _check_counts(*a), _check_counts(*b)
    pa, pb = wa / na, wb / nb
    la, ua = wilson_interval(wa, na, z)
    lb, ub = wilson_interval(wb, nb, z)
    d = pa - pb
    return (d - math.sqrt((pa - la)**2 + (ub - pb)**2),
            d + math.sqrt((ua - pa)**2 + (pb - lb)**2))


def mean_interval(
        intervals: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
    """Interval of a mean over cells: the means of the cells' bounds.

    Args:
        intervals (Sequence[tuple[float, float]]): ``(low, high)`` per cell.

    Returns:
        tuple[float, float]: ``(mean of lows, mean of highs)``; exact for
        perfectly correlated cells, conservative otherwise.
    """
    intervals = list(intervals)
    if not intervals:
        raise ValueError('mean_interval needs at least one cell')
    return (sum(lo for lo, _ in intervals) / len(intervals),
            sum(hi for _, hi in intervals) / len(intervals))


def chance_error(num_classes: int) -> float:
    """Error of a uniform random guess over ``num_classes`` classes,
    ``1 - 1 / num_classes`` (0.9 for 10 classes)."""
    if isinstance(num_classes, bool) or not isinstance(
            num_classes, Integral) or num_classes < 2:
        raise ValueError(f'num_classes must be an integer >= 2, got '
                         f'{num_classes!r}')
    return 1 - 1 / num_classes


def at_chance(wrong: int, total: int, num_classes: int,
              z: float = Z_95) -> bool:
    """Whether an error is at chance level: the upper end of its Wilson
    interval reaches ``1 - 1 / num_classes``.

    Args:
        wrong (int): Wrong samples of the cell.
        total (int): Samples of the cell.
        num_classes (int): Classes of the task, ``>= 2``.
        z (float): Normal quantile. Defaults to :data:`Z_95`.

    Returns:
        bool: True when the accuracy is not significantly above guessing.
    """
    return wilson_interval(wrong, total, z)[1] >= chance_error(num_classes)


def chance_level_cells(counts: Mapping[str, Mapping[Hashable, Counts]],
                       num_classes: int,
                       z: float = Z_95) -> List[Hashable]:
    """The cells where every model is at chance level (:func:`at_chance`).

    Args:
        counts (Mapping[str, Mapping[cell, tuple[int, int]]]): Per model,
            ``(wrong, total)`` per cell; every model must have the same
            cells.
        num_classes (int): Classes of the task.
        z (float): Normal quantile. Defaults to :data:`Z_95`.

    Returns:
        list: The chance-level cells, in the order of the first model's.

    Raises:
        ValueError: Without models, or when a model lacks a cell of the
            first model or has one more (names the model and the cell).
    """
    if not counts:
        raise ValueError('chance_level_cells needs at least one model')
    names = list(counts)
    cells = list(counts[names[0]])
    for name in names[1:]:
        missing = [c for c in cells if c not in counts[name]]
        extra = [c for c in counts[name] if c not in counts[names[0]]]
        if missing or extra:
            cell, how = (missing[0], 'lacks') if missing else (extra[0],
                                                               'adds')
            raise ValueError(f'model "{name}" {how} cell {cell!r} compared '
                             f'with model "{names[0]}"')
    return [
        cell for cell in cells if all(
            at_chance(*_check_counts(*counts[name][cell],
                                     f'model "{name}", cell {cell!r}'),
                      num_classes, z) for name in names)
    ]
