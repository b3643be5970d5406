"""Weather corruptions: snow, frost, fog, brightness and (held out)
spatter, with the constants of imagecorruptions.

``x``: ``N x 3 x H x W`` RGB, float, values in [0, 255]; each function
returns the same shape, float, in [0, 255] (before the uint8 cast).
Frost blends crops of the six frost photos shipped inside the
imagecorruptions package (read and resized once per image size on the
host, with OpenCV as there); spatter's liquid branch (severities 1-3) runs
OpenCV's edge, distance and histogram steps on the host.
"""
import functools
import importlib.resources
from typing import Tuple

import cv2
import numpy as np
import torch

from .draws import Draws
from .ops import (CPU_CHUNK_BYTES, clipped_zoom, gaussian_filter,
                  hsv_to_rgb, motion_blur_, rgb_to_hsv)

#: (loc, scale, zoom, threshold, blur radius, blur sigma, blend) per severity
SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
#: (image weight, frost weight) per severity
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FROST_FILES = ('frost1.png', 'frost2.png', 'frost3.png', 'frost4.jpg',
               'frost5.jpg', 'frost6.jpg')
#: (fog strength, plasma wibble decay) per severity
FOG = ((1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4))
#: value (HSV) added per severity
BRIGHTNESS = (.1, .2, .3, .4, .5)
#: (loc, scale, sigma, threshold, intensity, mud) per severity
SPATTER = ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
           (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
           (0.67, 0.4, 1, 0.65, 1.5, 1))


def snow(x: torch.Tensor, severity: int, draws: Draws,
         **kwargs) -> torch.Tensor:
    """Zoomed, thresholded, motion-blurred flakes over a whitened image."""
    c = SNOW[severity - 1]
    h, w = x.shape[-2:]
    x = x / 255.
    outs = []
    for i in range(x.shape[0]):
        layer = draws.normal((h, w), c[0], c[1])
        layer = clipped_zoom(layer, c[2])
        layer = torch.where(layer < c[3], torch.zeros_like(layer), layer)
        layer = torch.clamp(layer, 0, 1)
        layer = motion_blur_(layer, c[4], c[5], draws.uniform(-135, -45))
        layer = torch.round(layer * 255).clamp(0, 255) / 255.
        layer = layer[:h, :w]
        img = x[i]
        # cv2.COLOR_RGB2GRAY
        gray = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
        img = c[6] * img + (1 - c[6]) * torch.maximum(img, gray * 1.5 + 0.5)
        outs.append(img + layer + torch.flip(layer, (-2, -1)))
    return torch.clamp(torch.stack(outs), 0, 1) * 255


@functools.lru_cache(maxsize=32)
def frost_layer(index: int, h: int, w: int) -> np.ndarray:
    """Frost photo ``index`` (BGR uint8) rescaled to cover ``h x w`` as
    imagecorruptions does (cubic, 1.1 times the covering scale)."""
    ref = importlib.resources.files('imagecorruptions') / 'frost' / \
        FROST_FILES[index]
    with importlib.resources.as_file(ref) as path:
        frost = cv2.imread(str(path))
    if frost is None:
        raise FileNotFoundError(f'cannot read the frost image {ref}')
    fh, fw = frost.shape[:2]
    scale = 1
    if fh >= h and fw >= w:
        scale = 1
    elif fh < h and fw >= w:
        scale = h / fh
    elif fh >= h and fw < w:
        scale = w / fw
    else:
        scale = np.maximum(h / fh, w / fw)
    scale *= 1.1
    size = (int(np.ceil(fw * scale)), int(np.ceil(fh * scale)))
    return cv2.resize(frost, dsize=size, interpolation=cv2.INTER_CUBIC)


def frost(x: torch.Tensor, severity: int, draws: Draws,
          **kwargs) -> torch.Tensor:
    """Blend with a random crop of one of the six frost photos."""
    c = FROST[severity - 1]
    h, w = x.shape[-2:]
    outs = []
    for i in range(x.shape[0]):
        layer = frost_layer(draws.randint(0, 6), h, w)
        top = draws.randint(0, layer.shape[0] - h)
        left = draws.randint(0, layer.shape[1] - w)
        crop = layer[top:top + h, left:left + w, ::-1].transpose(2, 0, 1)
        crop = torch.from_numpy(crop.copy()).to(x.device, x.dtype)
        outs.append(c[0] * x[i] + c[1] * crop)
    return torch.clamp(torch.stack(outs), 0, 255)


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, draws: Draws,
                   keep: Tuple[int, int]) -> torch.Tensor:
    """Diamond-square height maps in [0, 1], ``n x mapsize x mapsize``, of
    which the top-left ``keep = (h, w)`` corner is returned.

    imagecorruptions' ``plasma_fractal``: float32 map, float64 perturbations
    with numpy draws (same draws, same order, same shapes; float32 ones with
    torch draws, which need not match numpy's), rolls as there.
    """
    assert mapsize & (mapsize - 1) == 0
    m = torch.zeros((n, mapsize, mapsize), dtype=torch.float32,
                    device=draws.device)
    step = mapsize
    wibble = 100.

    def wibbled_mean(a: torch.Tensor) -> torch.Tensor:
        if draws.mode == 'torch':  # wibble * U(-wibble, wibble), one pass
            return a / 4 + draws.uniform(-wibble * wibble, wibble * wibble,
                                         tuple(a.shape), dtype=a.dtype)
        noise = draws.uniform(-wibble, wibble, tuple(a.shape),
                              dtype=torch.float64)
        return (a / 4).to(torch.float64) + wibble * noise

    while step >= 2:
        half = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        acc = corner + torch.roll(corner, -1, 1)
        acc = acc + torch.roll(acc, -1, 2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(acc).to(
            torch.float32)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = (dr + torch.roll(dr, 1, 1)) + (ul + torch.roll(ul, -1, 2))
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(lt).to(
            torch.float32)
        tt = (dr + torch.roll(dr, 1, 2)) + (ul + torch.roll(ul, -1, 1))
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(tt).to(
            torch.float32)
        step //= 2
        wibble /= wibbledecay
    # normalised over the whole map, computed on the kept corner only:
    # max(m - min) = max(m) - min, as rounding is monotonic
    low = m.amin((1, 2), keepdim=True)
    high = m.amax((1, 2), keepdim=True) - low
    h, w = keep
    return (m[:, :h, :w] - low) / high


def fog(x: torch.Tensor, severity: int, draws: Draws,
        **kwargs) -> torch.Tensor:
    """Add a plasma-fractal haze, rescale by the image's maximum."""
    c = FOG[severity - 1]
    n, _, h, w = x.shape
    side = max(h, w, 3)
    mapsize = 1 if side == 0 else 2**(side - 1).bit_length()
    x = x / 255.
    max_val = x.amax((1, 2, 3), keepdim=True)
    # on the CPU a few maps at a time (each 4 MB at 640 x 480), in cache
    per = n if x.device.type != 'cpu' else max(
        1, 2 * CPU_CHUNK_BYTES // (4 * mapsize * mapsize))
    plasma = torch.cat([
        plasma_fractal(min(per, n - i), mapsize, c[1], draws, (h, w))
        for i in range(0, n, per)
    ])[:, None]
    x = x + (c[0] * plasma).to(x.dtype)
    return torch.clamp(x * max_val / (max_val + c[0]), 0, 1) * 255


def brightness(x: torch.Tensor, severity: int, draws: Draws,
               **kwargs) -> torch.Tensor:
    """Raise the HSV value by ``c`` (``skimage.color`` conversions)."""
    c = BRIGHTNESS[severity - 1]
    hsv = rgb_to_hsv(x / 255.)
    hsv = torch.cat([hsv[:, :2], torch.clamp(hsv[:, 2:] + c, 0, 1)], 1)
    return torch.clamp(hsv_to_rgb(hsv), 0, 1) * 255


def _liquid_mask(layer: np.ndarray) -> np.ndarray:
    """Spatter's liquid mask (severities 1-3) from the thresholded layer,
    OpenCV steps of imagecorruptions on the host (float32 ``H x W``)."""
    liquid = (layer * 255).astype(np.uint8)
    dist = 255 - cv2.Canny(liquid, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, ker)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    return liquid * dist


#: water colour (RGB slots of imagecorruptions' BGR-named array) and mud
WATER = (175 / 255., 238 / 255., 238 / 255.)
MUD = (63 / 255., 42 / 255., 20 / 255.)


def _colour(rgb: Tuple[float, float, float], like: torch.Tensor,
            dtype) -> torch.Tensor:
    return torch.tensor(rgb, dtype=dtype, device=like.device).view(3, 1, 1)


def spatter(x: torch.Tensor, severity: int, draws: Draws,
            **kwargs) -> torch.Tensor:
    """Water drops (severities 1-3) or mud (4-5) from a blurred noise
    layer."""
    c = SPATTER[severity - 1]
    h, w = x.shape[-2:]
    x = x / 255.
    outs = []
    for i in range(x.shape[0]):
        layer = draws.normal((h, w), c[0], c[1]).to(torch.float64)
        layer = gaussian_filter(layer[None], c[2])[0]
        layer = torch.where(layer < c[3], torch.zeros_like(layer), layer)
        if c[5] == 0:
            m = torch.from_numpy(_liquid_mask(layer.cpu().numpy())).to(
                x.device, torch.float32)
            m = m / m.max() * c[4]
            colour = _colour(WATER, x, torch.float32)
            outs.append(torch.clamp(x[i] + m * colour, 0, 1))
        else:
            m = (layer > c[3]).to(torch.float32)
            m = gaussian_filter(m[None], c[4])[0]
            m = torch.where(m < 0.8, torch.zeros_like(m), m)
            colour = _colour(MUD, x, torch.float64) * m
            outs.append(torch.clamp(x[i] * (1 - m) + colour, 0, 1))
    return torch.stack(outs).to(x.dtype) * 255
