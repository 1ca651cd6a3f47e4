"""Self- and cross-attention layers of a Wan DiT block (native names `q, k, v, o, norm_q, norm_k`, i2v
`k_img, v_img, norm_k_img`). q and k are RMS-normalised over the full width before being split into heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import attention


class _QKVOProjections(nn.Module):
    """The `q, k, v, o` linears and the full-width `norm_q, norm_k` RMS norms shared by both attentions."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)


class SelfAttention(_QKVOProjections):
    """Projections of the self-attention; the attention itself, RoPE included, is supplied by the caller
    (bidirectional, block-causal per chunk, or the KV cache), since the positions depend on the query's chunk."""

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x `[B, L, dim]` -> q, k (RMS-normalised, before RoPE), v `[B, L, heads, head_dim]`."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))
        k = self.norm_k(self.k(x)).unflatten(-1, (self.num_heads, -1))
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        return q, k, v


@dataclass(frozen=True)
class ContextKV:
    """One block's projected cross-attention context, computed once per conditioning and reused by every pass:
    text keys / values `[B, text_len, heads, head_dim]` (keys RMS-normalised), image ones `[B, N_img, heads,
    head_dim]` or None."""

    k: torch.Tensor
    v: torch.Tensor
    k_img: torch.Tensor | None = None
    v_img: torch.Tensor | None = None


class CrossAttention(_QKVOProjections):
    """Text cross-attention, plus the CLIP image branch (`k_img`, `v_img`, `norm_k_img`) when `image` is True."""

    def __init__(self, dim: int, num_heads: int, eps: float, image: bool) -> None:
        super().__init__(dim, num_heads, eps)
        if image:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = nn.RMSNorm(dim, eps=eps)

    @property
    def has_image_branch(self) -> bool:
        return hasattr(self, "k_img")

    def context_kv(self, text: torch.Tensor, image: torch.Tensor | None = None) -> ContextKV:
        """Project the context once: text `[B, text_len, dim]`, image `[B, N_img, dim]` (i2v only)."""
        heads = self.num_heads
        k = self.norm_k(self.k(text)).unflatten(-1, (heads, -1))
        v = self.v(text).unflatten(-1, (heads, -1))
        if not self.has_image_branch:
            return ContextKV(k, v)
        if image is None:
            raise ValueError("this DiT has an image branch: the conditioning needs CLIP image tokens")
        k_img = self.norm_k_img(self.k_img(image)).unflatten(-1, (heads, -1))
        return ContextKV(k, v, k_img, self.v_img(image).unflatten(-1, (heads, -1)))

    def forward(self, x: torch.Tensor, context: ContextKV) -> torch.Tensor:
        """x `[B, L, dim]` attends to the projected text (+ image) context -> `[B, L, dim]`."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))
        out = attention(q, context.k, context.v)
        if context.k_img is not None:
            out = out + attention(q, context.k_img, context.v_img)
        return self.o(out)
