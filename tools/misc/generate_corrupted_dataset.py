"""Pre-generate corrupted copies of an image folder, in parallel, resumably.

The ImageNet-C / COCO-C corruptions of ``mmgfn.ImageCorruption``, written
once so that evaluations read files instead of corrupting on the fly.

Usage::

    python tools/misc/generate_corrupted_dataset.py SRC_IMG_DIR OUT_DIR \\
        [--corruptions gaussian_noise ... | all | benchmark] \\
        [--severities 1 2 3 4 5] [--workers N] [--ann-file COCO_JSON] \\
        [--seed 0] [--seed-path-root DIR] \\
        [--color-type color|color_ignore_orientation] [--jpeg-quality Q] \\
        [--backend imagecorruptions|torch] [--device cpu|cuda]

ImageNet-C by the reference recipe of the released files (resize 256,
center-crop 224, corrupt, uint8, JPEG quality 85; see
``mmgfn.datasets.imagenet_c.regenerate_imagenet_c``)::

    python tools/misc/generate_corrupted_dataset.py data/imagenet/val \\
        data/imagenet-c-regen --recipe imagenet-c --workers 16

Writes ``OUT_DIR/<corruption>/<severity>/<path under SRC_IMG_DIR>``, the
layout the robustness tools read with ``--corrupted-root``; e.g. for COCO-C::

    python tools/misc/generate_corrupted_dataset.py data/coco/val2017 \\
        data/coco-c --workers 16 \\
        --ann-file data/coco/annotations/instances_val2017.json

Each file holds the pixels that ``mmgfn.ImageCorruption`` with the same
``--seed`` gives on the fly for the image path
``<seed-path-root>/<relative path>`` (default root: SRC_IMG_DIR as typed),
as lossless PNG data under the source's own file name (``--jpeg-quality``
re-encodes ``.jpg`` sources as JPEG instead: smaller files, slightly
different pixels; ``--recipe imagenet-c`` loads and writes every file by the
recipe instead). A rerun, recipe or not, skips the files already written and
complete (signature and end marker checked; 0-byte or cut-short files are
redone) and removes the ``*.part`` files of killed runs, so an interrupted
run resumes where it stopped. A failed write (e.g. a full disk) stops the
run at once with one error line naming the file (exit status 2); workers
exit when the tool is killed. Ends with a summary line with the images/s;
images that could not be corrupted are listed and the exit status is 2.

Full COCO-C (5,000 images x 75 variants) takes about 8 CPU-seconds per image
and about 155 GB as lossless PNG (the default, pixel-exact with corrupting
on the fly), or about 26 GB with ``--jpeg-quality 85``.
"""
import argparse
import os

from mmgfn.datasets.corruption_generation import (GenerationSummary,
                                                  generate_corrupted_images)
from mmgfn.datasets.transforms.corruption import (ALL_CORRUPTIONS, BACKENDS,
                                                  BENCHMARK_CORRUPTIONS)
from mmgfn.apis.cli import run_cli
from mmgfn.utils.errors import ConfigError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src_img_dir', help='folder of the clean images')
    parser.add_argument('out_dir', help='output root')
    parser.add_argument(
        '--corruptions',
        nargs='+',
        default=['benchmark'],
        help='corruption names, or "benchmark" (the 15 of ImageNet-C/COCO-C, '
        'default) or "all" (the 19)')
    parser.add_argument(
        '--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument(
        '--workers',
        type=int,
        default=min(8, os.cpu_count() or 1),
        help='worker processes (default: min(8, CPU count))')
    parser.add_argument(
        '--ann-file',
        help='COCO json: corrupt only its images (file_name relative to '
        'SRC_IMG_DIR)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of mmgfn.ImageCorruption (default 0, as the transform)')
    parser.add_argument(
        '--seed-path-root',
        help='folder that, joined with each relative path, gives the path '
        'that seeds its random corruptions; set it to the dataset\'s '
        'data_root + image prefix if that spells SRC_IMG_DIR differently '
        '(default: SRC_IMG_DIR)')
    parser.add_argument(
        '--color-type',
        default='color',
        choices=['color', 'color_ignore_orientation'],
        help='how LoadImageFromFile loads the images in the evaluated '
        'config (ExDark: color_ignore_orientation)')
    parser.add_argument(
        '--jpeg-quality',
        type=int,
        help='write .jpg/.jpeg sources as JPEG of this quality instead of '
        'lossless PNG data (full COCO-C: about 26 GB at 85 instead of about '
        '155 GB; pixels no longer equal the on-the-fly transform)')
    parser.add_argument(
        '--backend',
        choices=list(BACKENDS),
        default='imagecorruptions',
        help='implementation of the corruptions: imagecorruptions (the '
        'reference, default) or torch (mmgfn.datasets.corruptions, same '
        'random draws, within one grey level of the reference); recorded, '
        'so a resume with the other backend is refused')
    parser.add_argument(
        '--device',
        default='cpu',
        help='device of the torch backend (cpu, cuda, cuda:1, ...)')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--recipe',
        choices=['imagenet-c'],
        help='imagenet-c: regenerate ImageNet-C from ImageNet val by the '
        'reference recipe (resize 256, center-crop 224, corrupt, uint8, '
        'JPEG quality 85; mmgfn.datasets.imagenet_c.regenerate_imagenet_c); '
        'not combinable with --ann-file/--seed-path-root/--color-type/'
        '--jpeg-quality')
    return parser.parse_args()


def expand_corruptions(names: list) -> list:
    """``benchmark``/``all`` -> the corruption names, duplicates dropped."""
    out = []
    for name in names:
        group = {'benchmark': BENCHMARK_CORRUPTIONS,
                 'all': ALL_CORRUPTIONS}.get(name, (name, ))
        out += [c for c in group if c not in out]
    return out


def regenerate_imagenet_c_main(args: argparse.Namespace) -> None:
    """``--recipe imagenet-c``: the reference recipe of the released files."""
    from mmgfn.datasets.imagenet_c import regenerate_imagenet_c
    other = [f'--{k.replace("_", "-")}' for k in ('ann_file', 'seed_path_root',
                                                 'jpeg_quality')
             if getattr(args, k) is not None]
    if args.color_type != 'color':
        other.append('--color-type')
    if args.backend != 'imagecorruptions':
        other.append('--backend')
    if other:
        raise ConfigError(f'--recipe imagenet-c fixes the preprocessing and '
                          f'the format; drop {", ".join(other)}')
    summary = regenerate_imagenet_c(
        args.src_img_dir, args.out_dir,
        corruptions=expand_corruptions(args.corruptions),
        severities=args.severities, workers=args.workers, seed=args.seed,
        progress=not args.no_progress)
    report(summary, 'ImageNet-C images by the reference recipe')


def report(summary: GenerationSummary, what: str) -> None:
    """Print the summary line; raise ConfigError listing the images that
    could not be corrupted, if any (exit status 2)."""
    print(summary.line(what))
    if summary.failures:
        raise ConfigError(
            f'{len(summary.failures)} image(s) could not be corrupted:\n  ' +
            '\n  '.join(summary.failures))


def main() -> None:
    args = parse_args()
    if args.recipe == 'imagenet-c':
        regenerate_imagenet_c_main(args)
        return
    summary = generate_corrupted_images(
        args.src_img_dir,
        args.out_dir,
        corruptions=expand_corruptions(args.corruptions),
        severities=args.severities,
        workers=args.workers,
        ann_file=args.ann_file,
        seed=args.seed,
        seed_path_root=args.seed_path_root,
        color_type=args.color_type,
        jpeg_quality=args.jpeg_quality,
        progress=not args.no_progress,
        backend=args.backend,
        device=args.device)
    report(summary, 'corrupted images')


if __name__ == '__main__':
    run_cli(main, flags=('ann_file', 'workers', 'jpeg_quality'))
