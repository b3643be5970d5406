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
   computed by :func:`mmgfn.evaluation.functional.summarize_corruption_errors`.

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
from mmgfn.evaluation.functional import summarize_corruption_errors

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
    """``{(corruption, severity): error}`` and the clean error."""
    with open(osp.join(ROOT, results_file)) as f:
        results = json.load(f)
    cells, clean = {}, None
    for r in results['cells']:
        if r['severity'] == 0:
            clean = r['value']
        else:
            cells[(r['corruption'], r['severity'])] = r['value']
    return dict(cells=cells, clean_error=clean)


def report(args, evals: dict, out_dir: str, seconds: float) -> dict:
    """Write report.{md,json,png}; return the JSON content."""
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
    content = dict(
        dataset='scikit-learn digits, 1,348 train / 449 held-out, 32x32',
        corruptions=args.corruptions, severities=args.severities,
        complete_benchmark=full, epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, seconds=round(seconds),
        models=models)
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(content, f, indent=2)
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown(content))
    plot(content, osp.join(out_dir, 'report.png'))
    return content


def markdown(content: dict) -> str:
    models = content['models']
    cells = (f"{len(content['corruptions'])} corruptions x "
             f"{len(content['severities'])} severities")
    lines = [
        '# GFN on the digits: robustness report', '',
        f"Data: {content['dataset']}. Cells: {cells}"
        + ('' if content['complete_benchmark'] else
           ' (a reduced run, not the full 15 x 5 benchmark)') + '. '
        f"Baseline {content['epochs']} epochs; each fine-tuning "
        f"{content['finetune_epochs']} epochs. Run time "
        f"{content['seconds']} s.", '', '## Summary', '',
        '| model | clean accuracy % | mean corruption error % | '
        'relative mCE (vs baseline) |', '|---|---|---|---|'
    ]
    for m in models.values():
        lines.append(f"| {m['label']} | {m['clean_accuracy']:.2f} | "
                     f"{m['mean_corruption_error']:.2f} | "
                     f"{m['relative_mCE']:.3f} |")
    lines += [
        '', 'Mean corruption error: error averaged over all corrupted '
        'cells. Relative mCE: mean over corruptions of sum_s err / '
        'sum_s err_baseline (< 1: more robust than the baseline).', '',
        '## Error relative to the baseline, per corruption', '',
        '| corruption | ' + ' | '.join(m['label'] for m in models.values())
        + ' |', '|---|' + '---|' * len(models)
    ]
    for c in content['corruptions']:
        lines.append(f'| {c} | ' + ' | '.join(
            f"{m['relative_ce'][c]:.3f} ({m['corruption_error'][c]:.1f} %)"
            for m in models.values()) + ' |')
    lines += ['', 'Each cell: CE relative to the baseline (mean error % '
              'over the severities).', '']
    return '\n'.join(lines)


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
    content = report(args, evals, osp.join(ROOT, work), time.time() - start)
    print(markdown(content))
    print(f'demo finished in {time.time() - start:.0f} s: '
          f'{work}/report.md, report.json, report.png')


if __name__ == '__main__':
    main()
