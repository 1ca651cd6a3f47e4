"""The shipped stage configs parse against their stage's Config and chain into one recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

import echotorrent_core.training as training
from echotorrent_core.recipes.default_model import STAGE_COMMANDS
from echotorrent_core.training.config import load_config
from echotorrent_core.training.registry import get_stage

CONFIGS = sorted((Path(training.__file__).parent / "configs").glob("*.toml"))


def _stage_name(path: Path) -> str:
    """The stage whose trainer reads this config (`vae_video`: the `vae` stage continued)."""
    name = path.stem.removesuffix("_quick")
    return STAGE_COMMANDS.get(name, name)


def test_every_stage_has_a_recipe_and_a_quick_variant() -> None:
    names = {path.stem for path in CONFIGS}
    assert {"vae", "vae_quick", "teacher", "teacher_quick", "student", "student_quick"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_for_its_stage(path: Path) -> None:
    config = load_config(path, get_stage(_stage_name(path)).Config)
    assert config.trainer.steps >= 1


@pytest.mark.parametrize("suffix", ["", "_quick"])
def test_recipe_stages_read_each_others_outputs(suffix: str) -> None:
    def load(name: str):
        path = next(p for p in CONFIGS if p.stem == name + suffix)
        return load_config(path, get_stage(name).Config)

    vae, teacher, student = load("vae"), load("teacher"), load("student")
    video = load_config(next(p for p in CONFIGS if p.stem == "vae_video" + suffix), get_stage("vae").Config)
    assert vae.stage.frames == 1 and vae.stage.initial_log_variance is not None  # the image path first
    assert video.stage.init == f"{vae.trainer.out_dir}/export/vae.safetensors" and video.stage.inflate_init
    assert video.stage.train_encoder and video.stage.motion_l1 > 0 and video.stage.data == vae.stage.data
    assert video.stage.encode_context_latents and video.stage.decode_context_latents  # the bounded stream layout
    assert video.stage.vae == vae.stage.vae and video.stage.size == vae.stage.size
    streaming_vae = f"{video.trainer.out_dir}/export/vae.safetensors"  # the bounded video VAE, not the image one
    mouth = load_config(next(p for p in CONFIGS if p.stem == "vae_mouth" + suffix), get_stage("vae").Config)
    assert mouth.stage.init == streaming_vae and not mouth.stage.train_encoder  # the DiTs' latents stay
    assert mouth.stage.map_l1 > 0 and mouth.stage.loss_map and mouth.stage.decode_context_latents == 1
    assert (mouth.stage.size, mouth.stage.frames) == (video.stage.size, video.stage.frames)
    assert teacher.stage.vae == student.stage.vae == streaming_vae
    assert student.stage.teacher == f"{teacher.trainer.out_dir}/export/teacher.safetensors"
    assert teacher.stage.data == student.stage.data == vae.stage.data
    assert teacher.stage.size == student.stage.size == vae.stage.size
    assert teacher.stage.cache_dir == student.stage.cache_dir is not None  # one preprocessing cache for both
    assert (teacher.stage.latent_frames, teacher.stage.window_stride) == (student.stage.latent_frames,
                                                                          student.stage.window_stride)


@pytest.mark.parametrize("suffix", ["", "_quick"])
@pytest.mark.parametrize("name", ["acc_dmd", "refiner"])
def test_later_stages_default_to_the_streaming_vae(name: str, suffix: str) -> None:
    video = load_config(next(p for p in CONFIGS if p.stem == "vae_video" + suffix), get_stage("vae").Config)
    config = load_config(next(p for p in CONFIGS if p.stem == name + suffix), get_stage(name).Config)
    assert config.stage.vae == f"{video.trainer.out_dir}/export/vae.safetensors"
