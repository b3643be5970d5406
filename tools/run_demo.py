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
   ``report.png``; :mod:`mmgfn.apis.demo_report`): clean accuracy, mean
   corruption error and per corruption the error relative to the baseline
   (``CE_c = sum_s err / sum_s err_baseline``; their mean is the relative
   mCE of method.md); GFN against each other model by the paired analysis
   of the same images (:func:`mmgfn.evaluation.robustness_sweep.
   compare_sweeps`: exact McNemar per cell with Holm's correction, paired
   bootstrap over images for the mean corruption error and the relative
   mCE; ``<work-dir>/comparisons/gfn_vs_<model>/comparison.{md,json,png}``)
   with one sentence per comparison; Wilson intervals per model and the
   cells where every model is at chance level (``1 - 1 / C`` error).

Every model is trained once by default. ``--seeds N`` repeats the three
fine-tunings with the training seeds 1..N-1 besides 0 (the baseline is
trained once) and reports the spread between seeds beside the paired
intervals, which cover the sampling of the images only; each further seed
repeats the three fine-tunings and three of the four sweeps (most of a
run).

Usage::

    python tools/run_demo.py [--work-dir work_dirs/demo] [--data data/digits]
        [--seeds N]

7 to 15 minutes on 2 CPU cores (idle or shared). ``--epochs``, ``--finetune-epochs``,
``--corruptions`` and ``--severities`` shrink it (the test suite runs it
that way); a reduced run's report says which cells it covers.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

from mmgfn.apis.demo_report import (LABELS, cell_errors, markdown, report,
                                    seed_spread)
from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation.robustness_sweep import compare_sweeps
from mmgfn.visualization import write_comparison

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
    cmd = [sys.executable, 'tools/train.py', CONFIGS[name], '--work-dir',
           work_dir, '--cfg-options', *opts]
    print(f'  {LABELS[name]}: {epochs} epochs, log in {work_dir}/train.log',
          flush=True)
    run_quiet(cmd, osp.join(work_dir, 'train.log'),
              ('Epoch(val)', 'neighbour table'))
    return osp.join(work_dir, f'epoch_{epochs}.pth')


def count_classes(data: str) -> int:
    """Number of class folders of ``<data>/val`` (the evaluated split)."""
    val = osp.join(ROOT, data, 'val')
    return len([d for d in os.listdir(val) if osp.isdir(osp.join(val, d))])


def evaluate(name: str, ckpt: str, args, out: str, corrupted: str) -> dict:
    """The sweep of one model (log in ``out``); its :func:`cell_errors`."""
    cmd = [sys.executable, 'tools/test_robustness.py', CONFIGS[name], ckpt,
           '--suite', 'corrupt', '--corrupted-root', corrupted,
           '--corruptions', *args.corruptions, '--severities', '0',
           *map(str, args.severities), '--work-dir', out, '--allow-partial',
           '--cfg-options', *data_options(args.data),
           'test_dataloader.num_workers=0']
    print(f'  {LABELS[name]}: log in {out}/run.log', flush=True)
    run_quiet(cmd, osp.join(out, 'run.log'), ('cell ', 'summary'))
    return cell_errors(osp.join(ROOT, out, 'results.json'))


def compare(work: str, root: str) -> dict:
    """GFN against each other model of the sweeps under ``root``, paired
    over the images; the files in ``<work>/comparisons``."""
    sweep = {n: osp.join(ROOT, root, n) for n in CONFIGS}
    paired = {}
    for other in ('baseline', 'plain', 'adv'):
        paired[other] = compare_sweeps(
            sweep['gfn'], sweep[other], baseline=sweep['baseline'],
            names=('GFN', LABELS[other]))
        out = osp.join(ROOT, work, 'comparisons', f'gfn_vs_{other}')
        write_comparison(paired[other], out)
    return paired


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
    run([py, 'tools/misc/generate_corrupted_dataset.py',
         osp.join(args.data, 'val'), corrupted, '--workers',
         str(args.workers), '--corruptions', *args.corruptions,
         '--severities', *map(str, args.severities)])

    step('evaluate clean and corrupted accuracy of the four models')
    evals = {s: {} for s in seeds}
    for s in seeds:
        root = osp.join(work, f'seed{s}' if s else '', 'robustness')
        for name, ckpt in runs[s].items():
            if s and name == 'baseline':
                evals[s][name] = evals[0][name]
                continue
            evals[s][name] = evaluate(name, ckpt, args,
                                      osp.join(root, name), corrupted)

    step('report')
    paired = compare(work, osp.join(work, 'robustness'))
    spread = seed_spread(evals, args.corruptions, args.severities) \
        if seeds[1:] else None
    content = report(args, evals[0], osp.join(ROOT, work),
                     time.time() - start, count_classes(args.data), paired,
                     spread)
    print(markdown(content))
    print(f'demo finished in {time.time() - start:.0f} s: '
          f'{work}/report.md, report.json, report.png, comparisons/')


if __name__ == '__main__':
    main()
