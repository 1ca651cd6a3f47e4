"""The teacher's evaluation sampler: settings read from the recipe's configs, and windowed generation to mp4 that
hears the speech exactly as the student's pipeline does and counts every DiT pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from echotorrent_core import pipeline
from echotorrent_core.guidance import GuidanceMode
from echotorrent_core.media import read_video_frames
from echotorrent_core.pipeline import bundle_paths, generate_to_file, load_bundle
from echotorrent_core.random_bundle import write_random_bundle
from echotorrent_core.recipes import teacher_evaluation
from echotorrent_core.recipes.default_model import CONFIG_DIR
from echotorrent_core.recipes.teacher_evaluation import TeacherSampling, teacher_sampling, windowed_to_file
from echotorrent_core.streaming import StreamSettings
from echotorrent_core.windowed import WindowSettings
from tests.test_pipeline import write_png, write_wav


def test_the_teacher_is_sampled_on_its_training_window_under_the_distillation_guidance() -> None:
    full = teacher_sampling(CONFIG_DIR / "teacher.toml", CONFIG_DIR / "student.toml", steps=20)
    # teacher.toml: latent_frames 6 -> the portrait latent + 6 latents = 25 video frames; student.toml: audio CFG 4
    assert (full.window.window_frames, full.window.motion_frames, full.window.steps) == (25, 1, 20)
    assert full.guidance.mode is GuidanceMode.AUDIO_CFG and full.guidance.audio_scale == 4.0
    assert full.window.shift == 5.0 and full.to_dict()["passes_per_step"] == 2
    assert full.to_dict()["new_frames_per_window"] == 24
    quick = teacher_sampling(CONFIG_DIR / "teacher_quick.toml", CONFIG_DIR / "student_quick.toml", steps=4,
                             overrides={"teacher": ["stage.latent_frames=2"]})
    assert quick.window.window_frames == 9


def test_windowed_generation_hears_the_students_audio_and_counts_every_pass(tmp_path: Path, monkeypatch) -> None:
    paths = bundle_paths(write_random_bundle(tmp_path / "bundle", "tiny", seed=0))
    bundle = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])
    face, speech = write_png(tmp_path / "face.png"), write_wav(tmp_path / "speech.wav", seconds=1.3)
    heard = {}
    encode = pipeline.encode_audio_features

    def recording(name: str):
        def encode_and_record(model, waveform: torch.Tensor, fps: float) -> torch.Tensor:
            heard[name] = waveform
            return encode(model, waveform, fps)
        return encode_and_record

    monkeypatch.setattr(pipeline, "encode_audio_features", recording("student"))
    monkeypatch.setattr(teacher_evaluation, "encode_audio_features", recording("teacher"))
    generate_to_file(bundle, face, speech, tmp_path / "student.mp4", 32, 32, StreamSettings(steps=1, fps=25.0))
    sampling = TeacherSampling(WindowSettings(window_frames=13, motion_frames=1, steps=2),
                               teacher_sampling(CONFIG_DIR / "teacher.toml", CONFIG_DIR / "student.toml", 2).guidance)
    result = windowed_to_file(bundle, sampling, face, speech, tmp_path / "teacher.mp4", 32, 32, fps=25.0)
    assert torch.equal(heard["teacher"], heard["student"])
    # 1.3 s at 25 fps = 32 frames; 12 new frames per window -> 12 + 12 + 8; 2 steps x 2 audio-CFG passes each
    assert (result.frames, result.chunks, result.passes, result.passes_per_step) == (32, 3, 12, 2.0)
    assert len(result.chunk_seconds) == 3 and all(s > 0 for s in result.chunk_seconds)
    frames, _, audio, _ = read_video_frames(tmp_path / "teacher.mp4")
    assert tuple(frames.shape) == (32, 32, 32, 3) and audio is not None


def test_a_teacher_config_without_a_data_folder_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "teacher.toml"
    broken.write_text("[stage]\nlatent_frames = 6\n")
    with pytest.raises(ValueError, match="data"):
        teacher_sampling(broken, CONFIG_DIR / "student.toml", steps=20)
