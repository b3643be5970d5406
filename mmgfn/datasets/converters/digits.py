"""scikit-learn's handwritten digits as an image folder (the demo's data).

scikit-learn ships 1,797 real 8x8 grey scans of handwritten digits (0-16
intensity, 10 classes). :func:`write_digits` writes them as ``size x size``
RGB PNG files (bilinear upsampling, values rescaled to 0-255;
imagecorruptions needs at least 32 x 32) in the ImageFolder layout that
mmpretrain's CustomDataset reads::

    <out_dir>/train/<digit>/<index>.png   (3 of every 4 images)
    <out_dir>/val/<digit>/<index>.png     (every 4th image, index % 4 == 3)
"""
import os
import os.path as osp

import cv2
import numpy as np

#: The smallest side that imagecorruptions corrupts.
MIN_DIGIT_SIZE = 32


def write_digits(out_dir: str, size: int = 32) -> int:
    """Write the digits and return how many images were written.

    Args:
        out_dir (str): The folder to create (``train/`` and ``val/``
            inside).
        size (int): Side of the written images, at least
            :data:`MIN_DIGIT_SIZE`. Defaults to 32.

    Raises:
        ValueError: If ``size`` is below :data:`MIN_DIGIT_SIZE`.
    """
    if size < MIN_DIGIT_SIZE:
        raise ValueError(f'size must be at least {MIN_DIGIT_SIZE}, got {size}')
    from sklearn.datasets import load_digits  # only the demo needs it
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        split = 'val' if i % 4 == 3 else 'train'
        folder = osp.join(out_dir, split, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = cv2.resize(
            (img * (255.0 / 16.0)).astype(np.float32), (size, size),
            interpolation=cv2.INTER_LINEAR)
        rgb = np.repeat(
            np.clip(grey, 0, 255).round().astype(np.uint8)[..., None],
            3,
            axis=2)
        cv2.imwrite(osp.join(folder, f'{i:04d}.png'), rgb)
    return len(digits.target)
