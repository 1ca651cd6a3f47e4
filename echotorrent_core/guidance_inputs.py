"""Guidance settings as a user interface supplies them: a phase list typed as text, a face / mouth mask drawn on
the portrait, and a policy bound to that mask and to the stream's chunking."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .guidance import ConditionVariant, GuidanceMode, GuidancePolicy
from .guidance_schedule import GuidancePhase
from .media import ResizePolicy, load_image


def parse_phases(text: str) -> tuple[GuidancePhase, ...]:
    """Phases from comma-separated `end:scale` pairs over denoising progress, e.g. "0.5:1.0,0.75:0.75,1.0:0" ->
    [0, 0.5) x 1.0, [0.5, 0.75) x 0.75, [0.75, 1] x 0. Each phase starts where the previous one ends (the first
    at 0). Raises ValueError naming an entry that is not two numbers; `PhasedSpatiotemporalSchedule` checks the
    rest (increasing ends, the last at 1, non-negative scales)."""
    phases: list[GuidancePhase] = []
    start = 0.0
    for entry in (part.strip() for part in text.split(",")):
        pieces = entry.split(":")
        try:
            if len(pieces) != 2:
                raise ValueError(entry)
            end, scale = float(pieces[0]), float(pieces[1])
        except ValueError:
            raise ValueError(
                f"guidance phase {entry!r} is not 'end:scale' (two numbers), in {text!r}; "
                "example: 0.5:1.0,0.75:0.75,1.0:0"
            ) from None
        phases.append(GuidancePhase(start, end, scale))
        start = end
    return tuple(phases)


def fit_region_mask(mask: torch.Tensor, height: int, width: int, policy: ResizePolicy = "cover") -> torch.Tensor:
    """A mask `[H, W]` in [0, 1] drawn on the portrait -> `[height, width]` float32, fitted exactly as
    `media.load_image` fits the portrait itself (same policy), so the region stays over the same pixels."""
    if mask.ndim != 2:
        raise ValueError(f"expected a region mask of shape [H, W], got {tuple(mask.shape)}")
    return (load_image(mask.float(), height, width, policy)[0] + 1.0) / 2.0


@dataclass(frozen=True, eq=False)
class RegionGuidancePolicy(GuidancePolicy):
    """A `GuidancePolicy` that applies its own face / mouth `region_mask` `[H, W]` in [0, 1] whenever `combine`
    is called without one (the streaming sampler never passes a mask)."""

    region_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        mask = self.region_mask
        if mask is None:
            return
        if mask.ndim != 2 or not mask.is_floating_point():
            raise ValueError(f"expected a float region mask [H, W], got {mask.dtype} {tuple(mask.shape)}")
        if not torch.isfinite(mask).all() or bool((mask < 0).any()) or bool((mask > 1).any()):
            raise ValueError("expected region mask values in [0, 1]")

    def combine(
        self,
        predictions: Mapping[ConditionVariant, torch.Tensor],
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = self.region_mask if region_mask is None else region_mask
        return super().combine(predictions, step_index, num_steps, frame_indices, mask)


def policy_for_stream(
    policy: GuidancePolicy, chunk_frames: int, region_mask: torch.Tensor | None = None
) -> GuidancePolicy:
    """`policy` ready for a stream of `chunk_frames`-latent chunks: its schedule's chunk ramp follows the stream's
    chunking, and `region_mask` `[H, W]` (already fitted to the output frame) is bound to it.

    A mask only acts through the schedule's spatial weight under audio guidance, so a mask with mode `single` or
    without a schedule raises ValueError instead of being ignored.
    """
    schedule = policy.schedule
    if schedule is not None:
        schedule = dataclasses.replace(schedule, chunk_frames=chunk_frames)
    if region_mask is not None and (policy.mode is GuidanceMode.SINGLE or schedule is None):
        raise ValueError(
            "a face / mouth region mask acts only through the spatiotemporal schedule under audio guidance: "
            f"use mode audio_cfg or text_audio_cfg with the schedule enabled (got mode {policy.mode.value}, "
            f"schedule {'on' if schedule is not None else 'off'})"
        )
    return RegionGuidancePolicy(policy.mode, policy.text_scale, policy.audio_scale, schedule, region_mask)
