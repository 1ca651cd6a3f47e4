"""Training samples prepared from a clip folder: pixel windows for the VAE, streaming-layout latents for the DiT.

Windows start evenly over each clip. A DiT sample takes clip frame s - 1 as the reference portrait and frames
s .. s + 4F - 1 as the video, encoded together by the causal VAE (`avatar_batch` explains the layout), so the
reference is continuous with the video exactly as the portrait is with the streamed frames; audio features are
computed once per clip (whole-clip context) and cut to the window's rows.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from .clip_source import iter_clips


def window_starts(num_frames: int, span: int, count: int, first: int = 0) -> list[int]:
    """Up to `count` evenly spaced starts `s >= first` with `s + span <= num_frames` (fewer when the clip is short)."""
    last = num_frames - span
    if last < first:
        return []
    if count == 1 or last == first:
        return [first]
    steps = min(count, last - first + 1)
    return sorted({first + round(i * (last - first) / (steps - 1)) for i in range(steps)})


def prepare_frame_windows(folder: str, split: str, size: int, frames: int, windows_per_clip: int,
                          fps: float, limit: int | None = None) -> dict[str, torch.Tensor]:
    """`{"video": [N, frames, 3, size, size] uint8}` windows of every clip of `split`."""
    windows = []
    for clip in tqdm(iter_clips(folder, split, size, 16000, fps, limit), desc=f"frame windows ({split})"):
        windows += [clip.frames[s : s + frames] for s in window_starts(len(clip.frames), frames, windows_per_clip)]
    if not windows:
        raise ValueError(f"no clip of split {split!r} in {folder} has {frames} frames")
    return {"video": torch.stack(windows)}


@torch.no_grad()
def prepare_avatar_samples(folder: str, split: str, vae: torch.nn.Module, audio_encoder: torch.nn.Module | None,
                           size: int, latent_frames: int, windows_per_clip: int, fps: float,
                           limit: int | None = None) -> dict[str, torch.Tensor]:
    """`{"latents": [N, z, 1 + F, size/8, size/8], "audio": [N, 4F, L, A]}` (audio only with an encoder)."""
    span = latent_frames * vae.cfg.temporal_stride
    rate = 16000 if audio_encoder is None else audio_encoder.cfg.sample_rate
    latents, audio = [], []
    for clip in tqdm(iter_clips(folder, split, size, rate, fps, limit), desc=f"DiT samples ({split})"):
        starts = window_starts(len(clip.frames), span, windows_per_clip, first=1)
        if not starts:
            continue
        if audio_encoder is not None:
            if clip.audio is None:
                raise ValueError(f"clip {clip.id} has no audio; the audio-driven DiT stages need speech")
            features = audio_encoder.encode(clip.audio, fps=fps, num_frames=len(clip.frames)).float().cpu()
        for s in starts:
            pixels = clip.frames[s - 1 : s + span].permute(1, 0, 2, 3).float() / 127.5 - 1.0
            latents.append(vae.encode(pixels[None].to(next(vae.parameters()))).float().cpu()[0])
            if audio_encoder is not None:
                audio.append(features[s : s + span])
    if not latents:
        raise ValueError(f"no clip of split {split!r} in {folder} has {span + 1} frames")
    samples = {"latents": torch.stack(latents)}
    if audio_encoder is not None:
        samples["audio"] = torch.stack(audio)
    return samples
