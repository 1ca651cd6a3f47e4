"""The built-in stages (vae, teacher, student) through the real Trainer: a short run with EMA, held-out evaluation,
checkpoints and export, and a run stopped at step 2 and resumed ends bitwise equal to an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from stage_fixtures import write_avatar_samples, write_frame_windows

from echotorrent_core.checkpoints.loaders import save_dit
from echotorrent_core.checkpoints.safetensors_io import read_state_dict
from echotorrent_core.config import get_preset
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.training.config import parse_config
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.trainer import Trainer


def _stage_table(name: str, root: Path) -> dict:
    if name == "vae":
        return {"data": str(write_frame_windows(root / "frames.safetensors")), "size": 32, "frames": 5}
    samples = write_avatar_samples(root / "samples.safetensors", latent_frames=4)
    if name == "teacher":
        return {"data": str(samples)}
    torch.manual_seed(3)
    teacher = save_dit(WanDiT(get_preset("tiny").dit), root / "teacher.safetensors")
    return {"data": str(samples), "teacher": str(teacher), "latent_frames": 4, "chunk_frames": 2,
            "window_frames": 2, "steps": 2, "ode_pairs": 3, "teacher_steps": 4}


def _trainer(name: str, stage: dict, out: Path, steps: int, resume: bool = False) -> Trainer:
    table = {"steps": steps, "batch_size": 2, "checkpoint_every": 2, "ema_decay": 0.9, "eval_every": 2,
             "eval_batches": 1, "log_every": 1}
    cls = get_stage(name)
    return Trainer(cls, parse_config({"trainer": table, "stage": stage}, cls.Config, name), out_dir=out, resume=resume)


@pytest.mark.parametrize("name", ["vae", "teacher", "student"])
def test_stage_trains_exports_and_resumes_exactly(tmp_path, name):
    stage = _stage_table(name, tmp_path)
    reference = _trainer(name, stage, tmp_path / "ref", steps=4)
    result = reference.run()
    assert result.step == 4 and torch.isfinite(torch.tensor(result.logs["loss/generator"]))
    assert result.exported and all(path.is_file() for path in result.exported)
    assert any(path.suffix == ".safetensors" for path in result.exported)
    for path in result.exported:
        if path.suffix == ".safetensors":
            read_state_dict(path)
        else:
            json.loads(path.read_text())
    _trainer(name, stage, tmp_path / "run", steps=2).run()
    resumed = _trainer(name, stage, tmp_path / "run", steps=4, resume=True)
    assert resumed.step == 2
    resumed.run()
    for role, module in reference.modules.items():
        expected, actual = module.state_dict(), resumed.modules[role].state_dict()
        different = [k for k in expected if not torch.equal(expected[k], actual[k])]
        assert not different, f"{name}/{role}: {different[:5]}"
        for key, shadow in reference.emas[role].shadow.items():
            assert torch.equal(shadow, resumed.emas[role].shadow[key]), key
