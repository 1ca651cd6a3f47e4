"""End-to-end generation to mp4 and the command line, on a tiny random bundle."""

from __future__ import annotations

import math
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from echotorrent_core import cli
from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.media import MediaError, read_video_frames
from echotorrent_core.pipeline import bundle_paths, generate_to_file, load_bundle, load_text_embeddings
from echotorrent_core.random_bundle import write_random_bundle
from echotorrent_core.streaming import StreamSettings

SIZE = 32
FPS = 25.0


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return write_random_bundle(tmp_path_factory.mktemp("bundle"), "tiny", seed=0)


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path):
    paths = bundle_paths(bundle_dir)
    return load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])


def write_wav(path: Path, seconds: float, rate: int = 22050, channels: int = 2) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    samples = np.repeat(tone[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


def test_speech_is_loudness_normalised_before_encoding(bundle, tmp_path: Path, monkeypatch) -> None:
    import torchaudio.functional as AF

    from echotorrent_core import pipeline

    heard = []
    encode = pipeline.encode_audio_features
    monkeypatch.setattr(pipeline, "encode_audio_features",
                        lambda b, waveform, fps: heard.append(waveform) or encode(b, waveform, fps))
    face, speech = write_png(tmp_path / "face.png"), write_wav(tmp_path / "speech.wav", seconds=1.0)
    rate = bundle.audio_encoder.cfg.sample_rate
    for loudness in (-23.0, -30.0, None):
        generate_to_file(bundle, face, speech, tmp_path / "out.mp4", SIZE, SIZE, _settings(), loudness_lufs=loudness)
    measured = [AF.loudness(w[None], rate).item() for w in heard]
    assert abs(measured[0] + 23.0) < 0.5 and abs(measured[1] + 30.0) < 0.5
    assert abs(measured[2] + 23.0) > 3  # as recorded


def write_png(path: Path, height: int = 50, width: int = 40) -> Path:
    pixels = (np.random.RandomState(0).rand(height, width, 3) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _settings() -> StreamSettings:
    return StreamSettings(steps=2, fps=FPS)


def test_video_has_both_streams_and_follows_the_audio(bundle, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "speech.wav", seconds=1.3)
    out = tmp_path / "out.mp4"
    result = generate_to_file(bundle, write_png(tmp_path / "face.png"), audio, out, SIZE, SIZE, _settings())
    frames, fps, sound, rate = read_video_frames(out)
    expected_frames = math.floor(1.3 * FPS)
    assert result.frames == expected_frames == frames.shape[0]
    assert tuple(frames.shape[1:]) == (SIZE, SIZE, 3)
    assert fps == FPS and result.passes_per_step == 1
    assert sound is not None and sound.shape[0] == 2 and rate == 22050
    assert abs(sound.shape[1] / rate - expected_frames / FPS) <= 1024 / rate


def test_surround_audio_is_mixed_down_for_the_mp4(bundle, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "surround.wav", seconds=0.6, channels=6)
    out = tmp_path / "surround.mp4"
    generate_to_file(bundle, write_png(tmp_path / "face.png"), audio, out, SIZE, SIZE, _settings())
    frames, _, sound, _ = read_video_frames(out)
    assert frames.shape[0] == 15 and sound is not None and sound.shape[0] == 1


def test_interrupted_run_leaves_a_playable_file_of_the_chunks_made(bundle, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "long.wav", seconds=3.0)
    out = tmp_path / "interrupted.mp4"

    def stop_after_two(chunk, total: int) -> None:
        if chunk.index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_to_file(bundle, write_png(tmp_path / "face.png"), audio, out, SIZE, SIZE, _settings(),
                         on_chunk=stop_after_two)
    frames, _, sound, rate = read_video_frames(out)
    assert frames.shape[0] == 24
    assert sound is not None and abs(sound.shape[1] / rate - 24 / FPS) <= 1024 / rate


@pytest.mark.parametrize(
    "make_inputs, error, message",
    [
        (lambda d: (write_png(d / "f.png"), _empty(d / "empty.wav")), MediaError, "empty"),
        (lambda d: (write_png(d / "f.png"), _garbage(d / "noise.wav")), MediaError, "corrupt or not audio"),
        (lambda d: (_empty(d / "blank.png"), write_wav(d / "s.wav", 1.0)), MediaError, "empty"),
        (lambda d: (write_png(d / "f.png"), write_wav(d / "tiny.wav", 0.02)), ValueError, "shorter than one video frame"),
    ],
)
def test_bad_inputs_raise_and_write_nothing(bundle, tmp_path: Path, make_inputs, error, message) -> None:
    image, audio = make_inputs(tmp_path)
    out = tmp_path / "never.mp4"
    with pytest.raises(error, match=message):
        generate_to_file(bundle, image, audio, out, SIZE, SIZE, _settings())
    assert not out.exists()


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(np.random.RandomState(1).bytes(4096))
    return path


def test_wrong_model_file_is_named(bundle_dir: Path) -> None:
    paths = bundle_paths(bundle_dir)
    with pytest.raises(CheckpointError, match="expected a Wan DiT"):
        load_bundle(paths["vae"], paths["vae"], paths["audio_encoder"])


def test_text_embeddings_file(tmp_path: Path) -> None:
    path = tmp_path / "text.safetensors"
    save_file({"context": torch.randn(5, 32), "negative": torch.randn(1, 3, 32)}, str(path))
    context, negative = load_text_embeddings(path)
    assert context.shape == (1, 5, 32) and negative.shape == (1, 3, 32)
    save_file({"prompt": torch.randn(5, 32)}, str(path))
    with pytest.raises(ValueError, match="'context'"):
        load_text_embeddings(path)


def test_cli_generates_a_video(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.mp4"
    text = tmp_path / "text.safetensors"
    save_file({"context": torch.randn(4, 32)}, str(text))
    code = cli.main([
        "generate", "--model", str(bundle_dir), "--image", str(write_png(tmp_path / "face.png")),
        "--audio", str(write_wav(tmp_path / "speech.wav", 0.6)), "--out", str(out), "--steps", "1",
        "--text-embeds", str(text), "--guidance", "text_audio_cfg", "--device", "cpu",
    ])
    assert code == 0
    assert "3 network passes per step" in capsys.readouterr().out
    frames, _, sound, _ = read_video_frames(out)
    assert frames.shape == (15, 64, 64, 3) and sound is not None


def test_cli_applies_an_audio_adapter(bundle_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from echotorrent_core.checkpoints.loaders import is_audio_key, load_dit, save_audio_adapter, save_dit
    from echotorrent_core.models.dit import WanDiT

    full, _ = load_dit(bundle_dir / "dit.safetensors")
    base = WanDiT(replace(full.cfg, audio=None))
    base.load_state_dict({k: v for k, v in full.state_dict().items() if not is_audio_key(k)})
    args = ["generate", "--model", str(bundle_dir), "--image", str(write_png(tmp_path / "face.png")),
            "--audio", str(write_wav(tmp_path / "speech.wav", 0.5)), "--steps", "1", "--device", "cpu"]
    assert cli.main(args + ["--out", str(tmp_path / "full.mp4")]) == 0
    adapted = args + ["--dit", str(save_dit(base, tmp_path / "base.safetensors")),
                      "--audio-adapter", str(save_audio_adapter(full, tmp_path / "adapter.safetensors"))]
    assert cli.main(adapted + ["--out", str(tmp_path / "adapted.mp4")]) == 0
    # The adapter rebuilds the very same network, bit for bit ...
    rebuilt, _ = load_dit(tmp_path / "base.safetensors", audio_adapter=tmp_path / "adapter.safetensors")
    assert rebuilt.cfg == full.cfg
    expected = full.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in rebuilt.state_dict().items())
    assert rebuilt.state_dict().keys() == expected.keys()
    # ... so the two videos agree up to float rounding (BLAS results depend on where weights sit in memory, about
    # 1e-6 here) amplified by h264's mode decisions: a fraction of one 8-bit level on average per frame.
    full_frames = read_video_frames(tmp_path / "full.mp4")[0].float()
    adapted_frames = read_video_frames(tmp_path / "adapted.mp4")[0].float()
    assert full_frames.shape == adapted_frames.shape
    assert (full_frames - adapted_frames).abs().mean(dim=(1, 2, 3)).max() < 0.5


def test_cli_reports_bad_input_with_exit_code_2(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    code = cli.main([
        "generate", "--model", str(bundle_dir), "--image", str(_empty(tmp_path / "face.png")),
        "--audio", str(write_wav(tmp_path / "speech.wav", 0.6)), "--out", str(tmp_path / "x.mp4"), "--device", "cpu",
    ])
    assert code == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_cli_without_a_bundle_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no model bundle"):
        cli.main(["generate", "--model", str(tmp_path / "missing"), "--image", "a.png", "--audio", "b.wav",
                  "--out", str(tmp_path / "x.mp4"), "--device", "cpu"])


@pytest.fixture(scope="module")
def i2v_bundle_dir(tmp_path_factory) -> Path:
    return write_random_bundle(tmp_path_factory.mktemp("i2v_bundle"), "tiny-i2v", seed=0)


def _i2v_args(bundle_dir: Path, tmp_path: Path, out: Path) -> list[str]:
    return ["generate", "--model", str(bundle_dir), "--image", str(write_png(tmp_path / "face.png")),
            "--audio", str(write_wav(tmp_path / "speech.wav", 0.6)), "--out", str(out), "--steps", "1",
            "--device", "cpu", "--vae-dtype", "float32"]  # exact decodes: the comparisons below are of the DiT's branch


def test_cli_runs_an_image_to_video_checkpoint_with_clip_features(i2v_bundle_dir: Path, tmp_path: Path) -> None:
    features = torch.randn(257, 1280, generator=torch.Generator().manual_seed(0))
    outputs = []
    for name, tensors in [("a", {"clip_fea": features}), ("b", {"penultimate_hidden_states": features[None].half()}),
                          ("c", {"anything": torch.randn(257, 1280).exp()})]:
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        out = tmp_path / f"{name}.mp4"
        clip_args = ["--clip-features", str(tmp_path / f"{name}.safetensors")]
        assert cli.main(_i2v_args(i2v_bundle_dir, tmp_path, out) + clip_args) == 0
        frames, _, sound, _ = read_video_frames(out)
        assert frames.shape == (15, 64, 64, 3) and sound is not None
        outputs.append(frames.float())
    same, other = (outputs[0] - outputs[1]).abs().mean(), (outputs[0] - outputs[2]).abs().mean()
    assert other > 1 and same < other / 10  # fp16 copy: same video up to rounding; other features: the branch is used


@pytest.mark.parametrize("tensors, message", [
    (None, "--clip-features"),
    ({"clip_fea": torch.randn(256, 1280)}, r"\[257, 1280\]"),
    ({"clip_fea": torch.randn(2, 257, 1280)}, r"\[1, 257, 1280\]"),
    ({"clip_fea": torch.randint(0, 9, (257, 1280))}, "float tensor"),
    ({"x": torch.randn(257, 1280), "y": torch.randn(257, 1280)}, "clip_fea"),
    ({"clip_fea": torch.full((257, 1280), float("nan"))}, "NaN"),
])
def test_cli_rejects_missing_or_malformed_clip_features(i2v_bundle_dir: Path, tmp_path: Path, capsys,
                                                        tensors, message) -> None:
    out = tmp_path / "x.mp4"
    args = _i2v_args(i2v_bundle_dir, tmp_path, out)
    if tensors is not None:
        save_file(tensors, str(tmp_path / "clip.safetensors"))
        args += ["--clip-features", str(tmp_path / "clip.safetensors")]
    assert cli.main(args) == 2
    assert re.search(message, capsys.readouterr().err) and not out.exists()


def test_clip_features_are_refused_by_a_text_to_video_checkpoint(bundle_dir: Path, bundle, tmp_path: Path,
                                                                 capsys) -> None:
    save_file({"clip_fea": torch.randn(257, 1280)}, str(tmp_path / "clip.safetensors"))
    out = tmp_path / "x.mp4"
    args = _i2v_args(bundle_dir, tmp_path, out) + ["--clip-features", str(tmp_path / "clip.safetensors")]
    assert cli.main(args) == 2
    assert "only for image-to-video" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="no CLIP image branch"):
        generate_to_file(bundle, write_png(tmp_path / "f.png"), write_wav(tmp_path / "s.wav", 0.5), out, SIZE, SIZE,
                         clip_features=torch.randn(1, 257, 1280))
    assert not out.exists()


def test_cli_colour_match_maps_the_decoders_colours(bundle_dir: Path, tmp_path: Path) -> None:
    args = ["generate", "--model", str(bundle_dir), "--image", str(write_png(tmp_path / "face.png")),
            "--audio", str(write_wav(tmp_path / "speech.wav", 0.5)), "--steps", "1", "--device", "cpu"]
    assert cli.main(args + ["--out", str(tmp_path / "matched.mp4"), "--colour-match"]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "plain.mp4")]) == 0
    matched = read_video_frames(tmp_path / "matched.mp4")[0].float()
    plain = read_video_frames(tmp_path / "plain.mp4")[0].float()
    assert matched.shape == plain.shape
    assert (matched - plain).abs().mean() > 1.0  # the random bundle's VAE shifts colours; the map moves them
