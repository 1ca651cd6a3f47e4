"""Tiny talking-face clips for the clip-loader and cache tests: a drawn face moving on a background, with sound.

The face is drawn well enough for mediapipe's BlazeFace and OpenCV's Haar cascade to find it. The sound is a
chirp (frequency 300 + 200 t Hz, so a window's pitch tells where in time it is), espeak-ng speech, silence or
nothing. Each source frame's index is written into a top-left block of grey levels (`frame_code`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

CODE_BITS = 8
CODE_CELL = 4  # pixels per bit of the frame-index code


def chirp_frequency(seconds: np.ndarray | float) -> np.ndarray | float:
    return 300.0 + 200.0 * np.asarray(seconds)


def face_centre(t: float, width: int, height: int) -> tuple[float, float]:
    """Where the face is at time t: a slow sway around the frame centre."""
    x = width / 2 + 0.08 * width * np.sin(2 * np.pi * 0.4 * t)
    return x, height / 2 + 0.04 * height * np.cos(2 * np.pi * 0.3 * t)


def drawn_face(width: int, height: int, cx: float, cy: float, radius: float, mouth: float) -> np.ndarray:
    """RGB uint8 `[H, W, 3]`: hair, skin ellipse, eyes with pupils, brows, nose, a mouth opened by `mouth` in [0, 1]."""
    image = Image.new("RGB", (width, height), (70, 90, 120))
    draw = ImageDraw.Draw(image)
    r = radius
    draw.ellipse([cx - r * 1.05, cy - r * 1.45, cx + r * 1.05, cy + r * 0.9], fill=(60, 40, 30))
    draw.ellipse([cx - r * 0.85, cy - r * 1.1, cx + r * 0.85, cy + r * 1.1], fill=(225, 185, 160))
    for side in (-1, 1):
        ex, ey = cx + side * r * 0.35, cy - r * 0.2
        draw.ellipse([ex - r * 0.18, ey - r * 0.09, ex + r * 0.18, ey + r * 0.09], fill=(250, 250, 250))
        draw.ellipse([ex - r * 0.07, ey - r * 0.07, ex + r * 0.07, ey + r * 0.07], fill=(40, 30, 20))
        draw.line([ex - r * 0.2, ey - r * 0.22, ex + r * 0.2, ey - r * 0.25], fill=(50, 35, 25),
                  width=max(1, int(r * 0.06)))
    draw.polygon([(cx, cy - r * 0.1), (cx - r * 0.1, cy + r * 0.25), (cx + r * 0.1, cy + r * 0.25)],
                 fill=(200, 150, 130))
    opening = r * (0.04 + 0.2 * mouth)
    draw.ellipse([cx - r * 0.3, cy + r * 0.55 - opening, cx + r * 0.3, cy + r * 0.55 + opening], fill=(120, 30, 40))
    return np.asarray(image).copy()


def stamp_frame_code(image: np.ndarray, index: int) -> None:
    """Write `index` in binary into the top-left corner (black / white cells), in place."""
    for bit in range(CODE_BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[:CODE_CELL, bit * CODE_CELL : (bit + 1) * CODE_CELL] = value


def frame_code(image: np.ndarray) -> int:
    """Inverse of `stamp_frame_code` (reads the cell centres)."""
    centre = CODE_CELL // 2
    return sum(1 << bit for bit in range(CODE_BITS) if image[centre, bit * CODE_CELL + centre].mean() > 127)


def espeak_speech(seconds: float, rate: int, folder: Path) -> np.ndarray:
    """espeak-ng speech `[S]` float32 at `rate`, cut or padded to `seconds`."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is needed for the speech clip (Debian package espeak-ng, in the CI image)")
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "the quick brown fox jumps over the lazy dog, twice over"],
                   check=True, capture_output=True)
    with wave.open(str(wav)) as handle:
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        source_rate = handle.getframerate()
    positions = np.arange(int(seconds * rate)) * source_rate / rate
    return np.interp(positions, np.arange(len(samples)), samples, right=0.0).astype(np.float32)


def write_clip(path: Path, seconds: float = 2.0, fps: float = 25.0, size: tuple[int, int] = (128, 96),
               rate: int = 16000, channels: int = 1, sound: str | None = "chirp", face: bool = True,
               audio_codec: str = "aac") -> Path:
    """Write a clip: h264 video at `fps` and `size` (W, H), sound "chirp" / "speech" / "silent" / None."""
    width, height = size
    frames = int(round(seconds * fps))
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    if sound == "speech":
        mono = espeak_speech(seconds, rate, path.parent)
    else:
        phase = 2 * np.pi * (300.0 * t + 100.0 * t**2)  # instantaneous frequency 300 + 200 t
        mono = (0.3 * np.sin(phase)).astype(np.float32) * (0.0 if sound == "silent" else 1.0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "12"}
        audio = None
        if sound is not None:
            audio = container.add_stream(audio_codec, rate=rate)
            audio.layout = "stereo" if channels == 2 else "mono"
        for i in range(frames):
            time = i / fps
            if face:
                cx, cy = face_centre(time, width, height)
                image = drawn_face(width, height, cx, cy, 0.22 * height, 0.5 + 0.5 * np.sin(2 * np.pi * 3 * time))
            else:
                image = np.full((height, width, 3), (70, 90, 120), dtype=np.uint8)
            stamp_frame_code(image, i)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            block = 1024
            planar = np.repeat(mono[None], channels, axis=0)
            sample_format = "fltp" if audio_codec == "aac" else "s16"
            for start in range(0, samples, block):
                part = planar[:, start : start + block]
                if sample_format == "s16":
                    part = (part.T.reshape(1, -1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=sample_format,
                                                   layout=audio.layout.name)
                frame.sample_rate, frame.pts = rate, start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def write_index(folder: Path, clips: list[dict]) -> Path:
    """An `echotorrent-clips/1` index.json for `clips` (dicts with at least id and video)."""
    full = [{"params": None, "split": "train", "domain": None, "identity": None, "voice": None, "frames": None,
             "seconds": None, **clip} for clip in clips]
    path = folder / "index.json"
    path.write_text(json.dumps({"format": "echotorrent-clips/1", "fps": 25, "sample_rate": 16000, "clips": full}))
    return path
