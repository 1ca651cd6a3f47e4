"""Audio conditioning layers of the DiT (MultiTalk / InfiniteTalk parameter names).

`AudioProjection` (top-level `audio_proj.*`) maps each latent frame's audio window to `context_tokens` tokens;
`AudioCrossAttention` (per block `audio_cross_attn.*`) lets the visual tokens of a latent frame attend to the
tokens of that frame only. As in the public MultiTalk code, a window is flattened in (window row, encoder layer,
channel) order, and the audio cross-attention has no q/k normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echotorrent_core.config import AudioAdapterConfig


class AudioProjection(nn.Module):
    """Per-latent-frame audio windows -> audio context tokens.

    `proj1` embeds the `window`-row window of the first latent frame of a video, `proj1_vf` the `window_vf`-row
    windows of the later latent frames; both are followed by ReLU -> `proj2` -> ReLU -> `proj3` -> `norm`.
    """

    def __init__(self, cfg: AudioAdapterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        row_dim = cfg.encoder_layers * cfg.audio_dim
        self.proj1 = nn.Linear(cfg.window * row_dim, cfg.intermediate_dim)
        self.proj1_vf = nn.Linear(cfg.window_vf * row_dim, cfg.intermediate_dim)
        self.proj2 = nn.Linear(cfg.intermediate_dim, cfg.intermediate_dim)
        self.proj3 = nn.Linear(cfg.intermediate_dim, cfg.context_tokens * cfg.token_dim)
        self.norm: nn.Module = nn.LayerNorm(cfg.token_dim) if cfg.norm_output else nn.Identity()

    def _check_windows(self, windows: torch.Tensor, name: str, rows: int) -> None:
        expected = (rows, self.cfg.encoder_layers, self.cfg.audio_dim)
        if windows.ndim != 5 or tuple(windows.shape[2:]) != expected:
            raise ValueError(
                f"{name} must be [B, frames, {rows}, {self.cfg.encoder_layers}, {self.cfg.audio_dim}] "
                f"(windows of `window{'' if name == 'first' else '_vf'}` rows of stacked wav2vec2 layers), "
                f"got {tuple(windows.shape)}"
            )

    def forward(self, first: torch.Tensor | None, rest: torch.Tensor | None) -> torch.Tensor:
        """first `[B, 1, window, L, C]` or None, rest `[B, F', window_vf, L, C]` or None.

        Returns `[B, F, context_tokens, token_dim]` with F = (1 if first is given else 0) + F', the first latent
        frame's tokens first.
        """
        hidden = []
        if first is not None:
            self._check_windows(first, "first", self.cfg.window)
            if first.shape[1] != 1:
                raise ValueError(f"first must hold exactly one latent frame, got {first.shape[1]}")
            hidden.append(torch.relu(self.proj1(first.flatten(2))))
        if rest is not None:
            self._check_windows(rest, "rest", self.cfg.window_vf)
            hidden.append(torch.relu(self.proj1_vf(rest.flatten(2))))
        if not hidden:
            raise ValueError("AudioProjection needs at least one of `first` and `rest`")
        if len(hidden) == 2 and hidden[0].shape[0] != hidden[1].shape[0]:
            raise ValueError(f"first and rest batch sizes differ: {hidden[0].shape[0]} vs {hidden[1].shape[0]}")
        x = torch.cat(hidden, dim=1)
        x = self.proj3(torch.relu(self.proj2(x)))
        x = x.unflatten(-1, (self.cfg.context_tokens, self.cfg.token_dim))
        return self.norm(x)


class AudioCrossAttention(nn.Module):
    """Frame-local cross-attention from visual tokens to audio tokens (`q_linear`, `kv_linear`, `proj`)."""

    def __init__(self, dim: int, cfg: AudioAdapterConfig, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.token_dim = cfg.token_dim
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(cfg.token_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x `[B, F * S, dim]` (frame-major visual tokens), tokens `[B, F, N, token_dim]` -> `[B, F * S, dim]`.

        The S tokens of latent frame f attend only to the N audio tokens of frame f.
        """
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [B, F * S, {self.dim}], got {tuple(x.shape)}")
        if tokens.ndim != 4 or tokens.shape[-1] != self.token_dim or tokens.shape[0] != x.shape[0]:
            raise ValueError(
                f"tokens must be [B={x.shape[0]}, F, N, {self.token_dim}], got {tuple(tokens.shape)}"
            )
        batch, length, _ = x.shape
        frames, num_tokens = tokens.shape[1], tokens.shape[2]
        if frames == 0 or length % frames != 0:
            raise ValueError(f"x length {length} is not a whole number of tokens per frame for {frames} frames")
        per_frame = length // frames
        head_dim = self.dim // self.num_heads

        q = self.q_linear(x).reshape(batch * frames, per_frame, self.num_heads, head_dim)
        kv = self.kv_linear(tokens).reshape(batch * frames, num_tokens, 2, self.num_heads, head_dim)
        k, v = kv.unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(batch, length, self.dim)
        return self.proj(out)
