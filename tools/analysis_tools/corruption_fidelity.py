"""Fidelity of the torch corruptions: difference to imagecorruptions.

For every corruption and severity, corrupts the same images with
``imagecorruptions`` and with :func:`mmgfn.datasets.corruptions.corrupt`
(``draws='numpy'``: the same random numbers, numpy's global state seeded
identically before each call; impulse noise and glass blur get the same
``seed``), casts both to uint8 as imagecorruptions does, and reports the
maximum and the mean absolute difference in grey levels over all images,
channels and pixels. The images are real files the tool writes itself and
reads back: ``--num-digits`` of scikit-learn's handwritten digits scaled to
32 x 32, a 64 x 96 photo and a 640 x 480 photo (scikit-image's sample
photos, COCO's typical size).

Usage::

    python tools/analysis_tools/corruption_fidelity.py \\
        [--corruptions all] [--severities 1 2 3 4 5] [--dtype float32] \\
        [--device cpu] [--photo-size 640 480] [--out fidelity.md] \\
        [--work-dir DIR]

Prints (and with ``--out`` writes) a markdown table: one row per
corruption, one ``max / mean`` cell per severity, and a last column with
the share of values that differ at all. Exit status 1 if any maximum
exceeds one grey level.
"""
import argparse
import os
import os.path as osp
import shutil
import tempfile
from typing import List, Tuple

import cv2
import numpy as np
import torch

from mmgfn.datasets.corruptions import (CORRUPTION_FUNCTIONS,
                                        SEEDED_CORRUPTIONS, corrupt,
                                        to_uint8)
from mmgfn.apis.cli import run_cli
from mmgfn.utils.errors import ConfigError


def write_images(out_dir: str, num_digits: int,
                 photo_size: Tuple[int, int] = (640, 480)) -> List[str]:
    """Write the digits (32 x 32), a 96 x 64 photo and a ``photo_size``
    (w, h) photo as PNG files; return their paths."""
    import skimage.data
    from sklearn.datasets import load_digits
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    digits = load_digits().images[:num_digits]
    for i, digit in enumerate(digits):
        grey = cv2.resize((digit * (255 / 16)).astype(np.uint8), (32, 32),
                          interpolation=cv2.INTER_LINEAR)
        paths.append(osp.join(out_dir, f'digit_{i}.png'))
        cv2.imwrite(paths[-1], np.stack([grey] * 3, -1))
    large = f'photo_{photo_size[0]}x{photo_size[1]}'
    for name, source, size in (('photo_96x64', 'coffee', (96, 64)),
                               (large, 'astronaut', tuple(photo_size))):
        rgb = getattr(skimage.data, source)()
        bgr = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), size,
                         interpolation=cv2.INTER_AREA)
        paths.append(osp.join(out_dir, f'{name}.png'))
        cv2.imwrite(paths[-1], bgr)
    return paths


def compare(rgb: np.ndarray, name: str, severity: int, seed: int,
            dtype: torch.dtype, device: str) -> np.ndarray:
    """Absolute uint8 differences of both implementations, shared draws."""
    from imagecorruptions import corrupt as reference
    kwargs = dict(seed=seed) if name in SEEDED_CORRUPTIONS else {}
    np.random.seed(seed)
    ref = reference(rgb, corruption_name=name, severity=severity, **kwargs)
    np.random.seed(seed)
    images = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)
    out = corrupt(images, name, severity, draws='numpy', dtype=dtype,
                  **kwargs)
    out = to_uint8(out)[0].permute(1, 2, 0).cpu().numpy()
    return np.abs(out.astype(np.int16) - ref.astype(np.int16))


def fidelity_table(paths: List[str], corruptions: List[str],
                   severities: List[int], dtype: torch.dtype,
                   device: str) -> Tuple[str, float]:
    """The markdown table and the largest difference."""
    rows = ['| corruption | ' + ' | '.join(f'severity {s}'
                                           for s in severities) +
            ' | values differing |',
            '|---|' + '---|' * (len(severities) + 1)]
    images = [np.ascontiguousarray(cv2.imread(p)[..., ::-1]) for p in paths]
    worst = 0.
    for name in corruptions:
        cells, differ, total = [], 0, 0
        for severity in severities:
            diffs = [compare(img, name, severity, 1000 * severity + i, dtype,
                             device) for i, img in enumerate(images)]
            top = max(int(d.max()) for d in diffs)
            count = sum(int(d.size) for d in diffs)
            mean = sum(float(d.sum()) for d in diffs) / count
            differ += sum(int((d > 0).sum()) for d in diffs)
            total += count
            worst = max(worst, top)
            cells.append(f'{top} / {mean:.4f}')
        rows.append(f'| {name} | ' + ' | '.join(cells) +
                    f' | {100 * differ / total:.3f}% |')
    return '\n'.join(rows), worst


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--corruptions', nargs='+', default=['all'],
                        help='names, or all (default)')
    parser.add_argument('--severities', nargs='+', type=int,
                        default=[1, 2, 3, 4, 5])
    parser.add_argument('--num-digits', type=int, default=8)
    parser.add_argument('--dtype', choices=['float32', 'float64'],
                        default='float32',
                        help='dtype of the torch computation')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--photo-size', nargs=2, type=int, default=[640, 480],
                        metavar=('W', 'H'), help='size of the large photo')
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument('--work-dir',
                        help='folder for the images (default: temporary)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    names = list(CORRUPTION_FUNCTIONS) if args.corruptions == ['all'] \
        else args.corruptions
    unknown = [n for n in names if n not in CORRUPTION_FUNCTIONS]
    if unknown:
        raise ConfigError(
            f'unknown corruption(s) {", ".join(unknown)}; expected some of '
            f'{", ".join(CORRUPTION_FUNCTIONS)}')
    work = args.work_dir or tempfile.mkdtemp(prefix='corruption_fidelity_')
    try:
        paths = write_images(work, args.num_digits, tuple(args.photo_size))
        table, worst = fidelity_table(paths, names, args.severities,
                                      getattr(torch, args.dtype),
                                      args.device)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    header = (f'Max / mean absolute difference (grey levels) to '
              f'imagecorruptions, shared draws, {args.dtype} on '
              f'{args.device}; {args.num_digits} digits (32x32), one 96x64 '
              f'and one {args.photo_size[0]}x{args.photo_size[1]} photo per '
              'cell')
    print(header)
    print(table)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(header + '\n\n' + table + '\n')
    print(f'largest difference: {worst:g} grey level(s)')
    if worst > 1:
        raise SystemExit(1)


if __name__ == '__main__':
    run_cli(main)
