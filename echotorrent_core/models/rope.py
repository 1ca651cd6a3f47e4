"""3D rotary position embedding (Wan2.1 layout), computed on the fly from integer positions.

The head dimension `d` is split into three parts for (frame, row, col): `[d - 4 * (d // 6), 2 * (d // 6),
2 * (d // 6)]`. Each part rotates consecutive channel pairs `(2i, 2i + 1)` by `position * theta ** (-2i / part)`.
Nothing is tabulated, so frame positions can grow without limit (streaming keeps counting past the window).
"""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels given to (frame, row, col); each must be even and positive."""
    if head_dim % 2 != 0 or head_dim < 6:
        raise ValueError(f"RoPE needs an even head dim of at least 6, got {head_dim}")
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def grid_positions(
    frame_start: int, frames: int, height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """Integer (frame, row, col) positions of a token grid in (frame, row, col) order: `[frames*height*width, 3]`."""
    if frame_start < 0 or min(frames, height, width) <= 0:
        raise ValueError(
            f"expected frame_start >= 0 and a non-empty grid, got frame_start={frame_start}, "
            f"grid=({frames}, {height}, {width})"
        )
    f = torch.arange(frame_start, frame_start + frames, device=device)
    r = torch.arange(height, device=device)
    c = torch.arange(width, device=device)
    grid = torch.stack(torch.meshgrid(f, r, c, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine of the rotation angle of every channel pair.

    positions: `[S, 3]` integer (frame, row, col). Returns `(cos, sin)`, each `[S, head_dim // 2]` float32
    (angles are formed in float64 so large frame indices keep their precision).
    """
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"expected positions of shape [S, 3], got {tuple(positions.shape)}")
    inverse_freqs = []
    for part in rope_axis_dims(head_dim):
        exponent = torch.arange(0, part, 2, dtype=torch.float64, device=positions.device) / part
        inverse_freqs.append(theta ** (-exponent))
    pos = positions.to(torch.float64)
    angles = torch.cat([pos[:, axis, None] * freqs[None, :] for axis, freqs in enumerate(inverse_freqs)], dim=1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of `x` `[B, S, heads, head_dim]` by `cos`, `sin` `[S, head_dim // 2]`; same shape/dtype."""
    if x.shape[1] != cos.shape[0] or x.shape[-1] != 2 * cos.shape[-1]:
        raise ValueError(
            f"RoPE tables cover {cos.shape[0]} tokens x {2 * cos.shape[-1]} channels, "
            f"but x has shape {tuple(x.shape)}"
        )
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs.unbind(-1)
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
