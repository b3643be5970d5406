"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper)
and speckle noise, with the constants of imagecorruptions.

``x``: ``N x 3 x H x W`` RGB, float, values in [0, 255]; each function
returns the same shape, float, in [0, 255] (before the uint8 cast).
"""
from typing import Optional, Sequence

import torch

from .draws import Draws

#: noise std per severity (fraction of the range)
GAUSSIAN_NOISE = (.08, .12, 0.18, 0.26, 0.38)
#: photons per unit intensity per severity
SHOT_NOISE = (60, 25, 12, 5, 3)
#: fraction of flipped values per severity
IMPULSE_NOISE = (.03, .06, .09, 0.17, 0.27)
#: multiplicative noise std per severity
SPECKLE_NOISE = (.15, .2, 0.35, 0.45, 0.6)


def _hwc_noise(x: torch.Tensor, draws: Draws, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    return draws.normal((n, h, w, 3), 0.0, scale).permute(0, 3, 1, 2)


def gaussian_noise(x: torch.Tensor, severity: int, draws: Draws,
                   **kwargs) -> torch.Tensor:
    """Additive Gaussian noise."""
    c = GAUSSIAN_NOISE[severity - 1]
    x = x / 255.
    return torch.clamp(x + _hwc_noise(x, draws, c), 0, 1) * 255


def shot_noise(x: torch.Tensor, severity: int, draws: Draws,
               **kwargs) -> torch.Tensor:
    """Poisson noise: ``poisson(x * c) / c``."""
    c = SHOT_NOISE[severity - 1]
    # the rate in float64, as numpy computes it, so that numpy draws match
    rate = (x.to(torch.float64) / 255.) * c
    if draws.mode == 'numpy':
        rate = rate.permute(0, 2, 3, 1)
        counts = draws.poisson(rate).permute(0, 3, 1, 2)
    else:
        counts = draws.poisson(rate.to(x.dtype))
    return torch.clamp(counts / float(c), 0, 1) * 255


def impulse_noise(x: torch.Tensor, severity: int, draws: Draws,
                  seed: Optional[Sequence[Optional[int]]] = None,
                  **kwargs) -> torch.Tensor:
    """Salt-and-pepper noise (``skimage.util.random_noise(..., 's&p')``):
    a fraction ``c`` of the values set to 0 or 1, half each on average."""
    c = IMPULSE_NOISE[severity - 1]
    salt, pepper = draws.impulse_masks(tuple(x.shape), c, seed)
    x = (x / 255.).masked_fill_(salt, 1.).masked_fill_(pepper, 0.)
    return torch.clamp(x, 0, 1) * 255


def speckle_noise(x: torch.Tensor, severity: int, draws: Draws,
                  **kwargs) -> torch.Tensor:
    """Multiplicative Gaussian noise ``x + x * n``."""
    c = SPECKLE_NOISE[severity - 1]
    x = x / 255.
    return torch.clamp(x + x * _hwc_noise(x, draws, c), 0, 1) * 255
