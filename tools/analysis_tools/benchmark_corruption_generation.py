"""Throughput of corruption pre-generation: one process vs the parallel tool.

Measures, in one run and on the same images, corruptions and severities:

1. a plain single-process loop over ``imagecorruptions.corrupt`` (read the
   image, corrupt it, write lossless PNG: what a straightforward script
   does);
2. ``tools/misc/generate_corrupted_dataset.py``'s
   :func:`mmgfn.datasets.corruption_generation.generate_corrupted_images`
   with ``--workers`` processes into an empty folder;

and prints images/s of both and their ratio. The tool runs twice, into
fresh folders: first with the start of its fork server (one import of mmgfn,
a few seconds, paid once per process) in the timing, then with the server
already running; each run still starts its workers, which compile
glass_blur's numba kernel once each. The single-process loop is timed after
that compilation.

Usage::

    python tools/analysis_tools/benchmark_corruption_generation.py \\
        [--images DIR] [--num-images 40] [--size 640 480] \\
        [--corruptions gaussian_noise glass_blur zoom_blur fog] \\
        [--severities 3] [--workers 2] [--work-dir DIR]

Without ``--images``, ``--num-images`` JPEG photos of ``--size`` (COCO's
typical 640 x 480) are made from scikit-image's bundled sample photos
(flipped and shifted so that no two are identical).

``--compare-backends`` measures instead, per corruption, images/s of
imagecorruptions (one image after the other, as the reference runs) and of
the torch backend (:func:`mmgfn.datasets.corruptions.corrupt` on the whole
batch, laid out as the transform and the generator pass it: ``H x W x 3``
images viewed as ``N x 3 x H x W``; torch draws) on the CPU, and on CUDA when a GPU is present (after a
warm-up call, synchronised), and prints them side by side with their
ratios::

    python tools/analysis_tools/benchmark_corruption_generation.py \
        --compare-backends [--corruptions all] [--severities 3] \
        [--num-images 8] [--repeats 1]
"""
import argparse
import os
import os.path as osp
import shutil
import tempfile
import time

import cv2
import numpy as np
import torch

from mmgfn.datasets.corruption_generation import (generate_corrupted_images,
                                                  list_source_images)
from mmgfn.apis.cli import run_cli

SAMPLE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket',
                 'immunohistochemistry', 'hubble_deep_field', 'retina')


def make_photos(out_dir: str, num: int, size: tuple) -> None:
    """Write ``num`` distinct ``size`` (w, h) JPEG photos to ``out_dir``."""
    import skimage.data
    os.makedirs(out_dir, exist_ok=True)
    width, height = size
    photos = [getattr(skimage.data, name)() for name in SAMPLE_PHOTOS]
    for i in range(num):
        rgb = photos[i % len(photos)]
        shift = (i // len(photos)) * 17
        rgb = np.roll(rgb, shift, axis=1)
        if (i // len(photos)) % 2:
            rgb = rgb[:, ::-1]
        bgr = cv2.resize(
            np.ascontiguousarray(rgb[..., ::-1]), (width, height),
            interpolation=cv2.INTER_AREA)
        cv2.imwrite(osp.join(out_dir, f'{i:012d}.jpg'), bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def single_process(src_dir: str, rels: list, out_dir: str,
                   corruptions: list, severities: list) -> float:
    """The plain loop; returns its wall time in seconds."""
    from imagecorruptions import corrupt
    start = time.perf_counter()
    for rel in rels:
        rgb = np.ascontiguousarray(
            cv2.imread(osp.join(src_dir, rel))[..., ::-1])
        for corruption in corruptions:
            for severity in severities:
                out = corrupt(
                    rgb, corruption_name=corruption, severity=severity)
                out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
                path = osp.join(out_dir, corruption, str(severity), rel)
                os.makedirs(osp.dirname(path), exist_ok=True)
                cv2.imwrite(path + '.png', out[..., ::-1])
    return time.perf_counter() - start


def _timed(fn, repeats: int, sync=None) -> float:
    """Best wall time of ``repeats`` calls of ``fn``."""
    best = float('inf')
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


def compare_backends(src: str, rels: list, corruptions: list,
                     severities: list, repeats: int) -> None:
    """Print images/s of imagecorruptions vs the torch backend per
    corruption (CPU, and CUDA when available), in one run."""
    from imagecorruptions import corrupt as reference

    from mmgfn.datasets.corruptions import SEEDED_CORRUPTIONS, corrupt
    rgbs = [np.ascontiguousarray(cv2.imread(osp.join(src, r))[..., ::-1])
            for r in rels]
    if len({r.shape for r in rgbs}) != 1:
        raise ValueError('--compare-backends needs images of one size '
                         '(they are corrupted as one batch)')
    # N x 3 x H x W over H x W x 3 images, as the transform and the
    # generator pass them (no copy)
    batch = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    n = len(rgbs) * len(severities)
    head = f'{"corruption":18s} {"imagecorruptions":>17s} {"torch cpu":>10s}'
    head += f' {"ratio":>6s}'
    if 'cuda' in devices:
        head += f' {"torch cuda":>11s} {"ratio":>7s}'
    print(f'images/s, {len(rgbs)} images of {rgbs[0].shape[1]}x'
          f'{rgbs[0].shape[0]}, severities {severities}; torch threads '
          f'{torch.get_num_threads()}'
          + (f'; GPU: {torch.cuda.get_device_name(0)}'
             if 'cuda' in devices else '; no GPU'))
    print(head)
    totals = {'ref': 0.0, 'cpu': 0.0, 'cuda': 0.0}
    for name in corruptions:
        kwargs = dict(seed=1) if name in SEEDED_CORRUPTIONS else {}

        def run_reference():
            for rgb in rgbs:
                for s in severities:
                    reference(rgb, corruption_name=name, severity=s,
                              **kwargs)

        reference(rgbs[0], corruption_name=name, severity=severities[0],
                  **kwargs)  # numba compilation, file reads
        rates = {'ref': n / _timed(run_reference, repeats)}
        totals['ref'] += n / rates['ref']
        for device in devices:
            images = batch.to(device)
            gen = torch.Generator(device).manual_seed(0)
            sync = torch.cuda.synchronize if device == 'cuda' else None

            def run_torch():
                for s in severities:
                    corrupt(images, name, s, gen)

            corrupt(images[:1], name, severities[0], gen)  # warm-up
            rates[device] = n / _timed(run_torch, repeats, sync)
            totals[device] += n / rates[device]
        line = (f'{name:18s} {rates["ref"]:17.2f} {rates["cpu"]:10.2f} '
                f'{rates["cpu"] / rates["ref"]:5.2f}x')
        if 'cuda' in devices:
            line += (f' {rates["cuda"]:11.2f} '
                     f'{rates["cuda"] / rates["ref"]:6.1f}x')
        print(line, flush=True)
    print(f'all {len(corruptions)} corruptions x {len(severities)} '
          f'severities, seconds per image: imagecorruptions '
          f'{totals["ref"] / len(rgbs):.3f}, torch cpu '
          f'{totals["cpu"] / len(rgbs):.3f}' +
          (f', torch cuda {totals["cuda"] / len(rgbs):.3f}'
           if 'cuda' in devices else ''))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', help='folder of images to corrupt')
    parser.add_argument('--num-images', type=int, default=40)
    parser.add_argument(
        '--size', nargs=2, type=int, default=[640, 480],
        metavar=('W', 'H'))
    parser.add_argument(
        '--corruptions',
        nargs='+',
        default=['gaussian_noise', 'glass_blur', 'zoom_blur', 'fog'])
    parser.add_argument('--severities', nargs='+', type=int, default=[3])
    parser.add_argument(
        '--workers', type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument(
        '--work-dir', help='scratch folder (default: a temporary one)')
    parser.add_argument(
        '--compare-backends',
        action='store_true',
        help='images/s per corruption of imagecorruptions vs the torch '
        'backend (CPU, and CUDA when available) instead')
    parser.add_argument(
        '--repeats', type=int, default=1,
        help='--compare-backends: best of this many timed runs')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix='corruption_bench_')
    os.makedirs(work, exist_ok=True)
    try:
        src = args.images
        if src is None:
            src = osp.join(work, 'images')
            make_photos(src, args.num_images, tuple(args.size))
        rels = list_source_images(src)
        if args.compare_backends:
            from mmgfn.datasets.corruptions import CORRUPTION_FUNCTIONS
            names = list(CORRUPTION_FUNCTIONS) \
                if args.corruptions == ['all'] else args.corruptions
            compare_backends(src, rels, names, args.severities,
                             args.repeats)
            return
        n_out = len(rels) * len(args.corruptions) * len(args.severities)
        print(f'{len(rels)} images from {src}; corruptions '
              f'{" ".join(args.corruptions)}; severities '
              f'{" ".join(map(str, args.severities))} -> {n_out} outputs; '
              f'{os.cpu_count()} CPU cores, load average '
              f'{os.getloadavg()[0]:.2f} (other processes share the cores)')

        from imagecorruptions import corrupt
        probe = np.full((64, 64, 3), 128, np.uint8)
        for corruption in args.corruptions:  # compile numba kernels once
            corrupt(probe, corruption_name=corruption, severity=1)

        base_dir = osp.join(work, 'single')
        seconds = single_process(src, rels, base_dir, args.corruptions,
                                 args.severities)
        single_rate = n_out / seconds
        print(f'single process, imagecorruptions: {n_out} images in '
              f'{seconds:.1f} s = {single_rate:.2f} images/s')

        for run in ('cold', 'warm'):
            summary = generate_corrupted_images(
                src,
                osp.join(work, f'tool_{run}'),
                corruptions=args.corruptions,
                severities=args.severities,
                workers=args.workers,
                progress=False)
            rate = summary.images_per_second
            what = ('fork server start included' if run == 'cold' else
                    'fork server already running')
            print(f'generate_corrupted_dataset, {summary.workers} workers '
                  f'({what}): {summary.written} images in '
                  f'{summary.seconds:.1f} s = {rate:.2f} images/s; ratio '
                  f'to single process: {rate / single_rate:.2f}x')
        print(f'load average at the end: {os.getloadavg()[0]:.2f}')
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    run_cli(main)
