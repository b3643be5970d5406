"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur, with
the constants of imagecorruptions.

``x``: ``N x 3 x H x W`` RGB, float, values in [0, 255]; each function
returns the same shape, float, in [0, 255] (before the uint8 cast).
Glass blur's sequential pixel swaps cannot be parallelised within an image
without changing the result, so that one step runs on the host, as
imagecorruptions' numba loop compiled without the GIL (the images of a
batch in parallel threads; the blurs around it run on the device).
"""
import functools
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from .draws import Draws
from .glass_shuffle import shuffle_pixels
from .ops import (clipped_zoom, filter2d_reflect101, gaussian_filter,
                  host_map, motion_blur_)

#: (disk radius, alias blur sigma) per severity
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
#: (sigma, max_delta, iterations) per severity
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
#: (radius, sigma) per severity
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
#: (stop, step) of ``np.arange(1, stop, step)`` zoom factors per severity
ZOOM_BLUR = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02),
             (1.31, 0.03))
#: sigma per severity
GAUSSIAN_BLUR = (1, 2, 3, 4, 6)


@functools.lru_cache(maxsize=8)
def disk_kernel(radius: int, alias_blur: float) -> np.ndarray:
    """imagecorruptions' anti-aliased disk (float32), a constant."""
    if radius <= 8:
        grid = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


def _per_channel(x: torch.Tensor, fn) -> torch.Tensor:
    n, c, h, w = x.shape
    return fn(x.reshape(n * c, h, w)).reshape(n, c, h, w)


def gaussian_blur(x: torch.Tensor, severity: int, draws: Draws,
                  **kwargs) -> torch.Tensor:
    """``skimage.filters.gaussian`` per channel (border ``nearest``)."""
    c = GAUSSIAN_BLUR[severity - 1]
    x = _per_channel(x / 255., lambda t: gaussian_filter(t, c))
    return x.clamp_(0, 1).mul_(255)  # in place: a fresh tensor


def glass_blur(x: torch.Tensor, severity: int, draws: Draws,
               seed: Optional[Sequence[Optional[int]]] = None,
               **kwargs) -> torch.Tensor:
    """Blur, local pixel swaps (host, numba, one thread per image), blur
    again."""
    c = GLASS_BLUR[severity - 1]
    # float64 whatever the dtype: the truncation below turns a float32
    # rounding error into a whole grey level that the swaps then move
    blurred = _per_channel(
        x.to(torch.float64) / 255., lambda t: gaussian_filter(t, c[0]))
    # np.uint8(float * 255) truncates (the values are in [0, 255])
    host = blurred.mul_(255).clamp_(0, 255).to(torch.uint8).cpu().numpy()
    seeds = [draws.glass_seed(None if seed is None else seed[i])
             for i in range(host.shape[0])]
    host_map(lambda i: shuffle_pixels(host[i], c[1], c[2], seeds[i]),
             range(host.shape[0]))
    shuffled = torch.from_numpy(host).to(x.device)
    out = _per_channel(shuffled.to(x.dtype) / 255.,
                       lambda t: gaussian_filter(t, c[0]))
    return out.clamp_(0, 1).mul_(255)


def defocus_blur(x: torch.Tensor, severity: int, draws: Draws,
                 **kwargs) -> torch.Tensor:
    """Convolution with an anti-aliased disk (``cv2.filter2D``)."""
    c = DEFOCUS_BLUR[severity - 1]
    kernel = disk_kernel(*c)
    x = _per_channel(x / 255., lambda t: filter2d_reflect101(t, kernel))
    return x.clamp_(0, 1).mul_(255)


def motion_blur(x: torch.Tensor, severity: int, draws: Draws,
                **kwargs) -> torch.Tensor:
    """Gaussian-weighted streak along a random angle in [-45, 45)."""
    c = MOTION_BLUR[severity - 1]
    outs = []
    for i in range(x.shape[0]):
        angle = draws.uniform(-45, 45)
        outs.append(motion_blur_(x[i], c[0], c[1], angle))
    return torch.clamp(torch.stack(outs), 0, 255)


def zoom_factors(severity: int) -> np.ndarray:
    """The zoom factors of one severity (imagecorruptions' ``np.arange``)."""
    stop, step = ZOOM_BLUR[severity - 1]
    return np.arange(1, stop, step)


def zoom_blur(x: torch.Tensor, severity: int, draws: Draws,
              **kwargs) -> torch.Tensor:
    """Mean of the image and its centre zooms (scipy ``zoom``, order 1)."""
    factors = zoom_factors(severity)
    h, w = x.shape[-2:]
    x = x / 255.
    out = torch.zeros_like(x)
    for factor in factors:
        out = out + clipped_zoom(x, float(factor), keep=(h, w))
    x = (x + out) / (len(factors) + 1)
    return torch.clamp(x, 0, 1) * 255
