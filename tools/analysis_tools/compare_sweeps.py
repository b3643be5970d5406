"""Paired comparison of two classification robustness sweeps.

Both sweeps (``tools/test_robustness.py`` / ``tools/test.py`` work dirs or
their ``results.json``) must cover the same suite, cells and images; each
classification cell keeps which images the model got wrong, so the
comparison uses only the images where the two models disagree:

    python tools/analysis_tools/compare_sweeps.py A B [--baseline BASE] \\
        [--names GFN plain] [--out-dir DIR] [--resamples 1000] [--seed 0]

Writes ``DIR/comparison.{md,json,png}`` (default: ``A``'s folder) and
prints the one-sentence verdict. Per cell: the difference of errors, the
exact McNemar test and its exact interval, Holm's correction over the
corrupted cells; over the benchmark: the differences of the mean
corruption error and (with ``--baseline``) of the relative mCE, with a
paired bootstrap over images.
"""
import argparse
import os.path as osp
import sys

from mmgfn.evaluation.robustness_sweep import (compare_sweeps,
                                               comparison_sentence)
from mmgfn.utils.errors import ConfigError
from mmgfn.visualization import write_comparison


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('a', help='results.json (or work dir) of model A')
    parser.add_argument('b', help='results.json (or work dir) of model B')
    parser.add_argument('--baseline', help='results.json (or work dir) of '
                        'the baseline model of the relative mCE')
    parser.add_argument('--names', nargs=2, default=['A', 'B'],
                        metavar=('A', 'B'), help='labels of the two models')
    parser.add_argument('--out-dir', help='folder of comparison.{md,json,'
                        'png} (default: the folder of A)')
    parser.add_argument('--resamples', type=int, default=1000,
                        help='bootstrap resamples of the images (1000)')
    parser.add_argument('--seed', type=int, default=0,
                        help='bootstrap seed (0)')
    parser.add_argument('--alpha', type=float, default=0.05,
                        help='family-wise level of the per-cell tests')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        result = compare_sweeps(args.a, args.b, args.baseline,
                                num_resamples=args.resamples,
                                seed=args.seed, alpha=args.alpha,
                                names=tuple(args.names))
    except ConfigError as exc:
        sys.exit(f'compare_sweeps.py: {exc}')
    out = args.out_dir or (args.a if osp.isdir(args.a) else
                           osp.dirname(osp.abspath(args.a)))
    paths = write_comparison(result, out)
    print(comparison_sentence(result))
    print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
    main()
