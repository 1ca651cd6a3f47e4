"""What the browser's stream player receives for a streamed video: start / chunk / end payloads with the chunk's
frames as small JPEGs and the matching slice of the sound track as 16-bit PCM, both base64 in JSON.

Sizes: frames are scaled to at most `PLAYER_MAX_SIDE` pixels on their longest side (480x832 -> 184x320, about
10 KB a frame at quality `JPEG_QUALITY`, 250 KB/s at 25 fps), the sound is mixed down to mono at its own rate
(16 kHz: 32 KB/s); base64 adds a third. Encoding costs one pass over the chunk's frames (a block average) plus
JPEG encoding of the small frames, on the CPU beside the sampler.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

PLAYER_MAX_SIDE = 320
JPEG_QUALITY = 85


@dataclass(frozen=True)
class StreamPreview:
    """The stream a chunk loop produces, for the player: frame rate, total output frames, frame size, the sound
    track (ComfyUI AUDIO, or None) and the file being written ({"filename", "subfolder", "type"} as in ComfyUI's
    outputs, or None)."""

    fps: float
    frames: int
    height: int
    width: int
    audio: dict[str, Any] | None = None
    saved_video: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.frames < 0 or self.height < 1 or self.width < 1:
            raise ValueError(f"a stream needs fps > 0, frames >= 0 and a frame size, got {self}")

    @property
    def player_size(self) -> tuple[int, int]:
        """(height, width) of the player's frames: the frame size scaled down to `PLAYER_MAX_SIDE`, never up."""
        scale = min(1.0, PLAYER_MAX_SIDE / max(self.height, self.width))
        return max(1, round(self.height * scale)), max(1, round(self.width * scale))


def mono_track(audio: dict[str, Any] | None) -> tuple[torch.Tensor, int] | None:
    """ComfyUI AUDIO {"waveform": [B, C, S], "sample_rate"} -> (the first item's channels averaged, `[S]` float32,
    rate), or None without sound. Mono float32 CPU audio is returned as a view (a long track is not copied)."""
    if audio is None:
        return None
    waveform = audio["waveform"]
    if waveform.ndim != 3 or waveform.shape[-1] == 0:
        raise ValueError(f"AUDIO waveform must be [B, C, S] with samples, got shape {tuple(waveform.shape)}")
    channels = waveform[0].float().cpu()  # a view of float32 CPU audio, no copy
    return (channels[0] if channels.shape[0] == 1 else channels.mean(dim=0)), int(audio["sample_rate"])


def sample_range(first_frame: int, frame_count: int, fps: float, sample_rate: int) -> tuple[int, int]:
    """Samples [start, end) playing with frames [first_frame, first_frame + frame_count): consecutive chunks get
    consecutive ranges, with no gap and no overlap."""
    return round(first_frame * sample_rate / fps), round((first_frame + frame_count) * sample_rate / fps)


def pcm16_base64(samples: torch.Tensor, start: int, end: int) -> str:
    """Samples [start, end) of a mono track `[S]` in [-1, 1] as little-endian int16, base64; past its end: silence."""
    segment = torch.zeros(end - start)
    available = samples[start:end]
    segment[: available.shape[0]] = available
    pcm = (segment.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def jpeg_frames_base64(frames: torch.Tensor, size: tuple[int, int]) -> list[str]:
    """Frames `[n, H, W, 3]` in [0, 1] -> n JPEGs of `size` (height, width), base64. The frames are first averaged
    over whole k x k blocks (the largest k that stays above `size`), then resized by PIL (antialiased bilinear)."""
    height, width = size
    pixels = frames.float().permute(0, 3, 1, 2)
    block = max(1, min(pixels.shape[2] // height, pixels.shape[3] // width))
    if block > 1:
        pixels = F.avg_pool2d(pixels, block)
    images = (pixels * 255 + 0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    encoded = []
    for image in images:
        picture = Image.fromarray(image)
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded


def start_payload(stream: StreamPreview, chunks_total: int) -> dict[str, Any]:
    track = mono_track(stream.audio)
    height, width = stream.player_size
    return {"chunks_total": chunks_total, "fps": stream.fps, "frames_total": stream.frames,
            "width": width, "height": height, "source_width": stream.width, "source_height": stream.height,
            "sample_rate": None if track is None else track[1]}


def chunk_payload(stream: StreamPreview, track: tuple[torch.Tensor, int] | None, index: int, chunks_total: int,
                  first_frame: int, frames: torch.Tensor, seconds: float) -> dict[str, Any]:
    """Chunk `index` (0-based): its frames `[n, H, W, 3]` starting at output frame `first_frame`, generated in
    `seconds`, and the sound playing with them."""
    audio = None
    if track is not None:
        samples, rate = track
        start, end = sample_range(first_frame, frames.shape[0], stream.fps, rate)
        audio = {"sample_rate": rate, "first_sample": start, "samples": end - start,
                 "pcm16": pcm16_base64(samples, start, end)}
    return {"index": index, "chunks_total": chunks_total, "first_frame": first_frame,
            "frame_count": int(frames.shape[0]), "fps": stream.fps, "seconds": seconds,
            "jpeg": jpeg_frames_base64(frames, stream.player_size), "audio": audio}


def end_payload(stream: StreamPreview, chunks_done: int, chunks_total: int, seconds: float) -> dict[str, Any]:
    return {"chunks_done": chunks_done, "chunks_total": chunks_total, "seconds": seconds,
            "saved_video": stream.saved_video}
