"""The main job end to end: portrait file + speech file (+ text embeddings) -> streamed mp4 with the original audio.

Used by the command line; the ComfyUI nodes call the same pieces (bundle loading, audio encoding, the sampler).
A model bundle is a folder holding `dit.safetensors`, `vae.safetensors` and `audio_encoder.safetensors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints.loaders import LoadReport, load_audio_encoder, load_dit, load_vae
from .checkpoints.safetensors_io import read_state_dict
from .guidance import GuidancePolicy
from .media import (
    Mp4StreamWriter,
    audio_duration_frames,
    load_audio_channels,
    load_image,
    normalize_loudness,
    to_mono_resampled,
)
from .precision import default_dit_dtype, default_vae_dtype
from .streaming import ChunkOutput, StreamingSampler, StreamSettings

BUNDLE_FILES = {"dit": "dit.safetensors", "vae": "vae.safetensors", "audio_encoder": "audio_encoder.safetensors"}
MAX_MUXED_CHANNELS = 2  # the mp4 keeps mono / stereo sound as it is; more channels are mixed down to mono
BUNDLE_SETTINGS_FILE = "bundle.json"  # optional: {"height": .., "width": .., "fps": ..} generation defaults
CLIP_TOKENS = 257  # CLIP ViT-H/14 at 224 px: 256 patch tokens + the class token, as Wan I2V is trained on
CLIP_FEATURE_KEYS = ("clip_fea", "penultimate_hidden_states")  # names a CLIP features file may use


@dataclass
class ModelBundle:
    """The three networks of a generation, loaded and ready, with how each file was read."""

    dit: torch.nn.Module
    vae: torch.nn.Module
    audio_encoder: torch.nn.Module
    reports: tuple[LoadReport, ...]


@dataclass(frozen=True)
class GenerationResult:
    """What `generate_to_file` made: the mp4 path, output frames, chunks and seconds per chunk, the denoising
    passes per step (guidance passes) and `passes`, every DiT pass of the video (per chunk `steps x guidance
    passes + 1`, the clean pass that writes the KV cache)."""

    path: Path
    frames: int
    chunks: int
    chunk_seconds: tuple[float, ...]
    passes_per_step: float
    passes: int


def bundle_paths(folder: str | Path) -> dict[str, Path]:
    """The three checkpoint paths of a bundle folder; raises naming the missing files."""
    folder = Path(folder)
    paths = {name: folder / file for name, file in BUNDLE_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"model bundle {folder} is incomplete: missing {', '.join(missing)}")
    return paths


def bundle_defaults(folder: str | Path) -> dict:
    """Generation defaults stored beside a bundle's checkpoints (empty when the folder has none)."""
    settings = Path(folder) / BUNDLE_SETTINGS_FILE
    return json.loads(settings.read_text()) if settings.is_file() else {}


def load_bundle(
    dit_path: str | Path, vae_path: str | Path, audio_encoder_path: str | Path,
    device: str | torch.device = "cpu", dtype: torch.dtype | None = None, audio_adapter: str | Path | None = None,
    vae_dtype: torch.dtype | None = None,
) -> ModelBundle:
    """Load the DiT (plus an optional MultiTalk/InfiniteTalk audio-adapter file) in `dtype` and the VAE in
    `vae_dtype` (else `dtype`; defaults in `precision.py`: bf16 on CUDA, fp32 on the CPU but a bf16 VAE on CPUs with
    native bf16, `precision.cpu_has_native_bf16`), and the audio encoder in fp32."""
    device = torch.device(device)
    vae_dtype = vae_dtype or dtype or default_vae_dtype(device)
    dit, dit_report = load_dit(dit_path, dtype=dtype or default_dit_dtype(device), device=device,
                               audio_adapter=audio_adapter)
    vae, vae_report = load_vae(vae_path, dtype=vae_dtype, device=device)
    encoder, encoder_report = load_audio_encoder(audio_encoder_path, dtype=torch.float32, device=device)
    return ModelBundle(dit, vae, encoder, (dit_report, vae_report, encoder_report))


def load_text_embeddings(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """umT5 text embeddings from a safetensors file: `context` `[L, D]` or `[1, L, D]` and optional `negative`."""
    tensors, _ = read_state_dict(path)
    if "context" not in tensors:
        raise ValueError(f"{path} must hold a 'context' tensor [L, text_dim] (and optionally 'negative'); found {sorted(tensors)}")
    as_batch = (lambda t: t if t.ndim == 3 else t[None])
    negative = tensors.get("negative")
    return as_batch(tensors["context"]), None if negative is None else as_batch(negative)


def load_clip_features(path: str | Path, image_dim: int) -> torch.Tensor:
    """CLIP image features of the portrait from a safetensors file -> `[1, 257, image_dim]` float32.

    The file holds one tensor `[257, image_dim]` or `[1, 257, image_dim]` (the penultimate hidden states of CLIP
    ViT-H/14 at 224 px, what ComfyUI's CLIP Vision Encode returns as `penultimate_hidden_states`), under any name
    when it is the only tensor, else under one of `CLIP_FEATURE_KEYS`.
    """
    tensors, _ = read_state_dict(path)
    named = [key for key in CLIP_FEATURE_KEYS if key in tensors]
    if named:
        features = tensors[named[0]]
    elif len(tensors) == 1:
        features = next(iter(tensors.values()))
    else:
        raise ValueError(
            f"{path} must hold one tensor, or one named {' or '.join(CLIP_FEATURE_KEYS)}: the CLIP features "
            f"[{CLIP_TOKENS}, {image_dim}]; found {sorted(tensors)}"
        )
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3 or tuple(features.shape) != (1, CLIP_TOKENS, image_dim) or not features.is_floating_point():
        raise ValueError(
            f"CLIP features in {path} must be a float tensor [{CLIP_TOKENS}, {image_dim}] or [1, {CLIP_TOKENS}, "
            f"{image_dim}] (CLIP ViT-H/14 penultimate hidden states of the portrait), got {features.dtype} "
            f"{tuple(features.shape)}"
        )
    if not torch.isfinite(features).all():
        raise ValueError(f"CLIP features in {path} contain NaN or infinite values")
    return features.float()


def check_clip_features(dit: torch.nn.Module, clip_features: torch.Tensor | None) -> None:
    """Raise ValueError unless CLIP features are given exactly when the DiT is an image-to-video checkpoint."""
    image_dim = dit.cfg.image_dim
    if image_dim is not None and clip_features is None:
        raise ValueError(
            f"this is an image-to-video checkpoint (CLIP image branch, in_dim {dit.cfg.in_dim}): it needs the "
            f"portrait's CLIP features [1, {CLIP_TOKENS}, {image_dim}] (CLI: --clip-features FILE.safetensors)"
        )
    if image_dim is None and clip_features is not None:
        raise ValueError("this checkpoint has no CLIP image branch: CLIP features are only for image-to-video models")


def encode_audio_features(
    bundle: ModelBundle, waveform: torch.Tensor, fps: float, gain: float = 1.0
) -> torch.Tensor:
    """Mono waveform `[S]` at the encoder's rate, heard at `gain` times its level (a loudness factor, applied
    without copying the track) -> features `[T_video, layers, dim]`, one row per video frame.

    The frame count rounds down (`media.audio_duration_frames`): every frame has sound under it.
    """
    rate = bundle.audio_encoder.cfg.sample_rate
    frames = audio_duration_frames(int(waveform.shape[-1]), rate, fps)
    if frames < 1:
        raise ValueError(f"the audio lasts {waveform.shape[-1] / rate:.3f} s, shorter than one video frame at {fps} fps")
    device = next(bundle.audio_encoder.parameters()).device
    with torch.no_grad():
        return bundle.audio_encoder.encode(waveform.to(device), fps=fps, num_frames=frames, gain=gain)


def generate_to_file(
    bundle: ModelBundle,
    image: str | Path,
    audio: str | Path,
    out_path: str | Path,
    height: int,
    width: int,
    settings: StreamSettings = StreamSettings(),
    guidance: GuidancePolicy | None = None,
    text: torch.Tensor | None = None,
    negative_text: torch.Tensor | None = None,
    on_chunk: Callable[[ChunkOutput, int], None] | None = None,
    loudness_lufs: float | None = -23.0,
    clip_features: torch.Tensor | None = None,
) -> GenerationResult:
    """Stream a lip-synced video into `out_path` chunk by chunk; inputs are validated before the file is created.

    The speech the audio encoder hears is normalised to `loudness_lufs` (ITU-R BS.1770; None = as recorded), as
    MultiTalk / InfiniteTalk do; the mp4 gets the original audio untouched.
    `on_chunk(chunk, total_chunks)` is called after each chunk is written (progress bars). An exception or Ctrl-C
    mid-stream leaves a playable mp4 of the chunks written so far. Image-to-video checkpoints need
    `clip_features` `[1, 257, image_dim]` (`load_clip_features`), other checkpoints refuse them.
    """
    check_clip_features(bundle.dit, clip_features)
    reference = load_image(image, height, width)
    original, original_rate = load_audio_channels(audio)
    waveform = to_mono_resampled(original, original_rate, bundle.audio_encoder.cfg.sample_rate)
    if loudness_lufs is not None:
        waveform = normalize_loudness(waveform, bundle.audio_encoder.cfg.sample_rate, loudness_lufs)
    features = encode_audio_features(bundle, waveform, settings.fps)
    sampler = StreamingSampler(bundle.dit, bundle.vae, settings, guidance)
    total = sampler.num_chunks(len(features))
    seconds: list[float] = []
    passes_per_step, passes = 0.0, 0
    frames = 0
    soundtrack = original if original.shape[0] <= MAX_MUXED_CHANNELS else original.mean(dim=0, keepdim=True)
    with Mp4StreamWriter(out_path, fps=settings.fps, width=width, height=height,
                         audio=soundtrack, audio_rate=original_rate) as writer:
        for chunk in sampler.stream(reference, features, text=text, negative_text=negative_text,
                                    clip_fea=clip_features):
            writer.write(chunk.frames)
            frames += chunk.frames.shape[0]
            seconds.append(chunk.seconds)
            passes_per_step = chunk.passes_per_step
            passes += chunk.passes
            if on_chunk is not None:
                on_chunk(chunk, total)
    return GenerationResult(Path(out_path), frames, len(seconds), tuple(seconds), passes_per_step, passes)
