"""Write scikit-learn's handwritten digits as an image folder.

scikit-learn ships 1,797 real 8x8 grey scans of handwritten digits (0-16
intensity, 10 classes). This writes them as ``SIZE x SIZE`` RGB PNG files
(bilinear upsampling, values rescaled to 0-255; imagecorruptions needs at
least 32 x 32) in the ImageFolder layout that mmpretrain's CustomDataset
reads::

    OUT/train/<digit>/<index>.png   (3 of every 4 images)
    OUT/val/<digit>/<index>.png     (every 4th image, index % 4 == 3)

Usage: python tools/dataset_converters/digits_to_imagefolder.py [OUT] [--size 32]
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np


def write_digits(out_dir: str, size: int = 32) -> int:
    """Write the digits and return how many images were written.

    Args:
        out_dir (str): The folder to create (``train/`` and ``val/``
            inside).
        size (int): Side of the written images, at least 32. Defaults to 32.
    """
    from sklearn.datasets import load_digits
    if size < 32:
        raise ValueError(f'--size must be at least 32, got {size}')
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        split = 'val' if i % 4 == 3 else 'train'
        folder = osp.join(out_dir, split, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = cv2.resize(
            (img * (255.0 / 16.0)).astype(np.float32), (size, size),
            interpolation=cv2.INTER_LINEAR)
        rgb = np.repeat(np.clip(grey, 0, 255).round().astype(np.uint8)[...,
                                                                      None],
                        3,
                        axis=2)
        cv2.imwrite(osp.join(folder, f'{i:04d}.png'), rgb)
    return len(digits.target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', nargs='?', default='data/digits')
    parser.add_argument('--size', type=int, default=32)
    args = parser.parse_args()
    n = write_digits(args.out, args.size)
    print(f'wrote {n} digit images to {args.out}')


if __name__ == '__main__':
    main()
