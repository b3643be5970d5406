"""The main job: train and evaluate a classifier on real data, offline.

Writes scikit-learn's handwritten digits as PNG files (``data/digits``),
trains ``configs/digits/resnet-tiny_1xb32_digits.py`` with ``tools/train.py``
and evaluates the last checkpoint with ``tools/test.py``. Runs on 2 CPU
cores in a few minutes; no download.

Usage: python tools/run_demo.py [--work-dir work_dirs/demo] [--data data/digits]
"""
import argparse
import json
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'digits', 'resnet-tiny_1xb32_digits.py')


def run(cmd: list) -> None:
    print('+ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/digits')
    args = parser.parse_args()
    py = sys.executable
    if not osp.isdir(osp.join(ROOT, args.data, 'train')):
        run([py, 'tools/dataset_converters/digits_to_imagefolder.py',
             args.data])
    data_opts = [
        f'{loader}.dataset.data_root={args.data}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]
    run([py, 'tools/train.py', CONFIG, '--work-dir', args.work_dir,
         '--cfg-options', *data_opts])
    with open(osp.join(ROOT, args.work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    metrics_file = osp.join(args.work_dir, 'test_metrics.json')
    run([py, 'tools/test.py', CONFIG, ckpt, '--work-dir', args.work_dir,
         '--out-metrics', metrics_file, '--cfg-options', *data_opts])
    with open(osp.join(ROOT, metrics_file)) as f:
        metrics = json.load(f)
    print(f'demo finished: top-1 accuracy on the held-out digits '
          f'{metrics["accuracy/top1"]:.2f}% ({metrics_file})')


if __name__ == '__main__':
    main()
