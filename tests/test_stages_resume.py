"""The DiT stages through the real trainer: a run stopped and resumed ends bitwise equal to an uninterrupted one
(every random draw of the losses comes from the RNGs the trainer checkpoints), and exports loadable files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from echotorrent_core.checkpoints.loaders import load_dit, save_dit
from echotorrent_core.checkpoints.safetensors_io import read_state_dict
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.training.config import parse_config
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.trainer import Trainer

from stage_fixtures import TINY, write_avatar_samples

TRAINER = {"batch_size": 2, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2, "ema_decay": 0.9}


def _stage_table(name: str, folder: Path) -> dict:
    data = folder / "samples.safetensors"
    if not data.exists():
        write_avatar_samples(data, count=4, latent_frames=4)
    if name == "teacher":
        return {"data": str(data), "text_dropout": 0.5, "audio_dropout": 0.5}
    teacher = folder / "teacher.safetensors"
    if not teacher.exists():
        torch.manual_seed(1)
        save_dit(WanDiT(TINY.dit), teacher)
    return {"data": str(data), "teacher": str(teacher), "latent_frames": 4, "chunk_frames": 2, "window_frames": 2,
            "steps": 2, "ode_pairs": 4, "teacher_steps": 3, "clean_chunk_probability": 0.5,
            "cache_dir": str(folder / "pairs")}


def _trainer(name: str, folder: Path, out: Path, steps: int, resume: bool = False) -> Trainer:
    stage = get_stage(name)
    config = parse_config({"trainer": {**TRAINER, "steps": steps}, "stage": _stage_table(name, folder)},
                          stage.Config, "test.toml")
    return Trainer(stage, config, out_dir=out, resume=resume)


@pytest.mark.parametrize("name, exported", [("teacher", "teacher.safetensors"), ("student", "student.safetensors")])
def test_resumed_stage_run_equals_an_uninterrupted_one(tmp_path: Path, name: str, exported: str) -> None:
    _trainer(name, tmp_path, tmp_path / "straight", steps=4).run()
    _trainer(name, tmp_path, tmp_path / "split", steps=2).run()
    _trainer(name, tmp_path, tmp_path / "split", steps=4, resume=True).run()
    straight = read_state_dict(tmp_path / "straight" / "export" / exported)[0]
    split = read_state_dict(tmp_path / "split" / "export" / exported)[0]
    assert straight.keys() == split.keys() and all(torch.equal(straight[k], split[k]) for k in straight)
    model, _ = load_dit(tmp_path / "straight" / "export" / exported)
    if name == "teacher":
        torch.manual_seed(0)  # the stage's initialisation: [trainer] seed
        initial = WanDiT(model.cfg).state_dict()
    else:
        initial = load_dit(tmp_path / "teacher.safetensors")[0].state_dict()  # the student starts as the teacher
    assert any(not torch.equal(value, initial[key]) for key, value in model.state_dict().items())
