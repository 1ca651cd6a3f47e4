"""How a VAE holds up on long streams: encode -> decode PSNR by frame range on held-out clips.

    .venv/bin/python scripts/vae_long_stream_check.py VAE.safetensors DATA_DIR [--clips 2] [--frames 97]
        [--split heldout] [--context 0 2 3] [--chunk 3] [--bf16]

Each clip's first `--frames` frames (face-centred, 128 px) are encoded as one causal stream, then decoded
(a) as one stream (`--context 0`: the full causal history) and (b) chunk by chunk with a bounded temporal context
(`StreamingDecoder(context_latents=K)`: each chunk of `--chunk` latents decoded from a fresh cache after its K
previous latents). Prints PSNR (dB) of frame 0, frames 1-8, 9-24 and 25-end against the input frames, and how far
the encoder's stream latents are from those of fresh 9-frame windows ending at the same latent (relative RMS by
latent position): a large gap means the encoder, too, depends on more history than it was trained with.
`--bf16` also decodes with a bf16 copy of the VAE (the default on CPUs with AMX, `precision.py`): its PSNR against
the input and against the fp32 decode, and the median seconds per chunk of both (decoding on the last context).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.data.clips import ClipSettings, ClipWindows
from echotorrent_core.models.vae import StreamingDecoder


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two videos in [-1, 1] (any equal shapes)."""
    mse = ((a - b) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def stream_decode(vae: torch.nn.Module, latents: torch.Tensor, chunk: int, context: int,
                  seconds: list[float] | None = None) -> torch.Tensor:
    """`[1, z, n, h, w]` -> float32 frames, decoded `chunk` latents at a time (first chunk 1 + chunk) in the VAE's
    dtype; appends each later chunk's decode time to `seconds` when given."""
    dtype = next(vae.parameters()).dtype
    decoder = StreamingDecoder(vae, context_latents=context)
    pieces = [decoder.decode_chunk(latents[:, :, : 1 + chunk].to(dtype))]
    for start in range(1 + chunk, latents.shape[2], chunk):
        began = time.perf_counter()
        pieces.append(decoder.decode_chunk(latents[:, :, start : start + chunk].to(dtype)))
        if seconds is not None:
            seconds.append(time.perf_counter() - began)
    return torch.cat(pieces, dim=2).float()


def encoder_gap(vae: torch.nn.Module, video: torch.Tensor, latents: torch.Tensor) -> list[float]:
    """Relative RMS gap, per latent t >= 2, between stream latents and those of the 9-frame window ending at t."""
    gaps = []
    for t in range(2, latents.shape[2]):
        window = vae.encode(video[:, :, 4 * t - 8 : 4 * t + 1])[:, :, -1]
        gaps.append(((window - latents[:, :, t]).pow(2).mean() / latents[:, :, t].pow(2).mean()).sqrt().item())
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae")
    parser.add_argument("data")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=97)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--context", type=int, nargs="+", default=[0, 2, 3])
    parser.add_argument("--chunk", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also decode with a bf16 copy (see above)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    vae, _ = load_vae(args.vae)
    vae.eval()
    settings = ClipSettings(size=128, window_frames=args.frames, window_stride=100000)
    ranges = {"0": slice(0, 1), "1-8": slice(1, 9), "9-24": slice(9, 25), f"25-{args.frames - 1}": slice(25, None)}
    totals: dict[int, dict[str, list[float]]] = {k: {r: [] for r in ranges} for k in args.context}
    gaps: list[list[float]] = []
    half = copy.deepcopy(vae).to(torch.bfloat16) if args.bf16 else None
    bf16 = {"truth": [], "fp32": [], "seconds_fp32": [], "seconds_bf16": []}
    windows = ClipWindows(args.data, settings, args.split)
    for count, window in enumerate(windows):
        if count == args.clips:
            break
        video = window.video()[None]
        latents = vae.encode(video)
        gaps.append(encoder_gap(vae, video, latents))
        for context in args.context:
            timed = bf16["seconds_fp32"] if half is not None and context == args.context[-1] else None
            frames = stream_decode(vae, latents, args.chunk, context, timed)
            for name, span in ranges.items():
                totals[context][name].append(psnr(frames[:, :, span], video[:, :, span]))
        if half is not None:  # against the fp32 decode of the last context: `frames`
            approx = stream_decode(half, latents, args.chunk, args.context[-1], bf16["seconds_bf16"])
            bf16["truth"].append(psnr(approx, video))
            bf16["fp32"].append(psnr(approx, frames))
    print("context | " + " | ".join(ranges))
    for context, by_range in totals.items():
        label = "full" if context == 0 else str(context)
        print(f"{label:>7} | " + " | ".join(f"{sum(v) / max(len(v), 1):.1f}" for v in by_range.values()))
    mean_gaps = [sum(column) / len(column) for column in zip(*gaps)]
    print("encoder: stream vs 9-frame-window latents, relative RMS gap at latent 2, 3, ...: "
          + " ".join(f"{g:.2f}" for g in mean_gaps))
    if half is not None:
        print(f"bf16 decode (context {args.context[-1]}): {statistics.mean(bf16['truth']):.2f} dB vs the input, "
              f"{statistics.mean(bf16['fp32']):.1f} dB vs the fp32 decode; median s per chunk: fp32 "
              f"{statistics.median(bf16['seconds_fp32']):.3f}, bf16 {statistics.median(bf16['seconds_bf16']):.3f} "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
