"""The VAE ceiling's reconstruction: the stream encode + decode of a clip equals the VAE's whole-clip encode + decode
(unbounded) (with `colour_match`: then mapped by the decoded frame 0's colour map), keeps whole latents, and is
written as an mp4 with the clip's sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echotorrent_core.checkpoints.loaders import save_vae
from echotorrent_core.media import Mp4StreamWriter
from echotorrent_core.media.colour_map import apply_colour_map, fit_colour_map
from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.recipes.vae_reconstruction import reconstruct_frames, reconstruction_generator

from tiny_vae import tiny_vae


def _frames(count: int, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, size, size, 3), generator=generator, dtype=torch.uint8)


def test_stream_reconstruction_equals_the_whole_clip_encode_and_decode() -> None:
    vae = tiny_vae(0)
    frames = _frames(15)  # 1 + 4 * 3 = 13 usable frames
    video, seconds = reconstruct_frames(vae, frames, chunk=2)
    assert video.dtype == torch.uint8 and tuple(video.shape) == (13, 32, 32, 3)
    assert len(seconds) == 3  # latent 0, then latents 1-2 and 3
    with torch.no_grad():
        pixels = frames[:13].permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
        whole = vae.decode(vae.encode(pixels))[0].float()
    assert (video.int() - _uint8(whole).int()).abs().max() <= 1
    matched, _ = reconstruct_frames(vae, frames, chunk=2, colour_match=True)
    mapped = apply_colour_map(whole, fit_colour_map(whole[:, 0], pixels[0, :, 0]))
    assert (matched.int() - _uint8(mapped).int()).abs().max() <= 1
    assert (matched.int() - video.int()).abs().max() > 1  # the random VAE's colours were mapped


def _uint8(video: torch.Tensor) -> torch.Tensor:
    """`[3, T, H, W]` in [-1, 1] -> `[T, H, W, 3]` uint8."""
    return ((video + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)


def test_too_short_clips_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 5 frames"):
        reconstruct_frames(tiny_vae(0), _frames(4), chunk=1)


def test_the_generator_writes_the_reconstruction_with_the_clip_sound(tmp_path) -> None:
    save_vae(tiny_vae(1), tmp_path / "vae.safetensors")
    clip = tmp_path / "clip.mp4"
    audio = torch.sin(torch.linspace(0, 400, 16000))[None] * 0.3
    with Mp4StreamWriter(clip, fps=25.0, width=32, height=32, audio=audio, audio_rate=16000) as writer:
        writer.write(_frames(10).numpy())
    generate = reconstruction_generator(tmp_path / "vae.safetensors", chunk=1)
    result = generate(tmp_path / "unused.png", clip, tmp_path / "out.mp4", 32, 32)
    frames, fps, sound, _ = read_video_frames(tmp_path / "out.mp4")
    assert result.frames == frames.shape[0] == 9 and fps == 25.0 and sound is not None
    assert result.passes == 0 and len(result.chunk_seconds) == result.chunks == 3
    with pytest.raises(ValueError, match="frames are"):
        generate(tmp_path / "unused.png", clip, tmp_path / "out2.mp4", 64, 64)
    assert np.isfinite(result.chunk_seconds).all()
