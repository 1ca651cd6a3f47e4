"""What the causal DiT allocates at the real 1.3B size, counted on the meta device (nothing is computed).

1. A block-causal training forward of a 21-latent-frame clip at 480x832 (81 video frames; 30 x 52 tokens per
   frame, L = 32,760 tokens), autograd on, fused attention kernels: the largest tensor, and every tensor of
   L x L elements or more (there must be none; a dense token mask alone would be L^2 bools = 1 GiB, and SDPA
   with a mask cannot use the flash kernels, so it would also materialise heads x L^2 scores).
2. One streaming pass (`forward_chunk` under no_grad, window full): the largest tensor, all bytes allocated in
   the pass (every op's output, freed as it goes), and the tensors the size of a block's cached keys or values
   or more: copies of the cache (a cache concatenated with the chunk in every block makes 2 per block; the
   in-place cache none).

    .venv/bin/python bench/block_causal_memory.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import torch

from echotorrent_core.benchmark.allocations import AllocationRecorder, FusedAttentionOnMeta, forward_allocations
from echotorrent_core.benchmark.tables import format_table
from echotorrent_core.config import get_preset
from echotorrent_core.models.attention import BlockCausal
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.streaming import StreamSettings

PRESET, FRAMES, HEIGHT, WIDTH, DTYPE = "wan2.1-1.3b", 21, 480, 832, torch.bfloat16
GIB = 1024**3


def _gib(value: float) -> str:
    return f"{value / GIB:.3f}"


def training_forward_table() -> str:
    preset = get_preset(PRESET)
    rows = []
    for mode in (BlockCausal(3, 1, None), BlockCausal(3, 1, 6), BlockCausal(3, 1, 6, "absolute")):
        found = forward_allocations(preset, FRAMES, HEIGHT, WIDTH, mode, DTYPE)
        largest = found.largest
        rows.append([f"window {mode.window_frames}, {mode.rope_layout}", found.tokens,
                     f"{largest.op} {list(largest.shape)}", _gib(largest.bytes), len(found.quadratic), found.count])
    tokens = rows[0][1]
    heads = preset.dit.num_heads
    return (format_table(f"block-causal forward, {PRESET}, {FRAMES} latent frames at {HEIGHT}x{WIDTH}, "
                         f"{str(DTYPE).removeprefix('torch.')}, autograd on",
                         ["attention", "L tokens", "largest tensor", "GiB", "tensors >= L*L", "tensors"], rows)
            + f"\nfor comparison, a dense token mask: {tokens}^2 bools = {_gib(tokens**2)} GiB, and SDPA's masked "
              f"(non-flash) path adds {heads} x L^2 scores = {_gib(heads * tokens**2 * 2)} GiB in bfloat16")


def streaming_pass_table() -> str:
    """One `forward_chunk` pass with a full window (the API is the same before and after the in-place cache, so
    the same function measures an older checkout too)."""
    preset = get_preset(PRESET)
    settings = StreamSettings()
    h, w = HEIGHT // preset.vae.spatial_stride, WIDTH // preset.vae.spatial_stride
    n, sink, window = settings.chunk_frames, settings.sink_frames, settings.window_frames
    with torch.device("meta"), torch.no_grad():
        dit = WanDiT(preset.dit).to(DTYPE)
        cfg = dit.cfg
        tokens = (h // 2) * (w // 2)
        cache = dit.create_kv_cache(1, tokens, sink, window, DTYPE, "meta")  # chunk_frames default: 3
        cond = dit.prepare_conditioning(text=torch.zeros(1, cfg.text_len, cfg.text_dim, dtype=DTYPE))

        def run(start: int, frames: int, write: bool) -> None:
            audio = torch.zeros(1, frames, cfg.audio.context_tokens, cfg.audio.token_dim, dtype=DTYPE)
            dit.forward_chunk(torch.zeros(1, cfg.out_dim, frames, h, w, dtype=DTYPE), torch.zeros(1, frames),
                              replace(cond, audio=audio), cache, start, write_cache=write)

        run(0, sink, True)
        start = sink
        while start <= sink + window:
            run(start, n, True)
            start += n
        with FusedAttentionOnMeta(), AllocationRecorder() as recorder:
            run(start, n, False)
    context_tokens = (sink + window) * tokens
    copies = [a for a in recorder.allocations
              if len(a.shape) == 4 and a.shape[-1] == cfg.head_dim and max(a.shape[:-1]) >= context_tokens]
    largest = recorder.largest()
    rows = [[f"{largest.op} {list(largest.shape)}", _gib(largest.bytes),
             _gib(sum(a.bytes for a in recorder.allocations)), len(copies), _gib(sum(a.bytes for a in copies)),
             _gib(cache.allocated_bytes)]]
    return format_table(f"one streaming pass, {PRESET} at {HEIGHT}x{WIDTH}, chunk {n}, window {window}, sink {sink}, "
                        f"{str(DTYPE).removeprefix('torch.')}, window full (a chunk makes {settings.steps} + 1 "
                        "such passes)",
                        ["largest tensor", "GiB", "GiB allocated in the pass (all ops)",
                         "key/value-sized tensors (>= sink + window)", "their GiB", "cache GiB (once)"], rows)


def main() -> int:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  torch {torch.__version__}  meta device (allocation shapes only)\n")
    print(training_forward_table() + "\n")
    print(streaming_pass_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
