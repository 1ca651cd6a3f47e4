"""Guidance settings as a user interface supplies them: a phase list typed as text, a face / mouth mask drawn on
the portrait (fitted to the output frame), and a policy matched to the stream's chunking."""

from __future__ import annotations

import dataclasses

import torch

from .guidance import GuidancePolicy
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


def policy_for_stream(policy: GuidancePolicy, chunk_frames: int) -> GuidancePolicy:
    """`policy` with its schedule's chunk ramp following a stream of `chunk_frames`-latent chunks."""
    if policy.schedule is None:
        return policy
    return dataclasses.replace(policy, schedule=dataclasses.replace(policy.schedule, chunk_frames=chunk_frames))
