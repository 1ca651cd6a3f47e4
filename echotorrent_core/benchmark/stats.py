"""Noise-robust figures from per-chunk timings: medians over chunk ranges, per decade, and latency growth."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .records import StepRecord

SELECTED_CHUNKS = (1, 2, 5, 10, 20, 50, 100, 150, 200)
Measure = Callable[[StepRecord], float]  # what is taken of each unit: wall time, or wall time without the decode


def total_seconds(unit: StepRecord) -> float:
    return unit.seconds


def seconds_without_decode(unit: StepRecord) -> float:
    return unit.seconds - unit.decode_seconds


def median_seconds(units: Sequence[StepRecord], first: int, last: int, measure: Measure = total_seconds) -> float:
    """Median `measure` (default: wall time) of the units numbered `first` .. `last` (inclusive)."""
    chosen = [measure(unit) for unit in units if first <= unit.number <= last]
    if not chosen:
        raise ValueError(f"no units numbered {first}..{last} among {len(units)}")
    return statistics.median(chosen)


def decades(count: int) -> list[tuple[int, int]]:
    """Ranges 1-10, 11-20, ... covering `count` units (the last one may be shorter)."""
    return [(first, min(first + 9, count)) for first in range(1, count + 1, 10)]


def selected(count: int, numbers: Sequence[int] = SELECTED_CHUNKS) -> list[int]:
    """The `numbers` that exist among `count` units, plus the last unit."""
    return sorted({n for n in numbers if n <= count} | {count})


@dataclass(frozen=True)
class LatencyGrowth:
    """Late-chunk median latency over early-chunk median latency (medians of neighbouring chunks denoise)."""

    early: tuple[int, int]
    late: tuple[int, int]
    early_seconds: float
    late_seconds: float

    @property
    def ratio(self) -> float:
        return self.late_seconds / self.early_seconds


def latency_growth(units: Sequence[StepRecord], early_units: Sequence[StepRecord] | None = None,
                   early: tuple[int, int] = (3, 7), late_span: int = 6,
                   measure: Measure = total_seconds) -> LatencyGrowth:
    """Median `measure` of the last `late_span` of `units` over that of `early_units` (default: `units`
    themselves) numbered `early` (clipped to their length)."""
    early_units = units if early_units is None else early_units
    early = (min(early[0], len(early_units)), min(early[1], len(early_units)))
    last = units[-1].number
    late = (max(units[0].number, last - late_span + 1), last)
    return LatencyGrowth(early, late, median_seconds(early_units, *early, measure),
                         median_seconds(units, *late, measure))
