"""Convert ExDark (low-light images, bbGt text annotations) to COCO json.

Usage::

    python tools/dataset_converters/exdark_to_coco.py data/exdark \\
        [--out data/exdark/exdark_coco.json] [--img-dir images] \\
        [--ann-dir annotations] \\
        [--split-file data/exdark/imageclasslist.txt --split test] \\
        [--skip-invalid] [--keep-empty] [--clip-boxes]

The json's ``file_name`` entries (``<Class>/<img>``) are relative to
``<DATA_ROOT>/<img-dir>``. Boxes are ``[left, top, width, height]`` in the
pixels of the image as stored (no EXIF rotation); see
:mod:`mmgfn.datasets.converters.exdark`. Bad annotations (unknown class, box
outside the image, annotation without image, image without annotation) are
all listed with file and line, and nothing is written, unless
``--skip-invalid`` drops the images concerned (still listing them). Files are
decoded strictly as UTF-8 (a byte-order mark is allowed) and must start with
``% bbGt version=3``. A file without objects (0 bytes or header only) is
refused unless ``--keep-empty``; a box over the image border is refused
unless ``--clip-boxes`` clips it (each clip listed on stderr).
"""
import argparse
import os.path as osp

from mmgfn.datasets.converters import EXDARK_CLASSES, convert_exdark
from mmgfn.datasets.converters.common import (ANNOTATION_SWITCHES,
                                              print_conversion_summary)
from mmgfn.apis.cli import flag_wording, run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='the ExDark folder')
    parser.add_argument(
        '--out',
        help='output json (default: <data_root>/exdark_coco.json, or '
        'exdark_<split>_coco.json with --split)')
    parser.add_argument('--img-dir', default='images')
    parser.add_argument('--ann-dir', default='annotations')
    parser.add_argument(
        '--split-file',
        help="ExDark's imageclasslist.txt (5th column: 1 train, 2 val, "
        '3 test)')
    parser.add_argument('--split', choices=['train', 'val', 'test'])
    for name, what in ANNOTATION_SWITCHES.items():
        parser.add_argument(
            '--' + name.replace('_', '-'), action='store_true', help=what)
    args = parser.parse_args()
    if (args.split is None) != (args.split_file is None):
        parser.error('--split and --split-file go together')
    return args


def main() -> None:
    args = parse_args()
    name = f'exdark_{args.split}_coco.json' if args.split else \
        'exdark_coco.json'
    out = args.out or osp.join(args.data_root, name)
    coco = convert_exdark(args.data_root, out, args.img_dir, args.ann_dir,
                          args.split_file, args.split, args.skip_invalid,
                          args.keep_empty, args.clip_boxes)
    print_conversion_summary(
        coco, EXDARK_CLASSES, out,
        lambda problem: flag_wording(problem, ANNOTATION_SWITCHES))


if __name__ == '__main__':
    run_cli(main, flags=tuple(ANNOTATION_SWITCHES))
