"""One Wan DiT block with per-frame timestep modulation and the optional audio cross-attention."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from echotorrent_core.config import DiTConfig

from .audio_adapter import AudioCrossAttention
from .dit_attention import ContextKV, CrossAttention, SelfAttention

# (q, k before RoPE, v) each [B, L, heads, head_dim] -> [B, L, heads * head_dim]; supplied per forward, it applies
# RoPE at the positions its attention mode gives (bidirectional, block-causal per chunk, or the KV cache).
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _per_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """`[B, L, dim]` -> `[B, frames, L / frames, dim]` so per-frame modulation `[B, frames, 1, dim]` broadcasts."""
    return x.unflatten(1, (frames, -1))


class WanBlock(nn.Module):
    """Self-attention, text (+ image) cross-attention, optional audio cross-attention, FFN.

    Native names: `self_attn`, `cross_attn`, `norm3` (affine, before cross-attention), `ffn.{0,2}`, `modulation`
    `[1, 6, dim]` (shift, scale, gate of self-attention, then of the FFN), audio `norm_x`, `audio_cross_attn`.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps, image=cfg.has_image_branch)
        if cfg.audio is not None:
            self.norm_x = nn.LayerNorm(dim, cfg.eps, elementwise_affine=True)
            self.audio_cross_attn = AudioCrossAttention(dim, cfg.audio, cfg.num_heads)
        self.norm2 = nn.LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        attend: Attend,
        context: ContextKV,
        audio: torch.Tensor | None,
    ) -> torch.Tensor:
        """Run the block.

        x `[B, L, dim]` tokens in (frame, row, col) order; e `[B, Ft, 6, dim]` projected time embedding with
        Ft = 1 (one timestep per sample) or Ft = frames; attend the self-attention (RoPE included); context this
        block's projected text (+ image) keys / values; audio `[B, frames, N, token_dim]` or None (the audio layers
        are skipped). Returns `[B, L, dim]`.
        """
        frames = e.shape[1]
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e.float()).unsqueeze(3).unbind(2)
        x_frames = _per_frame(x.float(), frames)

        h = (self.norm1(x_frames) * (1 + scale1) + shift1).flatten(1, 2).to(x.dtype)
        y = self.self_attn.o(attend(*self.self_attn.project(h)))
        x = (x_frames + _per_frame(y.float(), frames) * gate1).flatten(1, 2).to(x.dtype)

        x = x + self.cross_attn(self.norm3(x), context)
        if audio is not None:
            x = x + self.audio_cross_attn(self.norm_x(x), audio)

        x_frames = _per_frame(x.float(), frames)
        h = (self.norm2(x_frames) * (1 + scale2) + shift2).flatten(1, 2).to(x.dtype)
        y = self.ffn(h)
        return (x_frames + _per_frame(y.float(), frames) * gate2).flatten(1, 2).to(x.dtype)
