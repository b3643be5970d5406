"""On-the-fly image corruptions (Hendrycks & Dietterich, ICLR 2019).

Wraps the ``imagecorruptions`` package (the numpy-2 compatible fork
``imagecorruptions-imaug`` keeps the import name) as an mmcv transform, so
that any mmpretrain or mmdet dataset can be evaluated as "X-C" by adding one
step to its test pipeline after ``LoadImageFromFile``::

    dict(type='mmgfn.ImageCorruption', corruption='fog', severity=3)

``backend='torch'`` computes the same corruption with
:mod:`mmgfn.datasets.corruptions` (optionally on a ``device``), drawing its
random numbers exactly as imagecorruptions does from the same seeded numpy
state, so both backends give the same image up to one grey level of float
rounding (the fidelity table of the README).

Shapes and ranges: ``results['img']`` is an ``H x W x 3`` (or ``H x W``)
uint8 BGR image as mmcv loads it; it stays ``H x W x 3`` uint8 BGR, values in
[0, 255]. ``img_shape`` does not change. Images must be at least 32 x 32
pixels, which some corruptions need.
"""
import zlib
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform

from mmgfn.registry import TRANSFORMS
from ..benchmarks import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS,  # noqa
                          HOLDOUT_CORRUPTIONS)

MIN_SIDE = 32
#: Corruptions of imagecorruptions that take their randomness from a
#: ``seed`` argument instead of numpy's global generator.
SEED_ARGUMENT = ('glass_blur', 'impulse_noise')
#: Implementations of the corruptions.
BACKENDS = ('imagecorruptions', 'torch')


@TRANSFORMS.register_module()
class ImageCorruption(BaseTransform):
    """Corrupt ``results['img']`` with one corruption at one severity.

    Required keys: ``img``. Modified keys: ``img``. Added keys:
    ``corruption``, ``severity`` (recorded for the metrics).

    Args:
        corruption (str): One of the 19 names of ``imagecorruptions``
            (:data:`ALL_CORRUPTIONS`).
        severity (int): 1-5, or 0 for the clean image (the COCO-C
            convention, so a sweep can include the clean reference).
        seed (int, optional): Random corruptions (noise, snow, frost, ...)
            draw from a generator seeded with ``seed`` and a hash of the
            image path, corruption and severity, so the same image gets the
            same corruption in every run, worker and process; numpy's global
            random state is restored afterwards. None uses numpy's global
            random state as is. Defaults to 0.
        backend (str): ``'imagecorruptions'`` (the reference) or
            ``'torch'`` (:func:`mmgfn.datasets.corruptions.corrupt` with the
            reference's random draws). Defaults to ``'imagecorruptions'``.
        device (str): Device of the torch backend (``'cpu'``, ``'cuda'``,
            ...); a CUDA device needs data loader workers that do not fork
            (``num_workers=0`` or the ``spawn`` start method). Defaults to
            ``'cpu'``.

    Raises:
        ValueError: For an unknown corruption or backend, a severity outside
            0-5, or an image smaller than 32 x 32 (the message names the
            image path).
    """

    def __init__(self,
                 corruption: str,
                 severity: int,
                 seed: Optional[int] = 0,
                 backend: str = 'imagecorruptions',
                 device: str = 'cpu') -> None:
        if corruption not in ALL_CORRUPTIONS:
            raise ValueError(f'unknown corruption "{corruption}"; expected '
                             f'one of {", ".join(ALL_CORRUPTIONS)}')
        if not isinstance(severity, int) or not 0 <= severity <= 5:
            raise ValueError(
                f'severity must be an integer in 0-5, got {severity!r}')
        if backend not in BACKENDS:
            raise ValueError(f'unknown corruption backend "{backend}"; '
                             f'expected one of {", ".join(BACKENDS)}')
        self.corruption = corruption
        self.severity = severity
        self.seed = seed
        self.backend = backend
        self.device = device

    def transform(self, results: dict) -> dict:
        """Corrupt one image.

        Args:
            results (dict): Result dict with ``img`` (uint8 BGR).

        Returns:
            dict: The same dict with the corrupted ``img``.
        """
        results['corruption'] = self.corruption
        results['severity'] = self.severity
        if self.severity == 0:
            return results
        img = results['img']
        path = results.get('img_path', '<in-memory image>')
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        if img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
            raise ValueError(
                f'image {path} is {img.shape[1]}x{img.shape[0]} pixels; '
                f'corruptions need at least {MIN_SIDE}x{MIN_SIDE}')
        results['img'] = self._corrupt(img[..., ::-1], path)[..., ::-1].copy()
        return results

    def _corrupt(self, rgb: np.ndarray, path: str) -> np.ndarray:
        """Apply the corruption to an ``H x W x 3`` uint8 RGB image."""
        rgb = np.ascontiguousarray(rgb)
        if self.seed is None:
            out = self._apply(rgb, None)
        else:
            key = f'{path}|{self.corruption}|{self.severity}'.encode()
            seed = (zlib.crc32(key) + self.seed) % 2**32
            # glass_blur and impulse_noise draw from their own generators
            # unless given a seed; the others use numpy's global one
            state = np.random.get_state()
            np.random.seed(seed)
            try:
                out = self._apply(
                    rgb, seed if self.corruption in SEED_ARGUMENT else None)
            finally:
                np.random.set_state(state)
        out = np.asarray(out)
        h, w = rgb.shape[:2]
        if out.shape[:2] != (h, w):
            raise RuntimeError(
                f'{self.corruption} changed the size of {path} from {w}x{h} '
                f'to {out.shape[1]}x{out.shape[0]}')
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _apply(self, rgb: np.ndarray, seed: Optional[int]) -> np.ndarray:
        """One call of the backend, random draws from numpy's state."""
        kwargs = {} if seed is None else dict(seed=seed)
        if self.backend == 'imagecorruptions':
            from imagecorruptions import corrupt
            return corrupt(rgb, corruption_name=self.corruption,
                           severity=self.severity, **kwargs)
        import torch

        from ..corruptions import corrupt, to_uint8
        images = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(
            self.device)
        out = corrupt(images, self.corruption, self.severity,
                      draws='numpy', **kwargs)
        return to_uint8(out)[0].permute(1, 2, 0).cpu().numpy()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, '
                f'severity={self.severity}, seed={self.seed}, '
                f'backend={self.backend!r}, device={self.device!r})')
