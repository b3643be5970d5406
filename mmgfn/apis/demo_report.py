"""The report of the GFN demo (``tools/run_demo.py``): clean accuracy,
mean corruption error and relative mCE per model, Wilson intervals and
chance-level cells from the cells' integer counts
(:mod:`mmgfn.evaluation.functional.intervals`), GFN against each other
model by the paired analysis of the same images
(:func:`mmgfn.evaluation.robustness_sweep.compare_sweeps`) and, with
several training seeds, the spread between seeds.

Errors in the report are percentages; differences are GFN minus the other
model, in percentage points.
"""
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import numpy as np

from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation.functional import (chance_error, chance_level_cells,
                                         difference_interval, mean_interval,
                                         summarize_corruption_errors,
                                         wilson_interval)
from mmgfn.evaluation.robustness_sweep import (compare_sweeps,
                                               comparison_sentence)
from mmgfn.utils.errors import ConfigError
from mmgfn.visualization import write_comparison

#: Report labels of the demo's models.
LABELS = {
    'baseline': 'baseline (no fine-tuning)',
    'plain': 'plain fine-tuning',
    'gfn': 'GFN fine-tuning',
    'adv': 'Adv. fine-tuning (untargeted)',
}


def cell_errors(results_file: str) -> dict:
    """The errors and counts of a ``results.json`` of test_robustness.py.

    Returns:
        dict: ``cells`` (``{(corruption, severity): error}``, errors in
        [0, 1]), ``counts`` (``{(corruption, severity): (wrong, total)}``),
        ``clean_error`` and ``clean_counts`` (severity 0).
    """
    path = results_file
    with open(path) as f:
        results = json.load(f)
    cells, counts, clean, clean_counts = {}, {}, None, None
    for r in results['cells']:
        if 'wrong' not in r or 'total' not in r:
            raise ConfigError(
                f'{path}: cell {r["corruption"]}/'
                f'{r["severity"]} has no "wrong"/"total" counts')
        pair = (int(r['wrong']), int(r['total']))
        if r['severity'] == 0:
            clean, clean_counts = r['value'], pair
        else:
            cells[(r['corruption'], r['severity'])] = r['value']
            counts[(r['corruption'], r['severity'])] = pair
    return dict(cells=cells, counts=counts, clean_error=clean,
                clean_counts=clean_counts)


def count_classes(data_root: str) -> int:
    """Number of class folders of ``<data_root>/val`` (the evaluated
    split)."""
    val = osp.join(data_root, 'val')
    return len([d for d in os.listdir(val) if osp.isdir(osp.join(val, d))])


def compare_models(sweeps: Dict[str, str], out_dir: str) -> Dict[str, dict]:
    """GFN against each other model, paired over the same images.

    Args:
        sweeps (dict): Per model name (``gfn``, ``baseline`` and the
            others), the work dir of its sweep.
        out_dir (str): ``comparisons/gfn_vs_<model>/comparison.{md,json,
            png}`` are written under it.

    Returns:
        dict: Per other model (in the order of ``sweeps``), the
        :func:`~mmgfn.evaluation.robustness_sweep.compare_sweeps` of GFN
        against it.
    """
    paired = {}
    for other in (name for name in sweeps if name != 'gfn'):
        paired[other] = compare_sweeps(
            sweeps['gfn'], sweeps[other], baseline=sweeps['baseline'],
            names=('GFN', LABELS[other]))
        write_comparison(paired[other],
                         osp.join(out_dir, 'comparisons', f'gfn_vs_{other}'))
    return paired


def write_demo_report(args, evals: Dict[int, dict], sweeps: Dict[str, str],
                      out_dir: str, start: float) -> dict:
    """The whole report of a demo run: the paired comparisons, the spread
    between seeds (with several) and report.{md,json,png}.

    Args:
        args (argparse.Namespace): ``data``, ``corruptions``,
            ``severities``, ``epochs`` and ``finetune_epochs`` of the run.
        evals (dict): Per training seed (0 first), per model name, the
            :func:`cell_errors` of its evaluation.
        sweeps (dict): Per model name, the work dir of its seed-0 sweep.
        out_dir (str): Folder of the report files.
        start (float): ``time.time()`` when the run started.

    Returns:
        dict: The content of report.json (see :func:`report`).
    """
    paired = compare_models(sweeps, out_dir)
    spread = seed_spread(evals, args.corruptions, args.severities) \
        if len(evals) > 1 else None
    return report(args, evals[0], out_dir, time.time() - start,
                  count_classes(args.data), paired, spread)


def _pct(interval) -> list:
    return [100 * interval[0], 100 * interval[1]]


def _name(cell) -> str:
    return f'{cell[0]}/{cell[1]}'


def _mean_difference(a: dict, b: dict, cells: list) -> tuple:
    """Mean over ``cells`` of ``error_a - error_b`` (percentage points) and
    the mean of the cells' Newcombe bounds; ``(None, None)`` without
    cells."""
    if not cells:
        return None, None
    mean = sum(a[c][0] / a[c][1] - b[c][0] / b[c][1]
               for c in cells) / len(cells)
    return 100 * mean, _pct(
        mean_interval(difference_interval(a[c], b[c]) for c in cells))


def statistics(evals: dict, corruptions: list, severities: list,
               num_classes: int) -> dict:
    """Intervals, chance-level cells and GFN's comparisons (percent).

    Args:
        evals (dict): Per model, the :func:`cell_errors` of its run.
        corruptions (list[str]): Corruptions of the report.
        severities (list[int]): Severities of the report (1-5).
        num_classes (int): Classes of the task (chance error 1 - 1/C).

    Returns:
        dict: ``models`` (per model ``clean_error_ci95``,
        ``mean_corruption_error_ci95`` and ``cells``: per ``"c/s"`` its
        ``error``, ``ci95``, ``wrong``, ``total``), ``chance_error``,
        ``chance_cells`` (``"c/s"`` names) and ``comparisons`` (GFN minus
        each other model, in percentage points; empty without ``gfn``).
    """
    grid = [(c, s) for c in corruptions for s in severities]
    counts = {name: {cell: ev['counts'][cell] for cell in grid}
              for name, ev in evals.items()}
    chance = set(chance_level_cells(counts, num_classes))
    informative = [cell for cell in grid if cell not in chance]
    models = {}
    for name, ev in evals.items():
        cis = {cell: wilson_interval(*counts[name][cell]) for cell in grid}
        models[name] = dict(
            clean_error_ci95=_pct(wilson_interval(*ev['clean_counts'])),
            mean_corruption_error_ci95=_pct(mean_interval(cis.values())),
            cells={
                _name(cell): dict(
                    error=100 * counts[name][cell][0] /
                    counts[name][cell][1],
                    ci95=_pct(cis[cell]),
                    wrong=counts[name][cell][0],
                    total=counts[name][cell][1]) for cell in grid
            })
    comparisons = {}
    if 'gfn' in evals:
        a = counts['gfn']
        for other in (n for n in evals if n != 'gfn'):
            b = counts[other]
            per_cell = {cell: difference_interval(a[cell], b[cell])
                        for cell in grid}
            ca, cb = evals['gfn']['clean_counts'], evals[other][
                'clean_counts']
            mean_all, ci_all = _mean_difference(a, b, grid)
            mean_inf, ci_inf = _mean_difference(a, b, informative)
            comparisons[other] = dict(
                clean_error_difference=100 * (ca[0] / ca[1] - cb[0] / cb[1]),
                clean_error_difference_ci95=_pct(difference_interval(ca,
                                                                     cb)),
                mean_corruption_error_difference=mean_all,
                mean_corruption_error_difference_ci95=ci_all,
                informative_mean_difference=mean_inf,
                informative_mean_difference_ci95=ci_inf,
                num_informative_cells=len(informative),
                gfn_errs_less=[_name(c) for c in informative
                               if per_cell[c][1] < 0],
                gfn_errs_more=[_name(c) for c in informative
                               if per_cell[c][0] > 0])
    return dict(models=models, chance_error=100 * chance_error(num_classes),
                num_classes=num_classes,
                chance_cells=[_name(c) for c in grid if c in chance],
                comparisons=comparisons)


def seed_spread(runs: Dict[int, dict], corruptions: list,
                severities: list) -> dict:
    """The spread between training seeds of the fine-tuned models.

    Args:
        runs (dict): Per seed, per model name, the :func:`cell_errors` of
            that seed's evaluation (the baseline is trained once and is
            the same in every seed).
        corruptions (list[str]): Corruptions of the report.
        severities (list[int]): Severities of the report.

    Returns:
        dict: ``seeds`` and per model (``models``): per seed its clean
        error and mean corruption error (percent), their means and sample
        standard deviations (ddof 1) and ranges; ``gfn_minus`` (per other
        model the per-seed differences of the mean corruption error in
        points, their mean, standard deviation and range).
    """
    seeds = sorted(runs)
    grid = [(c, s) for c in corruptions for s in severities]

    def describe(values: List[float]) -> dict:
        arr = np.asarray(values, dtype=np.float64)
        return dict(values=[float(v) for v in arr], mean=float(arr.mean()),
                    sd=float(arr.std(ddof=1)) if arr.size > 1 else None,
                    range=[float(arr.min()), float(arr.max())])

    mce = {name: [100 * float(np.mean([runs[s][name]['cells'][c]
                                        for c in grid])) for s in seeds]
           for name in runs[seeds[0]]}
    models = {
        name: dict(
            clean_error=describe([100 * runs[s][name]['clean_error']
                                  for s in seeds]),
            mean_corruption_error=describe(mce[name]))
        for name in mce
    }
    gfn_minus = {
        other: describe([g - o for g, o in zip(mce['gfn'], mce[other])])
        for other in mce if other != 'gfn'
    } if 'gfn' in mce else {}
    return dict(seeds=seeds, models=models, gfn_minus=gfn_minus)


def report(args, evals: dict, out_dir: str, seconds: float,
           num_classes: int, paired: Optional[Dict[str, dict]] = None,
           seeds: Optional[dict] = None) -> dict:
    """Write report.{md,json,png}; return the JSON content.

    Args:
        args (argparse.Namespace): ``corruptions``, ``severities``,
            ``epochs`` and ``finetune_epochs`` of the run.
        evals (dict): Per model name (``baseline``, ``plain``, ``gfn``,
            ``adv``), the :func:`cell_errors` of its evaluation.
        out_dir (str): Folder of the report files.
        seconds (float): Run time, for the report.
        num_classes (int): Classes of the task (its chance level).
        paired (dict, optional): Per other model, the
            :func:`~mmgfn.evaluation.robustness_sweep.compare_sweeps` of
            GFN against it. Defaults to None.
        seeds (dict, optional): :func:`seed_spread` of a run with several
            training seeds. Defaults to None.
    """
    full = (len(args.corruptions) == len(BENCHMARK_CORRUPTIONS)
            and len(args.severities) == 5)
    base = evals['baseline']
    models = {}
    for name, ev in evals.items():
        summary = summarize_corruption_errors(
            ev['cells'], baseline=base['cells'],
            corruptions=args.corruptions, severities=args.severities)
        models[name] = dict(
            label=LABELS[name],
            clean_accuracy=100 * (1 - ev['clean_error']),
            clean_error=100 * ev['clean_error'],
            mean_corruption_error=100 * summary['mean_corruption_error'],
            relative_mCE=summary['mCE'],
            relative_ce=summary['ce'],
            corruption_error={c: 100 * v
                              for c, v in summary['mean_error'].items()},
            num_corruptions=summary['num_corruptions'],
            num_cells=summary['num_cells'])
    stats = statistics(evals, args.corruptions, args.severities,
                       num_classes)
    for name, extra in stats.pop('models').items():
        models[name].update(extra)
    content = dict(
        dataset='scikit-learn digits, 1,348 train / 449 held-out, 32x32',
        corruptions=args.corruptions, severities=args.severities,
        complete_benchmark=full, epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, seconds=round(seconds),
        models=models, **stats)
    content['paired'] = {
        other: dict(sentence=comparison_sentence(r),
                    benchmark=r['benchmark'], num_differ=r['num_differ'],
                    num_gfn_less=r['num_a_less'],
                    num_gfn_more=r['num_a_more'], num_cells=r['num_cells'],
                    num_images=r['num_images'],
                    num_resamples=r['num_resamples'], seed=r['seed'])
        for other, r in (paired or {}).items()
    }
    content['seed_spread'] = seeds
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(content, f, indent=2)
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown(content))
    plot(content, osp.join(out_dir, 'report.png'))
    return content


def _ci(interval, signed: bool = False) -> str:
    fmt = '{:+.1f}' if signed else '{:.1f}'
    return '[' + ', '.join(fmt.format(v) for v in interval) + ']'


def _verdict(difference_ci) -> str:
    if difference_ci[1] < 0:
        return 'GFN errs less'
    if difference_ci[0] > 0:
        return 'GFN errs more'
    return 'not distinguishable'


def markdown(content: dict) -> str:
    models = content['models']
    cells = (f"{len(content['corruptions'])} corruptions x "
             f"{len(content['severities'])} severities")
    chance = set(content['chance_cells'])
    lines = [
        '# GFN on the digits: robustness report', '',
        f"Data: {content['dataset']}. Cells: {cells}"
        + ('' if content['complete_benchmark'] else
           ' (a reduced run, not the full 15 x 5 benchmark)') + '. '
        f"Baseline {content['epochs']} epochs; each fine-tuning "
        f"{content['finetune_epochs']} epochs. Run time "
        f"{content['seconds']} s.", '', '## Summary', '',
        '| model | clean accuracy % | clean error % [95 % CI] | '
        'mean corruption error % [95 % CI] | relative mCE (vs baseline) |',
        '|---|---|---|---|---|'
    ]
    for m in models.values():
        lines.append(f"| {m['label']} | {m['clean_accuracy']:.2f} | "
                     f"{m['clean_error']:.2f} {_ci(m['clean_error_ci95'])} | "
                     f"{m['mean_corruption_error']:.2f} "
                     f"{_ci(m['mean_corruption_error_ci95'])} | "
                     f"{m['relative_mCE']:.3f} |")
    lines += [
        '', 'Mean corruption error: error averaged over all corrupted '
        'cells. Relative mCE: mean over corruptions of sum_s err / '
        'sum_s err_baseline (< 1: more robust than the baseline). '
        '95 % CI: over the sampling of the held-out images (see "What a '
        'difference means").', '',
        '## Error relative to the baseline, per corruption', '',
        '| corruption | ' + ' | '.join(m['label'] for m in models.values())
        + ' | severities at chance level |', '|---|' + '---|' *
        (len(models) + 1)
    ]
    for c in content['corruptions']:
        at_chance = [str(s) for s in content['severities']
                     if f'{c}/{s}' in chance]
        lines.append(f'| {c} | ' + ' | '.join(
            f"{m['relative_ce'][c]:.3f} ({m['corruption_error'][c]:.1f} %)"
            for m in models.values()) + f" | {', '.join(at_chance) or '-'}"
            ' |')
    lines += ['', 'Each cell: CE relative to the baseline (mean error % '
              'over the severities). Severities at chance level: every '
              'model is at chance level there.', '']
    lines += _paired_section(content)
    lines += _seed_section(content)
    lines += _difference_section(content)
    lines += [
        '## Error per cell', '',
        '| cell | ' + ' | '.join(m['label'] for m in models.values())
        + ' | chance level |', '|---|' + '---|' * (len(models) + 1)
    ]
    for c in content['corruptions']:
        for s in content['severities']:
            name = f'{c}/{s}'
            lines.append(f'| {name} | ' + ' | '.join(
                f"{m['cells'][name]['error']:.1f} "
                f"{_ci(m['cells'][name]['ci95'])}"
                for m in models.values()) + ' | '
                + ('chance' if name in chance else '') + ' |')
    lines += ['', 'Each cell: error % [95 % Wilson interval]. chance: every '
              'model is at chance level.', '']
    return '\n'.join(lines)


def _paired_section(content: dict) -> list:
    """GFN against each other model, paired over the same images."""
    paired = content.get('paired') or {}
    if not paired:
        return []
    models = content['models']
    first = next(iter(paired.values()))
    lines = [
        '## Paired comparisons (same images)', '',
        'Both models see the same held-out images, so only the images where '
        'they disagree tell them apart. Per comparison: the difference of '
        'the mean corruption error (GFN minus the other model, points) and '
        'of the relative mCE with a paired bootstrap over images (95 %, '
        f"{first['num_resamples']} resamples of the {first['num_images']} "
        'images, every cell of a drawn image kept, seed '
        f"{first['seed']}); per cell the exact McNemar test, with Holm's "
        'correction over the cells (details: comparisons/gfn_vs_<model>/'
        'comparison.md and .png).', '',
        '| GFN vs | mean corruption error (points) [95 %] | relative mCE '
        '[95 %] | cells that differ (Holm 0.05): GFN better / worse |',
        '|---|---|---|---|'
    ]
    for other, d in paired.items():
        m, r = d['benchmark']['mean_corruption_error'], d['benchmark'].get(
            'mCE_vs_baseline')
        rel = ('-' if not r else f"{r['difference']:+.3f} "
               f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]")
        lines.append(
            f"| {models[other]['label']} | {100 * m['difference']:+.2f} "
            f"[{100 * m['ci'][0]:+.2f}, {100 * m['ci'][1]:+.2f}] | {rel} | "
            f"{d['num_gfn_less']} / {d['num_gfn_more']} of "
            f"{d['num_cells']} |")
    lines.append('')
    lines += [f"- vs {models[other]['label']}: {d['sentence']}"
              for other, d in paired.items()]
    return lines + ['']


def _seed_section(content: dict) -> list:
    """The spread between training seeds (``--seeds``)."""
    spread = content.get('seed_spread')
    if not spread:
        return []
    models, seeds = content['models'], spread['seeds']
    lines = [
        f'## Spread between training seeds ({len(seeds)} seeds: '
        f"{', '.join(map(str, seeds))})", '',
        'The fine-tunings repeated with each seed (the baseline is trained '
        'once). The paired intervals above cover the sampling of the '
        'images for one training run, not this spread.', '',
        '| model | clean error % mean (sd) [range] | mean corruption error '
        '% mean (sd) [range] |', '|---|---|---|'
    ]

    def cell(d: dict, signed: bool = False) -> str:
        f = '{:+.2f}' if signed else '{:.2f}'
        sd = '-' if d['sd'] is None else f"{d['sd']:.2f}"
        return (f.format(d['mean']) + f' ({sd}) [' +
                ', '.join(f.format(v) for v in d['range']) + ']')

    for name, d in spread['models'].items():
        lines.append(f"| {models[name]['label']} | {cell(d['clean_error'])}"
                     f" | {cell(d['mean_corruption_error'])} |")
    lines.append('')
    for other, d in spread['gfn_minus'].items():
        lines.append(f"- GFN minus {models[other]['label']}, mean corruption "
                     f'error per seed (points): '
                     + ', '.join(f'{v:+.2f}' for v in d['values'])
                     + f'; mean (sd) [range] {cell(d, True)}.')
    return lines + ['']


def _difference_section(content: dict) -> list:
    """The "What a difference means" section of the report."""
    models, chance = content['models'], content['chance_cells']
    num_cells = len(content['corruptions']) * len(content['severities'])
    first = next(iter(models.values()))['cells']
    num_images = next(iter(first.values()))['total'] if first else 0
    lines = [
        '## What a difference means', '',
        f'The intervals of this section cover the '
        f'sampling of the {num_images} held-out images, not the variation '
        'between training runs, and use only the integer counts of each '
        'cell (unpaired: they ignore that the models see the same images, '
        'which the paired comparisons above use). 95 % intervals from the '
        'integer counts of '
        'each cell: Wilson score intervals for one model\'s error, '
        'Newcombe\'s hybrid score intervals for the difference of two '
        'models\' errors (conservative: the models err on the same '
        'images), and for a mean over cells the mean of the cells\' bounds '
        '(conservative). A model is at chance level on a cell when its '
        'interval reaches the error of a uniform guess, 1 - 1/'
        f"{content['num_classes']} = {content['chance_error']:.1f} %.", '',
        f'Cells where every model is at chance level ({len(chance)} of '
        f'{num_cells}; they carry no signal and are left out of the cell '
        'counts below): ' + (', '.join(chance) or 'none') + '.', ''
    ]
    comparisons = content['comparisons']
    if not comparisons:
        return lines + ['No GFN model in this run: no comparison.', '']
    gfn = models['gfn']['label']
    lines += [
        f'{gfn} minus each other model (percentage points, 95 % interval; '
        'below 0: GFN errs less):', '',
        '| compared with | clean error | mean corruption error | '
        'mean over the informative cells | informative cells: GFN errs '
        'less / more / not distinguishable |', '|---|---|---|---|---|'
    ]
    for other, d in comparisons.items():
        n = d['num_informative_cells']
        less, more = len(d['gfn_errs_less']), len(d['gfn_errs_more'])
        informative = ('- (none)' if d['informative_mean_difference'] is None
                       else f"{d['informative_mean_difference']:+.2f} "
                       f"{_ci(d['informative_mean_difference_ci95'], True)}")
        lines.append(
            f"| {models[other]['label']} | "
            f"{d['clean_error_difference']:+.2f} "
            f"{_ci(d['clean_error_difference_ci95'], True)} | "
            f"{d['mean_corruption_error_difference']:+.2f} "
            f"{_ci(d['mean_corruption_error_difference_ci95'], True)} | "
            f"{informative} | {less} / {more} / {n - less - more} of {n} |")
    lines.append('')
    for other, d in comparisons.items():
        n = d['num_informative_cells']
        lines.append(
            f"- vs {models[other]['label']}: mean corruption error "
            f"{_verdict(d['mean_corruption_error_difference_ci95'])}; GFN "
            f"errs significantly less in {len(d['gfn_errs_less'])} and "
            f"more in {len(d['gfn_errs_more'])} of the {n} informative "
            f"cells ({len(chance)} chance-level cells left out)"
            + (f": less in {', '.join(d['gfn_errs_less'])}"
               if d['gfn_errs_less'] else '')
            + (f"; more in {', '.join(d['gfn_errs_more'])}"
               if d['gfn_errs_more'] else '') + '.')
    return lines + ['']


def plot(content: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    corruptions = content['corruptions']
    names = [n for n in content['models'] if n != 'baseline']
    x = np.arange(len(corruptions))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(corruptions) + 5), 4))
    for i, name in enumerate(names):
        m = content['models'][name]
        ax.bar(x + i * width - 0.4 + width / 2,
               [m['relative_ce'][c] for c in corruptions], width,
               label=f"{m['label']} (rel. mCE {m['relative_mCE']:.3f})")
    ax.axhline(1.0, color='k', lw=0.8, ls='--', label='baseline')
    values = [content['models'][n]['relative_ce'][c] for n in names
              for c in corruptions] or [1.0]
    ax.set_ylim(min(0.9, 0.05 * int(20 * min(values)) - 0.05),
                max(1.05, max(values) + 0.05))
    ax.set_xticks(x, corruptions, rotation=60, ha='right', fontsize=8)
    ax.set_ylabel('error relative to the baseline')
    ax.set_title('digits: corruption error of the fine-tuned models '
                 '(lower is better)')
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
