"""Digital corruptions: contrast, elastic transform, pixelate, JPEG and
(held out) saturate, with the constants of imagecorruptions.

``x``: ``N x 3 x H x W`` RGB, float, values in [0, 255] (pixelate and
JPEG also take uint8: they work on 8-bit values); each function returns the
same shape, float, in [0, 255] (before the uint8 cast). Pixelate runs
Pillow on the CPU and, on other devices, reproduces Pillow's fixed-point
``BOX`` resize and its ``NEAREST`` index map. JPEG compression encodes with
Pillow and decodes with OpenCV on the host (bit-exactness needs the same
libjpeg).
"""
from io import BytesIO

import cv2
import numpy as np
import torch

from .draws import Draws
from .ops import (gaussian_filter, host_map, hsv_to_rgb,
                  pil_box_resize_axis, pil_nearest_index, rgb_to_hsv)

#: contrast factor per severity
CONTRAST = (0.4, .3, .2, .1, .05)
#: displacement gain per severity
ELASTIC_TRANSFORM = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1,
                     250 * 0.12)
#: downscale factor per severity
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
#: JPEG quality per severity
JPEG_COMPRESSION = (25, 18, 15, 10, 7)
#: (saturation gain, offset) per severity
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))


def contrast(x: torch.Tensor, severity: int, draws: Draws,
             **kwargs) -> torch.Tensor:
    """Pull every channel towards its mean by ``c``."""
    c = CONTRAST[severity - 1]
    x = x / 255.
    means = x.mean((2, 3), keepdim=True)
    return torch.clamp((x - means) * c + means, 0, 1) * 255


def saturate(x: torch.Tensor, severity: int, draws: Draws,
             **kwargs) -> torch.Tensor:
    """Scale and offset the HSV saturation."""
    c = SATURATE[severity - 1]
    hsv = rgb_to_hsv(x / 255.)
    sat = torch.clamp(hsv[:, 1:2] * c[0] + c[1], 0, 1)
    hsv = torch.cat([hsv[:, :1], sat, hsv[:, 2:]], 1)
    return torch.clamp(hsv_to_rgb(hsv), 0, 1) * 255


def _bilinear_symmetric(img: torch.Tensor, cy: torch.Tensor,
                        cx: torch.Tensor) -> torch.Tensor:
    """``map_coordinates(order=1, mode='reflect')`` of ``3 x H x W`` ``img``
    at float64 ``H x W`` coordinates (per-pixel, shared by channels)."""
    h, w = img.shape[-2:]
    y0, x0 = torch.floor(cy), torch.floor(cx)
    fy, fx = (cy - y0).to(img.dtype), (cx - x0).to(img.dtype)

    def fold(i: torch.Tensor, n: int) -> torch.Tensor:
        i = torch.remainder(i.long(), 2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)

    ya, yb = fold(y0, h), fold(y0 + 1, h)
    xa, xb = fold(x0, w), fold(x0 + 1, w)
    flat = img.reshape(img.shape[0], -1)

    def at(yi, xi):
        return flat[:, (yi * w + xi).reshape(-1)].reshape(img.shape)

    return ((1 - fy) * ((1 - fx) * at(ya, xa) + fx * at(ya, xb)) +
            fy * ((1 - fx) * at(yb, xa) + fx * at(yb, xb)))


def elastic_transform(x: torch.Tensor, severity: int, draws: Draws,
                      **kwargs) -> torch.Tensor:
    """Resample along a smoothed random displacement field."""
    alpha = ELASTIC_TRANSFORM[severity - 1]
    n, _, h, w = x.shape
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005
    x = x / 255.
    gy = torch.arange(h, device=x.device, dtype=torch.float64)[:, None]
    gx = torch.arange(w, device=x.device, dtype=torch.float64)[None, :]
    outs = []
    for i in range(n):
        fields = []
        for _ in range(2):  # dx, then dy
            field = draws.uniform(-max_d, max_d, (h, w), dtype=torch.float64)
            field = gaussian_filter(field[None], sigma, mode='symmetric',
                                    truncate=3)[0] * alpha
            fields.append(field.to(torch.float32).to(torch.float64))
        dx, dy = fields
        outs.append(_bilinear_symmetric(x[i], gy + dy, gx + dx))
    return torch.clamp(torch.stack(outs), 0, 1) * 255


def host_per_image(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a host function ``H x W x 3 uint8 -> H x W x 3 uint8`` to every
    image of ``N x 3 x H x W`` ``x`` (uint8, or float rounded to 8 bits) in
    :func:`host_map` threads; returns float32 ``N x 3 x H x W`` on ``x``'s
    device, channels-last in memory. Reading ``x`` costs no copy when it is
    uint8 on the CPU in the layout of ``torch.from_numpy(hwc).permute(2, 0,
    1)``, as the transform and the generator pass it."""
    if x.dtype != torch.uint8:
        x = torch.clamp(torch.round(x), 0, 255).to(torch.uint8)
    images = x.permute(0, 2, 3, 1).cpu().numpy()
    n, _, h, w = x.shape
    out = torch.empty((n, h, w, 3), dtype=torch.float32)
    host = out.numpy()

    def one(i: int) -> None:
        host[i] = fn(np.ascontiguousarray(images[i]))

    host_map(one, range(n))
    return out.to(x.device).permute(0, 3, 1, 2)


def pixelate(x: torch.Tensor, severity: int, draws: Draws,
             **kwargs) -> torch.Tensor:
    """Pillow ``BOX`` downscale by ``c`` then ``NEAREST`` upscale.

    ``x`` may be uint8 (values are rounded otherwise). On the CPU this calls
    Pillow's resize itself, image after image (its C loops are faster than
    any torch op here, and its result is the definition); on any other
    device :func:`pixelate_torch`, which reproduces it exactly.
    """
    if x.device.type != 'cpu':
        return pixelate_torch(x, severity)
    from PIL import Image
    c = PIXELATE[severity - 1]
    h, w = x.shape[-2:]
    small = (int(w * c), int(h * c))
    return host_per_image(
        x, lambda rgb: np.asarray(
            Image.fromarray(rgb).resize(small, Image.BOX).resize(
                (w, h), Image.NEAREST)))


def pixelate_torch(x: torch.Tensor, severity: int) -> torch.Tensor:
    """:func:`pixelate` in torch ops on ``x``'s device: Pillow's fixed-point
    ``BOX`` resize and its ``NEAREST`` index map, bit-identical; float32
    output."""
    c = PIXELATE[severity - 1]
    h, w = x.shape[-2:]
    small_w, small_h = int(w * c), int(h * c)
    values = x if x.dtype == torch.uint8 else torch.clamp(
        torch.round(x), 0, 255)
    small = pil_box_resize_axis(values, small_w, -1)
    small = pil_box_resize_axis(small, small_h, -2).to(torch.float32)
    iy = torch.as_tensor(pil_nearest_index(small_h, h), device=x.device)
    ix = torch.as_tensor(pil_nearest_index(small_w, w), device=x.device)
    return small.index_select(-1, ix).index_select(-2, iy)


def jpeg_compression(x: torch.Tensor, severity: int, draws: Draws,
                     **kwargs) -> torch.Tensor:
    """Pillow JPEG encode at quality ``c``, decode (host, ``x`` may be
    uint8; values are rounded otherwise).

    The decode is OpenCV's: the same libjpeg-turbo integer IDCT, fancy
    upsampling and colour conversion as Pillow's decoder (bit-identical,
    which the tests check against imagecorruptions), without Pillow's
    Python-side copies, so that the images of a batch decode in parallel.
    """
    from PIL import Image
    c = JPEG_COMPRESSION[severity - 1]
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION

    def roundtrip(rgb: np.ndarray) -> np.ndarray:
        buf = BytesIO()
        Image.fromarray(rgb).save(buf, 'JPEG', quality=c)
        return cv2.imdecode(np.frombuffer(buf.getbuffer(), np.uint8), flags)

    return host_per_image(x, roundtrip)
