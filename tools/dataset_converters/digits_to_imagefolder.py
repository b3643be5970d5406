"""Write scikit-learn's handwritten digits as an image folder.

scikit-learn ships 1,797 real 8x8 grey scans of handwritten digits (0-16
intensity, 10 classes). This writes them as ``SIZE x SIZE`` RGB PNG files
(bilinear upsampling, values rescaled to 0-255; imagecorruptions needs at
least 32 x 32) in the ImageFolder layout that mmpretrain's CustomDataset
reads::

    OUT/train/<digit>/<index>.png   (3 of every 4 images)
    OUT/val/<digit>/<index>.png     (every 4th image, index % 4 == 3)

See :func:`mmgfn.datasets.converters.write_digits`.

Usage: python tools/dataset_converters/digits_to_imagefolder.py [OUT] [--size 32]
"""
import argparse

from mmgfn.datasets.converters import MIN_DIGIT_SIZE, write_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', nargs='?', default='data/digits')
    parser.add_argument('--size', type=int, default=32)
    args = parser.parse_args()
    if args.size < MIN_DIGIT_SIZE:
        parser.error(
            f'--size must be at least {MIN_DIGIT_SIZE}, got {args.size}')
    n = write_digits(args.out, args.size)
    print(f'wrote {n} digit images to {args.out}')


if __name__ == '__main__':
    main()
