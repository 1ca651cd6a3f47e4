"""Held-out PSNR of a VAE's bounded streaming decode with 0 (unbounded), 1 and 2 latents of decode context: the first
97 frames (1 + 4k) of the first 8 held-out clips of DATA, encoded as the VAE encodes (its own encode bound), decoded
as a stream (latent 0 alone, then chunks of 3); PSNR over frames 1.. against the clip.
usage: decode_context_psnr.py VAE DATA"""
import json
import sys

import torch

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.models.vae import decode_as_stream

torch.set_num_threads(2)
vae = load_vae(sys.argv[1], dtype=torch.float32)[0].eval()
data = sys.argv[2]
clips = [c for c in json.load(open(f"{data}/index.json"))["clips"] if c["split"] == "heldout"][:8]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b) / 2).square().flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


scores = {0: [], 1: [], 2: []}
for clip in clips:
    frames = read_video_frames(f"{data}/{clip['video']}")[0][:97]
    frames = frames[: 1 + 4 * ((len(frames) - 1) // 4)]
    x = frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.inference_mode():
        mu = vae.moments(x).chunk(2, dim=1)[0]
        for context in scores:
            video = decode_as_stream(vae, mu, 3, context)
            scores[context].append(psnr(video[:, :, 1:].flatten(1), x[:, :, 1:].flatten(1)))
print({f"context {k}": round(sum(v) / len(v), 3) for k, v in scores.items()}, f"over {len(clips)} clips")
