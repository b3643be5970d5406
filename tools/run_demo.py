"""The main job: a complete GFN robustness experiment on real data, offline.

On scikit-learn's 1,797 real handwritten digits (10 classes, upsampled to
32x32 RGB so that imagecorruptions can corrupt them):

1. write them as PNG files (``data/digits``: 1,348 train / 449 held out);
2. train a baseline classifier (``configs/digits/resnet-tiny_1xb32_digits.py``)
   with ``tools/train.py``;
3. fine-tune the baseline three ways with the same schedule: plainly, with
   GFN (neighbour-targeted step + neighbour-weighted loss) and with the
   paper's untargeted "Adv." ablation (``configs/digits/{finetune,gfn,adv}_
   resnet-tiny_1xb32_digits.py``);
4. corrupt the held-out digits once with the 15 benchmark corruptions x 5
   severities (``tools/misc/generate_corrupted_dataset.py``, in parallel);
5. evaluate the four models on the clean and the 75 corrupted sets with
   ``tools/test_robustness.py --suite corrupt --corrupted-root``;
6. write a report (``<work-dir>/report.md``, ``report.json``,
   ``report.png``): clean accuracy, mean corruption error, and per
   corruption the error relative to the baseline (``CE_c = sum_s err /
   sum_s err_baseline``; their mean is the relative mCE of method.md), all
   computed by :func:`mmgfn.evaluation.functional.summarize_corruption_errors`;
   and what a difference means (below).

What a difference means. Every model is trained once (one seed): each
further seed would repeat the three fine-tunings (30 of the 36 training
epochs) and 228 of the 304 cell evaluations, so several seeds do not fit
15 minutes on 2 CPU cores. The report
gives instead, from each cell's integer ``wrong / total`` counts
(:mod:`mmgfn.evaluation.functional.intervals`), 95 % intervals over the
sampling of the held-out images:

* per model and cell, the Wilson score interval of the error; for the mean
  corruption error, the mean of the cells' bounds (conservative: exact only
  if every cell failed on the same images);
* for GFN against each other model, Newcombe's hybrid score interval of
  the difference of errors per cell (conservative on shared images, where
  the models' errors are positively correlated), and the mean of these
  bounds for the mean corruption error. GFN "errs less" on a cell only
  when the whole interval is below 0.

A model is at chance level on a cell when the upper end of its Wilson
interval reaches the error of a uniform guess, ``1 - 1 / C`` (90 % for the
10 digits; C is the number of class folders of ``<data>/val``). Cells
where every model is at chance level carry no signal: the report marks
them ("chance") and leaves them out of the per-cell counts of where GFN
errs less or more, and gives the mean difference both over all cells (the
benchmark's definition) and over the informative ones. The intervals do
not cover the variation between training seeds.

Usage::

    python tools/run_demo.py [--work-dir work_dirs/demo] [--data data/digits]

About 7 minutes on 2 CPU cores. ``--epochs``, ``--finetune-epochs``,
``--corruptions`` and ``--severities`` shrink it (the test suite runs it
that way); a reduced run's report says which cells it covers.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmgfn.datasets.transforms.corruption import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation.functional import (chance_error, chance_level_cells,
                                         difference_interval, mean_interval,
                                         summarize_corruption_errors,
                                         wilson_interval)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIGS = {
    'baseline': 'configs/digits/resnet-tiny_1xb32_digits.py',
    'plain': 'configs/digits/finetune_resnet-tiny_1xb32_digits.py',
    'gfn': 'configs/digits/gfn_resnet-tiny_1xb32_digits.py',
    'adv': 'configs/digits/adv_resnet-tiny_1xb32_digits.py',
}
LABELS = {
    'baseline': 'baseline (no fine-tuning)',
    'plain': 'plain fine-tuning',
    'gfn': 'GFN fine-tuning',
    'adv': 'Adv. fine-tuning (untargeted)',
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/digits')
    parser.add_argument('--epochs', type=int, default=6,
                        help='baseline training epochs (default 6)')
    parser.add_argument('--finetune-epochs', type=int, default=10,
                        help='fine-tuning epochs of each variant (10)')
    parser.add_argument('--corruptions', nargs='+',
                        default=list(BENCHMARK_CORRUPTIONS),
                        choices=BENCHMARK_CORRUPTIONS)
    parser.add_argument('--severities', nargs='+', type=int,
                        default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5])
    parser.add_argument('--workers', type=int, default=2,
                        help='processes that corrupt the images (2)')
    return parser.parse_args()


class Progress:
    """Numbered steps with elapsed time."""

    def __init__(self, total: int) -> None:
        self.total, self.step, self.start = total, 0, time.time()

    def __call__(self, what: str) -> None:
        self.step += 1
        print(f'\n[{self.step}/{self.total}] {what} '
              f'({time.time() - self.start:.0f} s elapsed)', flush=True)


def run(cmd: list) -> None:
    print('+ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def run_quiet(cmd: list, log: str, show: tuple = ()) -> None:
    """Run ``cmd`` with its output in ``log``, echoing the lines that
    contain one of ``show``; on failure print the log's tail and stop."""
    log = osp.join(ROOT, log)
    os.makedirs(osp.dirname(log), exist_ok=True)
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            f.write(line)
            if any(s in line for s in show):
                print('    ' + line.rstrip().split(' - INFO - ')[-1],
                      flush=True)
        proc.wait()
    if proc.returncode:
        with open(log) as f:
            sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f'run_demo.py: {cmd[1]} failed (see {log})')


def data_options(data: str) -> list:
    return [
        f'{loader}.dataset.data_root={data}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]


def train(name: str, args, work_dir: str, epochs: int,
          load_from: str = None) -> str:
    """Train one model quietly (log in its work dir); its checkpoint."""
    opts = data_options(args.data) + [
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.T_max={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
    ]
    if load_from:
        opts.append(f'load_from={load_from}')
    cmd = [sys.executable, 'tools/train.py', CONFIGS[name], '--work-dir',
           work_dir, '--cfg-options', *opts]
    print(f'  {LABELS[name]}: {epochs} epochs, log in {work_dir}/train.log',
          flush=True)
    run_quiet(cmd, osp.join(work_dir, 'train.log'),
              ('Epoch(val)', 'neighbour table'))
    return osp.join(work_dir, f'epoch_{epochs}.pth')


def cell_errors(results_file: str) -> dict:
    """The errors and counts of a ``results.json`` of test_robustness.py.

    Returns:
        dict: ``cells`` (``{(corruption, severity): error}``, errors in
        [0, 1]), ``counts`` (``{(corruption, severity): (wrong, total)}``),
        ``clean_error`` and ``clean_counts`` (severity 0).
    """
    path = osp.join(ROOT, results_file)
    with open(path) as f:
        results = json.load(f)
    cells, counts, clean, clean_counts = {}, {}, None, None
    for r in results['cells']:
        if 'wrong' not in r or 'total' not in r:
            raise SystemExit(
                f'run_demo.py: {path}: cell {r["corruption"]}/'
                f'{r["severity"]} has no "wrong"/"total" counts')
        pair = (int(r['wrong']), int(r['total']))
        if r['severity'] == 0:
            clean, clean_counts = r['value'], pair
        else:
            cells[(r['corruption'], r['severity'])] = r['value']
            counts[(r['corruption'], r['severity'])] = pair
    return dict(cells=cells, counts=counts, clean_error=clean,
                clean_counts=clean_counts)


def count_classes(data: str) -> int:
    """Number of class folders of ``<data>/val`` (the evaluated split)."""
    val = osp.join(ROOT, data, 'val')
    return len([d for d in os.listdir(val) if osp.isdir(osp.join(val, d))])


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


def report(args, evals: dict, out_dir: str, seconds: float,
           num_classes: int) -> dict:
    """Write report.{md,json,png}; return the JSON content.

    Args:
        args (argparse.Namespace): ``corruptions``, ``severities``,
            ``epochs`` and ``finetune_epochs`` of the run.
        evals (dict): Per model name (``baseline``, ``plain``, ``gfn``,
            ``adv``), the :func:`cell_errors` of its evaluation.
        out_dir (str): Folder of the report files.
        seconds (float): Run time, for the report.
        num_classes (int): Classes of the task (its chance level).
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


def _difference_section(content: dict) -> list:
    """The "What a difference means" section of the report."""
    models, chance = content['models'], content['chance_cells']
    num_cells = len(content['corruptions']) * len(content['severities'])
    first = next(iter(models.values()))['cells']
    num_images = next(iter(first.values()))['total'] if first else 0
    lines = [
        '## What a difference means', '',
        f'Every model is trained once (one seed); the intervals cover the '
        f'sampling of the {num_images} held-out images, not the variation '
        'between training runs. 95 % intervals from the integer counts of '
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


def main() -> None:
    args = parse_args()
    start = time.time()
    py = sys.executable
    step = Progress(6)
    work = args.work_dir

    step('data: scikit-learn digits as 32x32 PNG files')
    if not osp.isdir(osp.join(ROOT, args.data, 'train')):
        run([py, 'tools/dataset_converters/digits_to_imagefolder.py',
             args.data])
    else:
        print(f'  {args.data} exists')

    step('train the baseline classifier')
    ckpts = {'baseline': train('baseline', args, osp.join(work, 'baseline'),
                               args.epochs)}

    step('fine-tune the baseline: plain, GFN, Adv.')
    for name in ('plain', 'gfn', 'adv'):
        ckpts[name] = train(name, args, osp.join(work, name),
                            args.finetune_epochs, ckpts['baseline'])

    step(f'corrupt the held-out digits ({len(args.corruptions)} corruptions '
         f'x {len(args.severities)} severities)')
    corrupted = osp.join(work, 'digits-c')
    run([py, 'tools/misc/generate_corrupted_dataset.py',
         osp.join(args.data, 'val'), corrupted, '--workers',
         str(args.workers), '--corruptions', *args.corruptions,
         '--severities', *map(str, args.severities)])

    step('evaluate clean and corrupted accuracy of the four models')
    evals = {}
    for name, ckpt in ckpts.items():
        out = osp.join(work, 'robustness', name)
        cmd = [py, 'tools/test_robustness.py', CONFIGS[name], ckpt,
               '--suite', 'corrupt', '--corrupted-root', corrupted,
               '--corruptions', *args.corruptions, '--severities', '0',
               *map(str, args.severities), '--work-dir', out,
               '--allow-partial', '--cfg-options', *data_options(args.data),
               'test_dataloader.num_workers=0']
        print(f'  {LABELS[name]}: log in {out}/run.log', flush=True)
        run_quiet(cmd, osp.join(out, 'run.log'), ('cell ', 'summary'))
        evals[name] = cell_errors(osp.join(out, 'results.json'))

    step('report')
    content = report(args, evals, osp.join(ROOT, work),
                     time.time() - start, count_classes(args.data))
    print(markdown(content))
    print(f'demo finished in {time.time() - start:.0f} s: '
          f'{work}/report.md, report.json, report.png')


if __name__ == '__main__':
    main()
