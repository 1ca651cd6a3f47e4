"""Benchmark helpers: a tiny streamed run is recorded chunk by chunk, probed for memory, and tabulated."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.benchmark import MemoryProbe, ModelProbe, random_inputs, random_models, run_stream, run_windows
from echotorrent_core.benchmark.records import StepRecord
from echotorrent_core.benchmark.runs import CONTROL_CHUNKS
from echotorrent_core.benchmark.report import (
    chunk_latency_table, decade_table, memory_table, stream_figures, summary_table, window_table,
)
from echotorrent_core.benchmark.stats import decades, latency_growth, selected
from echotorrent_core.streaming import StreamingSampler, StreamSettings
from echotorrent_core.windowed import WindowedBidirectionalSampler, WindowSettings

CHUNKS = 4


@pytest.fixture(scope="module")
def models():
    return random_models("tiny", torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def inputs(models):
    dit, _ = models
    return random_inputs(dit.cfg, 32, 32, frames=(CHUNKS + CONTROL_CHUNKS) * 12)


@pytest.fixture(scope="module")
def streamed(models, inputs):
    dit, vae = models
    sampler = StreamingSampler(dit, vae, StreamSettings(steps=2))
    memory = MemoryProbe(torch.device("cpu"))
    return run_stream("streaming", sampler, *inputs, CHUNKS, memory, memory_at=(2, CHUNKS), control=True)


def _rows(table: str) -> list[list[str]]:
    """Data rows of a `format_table` string (title, header and rule skipped), cells stripped."""
    return [[cell.strip() for cell in line.split("|")] for line in table.splitlines()[3:]]


def test_every_chunk_is_recorded_with_positive_times(streamed) -> None:
    assert [unit.number for unit in streamed.units] == list(range(1, CHUNKS + 1))
    for unit in streamed.units:
        assert unit.seconds > 0 and 0 < unit.decode_seconds < unit.seconds
        assert unit.frames == 12 and unit.passes == 2 + 1 and unit.commit_passes == 1  # 2 steps + the cache write
    assert streamed.denoise_passes_per_step == 1 and streamed.passes_per_unit == 3
    assert streamed.passes_per_frame == 3 / 12
    assert streamed.fps > 0 and 0 < streamed.first_output_seconds <= streamed.total_seconds


def test_load_check_alternates_late_chunks_with_a_fresh_stream(streamed) -> None:
    assert [unit.number for unit in streamed.late_units] == list(range(CHUNKS + 1, CHUNKS + CONTROL_CHUNKS + 1))
    assert [unit.number for unit in streamed.control_units] == list(range(1, CONTROL_CHUNKS + 1))
    assert all(unit.seconds > 0 for unit in streamed.late_units + streamed.control_units)
    assert "load check" in stream_figures(streamed)


def test_memory_checkpoints_read_the_process_and_both_caches(streamed) -> None:
    assert [m.chunk for m in streamed.memory] == [2, CHUNKS]
    for checkpoint in streamed.memory:
        assert checkpoint.peak_bytes >= checkpoint.current_bytes > 0
        assert checkpoint.kv_cache_bytes > 0 and checkpoint.decoder_cache_numel > 0
    assert streamed.memory[0].kv_cache_bytes == streamed.memory[1].kv_cache_bytes


def test_tables_have_the_expected_rows_and_positive_numbers(streamed) -> None:
    latency = chunk_latency_table(streamed)
    assert "chunk" in latency.splitlines()[1] and "VAE decode" in latency.splitlines()[1]
    rows = _rows(latency)
    assert [row[0] for row in rows] == ["1", "2", str(CHUNKS)]
    assert all(float(cell) > 0 for row in rows for cell in row)
    assert [row[0] for row in _rows(decade_table(streamed))] == [f"1-{CHUNKS}"]
    memory = memory_table(streamed, "test")
    assert [row[0] for row in _rows(memory)[:2]] == ["2", str(CHUNKS)] and "peak at chunk" in memory
    assert "3 per chunk (1 per step x 2 steps + 1 cache write), 0.25 per output frame" in stream_figures(streamed)
    assert [row[-2:] for row in _rows(chunk_latency_table(streamed))] == [["3", "1"]] * 3
    summary = _rows(summary_table(streamed, [streamed]))
    assert [row[0] for row in summary] == ["streaming", "streaming"] and summary[0][-1] == "1.00x"
    assert summary[0][1:4] == ["3", "0.25", "1.00x"]


def test_windowed_baseline_is_recorded_per_window(models, inputs) -> None:
    dit, vae = models
    sampler = WindowedBidirectionalSampler(dit, vae, WindowSettings(window_frames=17, motion_frames=9, steps=2))
    run = run_windows("windowed", sampler, *inputs, windows=2, memory=MemoryProbe(torch.device("cpu")))
    assert [unit.frames for unit in run.units] == [16, 8]
    assert run.denoise_passes_per_step == 3 and all(unit.seconds > unit.decode_seconds > 0 for unit in run.units)
    assert [unit.passes for unit in run.units] == [6, 6] and run.passes_per_frame == 12 / 24
    assert [row[0] for row in _rows(window_table(run))] == ["1", "2"]


def test_baselines_are_compared_on_passes_with_the_cache_write(streamed) -> None:
    from echotorrent_core.benchmark.records import RunRecord
    from echotorrent_core.benchmark.report import speed_up_verdict

    # 40 steps x 3 passes over an 81-frame window with 9 motion frames: 120 passes for 72 new frames
    window = RunRecord("windowed", 40, (StepRecord(1, 60.0, 6.0, 72, 120, 0),), (), 60.0, 60.0)
    summary = _rows(summary_table(streamed, [window]))
    assert summary[1][1:4] == ["120", "1.67", "6.67x"]  # (120 / 72) / (3 / 12)
    assert "6.67x fewer DiT passes per output frame (0.25 with the cache-writing pass against 1.67)" in (
        speed_up_verdict(streamed, window))


def test_probe_removes_its_instrumentation(models) -> None:
    dit, vae = models
    with ModelProbe(dit, vae):
        assert "create_kv_cache" in vars(dit)
    assert "create_kv_cache" not in vars(dit)
    assert not vae.decoder._forward_hooks and not vae.decoder._forward_pre_hooks


def test_stats_ranges_and_growth() -> None:
    assert decades(25) == [(1, 10), (11, 20), (21, 25)]
    assert selected(7) == [1, 2, 5, 7] and selected(200)[-1] == 200
    units = [StepRecord(n, 1.0 if n < 10 else 2.0, 0.5, 12, 5, 1) for n in range(1, 21)]
    growth = latency_growth(units)
    assert growth.early == (3, 7) and growth.late == (15, 20) and growth.ratio == 2.0


def test_flop_count_of_the_real_student_favours_streaming() -> None:
    from echotorrent_core.benchmark.flops import count_flops
    from echotorrent_core.config import get_preset

    figures = count_flops(get_preset("wan2.1-1.3b"), 480, 832)
    # one streaming pass: 3 latent frames of 30 x 52 tokens through 30 blocks of width 1536, at least 2 FLOPs per
    # weight per token in the linear layers alone
    tokens = 3 * 30 * 52
    assert figures.stream_pass > 2 * tokens * 30 * (4 * 1536**2 + 2 * 1536 * 8960)
    assert figures.window_pass > 7 * figures.stream_pass  # 21 frames against 3
    assert 0 < figures.stream_decode_share < 1
    assert figures.ratio > 20


def test_scaled_steps_keep_decode_time_and_scale_the_rest() -> None:
    from echotorrent_core.benchmark.extrapolate import scale_steps
    from echotorrent_core.benchmark.records import RunRecord, StepRecord

    run = RunRecord("w", 4, (StepRecord(1, 3.0, 1.0, 80, 12, 0),), (), 3.5, 3.5)
    scaled = scale_steps(run, 40)
    assert scaled.units[0].seconds == 1.0 + 2.0 * 10 and scaled.units[0].passes == 120
    assert scaled.total_seconds == 3.5 + 18.0 and scaled.steps == 40
    with pytest.raises(ValueError, match="cache-writing passes"):
        scale_steps(RunRecord("s", 4, (StepRecord(1, 3.0, 1.0, 12, 5, 1),), (), 3.5, 3.5), 40)
