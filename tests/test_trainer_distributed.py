"""Two gloo processes on the CPU (torchrun, DDP and FSDP2) train the same weights as one process with the same
global batch; an FSDP2 run (activation checkpointing on, a second forward method returning dataclasses of per-block
contexts, as the DiT's prepare_conditioning) stopped and resumed under torchrun continues the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from test_trainer_toy import ToyRegression

from echotorrent_core.checkpoints.safetensors_io import read_state_dict
from echotorrent_core.training.config import parse_config
from echotorrent_core.training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "test_trainer_toy.py"
TRAINER = {"steps": 4, "batch_size": 8, "log_every": 1, "lr": 1e-2, "checkpoint_every": 2, "ema_decay": 0.9,
           "eval_every": 2}
STAGE = {"noise": 0.0, "critic": True, "context": True}


def _toml(path: Path, distributed: str) -> Path:
    lines = ["[trainer]"] + [f"{k} = {json.dumps(v)}" for k, v in {**TRAINER, "distributed": distributed}.items()]
    lines += ["[stage]"] + [f"{k} = {json.dumps(v)}" for k, v in STAGE.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _torchrun(config: Path, out: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "echotorrent_core.cli", "train", "toy_regression", "--import", str(TOY),
               "--config", str(config), "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def _losses(out: Path) -> list[tuple[str, int, float]]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r["loss/generator"]) for r in records]


def test_two_gloo_processes_match_one_process(tmp_path):
    config = parse_config({"trainer": TRAINER, "stage": STAGE}, ToyRegression.Config, "single")
    single = Trainer(ToyRegression, config, out_dir=tmp_path / "single")
    single.run()
    reference = tmp_path / "single" / "checkpoints" / "step_00000004"

    _torchrun(_toml(tmp_path / "ddp.toml", "ddp"), tmp_path / "ddp")
    ddp = tmp_path / "ddp" / "checkpoints" / "step_00000004"
    assert {p.name for p in ddp.iterdir()} >= {"rng_rank0.safetensors", "rng_rank1.safetensors", "model.safetensors"}
    assert json.loads((ddp / "state.json").read_text())["world_size"] == 2
    for name in ("model", "ema", "optimizer"):
        _close(read_state_dict(ddp / f"{name}.safetensors")[0], read_state_dict(reference / f"{name}.safetensors")[0])
    for (kind, step, loss), (kind1, step1, loss1) in zip(_losses(tmp_path / "ddp"), _losses(tmp_path / "single")):
        assert (kind, step) == (kind1, step1) and abs(loss - loss1) < 1e-5

    fsdp_config = _toml(tmp_path / "fsdp.toml", "fsdp")
    checkpointing = "--set=trainer.gradient_checkpointing=true"
    _torchrun(fsdp_config, tmp_path / "fsdp", "--steps", "2", checkpointing)
    _torchrun(fsdp_config, tmp_path / "fsdp", "--resume", checkpointing)
    fsdp = tmp_path / "fsdp" / "checkpoints" / "step_00000004"
    for name in ("model", "ema", "optimizer"):
        _close(read_state_dict(fsdp / f"{name}.safetensors")[0], read_state_dict(reference / f"{name}.safetensors")[0])
    _close(read_state_dict(tmp_path / "fsdp" / "export" / "toy.safetensors")[0],
           read_state_dict(tmp_path / "single" / "export" / "toy.safetensors")[0])
