"""Guidance policy shared by the streaming sampler and ACC-DMD training: which condition variants the network is
evaluated on at a denoising step, and how their predictions are combined.

`e(text?, audio?)` names a network prediction (Wan: the flow velocity; the combination is linear, so it applies
to any prediction type) with or without each condition. Null audio = zero audio features; null text = the
negative / empty text embedding the caller supplies.

- `SINGLE`: one pass `e(t, a)` (distilled students; the schedule is then only a training-time weight).
- `AUDIO_CFG`: `e(t, 0) + s_a (e(t, a) - e(t, 0))`, two passes.
- `TEXT_AUDIO_CFG` (InfiniteTalk): `e(0, 0) + s_t (e(t, a) - e(0, a)) + s_a (e(0, a) - e(0, 0))`, three passes.

With a `PhasedSpatiotemporalSchedule` the audio scale becomes a map `s_a' = 1 + (s_a - 1) m` with `m` from the
schedule: it scales the guidance *excess*, so where `m = 0` the prediction is the plain audio-conditional one
rather than one without audio. At a step where the audio excess vanishes everywhere (the schedule's phase weight
is 0, or `s_a = 1`), `e(0, 0)` / `e(t, 0)` drop out of the formulas and that step needs one pass fewer:
`AUDIO_CFG` uses `e(t, a)` alone and `TEXT_AUDIO_CFG` uses `e(0, a) + s_t (e(t, a) - e(0, a))`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import torch

from .guidance_schedule import PhasedSpatiotemporalSchedule

_P = ParamSpec("_P")
_R = TypeVar("_R")


class GuidanceMode(str, enum.Enum):
    """How many condition variants are evaluated per step and how they are combined (see the module docstring)."""

    SINGLE = "single"
    AUDIO_CFG = "audio_cfg"
    TEXT_AUDIO_CFG = "text_audio_cfg"

    @classmethod
    def parse(cls, value: "GuidanceMode | str") -> "GuidanceMode":
        """The mode named `value`; the error lists the known names."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown guidance mode {value!r}; expected one of {[m.value for m in cls]}") from None


class ConditionVariant(enum.Enum):
    """Which conditions a network pass sees: `e(text?, audio?)`."""

    FULL = "text+audio"  # e(t, a)
    TEXT_ONLY = "text"  # e(t, 0): audio features zeroed
    AUDIO_ONLY = "audio"  # e(0, a): negative / empty text embedding
    NULL = "none"  # e(0, 0)

    @property
    def has_text(self) -> bool:
        return self in (ConditionVariant.FULL, ConditionVariant.TEXT_ONLY)

    @property
    def has_audio(self) -> bool:
        return self in (ConditionVariant.FULL, ConditionVariant.AUDIO_ONLY)


@dataclass(frozen=True)
class GuidancePolicy:
    """Guidance mode, scales (`text_scale` s_t, `audio_scale` s_a, both >= 0) and an optional audio schedule.

    `mode` also accepts its string name. Predictions passed to `combine` are `[B, C, F, H, W]`; `frame_indices`
    `[F]` are latent frame indices counted from the first generated frame (needed only with a schedule), and
    `region_mask` `[H, W]` is the optional face/mouth mask the schedule's spatial weight uses.
    """

    mode: GuidanceMode = GuidanceMode.SINGLE
    text_scale: float = 5.0
    audio_scale: float = 4.0
    schedule: PhasedSpatiotemporalSchedule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", GuidanceMode.parse(self.mode))
        for name in ("text_scale", "audio_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"expected a finite non-negative {name}, got {value!r}")
        if self.schedule is not None and not isinstance(self.schedule, PhasedSpatiotemporalSchedule):
            raise ValueError(f"expected a PhasedSpatiotemporalSchedule or None, got {type(self.schedule).__name__}")

    def audio_guidance_active(self, step_index: int, num_steps: int) -> bool:
        """Whether the audio guidance excess `(s_a' - 1)` is non-zero anywhere at this step."""
        if self.mode is GuidanceMode.SINGLE or self.audio_scale == 1:
            return False
        return self.schedule is None or self.schedule.phase_scale_at_step(step_index, num_steps) > 0

    def variants_for_step(self, step_index: int, num_steps: int) -> list[ConditionVariant]:
        """Condition variants the network must be evaluated on at step `step_index` of `num_steps`."""
        if not 0 <= step_index < num_steps:
            raise ValueError(f"expected 0 <= step_index < num_steps, got {step_index} of {num_steps}")
        if self.mode is GuidanceMode.SINGLE:
            return [ConditionVariant.FULL]
        active = self.audio_guidance_active(step_index, num_steps)
        if self.mode is GuidanceMode.AUDIO_CFG:
            return [ConditionVariant.FULL, ConditionVariant.TEXT_ONLY] if active else [ConditionVariant.FULL]
        variants = [ConditionVariant.FULL, ConditionVariant.AUDIO_ONLY]
        return variants + [ConditionVariant.NULL] if active else variants

    def passes_per_step(self, step_index: int, num_steps: int) -> int:
        """Network passes this policy makes at step `step_index` of `num_steps`."""
        return len(self.variants_for_step(step_index, num_steps))

    def audio_scale_at(
        self,
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor | None,
        latent_hw: tuple[int, int],
        region_mask: torch.Tensor | None = None,
    ) -> float | torch.Tensor:
        """Effective audio scale: `s_a` without a schedule, else the map `1 + (s_a - 1) m` `[1, 1, F, h, w]`."""
        if self.schedule is None:
            return float(self.audio_scale)
        if frame_indices is None:
            raise ValueError("a guidance policy with a schedule needs the frame_indices [F] of the predictions")
        weight = self.schedule.audio_scale_map(step_index, num_steps, frame_indices, latent_hw, region_mask)
        return 1.0 + (self.audio_scale - 1.0) * weight

    def check_region_mask(self, region_mask: torch.Tensor, latent_hw: tuple[int, int]) -> None:
        """Raise ValueError unless `region_mask` `[H, W]` in [0, 1] would act: a mask works only through the
        schedule's spatial weight under audio guidance, so mode single or no schedule would silently ignore it."""
        if self.mode is GuidanceMode.SINGLE or self.schedule is None:
            raise ValueError(
                "a face / mouth region mask acts only through the spatiotemporal schedule under audio guidance: "
                f"use mode audio_cfg or text_audio_cfg with the schedule enabled (got mode {self.mode.value}, "
                f"schedule {'on' if self.schedule is not None else 'off'})"
            )
        self.schedule.spatial_weight(latent_hw, region_mask)

    def combine(
        self,
        predictions: Mapping[ConditionVariant, torch.Tensor],
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Guided prediction `[B, C, F, H, W]` from `predictions` (variant -> `[B, C, F, H, W]`, at least the
        `variants_for_step` ones; extra ones are ignored). Computed in float32, returned in `FULL`'s dtype."""
        needed = self.variants_for_step(step_index, num_steps)
        missing = [v.value for v in needed if v not in predictions]
        if missing:
            raise ValueError(
                f"guidance {self.mode.value} at step {step_index} of {num_steps} needs predictions for "
                f"{[v.value for v in needed]}, missing {missing}"
            )
        full = predictions[ConditionVariant.FULL]
        if full.ndim != 5:
            raise ValueError(f"expected predictions of shape [B, C, F, H, W], got {tuple(full.shape)}")
        for variant in needed:
            if predictions[variant].shape != full.shape:
                raise ValueError(
                    f"expected every prediction to have shape {tuple(full.shape)}, "
                    f"got {tuple(predictions[variant].shape)} for {variant.value}"
                )
        if frame_indices is not None and frame_indices.shape != (full.shape[2],):
            raise ValueError(f"expected frame_indices of shape [{full.shape[2]}], got {tuple(frame_indices.shape)}")
        if len(needed) == 1:
            return full
        e_ta = full.float()
        if self.mode is GuidanceMode.AUDIO_CFG:
            e_t0 = predictions[ConditionVariant.TEXT_ONLY].float()
            scale = self._audio_scale_on(full, step_index, num_steps, frame_indices, region_mask)
            return (e_t0 + scale * (e_ta - e_t0)).to(full.dtype)
        e_0a = predictions[ConditionVariant.AUDIO_ONLY].float()
        text_guided = self.text_scale * (e_ta - e_0a)
        if len(needed) == 2:
            return (e_0a + text_guided).to(full.dtype)
        e_00 = predictions[ConditionVariant.NULL].float()
        scale = self._audio_scale_on(full, step_index, num_steps, frame_indices, region_mask)
        return (e_00 + text_guided + scale * (e_0a - e_00)).to(full.dtype)

    def predict(
        self,
        denoise: Callable[[ConditionVariant], torch.Tensor],
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Evaluate `denoise(variant) -> [B, C, F, H, W]` on exactly the variants this step needs, then `combine`."""
        predictions = {variant: denoise(variant) for variant in self.variants_for_step(step_index, num_steps)}
        return self.combine(predictions, step_index, num_steps, frame_indices, region_mask)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "mode": self.mode.value,
            "text_scale": self.text_scale,
            "audio_scale": self.audio_scale,
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuidancePolicy":
        """Inverse of `to_dict`; unknown keys raise."""
        known = {"mode", "text_scale", "audio_scale", "schedule"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown guidance policy fields {unknown}; expected some of {sorted(known)}")
        data = dict(data)
        if data.get("schedule") is not None:
            data["schedule"] = PhasedSpatiotemporalSchedule.from_dict(data["schedule"])
        return cls(**data)

    def _audio_scale_on(
        self,
        like: torch.Tensor,
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor | None,
        region_mask: torch.Tensor | None,
    ) -> float | torch.Tensor:
        scale = self.audio_scale_at(step_index, num_steps, frame_indices, tuple(like.shape[-2:]), region_mask)
        return scale.to(like.device) if isinstance(scale, torch.Tensor) else scale


class PassCounter:
    """Counts network passes per denoising step, for the sampler and benchmarks.

    Call `begin_step()` before each step, then `record(n)` per forward call (`n` = condition variants batched
    into it), or wrap the denoise callable with `wrap`, which records one pass per call.
    """

    def __init__(self) -> None:
        self._per_step: list[int] = []

    def begin_step(self) -> None:
        """Start counting a new denoising step."""
        self._per_step.append(0)

    def record(self, passes: int = 1) -> None:
        """Add `passes` (>= 1) network passes to the current step."""
        if not self._per_step:
            raise RuntimeError("PassCounter.record called before begin_step()")
        if passes < 1:
            raise ValueError(f"expected at least one pass to record, got {passes}")
        self._per_step[-1] += passes

    def wrap(self, denoise: Callable[_P, _R]) -> Callable[_P, _R]:
        """`denoise` with one pass recorded per call."""

        def counted(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            self.record()
            return denoise(*args, **kwargs)

        return counted

    @property
    def per_step(self) -> list[int]:
        """Passes made in each step so far."""
        return list(self._per_step)

    @property
    def total(self) -> int:
        return sum(self._per_step)

    def reset(self) -> None:
        self._per_step.clear()
