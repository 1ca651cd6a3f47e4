"""Embedded conditioning of the DiT, computed once by `WanDiT.prepare_conditioning` and reused by every pass."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .dit_attention import ContextKV


@dataclass(frozen=True)
class Conditioning:
    """text `[B, text_len, dim]` (zero-padded raw text, then `text_embedding`); image `[B, N_img, dim]` (i2v
    CLIP tokens after `img_emb`) or None; audio `[B, F_audio, context_tokens, token_dim]` (first-frame tokens,
    then the rest) or None, in which case the audio layers are skipped; context_kv the per-block projected
    cross-attention keys / values of text and image (computed by `prepare_conditioning`; None = project on every
    pass)."""

    text: torch.Tensor
    image: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    context_kv: tuple[ContextKV, ...] | None = None

    @property
    def batch(self) -> int:
        return self.text.shape[0]

    def audio_frames(self, start: int, stop: int) -> "Conditioning":
        """The same conditioning with audio tokens of latent frames `[start, stop)` only (text / image shared)."""
        if self.audio is None:
            raise ValueError("this conditioning has no audio tokens to select from")
        if not 0 <= start < stop <= self.audio.shape[1]:
            raise ValueError(f"expected 0 <= start < stop <= {self.audio.shape[1]}, got start={start}, stop={stop}")
        return replace(self, audio=self.audio[:, start:stop])

