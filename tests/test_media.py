"""Media I/O: image loading, audio loading / loudness, incremental mp4 writing and reading back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torchaudio.functional as AF
from PIL import Image

from echotorrent_core.media import (
    AudioTooShortError,
    MediaError,
    Mp4StreamWriter,
    audio_duration_frames,
    image_to_unit_rgb,
    load_audio,
    load_image,
    normalize_loudness,
    read_video_frames,
    to_mono_resampled,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# ---------------------------------------------------------------- images


def three_band_image() -> np.ndarray:
    """64 x 128 RGB: red columns [0, 24), green [24, 104), blue [104, 128)."""
    pixels = np.zeros((64, 128, 3), dtype=np.uint8)
    pixels[:, :24] = RED
    pixels[:, 24:104] = GREEN
    pixels[:, 104:] = BLUE
    return pixels


def as_signed(color: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(color, dtype=torch.float32) / 127.5 - 1.0


def test_image_file_of_any_size_loads_to_target(tmp_path: Path) -> None:
    path = tmp_path / "odd.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(path)
    image = load_image(path, 32, 48)
    assert image.shape == (3, 32, 48) and image.dtype == torch.float32
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert torch.equal(load_image(str(path), 32, 48), image)


def test_cover_crops_the_centre() -> None:
    image = load_image(three_band_image(), 32, 32, "cover")
    assert torch.allclose(image, as_signed(GREEN)[:, None, None].expand(3, 32, 32), atol=0.02)


def test_contain_letterboxes_on_black() -> None:
    image = load_image(three_band_image(), 32, 32, "contain")
    assert torch.all(image[:, :8] == -1.0) and torch.all(image[:, 24:] == -1.0)
    assert torch.allclose(image[:, 12, 2], as_signed(RED), atol=0.02)
    assert torch.allclose(image[:, 12, 16], as_signed(GREEN), atol=0.02)
    assert torch.allclose(image[:, 12, 29], as_signed(BLUE), atol=0.02)


def test_stretch_keeps_every_band() -> None:
    image = load_image(three_band_image(), 32, 32, "stretch")
    assert torch.allclose(image[:, 16, 2], as_signed(RED), atol=0.02)
    assert torch.allclose(image[:, 16, 16], as_signed(GREEN), atol=0.02)
    assert torch.allclose(image[:, 16, 29], as_signed(BLUE), atol=0.02)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[:, :8, 3] = 0  # transparent black -> white
    rgba[:, 8:, 3] = 255  # opaque black stays black
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path, 16, 16)
    assert torch.all(image[:, :, :8] == 1.0) and torch.all(image[:, :, 8:] == -1.0)
    half = np.zeros((16, 16, 4), dtype=np.float32)
    half[..., 3] = 0.5
    assert torch.allclose(load_image(half, 16, 16), torch.zeros(3, 16, 16), atol=1e-6)


def test_grayscale_palette_and_16_bit_become_rgb(tmp_path: Path) -> None:
    gray = load_image(Image.new("L", (16, 16), 200), 16, 16)
    assert torch.allclose(gray, torch.full((3, 16, 16), 200 / 127.5 - 1.0))
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, *BLUE] + [0] * (3 * 254))
    assert torch.allclose(load_image(palette, 16, 16), as_signed(BLUE)[:, None, None].expand(3, 16, 16))
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 1000, dtype=np.uint16)).save(path)
    deep = load_image(path, 16, 16)
    assert torch.allclose(deep, torch.full((3, 16, 16), 2 * 1000 / 65535 - 1.0), atol=1e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (64, 32), RED).save(path, exif=exif)
    assert image_to_unit_rgb(path).shape == (3, 64, 32)


def test_array_and_tensor_layouts_agree() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    reference = load_image(pixels, 32, 32)
    as_float = torch.from_numpy(pixels).float() / 255.0
    for source in (
        as_float,  # [H, W, C]
        as_float.permute(2, 0, 1),  # [C, H, W]
        as_float[None],  # ComfyUI IMAGE [1, H, W, C]
        pixels.astype(np.uint16) * 257,  # 16-bit array
        Image.fromarray(pixels),
    ):
        assert torch.allclose(load_image(source, 32, 32), reference, atol=1e-5)
    gray = load_image(pixels[..., 0], 32, 32)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (torch.rand(2, 16, 16, 3), "batch size 1"),
        (np.zeros((16, 16, 2), dtype=np.uint8), "channels"),
        (np.zeros((16, 16, 5), dtype=np.uint8), "channels"),
        (np.zeros((1, 1, 16, 16, 3), dtype=np.uint8), "shaped"),
        (np.zeros((0, 16, 3), dtype=np.uint8), "no pixels"),
        (torch.rand(16, 16, 3) * 2 - 1, r"in \[0, 1\]"),
        (torch.full((16, 16, 3), float("nan")), "NaN"),
        (np.zeros((16, 16, 3), dtype=np.int32), "dtype"),
    ],
)
def test_bad_image_arrays_are_rejected(source: object, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        load_image(source, 16, 16)


@pytest.mark.parametrize(("height", "width"), [(0, 16), (17, 32), (-16, 16), (32, 24), (16.0, 16), (True, 16)])
def test_bad_target_size_is_rejected(height: object, width: object) -> None:
    with pytest.raises(MediaError, match="positive multiple of 16"):
        load_image(np.zeros((8, 8, 3), dtype=np.uint8), height, width)


def test_unknown_policy_and_source_type_are_rejected() -> None:
    with pytest.raises(ValueError, match="resize policy"):
        load_image(np.zeros((8, 8, 3), dtype=np.uint8), 16, 16, "fill")
    with pytest.raises(TypeError, match="image path"):
        load_image([[0, 0, 0]], 16, 16)


def test_bad_image_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "missing.png", 16, 16)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        load_image(empty, 16, 16)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(MediaError, match="not a valid image"):
        load_image(corrupt, 16, 16)
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MediaError, match="truncated"):
        load_image(truncated, 16, 16)
    with pytest.raises(MediaError, match="regular image file"):
        load_image(tmp_path, 16, 16)


# ---------------------------------------------------------------- audio


def sine(rate: int, seconds: float, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio_file(path: Path, channels: np.ndarray, rate: int, codec: str, stream_rate: int | None = None) -> Path:
    """Encode `[C, S]` float32 with PyAV; the container format follows the file extension."""
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=stream_rate or rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def peak_frequency(waveform: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    return float(spectrum.argmax() * rate / len(waveform))


@pytest.mark.parametrize(
    ("suffix", "codec", "stream_rate"),
    [("wav", "pcm_s16le", None), ("flac", "flac", None), ("mp3", "libmp3lame", None), ("ogg", "libopus", 48000),
     ("m4a", "aac", None)],
)
def test_load_audio_formats(tmp_path: Path, suffix: str, codec: str, stream_rate: int | None) -> None:
    stereo = np.stack([sine(44100, 1.0), sine(44100, 1.0)])
    path = write_audio_file(tmp_path / f"speech.{suffix}", stereo, 44100, codec, stream_rate)
    waveform = load_audio(path, 16000)
    assert waveform.ndim == 1 and waveform.dtype == torch.float32
    assert abs(len(waveform) - 16000) <= 0.1 * 16000
    assert abs(peak_frequency(waveform, 16000) - 440.0) < 3.0


def test_load_audio_averages_channels_and_resamples(tmp_path: Path) -> None:
    stereo = np.stack([sine(22050, 1.0, amplitude=0.4), sine(22050, 1.0, amplitude=0.2)])
    path = write_audio_file(tmp_path / "stereo.wav", stereo, 22050, "pcm_f32le")
    same_rate = load_audio(path, 22050)
    assert torch.allclose(same_rate, torch.from_numpy(stereo.mean(axis=0)), atol=1e-6)
    resampled = load_audio(path, 16000)
    assert len(resampled) == 16000
    assert abs(peak_frequency(resampled, 16000) - 440.0) < 1.0
    assert abs(resampled[1000:-1000].abs().max().item() - 0.3) < 0.01


def test_to_mono_resampled_accepts_comfy_audio() -> None:
    stereo = torch.from_numpy(np.stack([sine(32000, 0.5, amplitude=0.4), sine(32000, 0.5, amplitude=0.2)]))
    expected = to_mono_resampled(stereo, 32000, 16000)
    assert expected.shape == (8000,)
    assert torch.equal(to_mono_resampled(stereo[None], 32000, 16000), expected)  # ComfyUI AUDIO [1, C, S]
    assert torch.allclose(to_mono_resampled(stereo.mean(0), 32000, 16000), expected, atol=1e-6)
    assert torch.equal(to_mono_resampled(stereo, 32000, 32000), stereo.mean(0))


@pytest.mark.parametrize(
    ("waveform", "error", "message"),
    [
        (torch.zeros(2, 2, 100), MediaError, "batch size 1"),
        (torch.zeros(1, 1, 1, 100), MediaError, "shaped"),
        (torch.zeros(2, 0), MediaError, "no audio samples"),
        (torch.full((1, 100), float("nan")), MediaError, "NaN"),
        (torch.zeros(100, dtype=torch.int16), MediaError, "floating point"),
        (np.zeros(100, dtype=np.float32), TypeError, "torch.Tensor"),
    ],
)
def test_to_mono_resampled_rejects_bad_waveforms(waveform: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        to_mono_resampled(waveform, 16000, 16000)


def test_audio_shorter_than_minimum_is_rejected(tmp_path: Path) -> None:
    path = write_audio_file(tmp_path / "short.wav", sine(16000, 0.5)[None], 16000, "pcm_s16le")
    with pytest.raises(AudioTooShortError, match="at least 2"):
        load_audio(path, 16000, min_seconds=2.0)
    assert len(load_audio(path, 16000, min_seconds=0.5)) == 8000
    with pytest.raises(AudioTooShortError, match="lasts 0.500 s"):
        to_mono_resampled(torch.zeros(8000), 16000, 16000, min_seconds=1.0)
    with pytest.raises(ValueError, match="target_rate"):
        load_audio(path, 0)


def test_bad_audio_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        load_audio(tmp_path / "missing.wav", 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        load_audio(empty, 16000)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MediaError, match="corrupt or not audio|no audio stream"):
        load_audio(corrupt, 16000)
    image = tmp_path / "picture.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(MediaError, match="corrupt or not audio|no audio stream"):
        load_audio(image, 16000)
    no_samples = tmp_path / "no_samples.wav"
    with wave.open(str(no_samples), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
    with pytest.raises(MediaError, match="no audio samples"):
        load_audio(no_samples, 16000)
    nan = write_audio_file(tmp_path / "nan.wav", np.full((1, 1600), np.nan, dtype=np.float32), 16000, "pcm_f32le")
    with pytest.raises(MediaError, match="NaN"):
        load_audio(nan, 16000)


def test_video_without_audio_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with Mp4StreamWriter(path, 25, 32, 32) as writer:
        writer.write(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(path, 16000)


def test_normalize_loudness_reaches_target() -> None:
    noise = torch.from_numpy(np.random.default_rng(3).standard_normal(16000).astype(np.float32))
    for scale in (0.01, 0.5, 4.0):  # peaks near 0.04, 2 and 16
        normalized = normalize_loudness(noise * scale, 16000, target_lufs=-23.0)
        assert normalized.shape == noise.shape
        assert abs(AF.loudness(normalized[None], 16000).item() + 23.0) < 0.05
        assert torch.allclose(normalized / normalized.abs().max(), noise / noise.abs().max(), atol=1e-5)
    stereo = torch.stack([noise, noise * 0.5]) * 0.05
    assert abs(AF.loudness(normalize_loudness(stereo, 16000, -20.0), 16000).item() + 20.0) < 0.05


def test_normalize_loudness_limits_gain_and_skips_unmeasurable_audio() -> None:
    quiet = torch.from_numpy(np.random.default_rng(4).standard_normal(16000).astype(np.float32)) * 3e-3
    before = AF.loudness(quiet[None], 16000).item()
    after = AF.loudness(normalize_loudness(quiet, 16000, -10.0, max_gain_db=6.0)[None], 16000).item()
    assert abs(after - before - 6.0) < 0.05
    silence = torch.zeros(16000)
    assert torch.equal(normalize_loudness(silence, 16000), silence)
    too_short = quiet[:1000]
    assert torch.equal(normalize_loudness(too_short, 16000), too_short)
    with pytest.raises(MediaError, match="at most 5 channels"):
        normalize_loudness(torch.rand(6, 16000), 16000)
    with pytest.raises(MediaError, match="non-empty"):
        normalize_loudness(torch.zeros(0), 16000)
    with pytest.raises(MediaError, match="finite floating point"):
        normalize_loudness(torch.full((16000,), float("nan")), 16000)


def test_audio_duration_frames_rounds_down() -> None:
    assert audio_duration_frames(16000, 16000, 25) == 25
    assert audio_duration_frames(15999, 16000, 25) == 24
    assert audio_duration_frames(48000, 48000, 29.97) == 29
    assert audio_duration_frames(1001 * 48, 48000, Fraction(30000, 1001)) == 30
    assert audio_duration_frames(0, 16000, 25.0) == 0
    for args in ((-1, 16000, 25), (100, 0, 25), (100, 16000, 0), (100, 16000, float("inf")), (1.5, 16000, 25)):
        with pytest.raises(ValueError):
            audio_duration_frames(*args)


# ---------------------------------------------------------------- mp4 writer and reader


def flat_chunk(frames: int, first_value: int, height: int = 48, width: int = 64) -> np.ndarray:
    """`[frames, H, W, 3]` uint8, frame i filled with gray level first_value + 10 * i."""
    values = first_value + 10 * np.arange(frames, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


def keyframe_flags(path: Path) -> list[bool]:
    with av.open(str(path)) as container:
        return [packet.is_keyframe for packet in container.demux(video=0) if packet.size > 0]


def test_writer_streams_video_and_audio(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    audio = torch.from_numpy(np.stack([sine(48000, 3.0), sine(48000, 3.0, 660.0)]))
    with Mp4StreamWriter(path, 25, 64, 48, audio=audio, audio_rate=48000) as writer:
        writer.write(flat_chunk(8, 20))
        writer.write(torch.from_numpy(flat_chunk(8, 40)).float() / 255.0)
        writer.write(torch.from_numpy(flat_chunk(9, 60)))
        assert writer.frames_written == 25
    frames, fps, decoded_audio, audio_rate = read_video_frames(path)
    assert frames.shape == (25, 48, 64, 3) and frames.dtype == torch.uint8 and fps == 25.0
    expected = torch.from_numpy(np.concatenate([flat_chunk(8, 20), flat_chunk(8, 40), flat_chunk(9, 60)]))
    assert (frames.float() - expected.float()).abs().mean() < 2.0
    assert decoded_audio is not None and decoded_audio.shape[0] == 2 and audio_rate == 48000
    assert abs(decoded_audio.shape[1] / 48000 - 25 / 25) <= 1024 / 48000
    assert abs(peak_frequency(decoded_audio[0, 2048:], 48000) - 440.0) < 3.0
    assert [i for i, key in enumerate(keyframe_flags(path)) if key][:3] == [0, 8, 16]
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert sound.codec_context.name == "aac"


def test_writer_keeps_short_audio_and_resamples_odd_rates(tmp_path: Path) -> None:
    path = tmp_path / "short_audio.mp4"
    with Mp4StreamWriter(path, 25, 32, 32, audio=torch.from_numpy(sine(16000, 0.2)), audio_rate=16000) as writer:
        writer.write(flat_chunk(25, 0, 32, 32))
    _, _, audio, rate = read_video_frames(path)
    assert rate == 16000 and audio is not None and abs(audio.shape[1] - 3200) <= 1024
    path = tmp_path / "odd_rate.mp4"
    with Mp4StreamWriter(path, 25, 32, 32, audio=torch.from_numpy(sine(17000, 1.0)), audio_rate=17000) as writer:
        writer.write(flat_chunk(10, 0, 32, 32))
    _, _, audio, rate = read_video_frames(path)
    assert rate == 48000 and audio is not None and abs(audio.shape[1] - 0.4 * 48000) <= 1024


def test_writer_exception_leaves_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "interrupted.mp4"
    audio = torch.from_numpy(sine(48000, 5.0))
    with pytest.raises(RuntimeError, match="sampler failed"):
        with Mp4StreamWriter(path, 25, 64, 48, audio=audio, audio_rate=48000) as writer:
            writer.write(flat_chunk(8, 20))
            writer.write(flat_chunk(8, 40))
            raise RuntimeError("sampler failed")
    frames, _, decoded_audio, _ = read_video_frames(path)
    assert frames.shape[0] == 16
    assert decoded_audio is not None and abs(decoded_audio.shape[1] / 48000 - 16 / 25) <= 1024 / 48000
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(flat_chunk(1, 0))


def test_killed_writer_leaves_decodable_fragments(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    script = textwrap.dedent(
        f"""
        import time, numpy as np, torch
        from echotorrent_core.media import Mp4StreamWriter
        writer = Mp4StreamWriter({str(path)!r}, 25, 64, 48, audio=torch.zeros(2, 48000 * 4) + 0.1, audio_rate=48000)
        writer.write(np.full((8, 48, 64, 3), 100, dtype=np.uint8))
        writer.write(np.full((8, 48, 64, 3), 200, dtype=np.uint8))
        print("two chunks written", flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "two chunks written"
    finally:
        child.kill()  # SIGKILL: no cleanup runs in the child
        child.wait()
    frames, fps, audio, _ = read_video_frames(path)
    assert frames.shape[0] >= 8 and fps == 25.0
    assert (frames[:8].float() - 100).abs().mean() < 2.0
    assert audio is not None and audio.shape[0] == 2


def test_writer_rejects_bad_arguments_without_creating_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    audio = torch.zeros(48000)
    cases = [
        (dict(width=63), MediaError, "even"),
        (dict(height=0), MediaError, "even"),
        (dict(fps=0), ValueError, "fps"),
        (dict(crf=60), ValueError, "crf"),
        (dict(audio=audio), ValueError, "audio_rate"),
        (dict(audio_rate=48000), ValueError, "without audio"),
        (dict(audio=torch.zeros(3, 100), audio_rate=48000), MediaError, "C = 1 or 2"),
        (dict(audio=torch.full((100,), float("nan")), audio_rate=48000), MediaError, "NaN"),
        (dict(path=tmp_path / "missing_dir" / "x.mp4"), FileNotFoundError, "output folder"),
        (dict(path=tmp_path), MediaError, "directory"),
    ]
    for overrides, error, message in cases:
        arguments = dict(path=path, fps=25, width=64, height=48) | overrides
        with pytest.raises(error, match=message):
            Mp4StreamWriter(**arguments)
    with Mp4StreamWriter(path, 25, 64, 48) as writer:
        for frames, message in (
            (np.zeros((4, 48, 62, 3), dtype=np.uint8), r"\[T, 48, 64, 3\]"),
            (np.zeros((0, 48, 64, 3), dtype=np.uint8), "T >= 1"),
            (np.zeros((4, 48, 64, 4), dtype=np.uint8), r"\[T, 48, 64, 3\]"),
            (torch.full((2, 48, 64, 3), 255.0), r"in \[0, 1\]"),
            (torch.full((2, 48, 64, 3), float("nan")), "NaN"),
            (np.zeros((2, 48, 64, 3), dtype=np.int32), "dtype"),
        ):
            with pytest.raises(MediaError, match=message):
                writer.write(frames)
    assert not path.exists()


def test_read_video_frames_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="video file not found"):
        read_video_frames(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        read_video_frames(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(MediaError, match="corrupt or not a video|no video stream"):
        read_video_frames(corrupt)
    sound = write_audio_file(tmp_path / "sound.wav", sine(16000, 0.2)[None], 16000, "pcm_s16le")
    with pytest.raises(MediaError, match="no video stream"):
        read_video_frames(sound)
