"""3D rotary position embedding (Wan2.1 layout), computed on the fly from integer positions.

The head dimension `d` is split into three parts for (frame, row, col): `[d - 4 * (d // 6), 2 * (d // 6),
2 * (d // 6)]`. Each part rotates consecutive channel pairs `(2i, 2i + 1)` by `position * theta ** (-2i / part)`.
Nothing is tabulated up front, so any frame position works; which frame positions a token gets is the attention
mode's rule (`attention.BlockCausal.rope_frames`). Rotations are computed in float32 and rounded once to the
tensor's dtype, both out of place (`apply_rope`, differentiable) and into a preallocated buffer (`rope_into`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels given to (frame, row, col); each must be even and positive."""
    if head_dim % 2 != 0 or head_dim < 6:
        raise ValueError(f"RoPE needs an even head dim of at least 6, got {head_dim}")
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def grid_positions(
    frame_positions: Sequence[int], height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """Integer (frame, row, col) positions of a token grid whose frames sit at `frame_positions`, in (frame, row,
    col) order: `[len(frame_positions) * height * width, 3]`."""
    if len(frame_positions) == 0 or min(frame_positions) < 0 or min(height, width) <= 0:
        raise ValueError(
            f"expected non-negative frame positions and a non-empty grid, got frames {list(frame_positions)[:8]} "
            f"and grid ({height}, {width})"
        )
    f = torch.as_tensor(list(frame_positions), device=device)
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


def _check_tables(x: torch.Tensor, cos: torch.Tensor, token_dim: int) -> None:
    if x.shape[token_dim] != cos.shape[0] or x.shape[-1] != 2 * cos.shape[-1]:
        raise ValueError(
            f"RoPE tables cover {cos.shape[0]} tokens x {2 * cos.shape[-1]} channels, "
            f"but x has shape {tuple(x.shape)}"
        )


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of `x` `[B, S, heads, head_dim]` by `cos`, `sin` `[S, head_dim // 2]`; same shape/dtype.

    Differentiable; allocates the result (use `rope_into` to write into a buffer without allocating)."""
    _check_tables(x, cos, 1)
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs.unbind(-1)
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


def rope_into(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor,
              scratch: torch.Tensor | None = None) -> torch.Tensor:
    """`out` <- `x` rotated, head-major: x and out `[B, heads, S, head_dim]` (views allowed), cos / sin
    `[S, head_dim // 2]`. Four elementwise ops with `out=`, nothing allocated; not differentiable (no_grad use).

    The arithmetic is float32: a float32 `out` is written directly, any other dtype needs a float32 `scratch` of
    out's shape, rounded into `out` once (the same numbers as `apply_rope`)."""
    _check_tables(x, cos, 2)
    if out.shape != x.shape:
        raise ValueError(f"out {tuple(out.shape)} must have the shape of x {tuple(x.shape)}")
    target = out if out.dtype == torch.float32 else scratch
    if target is None or target.shape != x.shape or target.dtype != torch.float32:
        raise ValueError(f"rotating into {out.dtype} needs a float32 scratch of shape {tuple(x.shape)}")
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    out_even, out_odd = target.unflatten(-1, (-1, 2)).unbind(-1)
    torch.mul(even, cos, out=out_even)
    out_even.addcmul_(odd, sin, value=-1)
    torch.mul(even, sin, out=out_odd)
    out_odd.addcmul_(odd, cos)
    if target is not out:
        out.copy_(target)
    return out


class RopeTables:
    """`(cos, sin)` `[frames * height * width, head_dim // 2]` for a token grid whose frames sit at given positions,
    remembered for the last few position layouts (a stream reuses a handful, so steady chunks allocate none)."""

    def __init__(self, head_dim: int, theta: float, height: int, width: int, device: torch.device | str,
                 remember: int = 8) -> None:
        rope_axis_dims(head_dim)
        self.head_dim = head_dim
        self.theta = theta
        self.height = height
        self.width = width
        self.device = torch.device(device)
        self.remember = remember
        self._tables: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def __call__(self, frame_positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        key = tuple(int(p) for p in frame_positions)
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        positions = grid_positions(key, self.height, self.width, device=self.device)
        tables = rope_angles(positions, self.head_dim, self.theta)
        self._tables[key] = tables
        if len(self._tables) > self.remember:
            self._tables.popitem(last=False)
        return tables
