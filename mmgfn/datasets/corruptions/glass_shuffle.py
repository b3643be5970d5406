"""Glass blur's local pixel swaps, compiled with numba without the GIL.

imagecorruptions' ``_shuffle_pixels_njit_glass_blur`` walks the image from
the bottom-right corner, draws ``dx, dy = randint(-max_delta, max_delta,
size=2)`` for each pixel and "swaps" the two pixel views with a tuple
assignment, which copies: the pixel takes its neighbour's value and the
neighbour keeps it. This is the same loop with the same random stream on
``3 x H x W`` planes (the layout of the torch batch, so no transposition
is needed), compiled with ``nogil=True`` so that the images of a batch run
in parallel threads (numba's random state is per thread: each image seeds
its own). The tests compare it with the fork's kernel; changing it changes
every glass-blur cell.
"""
import numpy as np
from numba import njit


@njit(nogil=True)
def shuffle_pixels(x, max_delta, iterations, seed):
    """Shuffle ``C x H x W`` uint8 ``x`` in place; returns ``x``.

    Args:
        x (np.ndarray): ``C x H x W`` planes of one image.
        max_delta (int): Largest displacement (glass blur's ``c[1]``).
        iterations (int): Passes over the image (``c[2]``).
        seed (int): Seed of numba's (per-thread) numpy random state.
    """
    np.random.seed(seed)
    d0, d1 = x.shape[1], x.shape[2]
    for _ in range(iterations):
        for h in range(d0 - max_delta, max_delta, -1):
            for w in range(d1 - max_delta, max_delta, -1):
                dx, dy = np.random.randint(-max_delta, max_delta, size=(2, ))
                h_prime, w_prime = h + dy, w + dx
                for ch in range(x.shape[0]):
                    x[ch, h, w] = x[ch, h_prime, w_prime]
    return x
