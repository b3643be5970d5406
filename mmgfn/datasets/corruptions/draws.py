"""Random draws of the corruptions: a seeded torch generator, or numpy.

``Draws('torch', generator)`` takes every random number from ``generator``
(a caller-seeded :class:`torch.Generator`, on any device), so a batch is
reproducible from one seed. ``Draws('numpy')`` draws exactly what
``imagecorruptions`` draws, in its order and with its shapes (numpy's
global random state; ``numpy.random.default_rng(seed)`` for impulse noise
and the glass-blur seed), on the host, and moves the numbers to the device:
with the same numpy state both implementations see the same noise, so their
outputs can be compared pixel by pixel.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .ops import host_map

DRAW_MODES = ('torch', 'numpy')
#: values per generator of the torch-mode Poisson draws on the CPU
POISSON_BLOCK = 1 << 18


class Draws:
    """Source of the random numbers of one corruption call.

    Args:
        mode (str): ``'torch'`` or ``'numpy'``. Defaults to ``'torch'``.
        generator (torch.Generator, optional): Generator of the torch mode;
            None uses torch's default generator of ``device``.
        device (torch.device | str): Device of the returned tensors.
            Defaults to ``'cpu'``.
        dtype (torch.dtype): Floating dtype of the returned tensors.
            Defaults to ``torch.float32``.
    """

    def __init__(self,
                 mode: str = 'torch',
                 generator: Optional[torch.Generator] = None,
                 device='cpu',
                 dtype: torch.dtype = torch.float32) -> None:
        if mode not in DRAW_MODES:
            raise ValueError(f'draws must be one of {DRAW_MODES}, got '
                             f'{mode!r}')
        self.mode = mode
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        # torch draws happen on the generator's device
        self._draw_device = generator.device if generator is not None \
            else self.device

    def _to(self, array: np.ndarray, dtype=None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(
            self.device, dtype or self.dtype)

    def normal(self, shape: Tuple[int, ...], loc: float,
               scale: float) -> torch.Tensor:
        """``shape`` normal numbers (``np.random.normal(loc, scale)``)."""
        if self.mode == 'numpy':
            return self._to(np.random.normal(size=shape, loc=loc,
                                             scale=scale))
        out = torch.randn(shape, generator=self.generator,
                          device=self._draw_device, dtype=self.dtype)
        return (out * scale + loc).to(self.device)

    def uniform(self, low: float, high: float,
                shape: Optional[Tuple[int, ...]] = None,
                dtype: Optional[torch.dtype] = None):
        """One float (``shape`` None) or a ``shape`` tensor in [low, high)."""
        if self.mode == 'numpy':
            if shape is None:
                return float(np.random.uniform(low, high))
            return self._to(np.random.uniform(low, high, shape), dtype)
        if shape is None:
            u = torch.rand((), generator=self.generator,
                           device=self._draw_device, dtype=torch.float64)
            return low + float(u) * (high - low)
        u = torch.empty(shape, device=self._draw_device,
                        dtype=dtype or self.dtype)
        return u.uniform_(low, high, generator=self.generator).to(
            self.device)

    def randint(self, low: int, high: int) -> int:
        """One integer in [low, high) (``np.random.randint(low, high)``)."""
        if self.mode == 'numpy':
            return int(np.random.randint(low, high))
        return int(torch.randint(low, high, (), generator=self.generator,
                                 device=self._draw_device))

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson counts of ``rate`` (``np.random.poisson(rate)``)."""
        if self.mode == 'numpy':
            return self._to(np.random.poisson(
                rate.detach().cpu().numpy().astype(np.float64)))
        if self._draw_device.type != 'cpu':
            return torch.poisson(rate.to(self._draw_device),
                                 generator=self.generator).to(self.device)
        # torch's CPU Poisson sampler is serial: blocks of POISSON_BLOCK
        # values, each from its own generator seeded from this one, in host
        # threads (the same numbers whatever the thread count)
        flat = rate.reshape(-1)
        blocks = flat.split(POISSON_BLOCK)
        seeds = torch.randint(0, 2**62, (len(blocks), ),
                              generator=self.generator).tolist()
        out = torch.empty_like(flat)
        parts = out.split(POISSON_BLOCK)

        def one(i: int) -> None:
            gen = torch.Generator().manual_seed(seeds[i])
            parts[i].copy_(torch.poisson(blocks[i], generator=gen))

        host_map(one, range(len(blocks)))
        return out.view(rate.shape).to(self.device)

    def impulse_masks(self, shape: Tuple[int, ...], amount: float,
                      seeds: Optional[Sequence[Optional[int]]]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(salt, pepper)`` boolean masks of scikit-image's s&p noise, each
        ``shape`` = ``(N, 3, H, W)``: a value is flipped with probability
        ``amount``, to salt or pepper with probability 1/2 each.

        In the numpy mode image ``i`` draws its ``H x W x 3`` masks from
        ``numpy.random.default_rng(seeds[i])``, as
        ``skimage.util.random_noise(..., 's&p', seed)`` does; in the torch
        mode one uniform number per value decides both (``u < amount / 2``
        salt, ``amount / 2 <= u < amount`` pepper).
        """
        if self.mode == 'numpy':
            n, _, h, w = shape
            flipped, salted = [], []
            for i in range(n):
                rng = np.random.default_rng(None if seeds is None else
                                            seeds[i])
                flipped.append(rng.random((h, w, 3)) <= amount)
                salted.append(rng.random((h, w, 3)) <= 0.5)
            flipped = self._to(np.stack(flipped), torch.bool).permute(
                0, 3, 1, 2)
            salted = self._to(np.stack(salted), torch.bool).permute(
                0, 3, 1, 2)
            return flipped & salted, flipped & ~salted
        u = torch.rand(shape, generator=self.generator,
                       device=self._draw_device).to(self.device)
        salt = u < amount / 2
        return salt, (u < amount) & ~salt

    def glass_seed(self, seed: Optional[int]) -> int:
        """Seed of glass blur's numba pixel shuffle for one image."""
        if self.mode == 'numpy':
            if seed is None:  # what imagecorruptions does without a seed
                seed = np.random.default_rng().integers(np.iinfo(int).max)
            return int(seed)
        return int(torch.randint(0, 2**62, (), generator=self.generator,
                                 device=self._draw_device))
