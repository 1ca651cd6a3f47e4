"""ACC's phased spatiotemporal schedule: where and when audio guidance acts.

The EchoTorrent abstract names the schedule but gives no formula, so this is our design. The schedule is a
non-negative weight `m(progress, frame, row, col) = phase(progress) * temporal(frame) * spatial(row, col)` that
multiplies the audio guidance *excess* `s_a - 1` (see `guidance.GuidancePolicy`): `m = 0` means the plain
audio-conditional prediction, `m = 1` the full audio CFG scale. In ACC-DMD training the same weight multiplies the
audio CFG-augmentation term `(s_a - 1) (e(t, a) - e(t, 0))` of the teacher score (the decoupled CFG view), so the
student learns exactly the guidance the schedule would apply at inference.

- Phase: denoising progress `p` in [0, 1] (0 = pure noise, 1 = clean) is cut into contiguous segments
  `(start, end, scale)`. Step `i` of `n` sits at its midpoint `p = (i + 0.5) / n`; a training caller that scores
  at a timestep `t` passes `p = 1 - t / 1000`. Default: full guidance over the first half (layout and mouth shape
  are decided there), 0.75 over the next quarter, none over the last quarter (texture refinement, where CFG
  oversaturates). With 4 steps that is 1, 1, 0.75, 0: the last step needs no guidance.
- Spatial: `outside + (inside - outside) * mask` over the latent grid. The mask is the caller's face/mouth region
  `[H, W]` in [0, 1] (latent or pixel resolution, resized to the latent grid); without one, a soft ellipse over
  the centre-lower face of a framed portrait is used. Default inside 1, outside 0.3 (some audio-driven head and
  body motion remains).
- Temporal: latent frame `f` (counted from the first generated frame) lies in chunk `f // chunk_frames` at position
  `f % chunk_frames`. A ramp inside each chunk (default 0.8 -> 1.0) softens guidance on the frames that continue
  the cached context, limiting jitter at chunk seams; a ramp over the rollout (default 1.0 -> 1.2 over 8 chunks,
  then constant) strengthens lip sync on long-horizon tail frames, where desync accumulates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GuidancePhase:
    """Audio guidance weight `scale` over denoising progress `[start, end)` (fractions of the way to clean)."""

    start: float
    end: float
    scale: float


DEFAULT_PHASES: tuple[GuidancePhase, ...] = (
    GuidancePhase(0.0, 0.5, 1.0),
    GuidancePhase(0.5, 0.75, 0.75),
    GuidancePhase(0.75, 1.0, 0.0),
)


def step_progress(step_index: int, num_steps: int) -> float:
    """Denoising progress at the midpoint of step `step_index` of `num_steps`: `(i + 0.5) / n`."""
    if num_steps < 1 or not 0 <= step_index < num_steps:
        raise ValueError(f"expected 0 <= step_index < num_steps with num_steps >= 1, got {step_index} of {num_steps}")
    return (step_index + 0.5) / num_steps


def _as_phase(item: GuidancePhase | Sequence[float]) -> GuidancePhase:
    if isinstance(item, GuidancePhase):
        return item
    if len(item) != 3:
        raise ValueError(f"expected a phase as (start, end, scale), got {item!r}")
    return GuidancePhase(*(float(value) for value in item))


def _check_phases(phases: tuple[GuidancePhase, ...]) -> None:
    if not phases:
        raise ValueError("expected at least one guidance phase")
    if phases[0].start != 0.0 or phases[-1].end != 1.0:
        raise ValueError(f"expected phases covering progress 0 to 1, got {phases[0].start} to {phases[-1].end}")
    for phase in phases:
        if not phase.start < phase.end:
            raise ValueError(f"expected phase start < end, got {phase}")
        if not (math.isfinite(phase.scale) and phase.scale >= 0):
            raise ValueError(f"expected a finite non-negative phase scale, got {phase}")
    for earlier, later in zip(phases, phases[1:]):
        if earlier.end != later.start:
            raise ValueError(f"expected contiguous phases, but {earlier} is followed by {later}")


@dataclass(frozen=True)
class PhasedSpatiotemporalSchedule:
    """Audio guidance weight over (denoising phase) x (space) x (time); see the module docstring for the design.

    `phases` accepts `GuidancePhase`s or `(start, end, scale)` triples. `face_center` and `face_radii` are
    `(row, col)` fractions of the latent grid for the default mask; `face_softness` is the width of its edge in
    units of the radius.
    """

    phases: tuple[GuidancePhase, ...] = DEFAULT_PHASES
    inside_weight: float = 1.0
    outside_weight: float = 0.3
    face_center: tuple[float, float] = (0.6, 0.5)
    face_radii: tuple[float, float] = (0.22, 0.2)
    face_softness: float = 0.15
    chunk_frames: int = 3
    chunk_start_weight: float = 0.8
    chunk_end_weight: float = 1.0
    rollout_start_weight: float = 1.0
    rollout_end_weight: float = 1.2
    rollout_ramp_chunks: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(_as_phase(item) for item in self.phases))
        object.__setattr__(self, "face_center", tuple(float(v) for v in self.face_center))
        object.__setattr__(self, "face_radii", tuple(float(v) for v in self.face_radii))
        _check_phases(self.phases)
        for name in (
            "inside_weight", "outside_weight", "chunk_start_weight", "chunk_end_weight",
            "rollout_start_weight", "rollout_end_weight",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"expected a finite non-negative {name}, got {value}")
        if len(self.face_center) != 2 or not all(0 <= v <= 1 for v in self.face_center):
            raise ValueError(f"expected face_center as (row, col) fractions in [0, 1], got {self.face_center}")
        if len(self.face_radii) != 2 or not all(v > 0 for v in self.face_radii):
            raise ValueError(f"expected face_radii as two positive (row, col) fractions, got {self.face_radii}")
        if not self.face_softness > 0:
            raise ValueError(f"expected a positive face_softness, got {self.face_softness}")
        if self.chunk_frames < 1 or self.rollout_ramp_chunks < 0:
            raise ValueError(
                f"expected chunk_frames >= 1 and rollout_ramp_chunks >= 0, "
                f"got {self.chunk_frames} and {self.rollout_ramp_chunks}"
            )

    def phase_scale(self, progress: float) -> float:
        """Phase weight at denoising progress `progress` in [0, 1] (the last phase includes 1)."""
        if not 0 <= progress <= 1:
            raise ValueError(f"expected denoising progress in [0, 1], got {progress}")
        for phase in self.phases:
            if progress < phase.end:
                return phase.scale
        return self.phases[-1].scale

    def phase_scale_at_step(self, step_index: int, num_steps: int) -> float:
        """Phase weight of denoising step `step_index` of `num_steps` (0 means no audio guidance at that step)."""
        return self.phase_scale(step_progress(step_index, num_steps))

    def spatial_weight(
        self, latent_hw: tuple[int, int], region_mask: torch.Tensor | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """Spatial weight `[h, w]` float32: `outside + (inside - outside) * mask`.

        `region_mask`: `[H, W]` in [0, 1] at any resolution (resized to `latent_hw` with antialiased bilinear
        interpolation); None uses the soft centre-lower-face ellipse.
        """
        h, w = _check_hw(latent_hw)
        if region_mask is None:
            mask = self._default_face_mask(h, w, device)
        else:
            mask = _resize_mask(region_mask, h, w).to(device or region_mask.device)
        return self.outside_weight + (self.inside_weight - self.outside_weight) * mask

    def temporal_weight(self, frame_indices: torch.Tensor) -> torch.Tensor:
        """Temporal weight `[F]` float32 of latent frames `frame_indices` `[F]` (from the first generated frame)."""
        if frame_indices.ndim != 1 or frame_indices.is_floating_point() or frame_indices.is_complex():
            raise ValueError(
                f"expected integer frame indices of shape [F], got {frame_indices.dtype} {tuple(frame_indices.shape)}"
            )
        if frame_indices.numel() and int(frame_indices.min()) < 0:
            raise ValueError("expected non-negative frame indices")
        position = (frame_indices % self.chunk_frames).float()
        chunk = (frame_indices // self.chunk_frames).float()
        in_chunk = position / (self.chunk_frames - 1) if self.chunk_frames > 1 else torch.ones_like(position)
        if self.rollout_ramp_chunks > 0:
            in_rollout = (chunk / self.rollout_ramp_chunks).clamp(max=1.0)
        else:
            in_rollout = torch.ones_like(chunk)
        chunk_weight = self.chunk_start_weight + (self.chunk_end_weight - self.chunk_start_weight) * in_chunk
        rollout_weight = self.rollout_start_weight + (self.rollout_end_weight - self.rollout_start_weight) * in_rollout
        return chunk_weight * rollout_weight

    def weight_map(
        self,
        progress: float | torch.Tensor,
        frame_indices: torch.Tensor,
        latent_hw: tuple[int, int],
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full weight `m` on `frame_indices`' device: `[1, 1, F, h, w]` for a float `progress`, `[B, 1, F, h, w]`
        for a `[B]` tensor (e.g. `1 - t / 1000` of per-sample training timesteps)."""
        device = frame_indices.device
        if isinstance(progress, torch.Tensor):
            if progress.ndim != 1:
                raise ValueError(f"expected progress as a number or a [B] tensor, got shape {tuple(progress.shape)}")
            phase = torch.tensor([self.phase_scale(p) for p in progress.tolist()], dtype=torch.float32, device=device)
        else:
            phase = torch.tensor([self.phase_scale(float(progress))], dtype=torch.float32, device=device)
        temporal = self.temporal_weight(frame_indices)
        spatial = self.spatial_weight(latent_hw, region_mask, device)
        return phase[:, None, None, None, None] * temporal[None, None, :, None, None] * spatial[None, None, None]

    def audio_scale_map(
        self,
        step_index: int,
        num_steps: int,
        frame_indices: torch.Tensor,
        latent_hw: tuple[int, int],
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weight `[1, 1, F, h, w]` on the audio guidance excess `s_a - 1` at step `step_index` of `num_steps`."""
        return self.weight_map(step_progress(step_index, num_steps), frame_indices, latent_hw, region_mask)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (phases as `[start, end, scale]` lists)."""
        data = dataclasses.asdict(self)
        data["phases"] = [[p.start, p.end, p.scale] for p in self.phases]
        data["face_center"] = list(self.face_center)
        data["face_radii"] = list(self.face_radii)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhasedSpatiotemporalSchedule":
        """Inverse of `to_dict`; unknown keys raise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown schedule fields {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def _default_face_mask(self, h: int, w: int, device: torch.device | None) -> torch.Tensor:
        rows = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        cols = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        dy = (rows[:, None] - self.face_center[0]) / self.face_radii[0]
        dx = (cols[None, :] - self.face_center[1]) / self.face_radii[1]
        radius = torch.sqrt(dy**2 + dx**2)
        return torch.sigmoid((1.0 - radius) / self.face_softness)


def _check_hw(latent_hw: tuple[int, int]) -> tuple[int, int]:
    if len(latent_hw) != 2 or min(latent_hw) < 1:
        raise ValueError(f"expected latent_hw as two positive ints (h, w), got {latent_hw}")
    return int(latent_hw[0]), int(latent_hw[1])


def _resize_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if mask.ndim != 2:
        raise ValueError(f"expected a region mask of shape [H, W], got {tuple(mask.shape)}")
    mask = mask.float()
    if not torch.isfinite(mask).all() or bool((mask < 0).any()) or bool((mask > 1).any()):
        raise ValueError("expected region mask values in [0, 1]")
    if mask.shape == (h, w):
        return mask
    return F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0, 0]
