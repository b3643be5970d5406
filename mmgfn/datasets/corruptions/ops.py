"""Building blocks of the corruptions, each the torch twin of one host op.

Shapes: ``x`` is ``B x H x W`` (or ``N x C x H x W`` where stated), float,
on any device. Every op reproduces the numbers of the scipy / scikit-image /
OpenCV / Pillow function named in its docstring (same kernel, same border
rule, same rounding), which is what makes the torch corruptions agree with
``imagecorruptions`` to within float rounding.
"""
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, Tuple

import numpy as np
import torch


def fold_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map out-of-range indices into ``[0, n)`` by a border rule.

    Args:
        idx (np.ndarray): Integer indices, any range.
        n (int): Length of the axis.
        mode (str): ``'nearest'`` (edge repeated; scipy ``nearest``, cv2
            ``BORDER_REPLICATE``), ``'symmetric'`` (edge mirrored with the
            edge sample repeated; scipy ``reflect``) or ``'reflect101'``
            (mirrored without repeating the edge; cv2's default border).
    """
    if mode == 'nearest':
        return np.clip(idx, 0, n - 1)
    if mode == 'symmetric':
        idx = np.mod(idx, 2 * n)
        return np.where(idx >= n, 2 * n - 1 - idx, idx)
    if mode == 'reflect101':
        if n == 1:
            return np.zeros_like(idx)
        idx = np.mod(idx, 2 * n - 2)
        return np.where(idx >= n, 2 * n - 2 - idx, idx)
    raise ValueError(f'unknown border mode {mode!r}')


@functools.lru_cache(maxsize=4)
def _host_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix='mmgfn-corrupt')


# a forked child (the generator's workers) has no threads: a fresh pool
os.register_at_fork(after_in_child=_host_pool.cache_clear)


def host_map(fn: Callable, items: Sequence) -> list:
    """``[fn(item) for item in items]`` in ``torch.get_num_threads()``
    threads: the batch-level parallelism of the host kernels (Pillow's
    resize and JPEG codec, numba ``nogil`` loops), which release the GIL
    as the torch ops use the same cores through their own threads. Results
    in order; the first exception is raised."""
    workers = min(len(items), torch.get_num_threads())
    if workers <= 1:
        return [fn(item) for item in items]
    return list(_host_pool(torch.get_num_threads()).map(fn, items))


@functools.lru_cache(maxsize=64)
def gaussian_kernel1d(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights: radius ``int(truncate*sigma +
    0.5)``, ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1 (float64)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


#: bytes of one CPU chunk of image planes: the separable filters make a
#: dozen passes over their input, which stay in cache at this size (on the
#: CPU; other devices take the whole batch at once)
CPU_CHUNK_BYTES = 4 << 20


def plane_chunks(x: torch.Tensor, budget: int = CPU_CHUNK_BYTES) -> list:
    """Split ``B x H x W`` ``x`` along ``B`` into cache-sized chunks on the
    CPU (at least one plane each); one chunk on any other device."""
    if x.device.type != 'cpu':
        return [x]
    plane = x[0].numel() * x.element_size()
    return list(x.split(max(1, budget // max(plane, 1))))


def _correlate_rows(x: torch.Tensor, weights: np.ndarray,
                    mode: str) -> torch.Tensor:
    """Correlate ``... x H x W`` ``x`` along ``H`` (shifted views of one
    padded copy are then contiguous slabs). A symmetric kernel sums its
    taps in scipy's order (centre, then pairs from the outside in,
    ``(x[-j] + x[j]) * w[j]``), which makes float64 results bit-identical
    to ``scipy.ndimage.correlate1d``."""
    radius = len(weights) // 2
    n = x.shape[-2]
    idx = fold_index(np.arange(-radius, n + radius), n, mode)
    padded = x.index_select(-2, torch.as_tensor(idx, device=x.device))
    if np.array_equal(weights, weights[::-1]):
        out = padded.narrow(-2, radius, n) * float(weights[radius])
        pair = torch.empty_like(out)
        for k in range(radius):
            torch.add(padded.narrow(-2, k, n),
                      padded.narrow(-2, 2 * radius - k, n),
                      out=pair)
            out.add_(pair.mul_(float(weights[k])))
        return out
    out = padded.narrow(-2, 0, n) * float(weights[0])
    for k in range(1, len(weights)):
        out.add_(padded.narrow(-2, k, n) * float(weights[k]))
    return out


def correlate1d(x: torch.Tensor, weights: np.ndarray, dim: int,
                mode: str) -> torch.Tensor:
    """Correlate ``B x H x W`` ``x`` along ``dim`` (-2 or -1) with
    odd-length ``weights`` (scipy's ``correlate1d``), borders by ``mode``
    (any dtype, any device)."""
    if len(weights) // 2 == 0:
        return x * float(weights[0])
    if dim in (-2, x.dim() - 2):
        return _correlate_rows(x, weights, mode)
    return _correlate_rows(x.transpose(-1, -2).contiguous(), weights,
                           mode).transpose(-1, -2)


def gaussian_filter(x: torch.Tensor,
                    sigma,
                    mode: str = 'nearest',
                    truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` over the last two dims of
    ``B x H x W`` ``x`` (bit-identical to it in float64).

    This is ``skimage.filters.gaussian`` (its defaults: ``mode='nearest'``,
    ``truncate=4``) per channel. ``sigma``: one float or ``(sigma_h,
    sigma_w)``; rows are filtered first, as scipy does. Returns a
    contiguous tensor of ``x``'s shape and dtype.
    """
    sigmas = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)
    outs = []
    for chunk in plane_chunks(x):
        for dim, s in zip((-2, -1), sigmas):
            if s > 1e-15:
                chunk = correlate1d(
                    chunk, gaussian_kernel1d(float(s), truncate), dim, mode)
        outs.append(chunk)
    return torch.cat(outs).contiguous() if len(outs) > 1 else \
        outs[0].contiguous()


def fft_size(n: int, even: bool = False) -> int:
    """The smallest ``m >= n`` whose prime factors are 2, 3 and 5 (fast
    FFT lengths); ``even``: a multiple of 2 as well (the last axis of a
    real FFT runs at half the cost then)."""
    m = n
    while True:
        r = m
        if even and m % 2:
            m += 1
            continue
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def filter2d_reflect101(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``cv2.filter2D(x, -1, kernel)`` per channel of ``B x H x W`` ``x``
    (correlation, default border ``BORDER_REFLECT_101``), computed with an
    FFT of the padded image as OpenCV does for large kernels (zero-padded
    to a fast FFT size: the kept window never wraps around)."""
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    h, w = x.shape[-2:]
    iy = torch.as_tensor(fold_index(np.arange(-ry, h + ry), h, 'reflect101'),
                         device=x.device)
    ix = torch.as_tensor(fold_index(np.arange(-rx, w + rx), w, 'reflect101'),
                         device=x.device)
    size = (fft_size(h + 2 * ry), fft_size(w + 2 * rx, even=True))
    # correlation = convolution with the flipped kernel
    k = torch.as_tensor(np.ascontiguousarray(kernel[::-1, ::-1]),
                        dtype=x.dtype, device=x.device)
    k_spec = torch.fft.rfft2(k, s=size)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    start = 0
    for chunk in plane_chunks(x, budget=CPU_CHUNK_BYTES // 2):
        padded = chunk.index_select(-2, iy).index_select(-1, ix)
        spec = torch.fft.rfft2(padded, s=size).mul_(k_spec)
        full = torch.fft.irfft2(spec, s=size)
        out[start:start + len(chunk)] = full[..., kh - 1:kh - 1 + h,
                                             kw - 1:kw - 1 + w]
        start += len(chunk)
    return out


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2hsv`` of ``N x 3 x H x W`` values in [0, 1]
    (hue of the last maximal channel wins, as there)."""
    r, g, b = rgb.unbind(1)
    v = rgb.amax(1)
    delta = v - rgb.amin(1)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    s = torch.where(delta == 0, torch.zeros_like(v),
                    delta / torch.where(v == 0, torch.ones_like(v), v))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb`` of ``N x 3 x H x W`` HSV values."""
    h, s, v = hsv.unbind(1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    hi = torch.remainder(hi.to(torch.uint8).long(), 6)
    choices = torch.stack([
        torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t),
                                    (p, q, v), (t, p, v), (v, p, q))
    ])  # 6 x N x 3 x H x W
    index = hi[None, :, None].expand(1, -1, 3, -1, -1)
    return choices.gather(0, index)[0]


def _linear_taps(coords: np.ndarray, n: int,
                 mode: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    i0 = np.floor(coords).astype(np.int64)
    frac = coords - i0
    return fold_index(i0, n, mode), fold_index(i0 + 1, n, mode), frac


def interp_axis(x: torch.Tensor, coords: np.ndarray, dim: int,
                mode: str = 'nearest') -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` at float ``coords``
    (host array, same for every other index); taps outside the axis folded
    by ``mode``."""
    n = x.shape[dim]
    i0, i1, frac = _linear_taps(np.asarray(coords, np.float64), n, mode)
    dev = x.device
    a = x.index_select(dim, torch.as_tensor(i0, device=dev))
    b = x.index_select(dim, torch.as_tensor(i1, device=dev))
    shape = [1] * x.dim()
    shape[dim] = len(coords)
    w = torch.as_tensor(frac, dtype=x.dtype, device=dev).view(shape)
    return a * (1 - w) + b * w


def zoom_coords(n_in: int, zoom: float, n_keep: int) -> np.ndarray:
    """Input coordinates of ``scipy.ndimage.zoom(order=1)``'s first
    ``n_keep`` outputs (output size ``round(n_in * zoom)``, corners
    aligned: ``out * (n_in - 1) / (n_out - 1)``)."""
    n_out = int(round(n_in * zoom))
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return np.arange(min(n_keep, n_out)) * scale


def clipped_zoom(x: torch.Tensor, zoom: float, keep: Sequence[int] = None
                 ) -> torch.Tensor:
    """imagecorruptions' ``clipped_zoom`` of ``... x H x W`` ``x``: the
    centre ``ceil(H/zoom) x ceil(W/zoom)`` crop zoomed by ``zoom`` (scipy
    ``zoom``, order 1), then its first ``keep`` rows and columns (all of
    them when ``keep`` is None)."""
    h, w = x.shape[-2:]
    ch0 = int(np.ceil(h / float(zoom)))
    top0 = (h - ch0) // 2
    ch1 = int(np.ceil(w / float(zoom)))
    top1 = (w - ch1) // 2
    crop = x[..., top0:top0 + ch0, top1:top1 + ch1]
    keep_h, keep_w = keep if keep is not None else (10**9, 10**9)
    out = interp_axis(crop, zoom_coords(ch0, zoom, keep_h), -2)
    return interp_axis(out, zoom_coords(ch1, zoom, keep_w), -1)


def motion_shifts(radius: int, sigma: float, angle: float,
                  shape: Tuple[int, int]) -> Tuple[np.ndarray, list]:
    """Weights and ``(dy, dx)`` shifts of imagecorruptions' ``_motion_blur``
    (stops where a shift reaches the border, as there)."""
    width = radius * 2 + 1
    k = np.exp(-(np.arange(width) - 0)**2 / (2 * sigma**2)) / (
        np.sqrt(2 * np.pi) * sigma)
    kernel = k / np.sum(k)
    point = (width * np.sin(np.deg2rad(angle)),
             width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    shifts = []
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if np.abs(dy) >= shape[0] or np.abs(dx) >= shape[1]:
            break
        shifts.append((dy, dx))
    return kernel, shifts


def motion_blur_(x: torch.Tensor, radius: int, sigma: float,
                 angle: float) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur`` of ``... x H x W`` ``x``: the
    kernel-weighted sum of copies shifted along ``angle`` (degrees) with the
    edge rows/columns repeated (views of one edge-padded copy)."""
    h, w = x.shape[-2:]
    kernel, shifts = motion_shifts(radius, sigma, angle, (h, w))
    if not shifts:
        return torch.zeros_like(x)
    py = max(abs(dy) for dy, _ in shifts)
    px = max(abs(dx) for _, dx in shifts)
    iy = torch.as_tensor(np.clip(np.arange(-py, h + py), 0, h - 1),
                         device=x.device)
    ix = torch.as_tensor(np.clip(np.arange(-px, w + px), 0, w - 1),
                         device=x.device)
    padded = x.index_select(-2, iy).index_select(-1, ix)
    out = torch.zeros_like(x)
    for i, (dy, dx) in enumerate(shifts):
        view = padded[..., py - dy:py - dy + h, px - dx:px - dx + w]
        out = out + float(kernel[i]) * view
    return out


PIL_PRECISION_BITS = 32 - 8 - 2


@functools.lru_cache(maxsize=64)
def pil_box_weights(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's fixed-point ``BOX`` resampling weights (``n_out x n_in``
    integers, in units of ``2**-22``), from ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` of Pillow's ``Resample.c``."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    out = np.zeros((n_out, n_in), np.int64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in) - xmin
        ws = []
        for x in range(xmax):
            t = (x + xmin - center + 0.5) / filterscale
            ws.append(1.0 if -0.5 < t <= 0.5 else 0.0)
        total = sum(ws)
        for x, wgt in enumerate(ws):
            wgt = wgt / total if total != 0.0 else wgt
            out[xx, xmin + x] = int(0.5 + wgt * (1 << PIL_PRECISION_BITS))
    return out


@functools.lru_cache(maxsize=64)
def pil_box_runs(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray,
                                                np.ndarray]:
    """:func:`pil_box_weights` as runs: every output sums the inputs
    ``[start, stop)`` with one integer weight (a box filter weighs its taps
    equally); returns ``start``, ``stop`` and ``weight`` (``n_out`` each)."""
    weights = pil_box_weights(n_in, n_out)
    start = np.zeros(n_out, np.int64)
    stop = np.zeros(n_out, np.int64)
    weight = np.zeros(n_out, np.int64)
    for o in range(n_out):
        nz = np.flatnonzero(weights[o])
        if len(nz) == 0:
            continue
        assert (np.diff(nz) == 1).all() and \
            (weights[o, nz] == weights[o, nz[0]]).all()
        start[o], stop[o], weight[o] = nz[0], nz[-1] + 1, weights[o, nz[0]]
    return start, stop, weight


def pil_box_resize_axis(x: torch.Tensor, n_out: int,
                        dim: int) -> torch.Tensor:
    """One pass of Pillow's 8-bit ``BOX`` resize along ``dim`` (-2 or -1)
    of integer valued ``... x H x W`` ``x``: fixed-point sums (run sums
    from an integer cumulative sum, exact in int32: at most ``255 *
    2**22`` plus rounding), rounded and clipped to 0-255 as Pillow does.
    Returns int32."""
    if dim not in (-2, x.dim() - 2):
        return pil_box_resize_axis(x.transpose(-1, -2).contiguous(), n_out,
                                   -2).transpose(-1, -2)
    start, stop, weight = (torch.as_tensor(a, device=x.device)
                           for a in pil_box_runs(x.shape[-2], n_out))
    shape = x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1])
    csum = torch.zeros(shape, dtype=torch.int32, device=x.device)
    torch.cumsum(x.to(torch.int32), -2, out=csum[..., 1:, :])
    total = csum.index_select(-2, stop) - csum.index_select(-2, start)
    acc = total * weight.to(torch.int32)[:, None] + (
        1 << (PIL_PRECISION_BITS - 1))
    return torch.clamp(acc >> PIL_PRECISION_BITS, 0, 255)


@functools.lru_cache(maxsize=64)
def pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output column of Pillow's ``NEAREST`` resize
    from ``n_in`` to ``n_out``, read off Pillow itself (an image whose
    pixels hold their own column index, resized), so it is exact."""
    from PIL import Image
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[None])
    return np.asarray(ramp.resize((n_out, 1), Image.NEAREST))[0].astype(
        np.int64)
