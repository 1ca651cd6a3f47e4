"""The benchmark's printed sections, built from the run records.

Pass counts are every DiT pass a unit ran: a streamed chunk costs `steps x guidance passes + 1` (the clean pass
that writes the KV cache), a recomputing chunk `steps x guidance passes` (each over its whole prefix), a window
`steps x guidance passes` over the whole window. Methods are compared per output frame on that count."""

from __future__ import annotations

from .records import RunRecord
from .stats import LatencyGrowth, decades, latency_growth, median_seconds, seconds_without_decode, selected
from .tables import MIB, format_table, mebibytes, seconds

TARGET_LATENCY_GROWTH = 1.15
TARGET_MEMORY_GROWTH = 1.05
TARGET_SPEED_UP = 20.0


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def chunk_latency_table(run: RunRecord, numbers: list[int] | None = None) -> str:
    """Latency of selected chunks, split into VAE decode and the rest (DiT passes, conditioning, glue)."""
    by_number = {unit.number: unit for unit in run.units}
    rows = []
    for number in numbers or selected(len(run.units)):
        unit = by_number[number]
        rows.append([number, seconds(unit.seconds), seconds(unit.decode_seconds),
                     seconds(unit.seconds - unit.decode_seconds), unit.frames, unit.passes, unit.commit_passes])
    return format_table(f"{run.name}: latency per chunk (s)",
                        ["chunk", "total", "VAE decode", "DiT + rest", "frames", "passes", "of which cache write"],
                        rows)


def decade_table(run: RunRecord) -> str:
    """Median / min / max chunk latency over each run of ten chunks."""
    rows = []
    for first, last in decades(len(run.units)):
        values = [unit.seconds for unit in run.units if first <= unit.number <= last]
        rows.append([f"{first}-{last}", seconds(median_seconds(run.units, first, last)),
                     seconds(min(values)), seconds(max(values))])
    return format_table(f"{run.name}: chunk latency per decade (s)", ["chunks", "median", "min", "max"], rows)


def memory_table(run: RunRecord, source: str) -> str:
    """Memory checkpoints with the growth of the peak between the first and the last one."""
    rows = [[m.chunk, mebibytes(m.peak_bytes), mebibytes(m.current_bytes), m.kv_cache_bytes, m.decoder_cache_numel]
            for m in run.memory]
    table = format_table(f"{run.name}: memory after chunk ({source})",
                         ["chunk", "peak MiB", "in use MiB", "KV cache bytes", "decoder cache numel"], rows)
    if len(run.memory) < 2:
        return table
    first, last = run.memory[0], run.memory[-1]
    ratio = last.peak_bytes / first.peak_bytes
    return (f"{table}\npeak at chunk {last.chunk} / peak at chunk {first.chunk} = {ratio:.4f} "
            f"({(last.peak_bytes - first.peak_bytes) / MIB:+.1f} MiB; target <= {TARGET_MEMORY_GROWTH}: "
            f"{_verdict(ratio <= TARGET_MEMORY_GROWTH)})")


def _growth_line(label: str, growth: LatencyGrowth, net: LatencyGrowth, early_note: str,
                 target: float | None) -> str:
    """One growth ratio, its verdict, and the same ratio without the VAE decode (`net`)."""
    verdict = "" if target is None else f"; target <= {target}: {_verdict(growth.ratio <= target)}"
    return (f"  {label}: median chunks {growth.late[0]}-{growth.late[1]} ({growth.late_seconds:.4f} s) / median "
            f"chunks {growth.early[0]}-{growth.early[1]}{early_note} ({growth.early_seconds:.4f} s) = "
            f"{growth.ratio:.3f}{verdict}; without the VAE decode {net.late_seconds:.4f} / "
            f"{net.early_seconds:.4f} = {net.ratio:.3f}")


def stream_figures(run: RunRecord, target: float | None = TARGET_LATENCY_GROWTH) -> str:
    """First-chunk latency, fps, passes per chunk and per output frame, and the latency growth (against `target`
    unless None), with the load check when the run has one."""
    growth = latency_growth(run.units)
    first = run.units[0]
    lines = [
        f"{run.name}: {len(run.units)} chunks, {run.frames} frames",
        f"  first chunk: {first.seconds:.4f} s in the sampler, {run.first_output_seconds:.4f} s from stream start "
        f"(reference encode + sink write + decoder warm-up included)",
        f"  streamed output: {run.fps:.2f} fps end to end, {run.units[-1].frames / growth.late_seconds:.2f} fps "
        f"at the late-chunk median",
        f"  network passes: {run.passes_per_unit:g} per chunk ({run.denoise_passes_per_step:g} per step x "
        f"{run.steps} steps + {_commits_per_unit(run):g} cache write), {run.passes_per_frame:.3g} per output frame",
        _growth_line("latency growth (medians of neighbouring chunks, to denoise)", growth,
                     latency_growth(run.units, measure=seconds_without_decode), "", target),
    ]
    if run.late_units:
        late, control, span = run.late_units, run.control_units, len(run.late_units)
        lines.append(_growth_line(
            "load check (late chunks alternated with a fresh stream's early chunks)",
            latency_growth(late, control, late_span=span),
            latency_growth(late, control, late_span=span, measure=seconds_without_decode),
            " of the fresh stream", target))
    return "\n".join(lines)


def _commits_per_unit(run: RunRecord) -> float:
    return sum(unit.commit_passes for unit in run.units) / len(run.units)


def window_table(run: RunRecord) -> str:
    """Each bidirectional window's time, decode share, frames and passes."""
    rows = [[u.number, seconds(u.seconds), seconds(u.decode_seconds), u.frames, u.passes,
             f"{u.passes / run.steps:g}", f"{u.passes / u.frames:.3g}", seconds(u.seconds / u.frames)]
            for u in run.units]
    return format_table(f"{run.name}: per window (s)",
                        ["window", "total", "VAE decode", "frames", "passes", "passes/step", "passes/frame",
                         "s/frame"], rows)


def summary_table(streaming: RunRecord, others: list[RunRecord]) -> str:
    """One row per method: passes per unit and per output frame (cache-writing passes included), the pass ratio
    (the method's passes per frame over streaming's), time per frame and the streaming speed-ups over each, end to
    end and without the VAE decode. A recomputing pass runs over the whole prefix, so its pass count understates
    its compute; the times do not."""
    rows = []
    for run in [streaming] + others:
        net = run.seconds_per_frame_without_decode
        rows.append([run.name, f"{run.passes_per_unit:g}", f"{run.passes_per_frame:.3g}",
                     f"{run.passes_per_frame / streaming.passes_per_frame:.2f}x", run.steps,
                     seconds(run.seconds_per_frame), seconds(net), f"{run.fps:.2f}",
                     f"{run.seconds_per_frame / streaming.seconds_per_frame:.2f}x",
                     f"{net / streaming.seconds_per_frame_without_decode:.2f}x"])
    return format_table("summary (s per output frame = run wall time / output frames; passes include the "
                        "cache-writing pass)",
                        ["method", "passes/unit", "passes/frame", "pass ratio", "steps", "s/frame",
                         "s/frame w/o decode", "fps", "streaming speed-up", "speed-up w/o decode"], rows)


def speed_up_verdict(streaming: RunRecord, baseline: RunRecord) -> str:
    """The speed-up against its target, with the VAE decode's share that bounds it."""
    ratio = baseline.seconds_per_frame / streaming.seconds_per_frame
    net = baseline.seconds_per_frame_without_decode / streaming.seconds_per_frame_without_decode
    share = streaming.decode_seconds_per_frame / streaming.seconds_per_frame
    passes = baseline.passes_per_frame / streaming.passes_per_frame
    return (f"streaming vs {baseline.name}: {ratio:.2f}x faster per output frame (target >= {TARGET_SPEED_UP:g}x: "
            f"{_verdict(ratio >= TARGET_SPEED_UP)}); without the VAE decode {net:.2f}x; the VAE decode is "
            f"{share:.0%} of the streaming time per frame; {passes:.2f}x fewer DiT passes per output frame "
            f"({streaming.passes_per_frame:.3g} with the cache-writing pass against {baseline.passes_per_frame:.3g})")
