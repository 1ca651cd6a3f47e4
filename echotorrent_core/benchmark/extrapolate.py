"""Scaling a run of fewer denoising steps to the step count it stands for.

Every denoising pass of a method costs the same (same shapes, same network), so a window run with `steps` steps
whose VAE decode is timed apart gives the time of `target_steps` steps as decode + (rest) x target / steps.
Only denoising passes scale; cache-writing passes (none for the windowed baseline) are one per unit whatever
the step count, so a unit with them is refused rather than mis-scaled.
Used to time the 40-step baseline on models too slow to run 40 steps of on a CPU; the table says so.
"""

from __future__ import annotations

from dataclasses import replace

from .records import RunRecord, StepRecord


def scale_steps(run: RunRecord, target_steps: int) -> RunRecord:
    """`run` as if each unit had made `target_steps` steps: passes and non-decode seconds scaled."""
    if target_steps < 1:
        raise ValueError(f"target_steps must be >= 1, got {target_steps}")
    if any(u.commit_passes for u in run.units):
        raise ValueError(f"{run.name}: units with cache-writing passes cannot be scaled by the step count alone")
    factor = target_steps / run.steps
    units = tuple(
        StepRecord(u.number, u.decode_seconds + (u.seconds - u.decode_seconds) * factor, u.decode_seconds,
                   u.frames, round(u.passes * factor), 0)
        for u in run.units
    )
    added = sum(new.seconds - old.seconds for new, old in zip(units, run.units))
    return replace(run, name=f"{run.name} ({run.steps}->{target_steps} steps)", steps=target_steps, units=units,
                   first_output_seconds=run.first_output_seconds + (units[0].seconds - run.units[0].seconds),
                   total_seconds=run.total_seconds + added)
