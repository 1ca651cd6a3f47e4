"""What a benchmark run records: per chunk / window timings, memory checkpoints, and one summary row per method."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepRecord:
    """One yielded unit (a streamed chunk or a bidirectional window), `number` counted from 1."""

    number: int
    seconds: float  # the sampler's own wall time for this unit
    decode_seconds: float  # part of it spent in the VAE decoder
    frames: int
    passes: int  # every DiT pass of the unit, the cache-writing pass included
    commit_passes: int  # of which cache-writing passes (1 per streamed chunk with a cache, else 0)


@dataclass(frozen=True)
class MemoryCheckpoint:
    """Memory after chunk `chunk`: peak since the stream started, in use now, and the two caches."""

    chunk: int
    peak_bytes: int
    current_bytes: int
    kv_cache_bytes: int
    decoder_cache_numel: int


@dataclass(frozen=True)
class RunRecord:
    """A whole run of one method: its units, memory checkpoints and end-to-end times; with the load check, the
    chunks it ran past `units` and the fresh stream's chunks alternated with them (both empty without it)."""

    name: str
    steps: int
    units: tuple[StepRecord, ...]
    memory: tuple[MemoryCheckpoint, ...]
    first_output_seconds: float  # from starting the stream to the first yielded frames (set-up included)
    total_seconds: float  # from starting the stream to the last of `units`
    late_units: tuple[StepRecord, ...] = ()
    control_units: tuple[StepRecord, ...] = ()

    @property
    def frames(self) -> int:
        return sum(unit.frames for unit in self.units)

    @property
    def passes(self) -> int:
        """Every DiT pass of the run's units, cache-writing passes included."""
        return sum(unit.passes for unit in self.units)

    @property
    def passes_per_unit(self) -> float:
        return self.passes / len(self.units)

    @property
    def passes_per_frame(self) -> float:
        """DiT passes per output frame, cache-writing passes included (the count methods are compared on)."""
        return self.passes / self.frames

    @property
    def denoise_passes_per_step(self) -> float:
        """Denoising passes per denoising step (the guidance passes), without the cache-writing passes."""
        commits = sum(unit.commit_passes for unit in self.units)
        return (self.passes - commits) / (self.steps * len(self.units))

    @property
    def seconds_per_frame(self) -> float:
        return self.total_seconds / self.frames

    @property
    def decode_seconds_per_frame(self) -> float:
        return sum(unit.decode_seconds for unit in self.units) / self.frames

    @property
    def seconds_per_frame_without_decode(self) -> float:
        return self.seconds_per_frame - self.decode_seconds_per_frame

    @property
    def fps(self) -> float:
        return self.frames / self.total_seconds
