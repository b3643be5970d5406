"""Write the COCO json of mmdet's Cityscapes (and Foggy Cityscapes) configs.

Usage::

    python tools/dataset_converters/cityscapes_to_coco.py data/cityscapes \\
        [--out-dir data/cityscapes/annotations] [--splits train val] \\
        [--img-dir leftImg8bit] [--gt-dir gtFine] [--nproc 8]

Writes ``<out-dir>/instancesonly_filtered_gtFine_<split>.json``, the files
mmdet's ``cityscapes_detection.py`` base config and mmgfn's
``configs/_base_/datasets/foggy_cityscapes.py`` read, as mmdet's
``tools/dataset_converters/cityscapes.py`` (mmdetection repository, not in
the wheel) does, without needing ``cityscapesscripts``. Foggy Cityscapes
needs no json of its own: the same json with images from
``leftImg8bit_foggy/`` (see ``mmgfn.FoggyCityscapesDataset``).

Testing a detector needs only the validation split: with only
``leftImg8bit/val`` and ``gtFine/val`` downloaded, run::

    python tools/dataset_converters/cityscapes_to_coco.py data/cityscapes \
        --splits val

Image and annotation ids start at 1 (pycocotools reads a match to id 0 as
no match). Nothing is written unless every split converts: an unreadable
``*_gtFine_instanceIds.png`` is named in a one-line error and no json (of
any split) is written or replaced.
"""
import argparse
import json

from mmgfn.datasets.converters import convert_cityscapes
from mmgfn.apis.cli import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='the Cityscapes folder')
    parser.add_argument(
        '--out-dir', help='output folder (default: <data_root>/annotations)')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train', 'val'],
        help='splits to convert (default: train val); "--splits val" is '
        'enough to test a detector')
    parser.add_argument('--img-dir', default='leftImg8bit')
    parser.add_argument('--gt-dir', default='gtFine')
    parser.add_argument('--nproc', type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    written = convert_cityscapes(args.data_root, args.out_dir, args.splits,
                                 args.img_dir, args.gt_dir, args.nproc)
    for split, path in written.items():
        with open(path) as f:
            coco = json.load(f)
        print(f'{split}: wrote {len(coco["images"])} images and '
              f'{len(coco["annotations"])} objects to {path}')


if __name__ == '__main__':
    run_cli(main, flags=('splits', ))
