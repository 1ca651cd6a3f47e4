"""The portrait colour map: an affine RGB map (3x3 + bias) fitted from the decoded portrait to the portrait.

A small VAE shifts colours (measured on the default model: the held-out reconstructions are 20-40 levels off in
flat backgrounds, and the student's videos inherit it). Every stream starts by decoding the encoded portrait (the
attention sink), so the stream knows exactly how its decoder renders the portrait's colours; the least-squares map
from that decoded frame to the portrait, applied to every decoded frame, undoes the shift. Ridge regularisation
pulls the map towards the identity where the portrait does not determine it (a portrait of few colours), so a VAE
that renders colours faithfully gets (almost) the identity.

Pixels are in the core's convention, [-1, 1]. A map is `[4, 3]`: rows 0-2 the matrix applied to (r, g, b), row 3
the bias: `out = [rgb, 1] @ map`.
"""

from __future__ import annotations

import torch

IDENTITY_COLOUR_MAP = torch.cat([torch.eye(3), torch.zeros(1, 3)])
DEFAULT_RIDGE = 1e-3  # weight of ||map - identity||^2 beside the mean squared pixel error (1e-3 and 0 score alike on
                      # the default model; 1e-2 loses 0.1 dB, 1e-1 0.7 dB)


def fit_colour_map(decoded: torch.Tensor, target: torch.Tensor, ridge: float = DEFAULT_RIDGE) -> torch.Tensor:
    """Least-squares affine map `[4, 3]` (float32, CPU) taking `decoded` `[3, H, W]` to `target` `[3, H, W]`:
    argmin_M mean ||[decoded, 1] M - target||^2 + ridge ||M - identity||^2."""
    if decoded.ndim != 3 or decoded.shape[0] != 3:
        raise ValueError(f"expected a decoded RGB image [3, H, W], got {tuple(decoded.shape)}")
    if decoded.shape != target.shape:
        raise ValueError(f"decoded and target images must have the same shape, got {tuple(decoded.shape)} and "
                         f"{tuple(target.shape)}")
    flat = decoded.detach().reshape(3, -1).double()
    source = torch.cat([flat, flat.new_ones(1, flat.shape[1])])  # [4, pixels]: rgb and the bias's constant 1
    wanted = target.detach().reshape(3, -1).to(flat)
    pixels = flat.shape[1]
    gram = source @ source.T / pixels + ridge * torch.eye(4).to(flat)
    moment = source @ wanted.T / pixels + ridge * IDENTITY_COLOUR_MAP.to(flat)
    return torch.linalg.solve(gram, moment).float().cpu()


def apply_colour_map(video: torch.Tensor, colour_map: torch.Tensor) -> torch.Tensor:
    """A colour map `[4, 3]` applied to video `[..., 3, T, H, W]` in [-1, 1] (channels at dim -4); clamped to
    [-1, 1], same shape, dtype and device."""
    if colour_map.shape != (4, 3):
        raise ValueError(f"expected a colour map [4, 3], got {tuple(colour_map.shape)}")
    if video.ndim < 4 or video.shape[-4] != 3:
        raise ValueError(f"expected video [..., 3, T, H, W], got {tuple(video.shape)}")
    mapping = colour_map.to(video.device, video.dtype)
    channels_last = video.movedim(-4, -1)
    mapped = channels_last @ mapping[:3] + mapping[3]
    return mapped.movedim(-1, -4).clamp(-1.0, 1.0)
