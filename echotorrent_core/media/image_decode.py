"""Turn any supported image source into an RGB tensor `[3, h, w]` float32 in [0, 1], at its own size.

Sources: a file path (anything Pillow reads; the first frame of an animation; EXIF orientation applied), a
`PIL.Image`, a numpy array or a torch tensor. Arrays and tensors may be `[H, W]`, `[H, W, C]`, `[C, H, W]` or a
batch of one `[1, H, W, C]` / `[1, C, H, W]` with C in {1, 3, 4}; when both ends of a 3-D shape could be the
channels, channels-last (the ComfyUI IMAGE layout) wins. Values: uint8 (0..255), uint16 (0..65535) or floating
point in [0, 1]. Grayscale is repeated to RGB; an alpha channel is composited onto a white background (the
usual look of a cut-out portrait); 16-bit images keep their precision.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import MediaError
from .files import require_media_file

ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor

CHANNEL_COUNTS = (1, 3, 4)
# Float pixels may stray this far outside [0, 1] (rounding) before they are treated as a wrong value range.
FLOAT_RANGE_TOLERANCE = 1e-3
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def image_to_unit_rgb(source: ImageSource) -> torch.Tensor:
    """Decode `source` to `[3, h, w]` float32 RGB in [0, 1] (see the module docstring for what is accepted)."""
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_unit_rgb(_open_image_file(source))
    if isinstance(source, Image.Image):
        return _pil_to_unit_rgb(source)
    if isinstance(source, np.ndarray):
        return _tensor_to_unit_rgb(_numpy_to_tensor(source))
    if isinstance(source, torch.Tensor):
        return _tensor_to_unit_rgb(source.detach().cpu())
    raise TypeError(
        f"expected an image path, PIL.Image, numpy array or torch tensor, got {type(source).__name__}"
    )


def _open_image_file(path: str | os.PathLike[str]) -> Image.Image:
    resolved = require_media_file(path, "image")
    try:
        with Image.open(resolved) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise MediaError(f"could not read image file {resolved}: not a valid image or truncated ({error})") from error


def _pil_to_unit_rgb(image: Image.Image) -> torch.Tensor:
    if image.width == 0 or image.height == 0:
        raise MediaError(f"image has no pixels (size {image.width}x{image.height})")
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float32) / 65535.0
        return torch.from_numpy(np.clip(gray, 0.0, 1.0)).expand(3, -1, -1).contiguous()
    if image.mode == "F":
        return _tensor_to_unit_rgb(torch.from_numpy(np.asarray(image, dtype=np.float32)))
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    converted = image.convert("RGBA" if has_alpha else "RGB")
    return _tensor_to_unit_rgb(torch.from_numpy(np.asarray(converted).copy()))


def _numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype in (np.uint8, np.uint16) or np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(array))
    raise MediaError(f"expected image values as uint8, uint16 or floating point, got numpy dtype {array.dtype}")


def _tensor_to_unit_rgb(tensor: torch.Tensor) -> torch.Tensor:
    channels_first = _to_channels_first(tensor)
    values = _to_unit_range(channels_first)
    if values.shape[0] == 1:
        return values.expand(3, -1, -1).contiguous()
    if values.shape[0] == 4:
        rgb, alpha = values[:3], values[3:]
        return rgb * alpha + (1.0 - alpha)
    return values.contiguous()


def _to_channels_first(tensor: torch.Tensor) -> torch.Tensor:
    shape = tuple(tensor.shape)
    if tensor.ndim == 4:
        if shape[0] != 1:
            raise MediaError(f"expected a single image (batch size 1), got a batch of {shape[0]} images {shape}")
        tensor = tensor[0]
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    elif tensor.ndim == 3:
        if tensor.shape[-1] in CHANNEL_COUNTS:
            tensor = tensor.permute(2, 0, 1)
        elif tensor.shape[0] not in CHANNEL_COUNTS:
            raise MediaError(
                f"expected 1 (gray), 3 (RGB) or 4 (RGBA) channels as the last or first dimension, got shape {shape}"
            )
    else:
        raise MediaError(f"expected an image shaped [H, W], [H, W, C], [C, H, W] or [1, H, W, C], got shape {shape}")
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise MediaError(f"image has no pixels (shape {shape})")
    return tensor


def _to_unit_range(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / 255.0
    if tensor.dtype == torch.uint16:
        return tensor.to(torch.float32) / 65535.0
    if not tensor.is_floating_point():
        raise MediaError(
            f"expected image values as uint8, uint16 or floating point in [0, 1], got dtype {tensor.dtype}"
        )
    values = tensor.to(torch.float32)
    if not torch.isfinite(values).all():
        raise MediaError("image contains NaN or infinite values")
    low, high = values.min().item(), values.max().item()
    if low < -FLOAT_RANGE_TOLERANCE or high > 1.0 + FLOAT_RANGE_TOLERANCE:
        raise MediaError(f"expected floating point image values in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return values.clamp(0.0, 1.0)
