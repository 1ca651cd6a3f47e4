"""Training pairs of the refiner stage: (latents the streaming student produces, the real frames of that window).

Windows come from a preprocessing cache built with pixels (`data/cache.py`, `keep_pixels`): per window
`[portrait frame 0, frames 1 .. 4F]`, its VAE latents `[z, 1 + F, h, w]` (latent 0 = the sampler's sink), audio
rows and pixels. Two kinds of pair latents, both from `training.rollout` (the sampler's chunk loop, no gradients):
- "student": the student generates the window from its reference latent and the window's audio, as at inference.
  Its motion is its own, so these latents are not pixel-aligned with the real frames.
- "self": the window's real latents, noised chunk by chunk to the student's timestep `start_step` and re-denoised
  by the student from there with its KV cache (SDEdit on the stream). Coarse structure (pose, mouth shape) stays
  the real window's, so the frames are close to aligned, while the detail comes out of the student's few-step
  prediction, the way the student's own latents look.
A pairs file (`{split}_{kind}.safetensors`) holds `latents` (the sink then the pair's F latents), `real_latents`
and `pixels` uint8 `[N, 3, 1 + 4F, S, S]`; its fingerprint names the student file, its stream settings, the VAE
file, the cache index, the kind, the start step and the seed, so any change regenerates it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ...checkpoints.loaders import load_dit
from ...data.cache import CacheSettings, build_cache
from ...data.cache_dataset import CachedWindows
from ...data.clips import ClipSettings
from ...guidance import GuidancePolicy
from ...streaming.settings import StreamSettings
from ..rollout import rollout
from .sample_files import TensorSamples, cached_samples, file_fingerprint

PAIR_KINDS = ("self", "student")


def student_stream_settings(student: str | Path, stream: str | Path | None) -> StreamSettings:
    """The StreamSettings the student was trained for: `stream` or `student_stream.json` beside the student file."""
    path = Path(stream) if stream else Path(student).with_name("student_stream.json")
    if not path.is_file():
        raise FileNotFoundError(f"no stream settings at {path}: the student stage exports student_stream.json beside "
                                "student.safetensors; pass [stage] stream = FILE otherwise")
    return StreamSettings(**json.loads(path.read_text()))


def ensure_pixel_cache(clips: str, cache_dir: Path, vae: torch.nn.Module, audio_encoder: torch.nn.Module,
                       size: int, latent_frames: int, fps: float, detector: str) -> Path:
    """Build, complete or reuse the cache of `clips` with pixels kept (windows of 1 + 4F frames); returns its folder."""
    frames = 1 + 4 * latent_frames
    clip_settings = ClipSettings(fps=fps, size=size, window_frames=frames, window_stride=frames, detector=detector)
    build_cache(clips, cache_dir, vae, audio_encoder, CacheSettings(clips=clip_settings, keep_pixels=True))
    return cache_dir


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return ((pixels.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate_pairs(student: torch.nn.Module, windows: CachedWindows, latent_frames: int, settings: StreamSettings,
                   guidance: GuidancePolicy, kind: str, start_step: int, seed: int, batch: int,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Pairs of every window (module docstring); batch b of windows draws its noise from seed + b."""
    if kind not in PAIR_KINDS:
        raise ValueError(f"pair kind must be one of {PAIR_KINDS}, got {kind!r}")
    if latent_frames % settings.chunk_frames:
        raise ValueError(f"latent_frames {latent_frames} must be whole chunks of {settings.chunk_frames}")
    out: dict[str, list[torch.Tensor]] = {"latents": [], "real_latents": [], "pixels": []}
    starts = range(0, len(windows), batch)
    for number, first in enumerate(tqdm(starts, desc=f"refiner pairs ({kind})", unit="batch")):
        items = [windows[i] for i in range(first, min(first + batch, len(windows)))]
        real = torch.stack([item["latents"][:, : 1 + latent_frames] for item in items]).to(device)
        audio = torch.stack([item["audio_features"][1 : 1 + 4 * latent_frames] for item in items]).to(device)
        init = (real[:, :, 1:], start_step) if kind == "self" else (None, 0)
        result = rollout(student, real[:, :, :1], audio, settings, latent_frames // settings.chunk_frames,
                         guidance=guidance, generator=torch.Generator().manual_seed(seed + number),
                         init_latents=init[0], start_step=init[1])
        out["latents"].append(torch.cat([real[:, :, :1], result.latents.to(real)], dim=2).cpu())
        out["real_latents"].append(real.cpu())
        out["pixels"].append(torch.stack([_to_uint8(item["pixels"][:, : 1 + 4 * latent_frames]) for item in items]))
    return {name: torch.cat(values) for name, values in out.items()}


def cached_pairs(path: Path, windows: CachedWindows, student_path: str, vae_path: str, latent_frames: int,
                 settings: StreamSettings, guidance: GuidancePolicy, kind: str, start_step: int, seed: int,
                 batch: int, device: torch.device) -> TensorSamples:
    """The pairs file at `path`, regenerated when anything it is made from changed (the student is loaded only
    to generate it, then released)."""
    fingerprint = {
        "kind": f"refiner_pairs_{kind}", "student": file_fingerprint(student_path), "vae": file_fingerprint(vae_path),
        "cache": file_fingerprint(windows.cache_dir / "index.json"), "windows": len(windows),
        "latent_frames": latent_frames, "settings": asdict(settings), "guidance": guidance.to_dict(),
        "start_step": start_step, "seed": seed,
    }

    def build() -> dict[str, torch.Tensor]:
        student = load_dit(student_path, dtype=torch.float32, device=device)[0].eval()
        return generate_pairs(student, windows, latent_frames, settings, guidance, kind, start_step, seed, batch,
                              device)

    return TensorSamples(cached_samples(path, fingerprint, build))
