"""The main job: a complete GFN robustness experiment on real data, offline.

On scikit-learn's 1,797 real handwritten digits (32x32 RGB PNG files in
``data/digits``: 1,348 train / 449 held out) it trains a baseline
classifier (``configs/digits/resnet-tiny_1xb32_digits.py``), fine-tunes it
three ways with the same schedule (plainly, with GFN and with the paper's
untargeted "Adv." ablation: ``configs/digits/{finetune,gfn,adv}_resnet-
tiny_1xb32_digits.py``), corrupts the held-out digits once with the 15
benchmark corruptions x 5 severities, evaluates the four models on the
clean and the 75 corrupted sets (``tools/test_robustness.py --suite
corrupt --corrupted-root``) and writes ``<work-dir>/report.{md,json,png}``
and ``<work-dir>/comparisons/gfn_vs_<model>/``: what they hold is
:func:`mmgfn.apis.demo_report.write_demo_report`'s. The tools run in this
process, one after the other, each stage's output in its log file.

``--seeds N`` repeats the three fine-tunings with the training seeds
1..N-1 besides 0 (the baseline is trained once) and reports the spread
between seeds beside the paired intervals, which cover the sampling of the
images only.

Usage::

    python tools/run_demo.py [--work-dir work_dirs/demo] [--data data/digits]
        [--seeds N]

7 to 15 minutes on 2 CPU cores. ``--epochs``, ``--finetune-epochs``,
``--corruptions`` and ``--severities`` shrink it (the test suite runs it
that way); a reduced run's report says which cells it covers. Relative
paths are relative to the repository root.
"""
import argparse
import os
import os.path as osp
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

from mmgfn.apis.demo_report import (LABELS, cell_errors, markdown,
                                    write_demo_report)
from mmgfn.apis.tool_runner import StageOutput, run_tool
from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIGS = {
    'baseline': 'configs/digits/resnet-tiny_1xb32_digits.py',
    'plain': 'configs/digits/finetune_resnet-tiny_1xb32_digits.py',
    'gfn': 'configs/digits/gfn_resnet-tiny_1xb32_digits.py',
    'adv': 'configs/digits/adv_resnet-tiny_1xb32_digits.py',
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
    parser.add_argument('--seeds', type=int, default=1,
                        help='training seeds of the fine-tunings (1; more '
                        'report the spread between seeds)')
    return parser.parse_args()


def data_options(data: str) -> list:
    return [f'{loader}_dataloader.dataset.data_root={data}'
            for loader in ('train', 'val', 'test')]


def train(name: str, args, work_dir: str, epochs: int,
          load_from: str = None, seed: int = 0) -> str:
    """Train one model quietly (log in its work dir); its checkpoint."""
    opts = data_options(args.data) + [
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.T_max={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
    ]
    if load_from:
        opts.append(f'load_from={load_from}')
    if seed:
        opts.append(f'randomness.seed={seed}')
    print(f'  {LABELS[name]}: {epochs} epochs, log in {work_dir}/train.log',
          flush=True)
    run_tool('tools/train.py',
             [CONFIGS[name], '--work-dir', work_dir, '--cfg-options', *opts],
             osp.join(work_dir, 'train.log'),
             ('Epoch(val)', 'neighbour table'))
    return osp.join(work_dir, f'epoch_{epochs}.pth')


def evaluate(name: str, ckpt: str, args, out: str, corrupted: str) -> dict:
    """The sweep of one model (log in ``out``); its :func:`cell_errors`."""
    print(f'  {LABELS[name]}: log in {out}/run.log', flush=True)
    run_tool('tools/test_robustness.py', [
        CONFIGS[name], ckpt, '--suite', 'corrupt', '--corrupted-root',
        corrupted, '--corruptions', *args.corruptions, '--severities', '0',
        *args.severities, '--work-dir', out, '--allow-partial',
        '--cfg-options', *data_options(args.data),
        'test_dataloader.num_workers=0'
    ], osp.join(out, 'run.log'), ('cell ', 'summary'))
    return cell_errors(osp.join(out, 'results.json'))


def main() -> None:
    args = parse_args()
    start, work, done = time.time(), args.work_dir, []

    def step(what: str) -> None:  # numbered steps with elapsed time
        done.append(what)
        print(f'\n[{len(done)}/6] {what} ({time.time() - start:.0f} s '
              'elapsed)', flush=True)

    # paths are relative to the repository root, wherever the demo starts
    os.chdir(ROOT)

    step('data: scikit-learn digits as 32x32 PNG files')
    if not osp.isdir(osp.join(args.data, 'train')):
        run_tool('tools/dataset_converters/digits_to_imagefolder.py',
                 [args.data])
    else:
        print(f'  {args.data} exists')

    step('train the baseline classifier')
    ckpts = {'baseline': train('baseline', args, osp.join(work, 'baseline'),
                               args.epochs)}

    seeds = list(range(max(args.seeds, 1)))
    step('fine-tune the baseline: plain, GFN, Adv.'
         + (f' (seeds {", ".join(map(str, seeds))})' if seeds[1:] else ''))
    runs = {s: dict(ckpts) for s in seeds}
    for s in seeds:
        sub = osp.join(work, f'seed{s}') if s else work
        for name in ('plain', 'gfn', 'adv'):
            runs[s][name] = train(name, args, osp.join(sub, name),
                                  args.finetune_epochs, ckpts['baseline'], s)

    step(f'corrupt the held-out digits ({len(args.corruptions)} corruptions '
         f'x {len(args.severities)} severities)')
    corrupted = osp.join(work, 'digits-c')
    run_tool('tools/misc/generate_corrupted_dataset.py', [
        osp.join(args.data, 'val'), corrupted, '--workers', args.workers,
        '--corruptions', *args.corruptions, '--severities', *args.severities
    ])

    step('evaluate clean and corrupted accuracy of the four models')
    evals = {s: {} for s in seeds}
    for s in seeds:
        root = osp.join(work, f'seed{s}' if s else '', 'robustness')
        for name, ckpt in runs[s].items():
            if s and name == 'baseline':
                evals[s][name] = evals[0][name]
                continue
            evals[s][name] = evaluate(name, ckpt, args, osp.join(root, name),
                                      corrupted)

    step('report')
    sweeps = {n: osp.join(work, 'robustness', n) for n in CONFIGS}
    content = write_demo_report(args, evals, sweeps, work, start)
    print(markdown(content))
    print(f'demo finished in {time.time() - start:.0f} s: '
          f'{work}/report.md, report.json, report.png, comparisons/')


if __name__ == '__main__':
    cwd = os.getcwd()
    with redirect_stdout(StageOutput(sys.stdout)), \
            redirect_stderr(StageOutput(sys.stderr)):
        try:
            main()
        finally:
            os.chdir(cwd)
