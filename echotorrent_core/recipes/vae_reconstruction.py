"""The VAE ceiling: the held-out clips encoded and decoded as a stream by the VAE the DiTs train on, measured by
the same instruments as the student and teacher (`evaluation.evaluate_generator`).

No DiT can put more lip sync, identity or detail into a video than its VAE lets through, so this row bounds what
the teacher and student can reach: a reconstruction whose Sync-C sits near the shuffled-audio control means the
latents lose the mouth and no amount of DiT training recovers it.

The "generator" reads the ground-truth clip (its soundtrack path is the clip's mp4), encodes its frames with
`WanVAE.encode_raw` (the VAE config's encode bound, as the latent cache does; the same latents a `StreamingEncoder`
gives) and decodes them with `StreamingDecoder` (the decode bound, as the streaming sampler does) in chunks of
`chunk` latents (`reconstruct_frames(colour_match=True)` maps the colours by the decoded frame 0 as the sampler's
`colour_match` does, `media.colour_map`; off, as in the sampler, by default). `evaluate_vae_ceiling` runs it
through `evaluation.evaluate_generator`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..checkpoints.loaders import load_vae
from ..media.colour_map import apply_colour_map, fit_colour_map
from ..media.video_reader import read_video_frames
from ..media.video_writer import Mp4StreamWriter
from ..metrics.measurements import EVAL_FPS
from ..metrics.sync_expert import SyncExpert
from ..models.vae import StreamingDecoder, WanVAE
from ..pipeline import GenerationResult
from .evaluation import Generate, evaluate_generator


def reconstruct_frames(vae: WanVAE, frames: torch.Tensor, chunk: int, colour_match: bool = False
                       ) -> tuple[torch.Tensor, list[float]]:
    """uint8 frames `[T, H, W, 3]` -> reconstructed uint8 frames `[1 + 4k, H, W, 3]` (the first `1 + 4k <= T`
    frames; k whole latents) and the seconds of each decoded chunk. With `colour_match` every frame goes through the
    colour map from decoded frame 0 to frame 0 (the portrait), as the streaming sampler's output does."""
    stride = vae.cfg.temporal_stride
    usable = 1 + (frames.shape[0] - 1) // stride * stride
    if usable < 1 + stride:
        raise ValueError(f"a clip needs at least {1 + stride} frames to reconstruct, got {frames.shape[0]}")
    dtype = next(vae.parameters()).dtype
    video = frames[:usable].permute(3, 0, 1, 2)[None].to(dtype) / 127.5 - 1.0
    decoder = StreamingDecoder(vae)
    pieces, seconds = [], []
    with torch.inference_mode():
        latents = vae.encode_raw(video)
        for begin, end in [(0, 1)] + [(s, s + chunk) for s in range(1, latents.shape[2], chunk)]:
            began = time.perf_counter()
            pieces.append(decoder.decode_chunk_raw(latents[:, :, begin:end]))
            seconds.append(time.perf_counter() - began)
    decoded = torch.cat(pieces, dim=2)[0].float().clamp(-1.0, 1.0)
    if colour_match:
        decoded = apply_colour_map(decoded, fit_colour_map(decoded[:, 0], video[0, :, 0].float()))
    return ((decoded + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0), seconds


def reconstruction_generator(vae_path: str | Path, chunk: int = 3) -> Generate:
    """A `Generate` (see `evaluation`) that writes the VAE reconstruction of the clip whose mp4 is given as the
    soundtrack (the portrait is ignored: the clip's own frames are the input), with the clip's audio."""
    vae = load_vae(vae_path, dtype=torch.float32)[0].eval()

    def generate(portrait: Path, clip: Path, out: Path, height: int, width: int) -> GenerationResult:
        frames, fps, audio, rate = read_video_frames(clip)
        if frames.shape[1:3] != (height, width):
            raise ValueError(f"{clip}: frames are {tuple(frames.shape[1:3])}, the evaluation asked for "
                             f"{(height, width)}")
        video, seconds = reconstruct_frames(vae, frames, chunk)
        with Mp4StreamWriter(out, fps=fps, width=width, height=height, audio=audio, audio_rate=rate) as writer:
            writer.write(video.numpy())
        return GenerationResult(Path(out), video.shape[0], len(seconds), tuple(seconds), 0.0, 0)

    return generate


def evaluate_vae_ceiling(vae_path: str | Path, data: str | Path, out: str | Path, expert: SyncExpert,
                         limit: int | None = None) -> dict:
    """The first `limit` held-out clips of `data` (None: all) reconstructed by the VAE into `out/heldout` and
    measured (`evaluation.evaluate_generator`, no drift clips)."""
    return evaluate_generator(reconstruction_generator(vae_path), EVAL_FPS, data, None, out, expert, limit)
