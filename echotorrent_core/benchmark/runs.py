"""Running a sampler under the probes and recording every chunk or window it yields.

Load check: on a shared machine a long stream's late chunks may meet another load than its early chunks did.
With `control`, the stream runs `CONTROL_CHUNKS` chunks past the measured ones, alternating with the first
chunks of a fresh stream of the same inputs, so late and early chunks are timed under the same load. This
happens after the last memory checkpoint, so the second stream's caches never count in the measured memory.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

import torch

from ..streaming import StreamingSampler
from ..windowed import WindowedBidirectionalSampler
from .memory import MemoryProbe
from .probes import ModelProbe
from .records import MemoryCheckpoint, RunRecord, StepRecord

CONTROL_CHUNKS = 7  # enough for the early-chunk median over chunks 3-7


def _unit(number: int, output, probe: ModelProbe) -> StepRecord:
    """Record of an output (chunk or window with `.frames`, `.passes`, `.commit_passes`, `.seconds`) yielded
    just now."""
    decoded = probe.take_decode_seconds(since=time.perf_counter() - output.seconds)
    return StepRecord(number, output.seconds, decoded, output.frames.shape[0], output.passes, output.commit_passes)


def _alternate(late: Iterator, early: Iterator, first_late: int,
               probe: ModelProbe) -> tuple[tuple[StepRecord, ...], tuple[StepRecord, ...]]:
    """`CONTROL_CHUNKS` chunks of each stream, alternating; late chunks numbered from `first_late`."""
    late_units, early_units = [], []
    for index in range(CONTROL_CHUNKS):
        late_units.append(_unit(first_late + index, next(late), probe))
        early_units.append(_unit(index + 1, next(early), probe))
    return tuple(late_units), tuple(early_units)


def _record(name: str, steps: int, outputs: Iterator, count: int, dit: torch.nn.Module, vae: torch.nn.Module,
            memory: MemoryProbe, memory_at: Iterable[int] = (), control: Iterator | None = None) -> RunRecord:
    """Record the first `count` units of `outputs`, sampling memory after the units numbered in `memory_at`; then,
    given a `control` stream, the load check. Outputs are dropped at once so frames never accumulate in memory."""
    wanted = set(memory_at)
    units, checkpoints = [], []
    first_output = 0.0
    memory.reset_peak()
    with ModelProbe(dit, vae) as probe:
        started = time.perf_counter()
        for number, output in enumerate(itertools.islice(outputs, count), start=1):
            if number == 1:
                first_output = time.perf_counter() - started
            units.append(_unit(number, output, probe))
            del output
            if number in wanted:
                sample = memory.sample()
                checkpoints.append(MemoryCheckpoint(number, sample.peak_bytes, sample.current_bytes,
                                                    probe.kv_cache_bytes, probe.decoder_cache_numel))
        total = time.perf_counter() - started
        late, early = ((), ()) if control is None else _alternate(outputs, control, len(units) + 1, probe)
    if not units:
        raise ValueError(f"{name}: the sampler yielded nothing")
    return RunRecord(name, steps, tuple(units), tuple(checkpoints), first_output, total, late, early)


def run_stream(name: str, sampler: StreamingSampler, reference: torch.Tensor, features: torch.Tensor, chunks: int,
               memory: MemoryProbe, memory_at: Iterable[int] = (), control: bool = False) -> RunRecord:
    """Record `chunks` chunks of the stream of `features` (one row per output frame; with `control` it must
    cover `chunks + CONTROL_CHUNKS` chunks) and, with `control`, the load check."""
    needed = chunks + (CONTROL_CHUNKS if control else 0)
    if sampler.num_chunks(len(features)) < needed:
        raise ValueError(f"{name}: the audio covers {sampler.num_chunks(len(features))} chunks, {needed} needed")
    frames_per_chunk = sampler.settings.chunk_frames * sampler.temporal_stride
    fresh = sampler.stream(reference, features[: CONTROL_CHUNKS * frames_per_chunk]) if control else None
    return _record(name, sampler.settings.steps, sampler.stream(reference, features), chunks, sampler.dit,
                   sampler.vae, memory, memory_at, fresh)


def run_windows(name: str, sampler: WindowedBidirectionalSampler, reference: torch.Tensor, features: torch.Tensor,
                windows: int, memory: MemoryProbe) -> RunRecord:
    """Generate the first `windows` windows of the video `features` describes and record each."""
    return _record(name, sampler.settings.steps, sampler.stream(reference, features), windows, sampler.dit,
                   sampler.vae, memory)
