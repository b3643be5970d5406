"""Batched torch corruptions, pixel-faithful to imagecorruptions.

:func:`corrupt` applies one of the 19 corruptions of Hendrycks & Dietterich
(ICLR 2019), at severity 1-5, to a batch ``N x 3 x H x W`` of RGB images on
any device, with the constants of ``imagecorruptions`` (the
``imagecorruptions-imaug`` fork mmgfn pins). Random numbers come from a
caller-seeded :class:`torch.Generator` (``draws='torch'``) or, with
``draws='numpy'``, exactly as imagecorruptions draws them (numpy on the
host, image after image), so that both outputs can be compared pixel by
pixel (``tools/analysis_tools/corruption_fidelity.py``).
"""
from typing import Callable, Dict, Optional, Sequence, Union

import torch

from . import blur, digital, noise, weather
from .draws import DRAW_MODES, Draws

#: name -> function, in imagecorruptions' order (15 benchmark + 4 held out)
CORRUPTION_FUNCTIONS: Dict[str, Callable] = {
    'gaussian_noise': noise.gaussian_noise,
    'shot_noise': noise.shot_noise,
    'impulse_noise': noise.impulse_noise,
    'defocus_blur': blur.defocus_blur,
    'glass_blur': blur.glass_blur,
    'motion_blur': blur.motion_blur,
    'zoom_blur': blur.zoom_blur,
    'snow': weather.snow,
    'frost': weather.frost,
    'fog': weather.fog,
    'brightness': weather.brightness,
    'contrast': digital.contrast,
    'elastic_transform': digital.elastic_transform,
    'pixelate': digital.pixelate,
    'jpeg_compression': digital.jpeg_compression,
    'speckle_noise': noise.speckle_noise,
    'gaussian_blur': blur.gaussian_blur,
    'spatter': weather.spatter,
    'saturate': digital.saturate,
}
#: corruptions whose imagecorruptions function takes a ``seed`` argument
SEEDED_CORRUPTIONS = ('impulse_noise', 'glass_blur')
#: corruptions of 8-bit values: they take uint8 images as they are (a
#: float copy would only be rounded back)
UINT8_CORRUPTIONS = ('pixelate', 'jpeg_compression')
MIN_SIDE = 32


def corrupt(images: torch.Tensor,
            corruption: str,
            severity: int,
            generator: Optional[torch.Generator] = None,
            draws: str = 'torch',
            seed: Union[None, int, Sequence[Optional[int]]] = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Corrupt a batch of RGB images.

    Args:
        images (torch.Tensor): ``N x 3 x H x W`` RGB, uint8 or float with
            values in [0, 255], any device; ``H, W >= 32``.
        corruption (str): One of :data:`CORRUPTION_FUNCTIONS`.
        severity (int): 1-5.
        generator (torch.Generator, optional): Source of the random numbers
            with ``draws='torch'`` (seed it for a reproducible batch); None
            uses torch's default generator. Ignored with ``draws='numpy'``.
        draws (str): ``'torch'``, or ``'numpy'`` to draw exactly as
            imagecorruptions does (numpy's global state, image after
            image). Defaults to ``'torch'``.
        seed (int | sequence of int, optional): The ``seed`` argument of
            imagecorruptions' impulse noise and glass blur, one per image or
            one for all (``draws='numpy'`` only; None draws a fresh one, as
            imagecorruptions does). Defaults to None.
        dtype (torch.dtype): Floating dtype of the computation and the
            output. Defaults to ``torch.float32``.

    Returns:
        torch.Tensor: ``N x 3 x H x W`` of ``dtype``, values in [0, 255],
        not rounded (:func:`to_uint8` casts as imagecorruptions does).

    Raises:
        ValueError: For an unknown corruption or draw mode, a severity
            outside 1-5, or images that are not ``N x 3 x H x W`` with
            ``H, W >= 32``.
    """
    if corruption not in CORRUPTION_FUNCTIONS:
        raise ValueError(f'unknown corruption "{corruption}"; expected one '
                         f'of {", ".join(CORRUPTION_FUNCTIONS)}')
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(
            f'severity must be an integer in 1-5, got {severity!r}')
    if draws not in DRAW_MODES:
        raise ValueError(f'draws must be one of {DRAW_MODES}, got {draws!r}')
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError('images must be N x 3 x H x W (RGB), got shape '
                         f'{tuple(images.shape)}')
    if min(images.shape[-2:]) < MIN_SIDE:
        raise ValueError(
            f'images are {images.shape[-1]}x{images.shape[-2]} pixels; '
            f'corruptions need at least {MIN_SIDE}x{MIN_SIDE}')
    n = images.shape[0]
    if seed is None or isinstance(seed, int):
        seeds = [seed] * n
    else:
        seeds = list(seed)
        if len(seeds) != n:
            raise ValueError(f'{len(seeds)} seeds for {n} images')
    fn = CORRUPTION_FUNCTIONS[corruption]
    if corruption in UINT8_CORRUPTIONS and images.dtype == torch.uint8:
        x = images
    else:  # one pass, into the layout the torch ops run fastest on
        x = images.to(dtype, memory_format=torch.contiguous_format)
    source = Draws(draws, generator, images.device, dtype)
    if draws == 'numpy':  # image after image, as imagecorruptions draws
        return torch.cat([
            fn(x[i:i + 1], severity, source, seed=seeds[i:i + 1])
            for i in range(n)
        ]).to(dtype)
    return fn(x, severity, source, seed=seeds).to(dtype)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Cast corrupted values as imagecorruptions' ``np.uint8`` does
    (truncation of values already in [0, 255])."""
    return torch.trunc(x.clamp(0, 255)).to(torch.uint8)
