"""Reference image loading: any source -> `[3, H, W]` float32 in [-1, 1] at the generator's resolution."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from .errors import MediaError
from .image_decode import ImageSource, image_to_unit_rgb

ResizePolicy = Literal["cover", "contain", "stretch"]
RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)
SIZE_MULTIPLE = 16  # VAE stride 8 times DiT patch 2


def load_image(source: ImageSource, height: int, width: int, policy: ResizePolicy = "cover") -> torch.Tensor:
    """Load a reference image and fit it to `height` x `width`; returns `[3, height, width]` float32 in [-1, 1].

    `source`: a path, `PIL.Image`, numpy array or torch tensor (layouts and value ranges in `image_decode`; alpha
    is composited onto white). `height` and `width` must be positive multiples of 16. `policy`:
    - "cover" (default): scale so the image covers the whole target, then centre-crop the overflow;
    - "contain": scale so the whole image fits, then centre it on black bars (letterbox / pillarbox);
    - "stretch": scale each axis independently to the target (aspect ratio not kept).
    Resampling is antialiased bicubic.
    """
    check_target_size(height, width)
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; expected one of {list(RESIZE_POLICIES)}")
    rgb = image_to_unit_rgb(source)
    if policy == "cover":
        fitted = _cover(rgb, height, width)
    elif policy == "contain":
        fitted = _contain(rgb, height, width)
    else:
        fitted = _resize(rgb, height, width)
    return fitted * 2.0 - 1.0


def check_target_size(height: int, width: int) -> None:
    """Raise `MediaError` unless `height` and `width` are positive integer multiples of 16."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % SIZE_MULTIPLE != 0:
            raise MediaError(
                f"target {name} must be a positive multiple of {SIZE_MULTIPLE} (VAE stride x patch size), got {value!r}"
            )


def _resize(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`[3, h, w]` -> `[3, height, width]` in [0, 1]."""
    if tuple(rgb.shape[1:]) == (height, width):
        return rgb
    resized = F.interpolate(rgb[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized[0].clamp(0.0, 1.0)


def _cover(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    src_h, src_w = rgb.shape[1:]
    scale = max(height / src_h, width / src_w)
    scaled_h = max(height, round(src_h * scale))
    scaled_w = max(width, round(src_w * scale))
    scaled = _resize(rgb, scaled_h, scaled_w)
    top = (scaled_h - height) // 2
    left = (scaled_w - width) // 2
    return scaled[:, top : top + height, left : left + width]


def _contain(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    src_h, src_w = rgb.shape[1:]
    scale = min(height / src_h, width / src_w)
    scaled_h = min(height, max(1, round(src_h * scale)))
    scaled_w = min(width, max(1, round(src_w * scale)))
    scaled = _resize(rgb, scaled_h, scaled_w)
    canvas = torch.zeros(3, height, width, dtype=scaled.dtype)
    top = (height - scaled_h) // 2
    left = (width - scaled_w) // 2
    canvas[:, top : top + scaled_h, left : left + scaled_w] = scaled
    return canvas
