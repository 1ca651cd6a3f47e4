"""Denoising one chunk: noise -> few-step (or Euler) passes of the causal DiT under a guidance policy -> x0."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from .. import flow
from ..guidance import ConditionVariant, GuidancePolicy
from ..models.conditioning import Conditioning
from .settings import StreamSettings

AudioWindows = tuple[torch.Tensor | None, torch.Tensor | None]  # (first [1,1,5,L,C] | None, rest [1,n,8,L,C] | None)


class NullConditions:
    """Builds the conditioning of each guidance variant: real or null text, real or null (all-zero) audio.

    Text is embedded once per stream; audio tokens once per chunk (the null-audio tokens once per window shape).
    """

    def __init__(self, dit: torch.nn.Module, positive: Conditioning, negative: Conditioning) -> None:
        self.dit = dit
        self.positive = positive
        self.negative = negative
        self._null_audio: dict[tuple, torch.Tensor] = {}

    def _audio_tokens(self, windows: AudioWindows) -> torch.Tensor | None:
        first, rest = windows
        if first is None and rest is None:
            return None
        with torch.no_grad():
            return self.dit.audio_proj(first, rest)

    def _null_audio_tokens(self, windows: AudioWindows) -> torch.Tensor | None:
        first, rest = windows
        if first is None and rest is None:
            return None
        key = tuple(None if w is None else tuple(w.shape) for w in windows)
        if key not in self._null_audio:
            zeros = tuple(None if w is None else torch.zeros_like(w) for w in windows)
            self._null_audio[key] = self._audio_tokens(zeros)
        return self._null_audio[key]

    def for_frames(self, windows: AudioWindows) -> Conditioning:
        """Full conditioning (text + audio) of the frames whose audio windows are given."""
        return replace(self.positive, audio=self._audio_tokens(windows))

    def variants(self, windows: AudioWindows, wanted: list[ConditionVariant]) -> dict[ConditionVariant, Conditioning]:
        """Conditioning of every wanted variant for one chunk, sharing the embedded parts."""
        real_audio = self._audio_tokens(windows) if any(v.has_audio for v in wanted) else None
        null_audio = self._null_audio_tokens(windows) if any(not v.has_audio for v in wanted) else None
        out = {}
        for variant in wanted:
            base = self.positive if variant.has_text else self.negative
            out[variant] = replace(base, audio=real_audio if variant.has_audio else null_audio)
        return out


class ChunkDenoiser:
    """Runs the denoising passes of one chunk against a context (cached or recomputed) and counts them."""

    def __init__(
        self,
        context,
        policy: GuidancePolicy,
        settings: StreamSettings,
        conditions: NullConditions,
        generator: torch.Generator,
        check_interrupt: Callable[[], None] | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> None:
        self.context = context
        self.region_mask = region_mask
        self.policy = policy
        self.settings = settings
        self.conditions = conditions
        self.generator = generator
        self.check_interrupt = check_interrupt
        if settings.solver == "few_step":
            self.timesteps = flow.few_step_timesteps_for(settings.steps, settings.shift)
        else:
            self.timesteps = flow.many_step_timesteps(settings.steps, settings.shift)
        steps = len(self.timesteps)
        wanted = {v for i in range(steps) for v in policy.variants_for_step(i, steps)} | {ConditionVariant.FULL}
        self.chunk_variants = [v for v in ConditionVariant if v in wanted]

    def chunk_conditions(self, windows: AudioWindows) -> dict[ConditionVariant, Conditioning]:
        """Conditioning of every variant any step of a chunk needs (FULL always: it writes the cache), built once
        per chunk from the chunk's audio windows."""
        return self.conditions.variants(windows, self.chunk_variants)

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Standard normal noise drawn on the CPU generator (same video on any device), moved to `device`."""
        return torch.randn(shape, generator=self.generator).to(device, torch.float32)

    def denoise(self, reference_shape: torch.Size, frame_start: int,
                conditions: dict[ConditionVariant, Conditioning],
                y: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Generate the chunk of latent frames starting at `frame_start` from its `chunk_conditions` (i2v
        condition channels `y` `[1, 20, n, h, w]` or None): returns (x0 `[1, C, n, h, w]`, the denoising passes
        run; the pass that commits the chunk belongs to the context)."""
        batch, channels, _, h, w = reference_shape
        n = self.settings.chunk_frames
        steps = len(self.timesteps)
        dtype = next(self.context.model.parameters()).dtype
        device = next(self.context.model.parameters()).device
        x = self._noise((batch, channels, n, h, w), device)
        first_generated = frame_start - self.settings.sink_frames
        frame_indices = torch.arange(first_generated, first_generated + n, device=device)
        passes = 0
        x0 = x
        for i, t_value in enumerate(self.timesteps.tolist()):
            t = torch.full((batch, n), t_value, device=device)
            predictions = {}
            for variant in self.policy.variants_for_step(i, steps):
                cond = conditions[variant]
                if self.check_interrupt is not None:
                    self.check_interrupt()
                with torch.no_grad():
                    predictions[variant] = self.context.predict(x.to(dtype), t, cond, frame_start, y).float()
                passes += 1
            velocity = self.policy.combine(predictions, i, steps, frame_indices, self.region_mask)
            x0 = flow.x0_from_velocity(x, velocity, t)
            if i + 1 == steps:
                break
            t_next = torch.full((batch, n), float(self.timesteps[i + 1]), device=device)
            if self.settings.solver == "few_step":
                x = flow.few_step_transition(x0, t_next, noise=self._noise(x.shape, device))
            else:
                x = flow.euler_step(x, velocity, t, t_next)
        return x0.to(dtype), passes
