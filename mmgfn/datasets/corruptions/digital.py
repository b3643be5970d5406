"""Digital corruptions: contrast, elastic transform, pixelate, JPEG and
(held out) saturate, with the constants of imagecorruptions.

``x``: ``N x 3 x H x W`` RGB, float, values in [0, 255]; each function
returns the same shape, float, in [0, 255] (before the uint8 cast).
Pixelate reproduces Pillow's fixed-point ``BOX`` resize and its
``NEAREST`` index map. JPEG compression encodes and decodes with Pillow on
the host (bit-exactness needs the same libjpeg); only the transfer is
batched.
"""
from io import BytesIO

import numpy as np
import torch

from .draws import Draws
from .ops import (gaussian_filter, hsv_to_rgb, pil_box_resize_axis,
                  pil_nearest_index, rgb_to_hsv)

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


def pixelate(x: torch.Tensor, severity: int, draws: Draws,
             **kwargs) -> torch.Tensor:
    """Pillow ``BOX`` downscale by ``c`` then ``NEAREST`` upscale."""
    c = PIXELATE[severity - 1]
    h, w = x.shape[-2:]
    small_w, small_h = int(w * c), int(h * c)
    values = torch.clamp(torch.round(x), 0, 255).to(torch.int64)
    small = pil_box_resize_axis(values, small_w, -1)
    small = pil_box_resize_axis(small, small_h, -2)
    iy = torch.as_tensor(pil_nearest_index(small_h, h), device=x.device)
    ix = torch.as_tensor(pil_nearest_index(small_w, w), device=x.device)
    return small.index_select(-2, iy).index_select(-1, ix).to(x.dtype)


def jpeg_compression(x: torch.Tensor, severity: int, draws: Draws,
                     **kwargs) -> torch.Tensor:
    """Pillow JPEG encode at quality ``c`` and decode (host)."""
    from PIL import Image
    c = JPEG_COMPRESSION[severity - 1]
    host = torch.clamp(torch.round(x), 0, 255).to(torch.uint8).permute(
        0, 2, 3, 1).cpu().numpy()
    outs = []
    for rgb in host:
        buf = BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, 'JPEG',
                                                       quality=c)
        outs.append(np.asarray(Image.open(buf).convert('RGB')))
    out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)
    return out.to(x.device, x.dtype)

