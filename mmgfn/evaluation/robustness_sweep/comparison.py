"""Paired comparison of two classification sweeps on the same images.

Reads the per-image outcomes that every classification cell keeps
(:mod:`.outcomes`) from two ``results.json`` files (model A and model B,
e.g. GFN and plain fine-tuning; optionally a third, the baseline model
that the relative mCE divides by) and gives, with the statistics of
:mod:`mmgfn.evaluation.functional.paired`:

* per cell: ``err_A - err_B``, the McNemar table, the exact McNemar p,
  the exact conditional interval of the difference and the Holm-adjusted
  p over the corrupted cells (``differs``: adjusted p < ``alpha``);
* over the benchmark: the differences of the mean corruption error
  (``mean_c mean_s err(c, s)`` over the benchmark corruptions, severities
  >= 1) and, with a baseline, of ``mCE_vs_baseline`` (``mean_c sum_s err /
  sum_s err_base``) and ``relative_mCE_vs_baseline`` (clean errors
  subtracted on both sides), as the sweep's summary defines them, each
  with a percentile interval from the paired bootstrap over images.

Differences are A minus B, in [-1, 1] (below 0: A errs less).
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS, Cell
from mmgfn.evaluation.functional.paired import (corruption_error_ratio,
                                                holm_adjust, mcnemar_exact_p,
                                                mcnemar_table, mean_error,
                                                paired_bootstrap,
                                                paired_difference_interval)
from mmgfn.utils.errors import ConfigError, check_file
from .outcomes import decode_outcomes
from .suite import CLEAN


def load_outcomes(path: str) -> dict:
    """The outcomes of a sweep's main model.

    Args:
        path (str): A ``results.json`` or the work dir holding one.

    Returns:
        dict: ``path``, ``suite`` and ``cells``: ``{(corruption,
        severity): ((N,) bool wrong, images key)}`` in the file's order.

    Raises:
        ConfigError: No such file, not a classification sweep, or a cell
            without outcomes.
    """
    if osp.isdir(path):
        path = osp.join(path, 'results.json')
    check_file(path, 'sweep results')
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    records = data.get('cells') if isinstance(data, dict) else None
    if not isinstance(records, list) or not records:
        raise ConfigError(f'"{path}" has no "cells" list')
    if any(r.get('quantity') != 'error' for r in records):
        raise ConfigError(f'"{path}" is not a top-1 classification sweep '
                          '(paired comparisons need per-image outcomes)')
    cells = {(r['corruption'], int(r['severity'] or 0)):
             decode_outcomes(r, f'"{path}"') for r in records}
    return dict(path=path, suite=data.get('suite'), cells=cells)


def _match(a: dict, b: dict) -> List[Cell]:
    """The common cells, refusing any mismatch in one line."""
    if a['suite'] != b['suite']:
        raise ConfigError(f'"{a["path"]}" is a {a["suite"]} sweep but '
                          f'"{b["path"]}" is {b["suite"]}')
    missing = [c for c in a['cells'] if c not in b['cells']] + \
        [c for c in b['cells'] if c not in a['cells']]
    if missing:
        c, s = missing[0]
        raise ConfigError(f'cell {c}/{s} is in only one of "{a["path"]}" '
                          f'and "{b["path"]}" ({len(missing)} unmatched '
                          'cells)')
    for cell, (wrong, key) in a['cells'].items():
        other_wrong, other_key = b['cells'][cell]
        if key != other_key:
            raise ConfigError(
                f'cell {cell[0]}/{cell[1]}: the image lists differ '
                f'("{a["path"]}": {wrong.size} images, key {key[:12]}; '
                f'"{b["path"]}": {other_wrong.size} images, key '
                f'{other_key[:12]}); a paired comparison needs the same '
                'images in the same order')
    return list(a['cells'])


def _stack(sweep: dict, cells: List[Cell]) -> np.ndarray:
    """``(K, N)`` wrong of ``cells``, refusing cells over other images."""
    keys = {sweep['cells'][c][1] for c in cells}
    if len(keys) > 1:
        raise ConfigError(
            f'"{sweep["path"]}": the cells are not over the same images in '
            'the same order (their image keys differ); the bootstrap over '
            'images needs one image list')
    return np.stack([sweep['cells'][c][0] for c in cells])


def compare_sweeps(a: str, b: str, baseline: Optional[str] = None,
                   num_resamples: int = 1000, seed: int = 0,
                   level: float = 0.95, alpha: float = 0.05,
                   names: Tuple[str, str] = ('A', 'B')) -> dict:
    """Compare model A (sweep ``a``) with model B (sweep ``b``).

    Args:
        a (str): ``results.json`` (or its work dir) of model A.
        b (str): The same for model B, same suite, cells and images.
        baseline (str, optional): The same for the baseline model of the
            relative mCE. Defaults to None (no relative mCE).
        num_resamples (int): Bootstrap resamples. Defaults to 1000.
        seed (int): Bootstrap seed. Defaults to 0.
        level (float): Interval coverage. Defaults to 0.95.
        alpha (float): Family-wise level of the Holm-corrected per-cell
            tests. Defaults to 0.05.
        names (tuple[str, str]): Labels of A and B for the report.
            Defaults to ('A', 'B').

    Returns:
        dict: ``a``, ``b``, ``baseline`` (paths), ``names``, ``cells``
        (per cell: ``cell``, ``error_a``, ``error_b``, ``difference``,
        ``table``, ``p``, ``ci``, ``p_holm``, ``differs``; ``p_holm`` and
        ``differs`` are None for the clean cell, outside the family),
        ``num_differ`` / ``num_a_less`` / ``num_a_more`` (corrupted cells
        that differ after Holm), ``benchmark`` (per statistic:
        ``a``, ``b``, ``difference``, ``ci``, ``num_undefined``),
        ``num_images``, ``num_resamples``, ``seed``, ``level``, ``alpha``,
        ``correction`` ('holm').
    """
    sa, sb = load_outcomes(a), load_outcomes(b)
    cells = _match(sa, sb)
    corrupted = [c for c in cells if c[1] and c[0] in BENCHMARK_CORRUPTIONS]
    if not corrupted:
        raise ConfigError(f'"{sa["path"]}" has no benchmark corruption '
                          'cell to compare')
    rows = []
    for cell in cells:
        wa, wb = sa['cells'][cell][0], sb['cells'][cell][0]
        table = mcnemar_table(wa, wb)
        rows.append(dict(
            cell=f'{cell[0]}/{cell[1]}', corruption=cell[0],
            severity=cell[1], error_a=float(wa.mean()),
            error_b=float(wb.mean()),
            difference=(table['c'] - table['b']) / table['n'], table=table,
            p=mcnemar_exact_p(table['b'], table['c']),
            ci=list(paired_difference_interval(table['b'], table['c'],
                                               table['n'], level)),
            p_holm=None, differs=None))
    family = [r for r, c in zip(rows, cells) if c in corrupted]
    for r, p in zip(family, holm_adjust([r['p'] for r in family])):
        r['p_holm'], r['differs'] = p, p < alpha

    # the benchmark: one bootstrap over images for every statistic
    names_c = list(dict.fromkeys(c for c, _ in corrupted))
    groups = np.array([names_c.index(c) for c, _ in corrupted])
    per_group = np.bincount(groups)

    def mean_ce(err: np.ndarray) -> float:  # mean_c mean_s err(c, s)
        return mean_error(np.bincount(groups, weights=err) / per_group)

    clean = (CLEAN, 0) if (CLEAN, 0) in cells else None
    used = corrupted + ([clean] if clean else [])
    stacks = [_stack(sa, used), _stack(sb, used)]
    k = len(corrupted)
    sbase = None
    if baseline:
        sbase = load_outcomes(baseline)
        _match(sa, sbase)
        stacks.append(_stack(sbase, used))
    if len({s.shape[1] for s in stacks}) > 1:
        raise ConfigError('the sweeps\' cells hold different numbers of '
                          'images')

    def statistics(*errors: np.ndarray) -> Dict[str, float]:
        out = {'mean_corruption_error': [mean_ce(e[:k])
                                         for e in errors[:2]]}
        if len(errors) == 3:
            base = errors[2][:k]
            out['mCE_vs_baseline'] = [
                corruption_error_ratio(e[:k], base, groups)
                for e in errors[:2]]
            if clean:
                out['relative_mCE_vs_baseline'] = [
                    corruption_error_ratio(e[:k], base, groups,
                                           (e[k], errors[2][k]))
                    for e in errors[:2]]
        return out

    full = statistics(*[s.mean(axis=1) for s in stacks])
    benchmark = {}
    for key, (va, vb) in full.items():
        boot = paired_bootstrap(
            lambda *e, key=key: (lambda v: v[0] - v[1])(
                statistics(*e)[key]), stacks, num_resamples, seed, level)
        benchmark[key] = dict(a=va, b=vb, difference=boot['estimate'],
                              ci=boot['ci'],
                              num_undefined=boot['num_undefined'])
    less = sum(1 for r in family if r['differs'] and r['difference'] < 0)
    more = sum(1 for r in family if r['differs'] and r['difference'] > 0)
    return dict(a=sa['path'], b=sb['path'],
                baseline=sbase['path'] if sbase else None,
                names=list(names), suite=sa['suite'], cells=rows,
                num_cells=len(family), num_differ=less + more,
                num_a_less=less, num_a_more=more, benchmark=benchmark,
                num_images=int(stacks[0].shape[1]),
                num_resamples=num_resamples, seed=seed, level=level,
                alpha=alpha, correction='holm')


def _pp(value: float) -> str:
    return f'{100 * value:+.2f}'


def _ci(ci: List[float]) -> str:
    return f'[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]'


def comparison_sentence(result: dict) -> str:
    """One sentence that says what the data show, with the numbers."""
    a, b = result['names']
    m = result['benchmark']['mean_corruption_error']
    lo, hi = m['ci']
    verdict = (f'{a} errs less than {b}' if hi < 0 else
               f'{a} errs more than {b}' if lo > 0 else
               f'{a} and {b} cannot be told apart')
    text = (f'{verdict} on the corrupted images: mean corruption error '
            f'{_pp(m["difference"])} points {_ci(m["ci"])} (paired '
            f'bootstrap over {result["num_images"]} images)')
    rel = result['benchmark'].get('mCE_vs_baseline')
    if rel:
        text += (f', relative mCE {rel["difference"]:+.3f} '
                 f'[{rel["ci"][0]:+.3f}, {rel["ci"][1]:+.3f}]')
    return (text + f'; {result["num_differ"]} of {result["num_cells"]} '
            f'cells differ after Holm at {result["alpha"]:g} '
            f'({result["num_a_less"]} with {a} better, '
            f'{result["num_a_more"]} with {b} better).')


def comparison_markdown(result: dict) -> str:
    """The markdown report of :func:`compare_sweeps`."""
    a, b = result['names']
    level = f'{100 * result["level"]:g} %'
    lines = [
        f'# Paired comparison: {a} vs {b}', '',
        f'{a}: `{result["a"]}`; {b}: `{result["b"]}`' +
        (f'; baseline: `{result["baseline"]}`' if result['baseline']
         else '') + '.', '', comparison_sentence(result), '',
        '## Benchmark', '',
        f'| statistic | {a} | {b} | {a} - {b} | {level} interval |',
        '|---|---|---|---|---|'
    ]
    for key, m in result['benchmark'].items():
        scale = 100 if key == 'mean_corruption_error' else 1
        fmt = '{:.2f}' if scale == 100 else '{:.3f}'
        lines.append(
            f'| {key} | {fmt.format(scale * m["a"])} | '
            f'{fmt.format(scale * m["b"])} | '
            f'{"{:+.2f}" if scale == 100 else "{:+.3f}"}'.format(
                scale * m['difference']) + ' | [' + ', '.join(
                    ('{:+.2f}' if scale == 100 else '{:+.3f}').format(
                        scale * v) for v in m['ci']) + '] |')
    lines += [
        '', f'mean_corruption_error in percent (its difference in '
        'percentage points); mCE_vs_baseline = mean_c sum_s err / sum_s '
        'err_base; relative_mCE_vs_baseline subtracts the clean errors on '
        f'both sides. Intervals: percentile bootstrap, '
        f'{result["num_resamples"]} resamples of the '
        f'{result["num_images"]} images (every cell of a drawn image '
        f'kept), seed {result["seed"]}.', '', '## Per cell', '',
        f'| cell | {a} error % | {b} error % | {a} - {b} (points) | '
        f'{level} interval | {a} right, {b} wrong | {a} wrong, {b} right | '
        'McNemar p | Holm p | differs |', '|---|---|---|---|---|---|---|'
        '---|---|---|'
    ]
    for r in result['cells']:
        holm = '-' if r['p_holm'] is None else f'{r["p_holm"]:.3g}'
        differs = '-' if r['differs'] is None else (
            'yes' if r['differs'] else 'no')
        lines.append(
            f'| {r["cell"]} | {100 * r["error_a"]:.2f} | '
            f'{100 * r["error_b"]:.2f} | {_pp(r["difference"])} | '
            f'{_ci(r["ci"])} | {r["table"]["b"]} | {r["table"]["c"]} | '
            f'{r["p"]:.3g} | {holm} | {differs} |')
    lines += [
        '', 'McNemar p: exact two-sided test on the discordant images, '
        'min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2). Interval: exact '
        '(Clopper-Pearson) given the number of discordant images. Holm: '
        'step-down correction over the corrupted cells (family-wise error '
        'under any dependence between cells, which share their images); '
        f'a cell differs when its Holm p < {result["alpha"]:g}.', ''
    ]
    return '\n'.join(lines)
