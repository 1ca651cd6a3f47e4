"""Training configs (TOML, --set, errors naming file and key), the stage registry, the `echotorrent train` CLI,
TensorBoard output and bf16 autocast."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_trainer_toy import ToyRegression

from echotorrent_core.cli import main
from echotorrent_core.training.config import ConfigError, load_config, parse_config
from echotorrent_core.training.registry import get_stage, register_stage, stage_names, unregister_stage
from echotorrent_core.training.stage import Stage
from echotorrent_core.training.trainer import Trainer

TOY = str(Path(__file__).resolve().parent / "test_trainer_toy.py")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_toml_tables_become_typed_configs(tmp_path):
    path = write(tmp_path / "run.toml", '[trainer]\nsteps = 7\nlr = 1\nbetas = [0.0, 0.99]\nema_roles = ["generator"]\n'
                                       '[stage]\nhidden = 5\nnoise = 0\n')
    config = load_config(path, ToyRegression.Config, ["trainer.seed=3", "stage.critic=true", "trainer.out_dir=runs/x"])
    assert config.trainer.steps == 7 and config.trainer.lr == 1.0 and isinstance(config.trainer.lr, float)
    assert config.trainer.betas == (0.0, 0.99) and config.trainer.ema_roles == ["generator"]
    assert config.trainer.seed == 3 and config.trainer.out_dir == "runs/x"
    assert config.stage.hidden == 5 and config.stage.noise == 0.0 and config.stage.critic is True


@pytest.mark.parametrize("text, message", [
    ("[trainer]\nstep = 3\n", r"run.toml \[trainer\]: unknown key\(s\) step; known keys: .*steps"),
    ("[stage]\nhiden = 3\n", r"run.toml \[stage\]: unknown key\(s\) hiden"),
    ("[trainer]\nsteps = 2.5\n", r"run.toml \[trainer\] steps: expected an integer, got 2.5"),
    ("[trainer]\nbetas = [0.9]\n", r"\[trainer\] betas: expected 2 values"),
    ("[trainer]\nprecision = \"fp16\"\n", r"precision: 'fp16' is not one of 'auto', 'bf16', 'fp32'"),
    ("[trainer]\nema_decay = 1.5\n", r"ema_decay must be in \[0, 1\)"),
    ("[trainer]\nsteps = 0\n", r"steps must be >= 1"),
    ("[optim]\nlr = 1\n", r"unknown table\(s\) optim"),
    ("[trainer\n", r"not valid TOML"),
])
def test_bad_configs_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "run.toml", text), ToyRegression.Config)


def test_missing_required_stage_keys_and_bad_overrides(tmp_path):
    @dataclass
    class Needs:
        data: str
        width: int = 8

    with pytest.raises(ConfigError, match=r"\[stage\]: missing required key\(s\) data"):
        parse_config({}, Needs, "x.toml")
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        load_config(None, ToyRegression.Config, ["lr"])
    with pytest.raises(ConfigError, match="must start with trainer. or stage."):
        load_config(None, ToyRegression.Config, ["lr=3"])
    with pytest.raises(ConfigError, match="training config not found"):
        load_config(tmp_path / "absent.toml", ToyRegression.Config)


def test_registry_rejects_bad_stages_and_lists_names():
    assert get_stage("toy_regression") is ToyRegression and "toy_regression" in stage_names()
    with pytest.raises(KeyError, match="unknown training stage 'nope'; known stages: .*toy_regression"):
        get_stage("nope")

    class NoConfig(Stage):
        name = "no_config"

    with pytest.raises(ValueError, match="dataclass class attribute `Config`"):
        register_stage(NoConfig)

    @dataclass
    class C:
        pass

    class Clash(ToyRegression):
        Config = C

    with pytest.raises(ValueError, match="already registered"):
        register_stage(Clash)

    class Other(ToyRegression):
        name = "toy_other"

    register_stage(Other)
    try:
        assert get_stage("toy_other") is Other
    finally:
        unregister_stage("toy_other")


def test_cli_trains_resumes_and_reports_errors(tmp_path, capsys):
    config = write(tmp_path / "toy.toml", "[trainer]\nsteps = 2\nbatch_size = 8\n[stage]\nnoise = 0.0\n")
    out = tmp_path / "run"
    assert main(["train", "toy_regression", "--import", TOY, "--config", str(config), "--out", str(out)]) == 0
    assert "trained toy_regression for 2 steps" in capsys.readouterr().out
    assert main(["train", "toy_regression", "--import", TOY, "--config", str(config), "--out", str(out)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["train", "toy_regression", "--import", TOY, "--config", str(config), "--out", str(out),
                 "--resume", "--steps", "3", "--set", "trainer.lr=2e-4"]) == 0
    state = json.loads((out / "checkpoints" / "step_00000003" / "state.json").read_text())
    assert state["step"] == 3 and state["trainer_config"]["lr"] == 2e-4
    assert main(["train", "toy_regression", "--import", TOY, "--config", str(config), "--out", str(tmp_path / "stop"),
                 "--steps", "5", "--set", "stage.interrupt_at=1"]) == 130
    assert "continue with --resume" in capsys.readouterr().out
    assert (tmp_path / "stop" / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert main(["train", "toy_regression", "--import", TOY, "--config", str(config), "--set", "stage.widht=3"]) == 2
    assert "unknown key(s) widht" in capsys.readouterr().err
    assert main(["train", "no_such_stage"]) == 2
    assert "unknown training stage 'no_such_stage'" in capsys.readouterr().err
    assert main(["train", "--import", TOY, "--list"]) == 0
    assert "toy_regression" in capsys.readouterr().out.split()


def test_tensorboard_events_and_bf16_autocast_keep_fp32_master_weights(tmp_path):
    config = parse_config({"trainer": {"steps": 2, "batch_size": 8, "tensorboard": True, "precision": "bf16"},
                           "stage": {}}, ToyRegression.Config)
    trainer = Trainer(ToyRegression, config, out_dir=tmp_path)
    result = trainer.run()
    trainer.close()
    assert trainer.stage.compute_dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in trainer.modules["generator"].parameters())
    assert result.step == 2 and torch.isfinite(torch.tensor(result.logs["loss/generator"]))
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
