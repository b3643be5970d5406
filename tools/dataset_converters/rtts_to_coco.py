"""Convert RTTS (RESIDE's real hazy test set, VOC XML) to one COCO json.

Usage::

    python tools/dataset_converters/rtts_to_coco.py data/rtts \\
        [--out data/rtts/rtts_coco.json] [--ann-dir Annotations] \\
        [--img-dir JPEGImages] [--skip-invalid] [--keep-empty] \\
        [--clip-boxes]

The json's ``file_name`` entries are relative to ``<DATA_ROOT>/<img-dir>``
and keep each image's real extension. Boxes follow mmdet's VOC loader
(1-based inclusive corners minus 1); see :mod:`mmgfn.datasets.converters.rtts`.
Bad annotations (unknown class, box outside the image, image not found) are
all listed with file and line, and nothing is written, unless
``--skip-invalid`` drops the images concerned (still listing them). Image
sizes are read from the images (not from ``<size>``); a file with an image
extension that is not an image, and an image named by two XML files, are
refused. An XML file without ``<object>`` is refused unless ``--keep-empty``;
a box over the image border is refused unless ``--clip-boxes`` clips it
(each clip listed on stderr).
"""
import argparse
import os.path as osp

from mmgfn.datasets.converters import RTTS_CLASSES, convert_rtts
from mmgfn.datasets.converters.common import (ANNOTATION_SWITCHES,
                                              print_conversion_summary)
from mmgfn.apis.cli import flag_wording, run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='the RTTS folder')
    parser.add_argument(
        '--out', help='output json (default: <data_root>/rtts_coco.json)')
    parser.add_argument('--ann-dir', default='Annotations')
    parser.add_argument('--img-dir', default='JPEGImages')
    for name, what in ANNOTATION_SWITCHES.items():
        parser.add_argument(
            '--' + name.replace('_', '-'), action='store_true', help=what)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = args.out or osp.join(args.data_root, 'rtts_coco.json')
    coco = convert_rtts(args.data_root, out, args.ann_dir, args.img_dir,
                        args.skip_invalid, args.keep_empty, args.clip_boxes)
    print_conversion_summary(
        coco, RTTS_CLASSES, out,
        lambda problem: flag_wording(problem, ANNOTATION_SWITCHES))


if __name__ == '__main__':
    run_cli(main, flags=tuple(ANNOTATION_SWITCHES))
