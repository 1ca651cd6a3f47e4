"""Streaming benchmark (issue 3): the few-step single-pass streaming sampler with a rolling KV cache against
the InfiniteTalk-style windowed bidirectional baseline and a causal sampler that recomputes its whole prefix.

Random weights, same model for every method. CPU default: preset tiny at 64x64, float32, one thread (steady
timings on a shared machine). `--gpu-preset` = wan2.1-1.3b at 480x832, bfloat16, cuda (explicit flags win).
On the CPU, glibc's dynamic mmap threshold lets the process peak RSS step up by tens of MiB over a long run
while the memory in use stays flat; MALLOC_MMAP_THRESHOLD_=131072 fixes the threshold and the peak with it
(at the cost of slower chunks: every large tensor is then a fresh mmap, so compare timings without it).

    .venv/bin/python bench/streaming.py                 # full default run on the CPU
    .venv/bin/python bench/streaming.py --gpu-preset    # on a GPU machine
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import os
import sys
import time

import torch

from echotorrent_core.benchmark import MemoryProbe, random_inputs, random_models, run_stream, run_windows
from echotorrent_core.benchmark.report import (
    chunk_latency_table, decade_table, memory_table, speed_up_verdict, stream_figures, summary_table, window_table,
)
from echotorrent_core.benchmark.runs import CONTROL_CHUNKS
from echotorrent_core.benchmark.stats import selected
from echotorrent_core.streaming import StreamingSampler, StreamSettings
from echotorrent_core.benchmark.extrapolate import scale_steps
from echotorrent_core.benchmark.flops import count_flops
from echotorrent_core.config import get_preset
from echotorrent_core.windowed import WindowedBidirectionalSampler, WindowSettings

CPU_DEFAULTS = {"preset": "tiny", "height": 64, "width": 64, "device": "cpu"}
GPU_PRESET = {"preset": "wan2.1-1.3b", "height": 480, "width": 832, "device": "cuda", "dtype": "bfloat16"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MEMORY_CHUNK = 20
RECOMPUTE_CHUNKS = (1, 2, 5, 10, 20, 30)
BASELINE_STEPS = WindowSettings().steps
FLOP_REFERENCE = ("wan2.1-1.3b", 480, 832)  # the real student's size: counted on meta tensors, nothing runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="model preset (default tiny)")
    parser.add_argument("--height", type=int, help="video height, multiple of 16 (default 64)")
    parser.add_argument("--width", type=int, help="video width, multiple of 16 (default 64)")
    parser.add_argument("--device", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="model dtype (default bfloat16 on cuda, else float32)")
    parser.add_argument("--gpu-preset", action="store_true",
                        help="wan2.1-1.3b, 480x832, bfloat16, cuda (for a GPU machine; explicit flags override)")
    parser.add_argument("--chunks", type=int, default=200, help="streamed chunks (12 frames each; default 200)")
    parser.add_argument("--steps", type=int, default=4, help="few-step denoising steps per chunk (default 4)")
    parser.add_argument("--baseline-windows", type=int, default=2,
                        help="81-frame windows of the bidirectional baseline to run (default 2)")
    parser.add_argument("--baseline-steps", type=int, default=BASELINE_STEPS,
                        help=f"steps actually run per baseline window; fewer than {BASELINE_STEPS} are scaled to "
                             f"{BASELINE_STEPS} (per-pass time x passes, decode timed apart; default {BASELINE_STEPS})")
    parser.add_argument("--recompute-chunks", type=int, default=30,
                        help="chunks of the no-cache prefix-recomputing sampler (default 30)")
    parser.add_argument("--no-load-check", dest="load_check", action="store_false",
                        help=f"skip the {CONTROL_CHUNKS}+{CONTROL_CHUNKS} load-check chunks (for slow models where only "
                             "the speed-up is wanted)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1; 0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset flags from the GPU preset (when asked) and then the CPU defaults."""
    for defaults in ([GPU_PRESET] if args.gpu_preset else []) + [CPU_DEFAULTS]:
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if min(args.chunks, args.steps, args.baseline_windows, args.recompute_chunks, args.baseline_steps) < 1:
        raise SystemExit("--chunks, --steps, --baseline-windows, --baseline-steps and --recompute-chunks must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    dit, vae = random_models(args.preset, device, dtype, args.seed)
    settings = StreamSettings(steps=args.steps, seed=args.seed)
    frames_per_chunk = settings.chunk_frames * vae.cfg.temporal_stride
    frames = args.chunks * frames_per_chunk
    reference, features = random_inputs(dit.cfg, args.height, args.width, frames + CONTROL_CHUNKS * frames_per_chunk,
                                        args.seed)
    memory = MemoryProbe(device)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  torch {torch.__version__}  device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})"
          f"  preset {args.preset}  {args.height}x{args.width}  {args.dtype}  random weights")
    print(f"streaming: chunk {settings.chunk_frames} latent frames, window {settings.window_frames}, sink "
          f"{settings.sink_frames}, {settings.steps} few-step steps, single pass per step + 1 cache-writing pass per "
          f"chunk ({settings.steps + 1} DiT passes per chunk), RoPE {settings.rope_layout}; video {frames} frames\n")

    streaming = run_stream("streaming (KV cache)", StreamingSampler(dit, vae, settings), reference, features,
                           args.chunks, memory, memory_at=(min(MEMORY_CHUNK, args.chunks), args.chunks),
                           control=args.load_check)
    for section in (chunk_latency_table(streaming), decade_table(streaming), stream_figures(streaming),
                    memory_table(streaming, memory.source)):
        print(section + "\n")
    if device.type == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        print("note: MALLOC_MMAP_THRESHOLD_ unset, so the peak RSS includes glibc heap growth (see --help)\n")

    recompute_settings = StreamSettings(steps=args.steps, seed=args.seed, window_frames=None)
    recompute_sampler = StreamingSampler(dit, vae, recompute_settings, use_cache=False)
    recompute = run_stream("recompute prefix (no cache)", recompute_sampler, reference,
                           features[: args.recompute_chunks * frames_per_chunk], args.recompute_chunks, memory)
    print(chunk_latency_table(recompute, selected(len(recompute.units), RECOMPUTE_CHUNKS)) + "\n")
    print(stream_figures(recompute, target=None) + "\n")

    windowed_sampler = WindowedBidirectionalSampler(dit, vae, WindowSettings(steps=args.baseline_steps))
    windowed = run_windows("windowed bidirectional", windowed_sampler, reference, features, args.baseline_windows,
                           memory)
    print(window_table(windowed))
    if args.baseline_steps != BASELINE_STEPS:
        windowed = scale_steps(windowed, BASELINE_STEPS)
        print(f"windowed: ran {args.baseline_steps} steps per window, scaled to {BASELINE_STEPS} (passes and "
              f"non-decode time x {BASELINE_STEPS / args.baseline_steps:g}); decode time as measured")
    print(f"windowed s/frame is extrapolated per frame from {args.baseline_windows} window(s), not a full "
          f"{frames}-frame video ({windowed_sampler.settings.window_frames}-frame windows, "
          f"{windowed_sampler.settings.motion_frames} motion frames, {windowed_sampler.guidance.mode.value})\n")

    print(summary_table(streaming, [windowed, recompute]))
    print(speed_up_verdict(streaming, windowed) + "\n")
    print(flop_lines(args, settings, windowed_sampler.settings))
    return 0


def flop_lines(args: argparse.Namespace, settings: StreamSettings, window: WindowSettings) -> str:
    """FLOPs per output frame of both methods, for this run's model and for the real 1.3B student at 480x832."""
    lines = ["compute per output frame (FlopCounterMode on meta tensors; matmul, conv and attention FLOPs)"]
    cases = [(args.preset, args.height, args.width), FLOP_REFERENCE]
    for preset, height, width in dict.fromkeys(cases):
        figures = count_flops(get_preset(preset), height, width, settings, replace(window, steps=BASELINE_STEPS))
        lines.append(f"  {preset} {height}x{width}: streaming {figures.stream_per_frame / 1e9:,.1f} GFLOP/frame "
                     f"(decode {figures.stream_decode_share:.0%}), windowed "
                     f"{figures.window_per_frame / 1e9:,.1f} GFLOP/frame -> {figures.ratio:.1f}x less compute")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
