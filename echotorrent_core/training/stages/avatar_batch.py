"""The training sample of the DiT stages and its conditioning, laid out exactly as the streaming sampler's stream.

A sample is the latent video of `[reference portrait, clip frames 0 .. 4F - 1]` encoded by the causal VAE in one
call, so latent frame 0 is the portrait encoded alone (bit-for-bit the sampler's sink latent) and latent frame j >= 1
holds clip frames 4(j-1) .. 4j-1 (the frames the sampler outputs for generated latent j). Audio features have one
row per clip frame; like the sampler they get their first row repeated in front (row 0 = the portrait), so latent
frame 0 reads `first_frame_window` and latent j reads `latent_frame_windows` (MultiTalk layout).

Batch dict (after collation): `latents` `[B, C, 1 + F, h, w]` normalised VAE latents; `audio` `[B, T, L, A]` with
T = 4F clip rows (absent for a model without audio layers); `text` `[B, L_text, text_dim]` raw text features
(absent = the empty text, all zeros, which is also the null text of CFG).
"""

from __future__ import annotations

import torch

from ...models.audio_windows import first_frame_window, latent_frame_windows
from ...models.conditioning import Conditioning

AudioWindows = tuple[torch.Tensor | None, torch.Tensor | None]  # first [B,1,5,L,A], rest [B,F,8,L,A]


def check_avatar_model(model: torch.nn.Module) -> None:
    """The training stages drive the audio-conditioned text-to-video layout (reference as latent frame 0)."""
    if model.cfg.in_dim != model.cfg.out_dim:
        raise ValueError(
            "the training stages take a DiT whose input is the latents alone "
            f"(in_dim = out_dim = {model.cfg.out_dim}); "
            f"got in_dim {model.cfg.in_dim} (an image-to-video checkpoint with mask/condition channels)"
        )


def pad_audio(features: torch.Tensor) -> torch.Tensor:
    """Clip audio `[B, T, L, A]` -> `[B, 1 + T, L, A]` with row 0 repeated for the portrait, as the sampler pads."""
    if features.ndim != 4 or features.shape[1] == 0:
        raise ValueError(f"audio features must be [B, T >= 1, layers, dim], got {tuple(features.shape)}")
    return torch.cat([features[:, :1], features], dim=1)


def audio_windows(padded: torch.Tensor | None, frames: range, cfg) -> AudioWindows:
    """Windows of latent frames `frames` (0 = the portrait) from padded features `[B, T', L, A]`."""
    if padded is None:
        return None, None
    first = None
    if frames.start == 0:
        first = torch.stack([first_frame_window(sample, cfg) for sample in padded])
        frames = range(1, frames.stop)
    rest = None
    if len(frames):
        rest = torch.stack([latent_frame_windows(sample, frames, cfg) for sample in padded])
    return first, rest


def keep_mask(batch: int, keep_probability: float, device: torch.device) -> torch.Tensor:
    """Per-sample Bernoulli keep flags `[B]` bool from the global torch RNG (condition dropout for CFG)."""
    if not 0.0 <= keep_probability <= 1.0:
        raise ValueError(f"a keep probability must lie in [0, 1], got {keep_probability}")
    return (torch.rand(batch) < keep_probability).to(device)


def _zero_dropped(values: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return values
    shape = (values.shape[0],) + (1,) * (values.ndim - 1)
    return values * keep.to(values.device, values.dtype).view(shape)


def text_features(model: torch.nn.Module, batch: dict, size: int) -> torch.Tensor:
    """Raw text features `[B, L, text_dim]` of the batch (all zeros, the empty text, when it has none)."""
    text = batch.get("text")
    if text is None:
        weight = model.text_embedding[0].weight
        # torch.zeros, not weight.new_zeros: under FSDP2 the latter would be a sharded (DTensor) zeros
        return torch.zeros(size, model.cfg.text_len, model.cfg.text_dim, dtype=weight.dtype, device=weight.device)
    return text


def conditioning(
    model: torch.nn.Module,
    batch: dict,
    frames: range,
    keep_text: torch.Tensor | None = None,
    keep_audio: torch.Tensor | None = None,
) -> Conditioning:
    """Conditioning of latent frames `frames` with per-sample dropout: where `keep_text` `[B]` is False the text is
    the empty (all-zero) text, where `keep_audio` is False the audio features are zeros: the same null conditions
    the guidance of the sampler uses. Built with gradients (the audio projection and text embedding train)."""
    size = batch["latents"].shape[0]
    text = _zero_dropped(text_features(model, batch, size), keep_text)
    audio = batch.get("audio")
    if (audio is None) != (model.cfg.audio is None):
        raise ValueError(
            "the batch has audio features but the DiT has no audio layers" if audio is not None
            else "this DiT is audio-driven: the batch needs `audio` [B, T, layers, dim]"
        )
    padded = None if audio is None else pad_audio(_zero_dropped(audio, keep_audio))
    first, rest = audio_windows(padded, frames, model.cfg.audio)
    if first is None and rest is None:
        return model.prepare_conditioning(text=text)
    return model.prepare_conditioning(text=text, audio_first=first, audio_rest=rest)
