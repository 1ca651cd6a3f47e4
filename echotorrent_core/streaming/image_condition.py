"""Image-to-video condition channels for Wan2.1 I2V checkpoints (in_dim 36 = 16 noise + 4 mask + 16 condition).

Wan I2V conditions a clip on `y = cat(mask, vae.encode([portrait, zero frames...]))`: the 4 mask channels (one per
video frame folded into a latent frame) are 1 on the portrait's latent frame and 0 elsewhere. When streaming, the
portrait is the sink frame; every generated frame gets mask 0 and the latent of all-zero (mid-grey) frames that
follow the portrait, computed once from a short encoded clip (the causal VAE reaches that steady latent after two
groups of zero frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageCondition:
    """Condition channels of the sink `[1, 4 + z, 1, h, w]` and of one generated frame `[1, 4 + z, 1, h, w]`."""

    sink: torch.Tensor
    frame: torch.Tensor

    def for_frames(self, count: int) -> torch.Tensor:
        """Condition channels of `count` generated frames: `[1, 4 + z, count, h, w]`."""
        return self.frame.expand(-1, -1, count, -1, -1)


def build_image_condition(vae: torch.nn.Module, pixels: torch.Tensor, dtype: torch.dtype) -> ImageCondition:
    """pixels `[1, 3, 1, H, W]` in [-1, 1] (the portrait, in the VAE's dtype) -> the i2v condition channels."""
    stride = vae.cfg.temporal_stride
    clip = torch.cat([pixels, pixels.new_zeros(pixels.shape[0], 3, 2 * stride, *pixels.shape[3:])], dim=2)
    latents = vae.encode(clip).to(dtype)
    ones = latents.new_ones(latents.shape[0], stride, 1, *latents.shape[3:])
    sink = torch.cat([ones, latents[:, :, :1]], dim=1)
    frame = torch.cat([torch.zeros_like(ones), latents[:, :, -1:]], dim=1)
    return ImageCondition(sink=sink, frame=frame)
