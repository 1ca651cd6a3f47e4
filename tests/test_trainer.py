"""Trainer loop: one step, EMA, clipping, accumulation, logs and PNG, exact resume, Ctrl-C, atomic checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_trainer_toy import ToyRegression

from echotorrent_core.checkpoints.safetensors_io import read_header, read_state_dict
from echotorrent_core.training import checkpoint as checkpoint_module
from echotorrent_core.training.checkpoint import ResumeError
from echotorrent_core.training.config import parse_config
from echotorrent_core.training.optim import clip_gradients, lr_factor
from echotorrent_core.training.trainer import Trainer

BASE = {"steps": 6, "batch_size": 8, "log_every": 1, "checkpoint_every": 100, "lr": 1e-2}


def make_trainer(out: Path, trainer: dict | None = None, stage: dict | None = None, resume: bool = False,
                 callbacks=None) -> Trainer:
    config = parse_config({"trainer": {**BASE, **(trainer or {})}, "stage": stage or {}}, ToyRegression.Config,
                          "test.toml")
    return Trainer(ToyRegression, config, out_dir=out, resume=resume, callbacks=callbacks)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{role}.{k}": v.detach().clone() for role, m in trainer.modules.items() for k, v in m.state_dict().items()}


def full_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Weights, EMA shadows and optimiser tensors of a trainer."""
    state = weights(trainer)
    for role, ema in trainer.emas.items():
        state.update({f"ema.{role}.{k}": v.clone() for k, v in ema.shadow.items()})
    for role, optimizer in trainer.optimizers.items():
        for index, entry in enumerate(optimizer.state.values()):
            state.update({f"opt.{role}.{index}.{k}": v.clone() for k, v in entry.items()})
    return state


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ: {different}"


def test_one_step_updates_weights_logs_and_exports(tmp_path):
    trainer = make_trainer(tmp_path, {"steps": 1})
    before = weights(trainer)
    result = trainer.run()
    assert result.step == 1 and not result.interrupted
    after = weights(trainer)
    assert all(not torch.equal(before[k], after[k]) for k in before)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 1 and records[0]["kind"] == "train"
    assert math.isfinite(records[0]["loss/generator"]) and records[0]["lr/generator"] == pytest.approx(1e-2)
    exported, _ = read_state_dict(result.exported[0])
    assert_bitwise_equal(exported, {k.removeprefix("generator."): v for k, v in after.items()})
    assert (result.checkpoint / "state.json").is_file()


def test_ema_follows_the_weights_with_the_configured_decay(tmp_path):
    history = []
    trainer = make_trainer(tmp_path, {"steps": 5, "ema_decay": 0.8, "ema_start_step": 2},
                           callbacks=[lambda t, step, logs: history.append(
                               {k: v.detach().clone() for k, v in t.modules["generator"].named_parameters()})])
    expected = {k: v.detach().clone() for k, v in trainer.modules["generator"].named_parameters()}
    trainer.run()
    for step, params in enumerate(history):
        for name in expected:
            expected[name] = params[name].clone() if step < 2 else 0.8 * expected[name] + 0.2 * params[name]
    for name, shadow in trainer.emas["generator"].shadow.items():
        torch.testing.assert_close(shadow, expected[name], rtol=0, atol=1e-7)
        assert not torch.allclose(shadow, history[-1][name])
    with trainer.ema_weights():
        torch.testing.assert_close(dict(trainer.modules["generator"].named_parameters())["0.weight"],
                                   expected["0.weight"], rtol=0, atol=1e-7)
    assert torch.equal(dict(trainer.modules["generator"].named_parameters())["0.weight"], history[-1]["0.weight"])


def test_clip_gradients_scales_to_the_limit_and_reports_the_norm_before():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    params[0].grad = torch.tensor([3.0, 0.0, 0.0])
    params[1].grad = torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert clip_gradients(params, 1.0) == pytest.approx(5.0)
    assert float(torch.cat([p.grad for p in params]).norm()) == pytest.approx(1.0, rel=1e-5)
    assert clip_gradients(params, 0.0) == pytest.approx(1.0, rel=1e-5)


def test_trainer_steps_with_the_clipped_gradient(tmp_path):
    """Adam's first step with a huge eps is lr * g / (|g| + eps): linear in the gradient the optimiser saw."""
    lr, eps, clip = 1.0, 1e4, 1e-3
    trainer = make_trainer(tmp_path, {"steps": 1, "optimizer": "adam", "lr": lr, "eps": eps, "grad_clip": clip},
                           {"noise": 0.0})
    net = trainer.modules["generator"]
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    first = trainer.stage.collate([trainer.train_set[i] for i in trainer.order.global_indices(0)])
    loss = torch.mean((net(first["x"]) - first["y"]) ** 2)
    grads = dict(zip(before, torch.autograd.grad(loss, list(net.parameters()))))
    norm = float(torch.cat([g.reshape(-1) for g in grads.values()]).norm())
    assert norm > 10 * clip
    result = trainer.run()
    assert result.logs["grad_norm/generator"] == pytest.approx(norm, rel=1e-5)
    for name, param in net.named_parameters():
        g = grads[name] * (clip / norm)
        expected = before[name] - lr * g / (g.abs() + eps)
        torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-12)


def test_accumulation_equals_one_big_batch(tmp_path):
    runs = {}
    for accum in (1, 2, 4):
        trainer = make_trainer(tmp_path / f"a{accum}", {"steps": 3, "grad_accum": accum}, {"noise": 0.0})
        trainer.run()
        runs[accum] = (weights(trainer), trainer.stage.seen)
    for accum in (2, 4):
        for key, value in runs[1][0].items():
            torch.testing.assert_close(runs[accum][0][key], value, rtol=1e-5, atol=1e-6)
        seen = runs[accum][1]
        assert len(seen) == 3 * accum and all(len(s) == 8 // accum for s in seen)
        merged = [sorted(sum(seen[i:i + accum], [])) for i in range(0, len(seen), accum)]
        assert merged == [sorted(s) for s in runs[1][1]]


def test_warmup_then_cosine_schedule():
    config = parse_config({"trainer": {"steps": 10, "warmup_steps": 2, "schedule": "cosine", "min_lr_ratio": 0.1}},
                          ToyRegression.Config).trainer
    factors = [lr_factor(s, config) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a > b for a, b in zip(factors[2:], factors[3:])) and factors[-1] > 0.1
    assert factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


def test_jsonl_log_png_and_heldout_evaluation(tmp_path):
    result = make_trainer(tmp_path, {"steps": 4, "log_every": 2, "eval_every": 2, "checkpoint_every": 2,
                                     "ema_decay": 0.5}).run()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 2), ("eval", 2), ("train", 4), ("eval", 4)]
    assert {"loss/generator", "mse", "grad_norm/generator", "lr/generator", "seconds_per_step"} <= records[0].keys()
    assert {"loss/generator", "eval/weight_norm"} <= records[1].keys()
    assert records[1]["loss/generator"] != records[0]["loss/generator"]
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
    assert result.checkpoint.name == "step_00000004"


RESUME = {"steps": 8, "grad_accum": 2, "ema_decay": 0.9, "schedule": "cosine", "warmup_steps": 2,
          "checkpoint_every": 3, "eval_every": 4, "weight_decay": 0.01}


def test_interrupted_run_resumes_bitwise_equal_to_an_uninterrupted_one(tmp_path):
    """SIGINT in step 4 (critic + generator, noise from torch/python/numpy, EMA, cosine lr, accumulation)."""
    reference = make_trainer(tmp_path / "ref", RESUME, {"critic": True})
    reference.run()
    interrupted = make_trainer(tmp_path / "run", RESUME, {"critic": True, "interrupt_at": 4})
    result = interrupted.run()
    assert result.interrupted and result.step == 5 and result.checkpoint.name == "step_00000005"
    assert not (tmp_path / "run" / "export").exists()
    resumed = make_trainer(tmp_path / "run", RESUME, {"critic": True}, resume=True)
    assert resumed.step == 5 and resumed.stage.calls == interrupted.stage.calls
    resumed.run()
    assert_bitwise_equal(full_state(resumed), full_state(reference))
    assert resumed.stage.seen == reference.stage.seen[-len(resumed.stage.seen):]
    def later(folder: str) -> list[dict]:
        records = [json.loads(x) for x in (tmp_path / folder / "log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds_per_step"} for r in records if r["step"] > 5]

    assert later("run") == later("ref") and len(later("ref")) == 4
    assert (read_state_dict(tmp_path / "run/export/toy.safetensors")[0]["0.weight"] ==
            read_state_dict(tmp_path / "ref/export/toy.safetensors")[0]["0.weight"]).all()


def test_keyboard_interrupt_inside_a_loss_saves_the_last_complete_step(tmp_path):
    config = {**RESUME, "checkpoint_every": 100}
    reference = make_trainer(tmp_path / "ref", config)
    reference.run()
    result = make_trainer(tmp_path / "run", config, {"raise_at": 3}).run()
    assert result.interrupted and result.step == 3
    resumed = make_trainer(tmp_path / "run", config, resume=True)
    resumed.run()
    assert_bitwise_equal(full_state(resumed), full_state(reference))


def test_existing_checkpoints_are_never_overwritten_without_resume(tmp_path):
    make_trainer(tmp_path, {"steps": 2}).run()
    with pytest.raises(ResumeError, match="--resume"):
        make_trainer(tmp_path, {"steps": 2})


def test_a_crash_while_writing_leaves_the_previous_checkpoint_valid(tmp_path, monkeypatch):
    config = {"steps": 4, "checkpoint_every": 2, "ema_decay": 0.9}
    reference = make_trainer(tmp_path / "ref", config)
    reference.run()
    make_trainer(tmp_path / "run", {**config, "steps": 2}).run()
    real_write = checkpoint_module.write_state_dict

    def crash_after_partial_write(path, tensors, metadata=None):
        if Path(path).name == "optimizer.safetensors":
            Path(path).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        return real_write(path, tensors, metadata)

    monkeypatch.setattr(checkpoint_module, "write_state_dict", crash_after_partial_write)
    with pytest.raises(OSError, match="simulated"):
        make_trainer(tmp_path / "run", config, resume=True).run()
    monkeypatch.setattr(checkpoint_module, "write_state_dict", real_write)
    root = tmp_path / "run" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_00000002"
    assert not list(root.glob(".*.tmp"))
    (root / ".step_00000004.tmp").mkdir()  # what a hard kill during the next write would leave
    (root / ".step_00000004.tmp" / "model.safetensors").write_bytes(b"torn")
    resumed = make_trainer(tmp_path / "run", config, resume=True)
    assert resumed.step == 2
    resumed.run()
    assert_bitwise_equal(full_state(resumed), full_state(reference))
    assert not list(root.glob(".*.tmp"))


def test_keeps_the_last_k_checkpoints(tmp_path):
    make_trainer(tmp_path, {"steps": 5, "checkpoint_every": 1, "keep_checkpoints": 2}).run()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000004", "step_00000005"]


def test_gradient_checkpointing_changes_nothing_but_memory(tmp_path):
    plain = make_trainer(tmp_path / "plain", {"steps": 2}, {"noise": 0.0})
    plain.run()
    checkpointed = make_trainer(tmp_path / "ckpt", {"steps": 2, "gradient_checkpointing": True}, {"noise": 0.0})
    assert all(getattr(block, "_echotorrent_checkpointed", False) for block in checkpointed.stage.blocks("generator"))
    checkpointed.run()
    assert_bitwise_equal(weights(plain), weights(checkpointed))
    assert list(weights(plain)) == list(weights(checkpointed))


def _magic_is_safe(path: Path) -> bool:
    head = path.read_bytes()[:4]
    return not (head.startswith(b"\x80") or head.startswith(b"PK\x03\x04"))


def test_no_pickle_anywhere(tmp_path):
    make_trainer(tmp_path, {"steps": 3, "checkpoint_every": 2, "ema_decay": 0.9, "eval_every": 3},
                 {"critic": True}).run()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert suffixes <= {".safetensors", ".json", ".jsonl", ".png", ""}, suffixes
    for path in files:
        assert _magic_is_safe(path), path
        if path.suffix == ".safetensors":
            read_header(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    source = Path(checkpoint_module.__file__).parent
    for module in source.glob("*.py"):
        text = module.read_text()
        for forbidden in ("torch.save(", "torch.load(", "import pickle", "pickle."):
            assert forbidden not in text, f"{module.name} uses {forbidden}"


def test_loader_workers_do_not_change_the_data_order(tmp_path):
    runs = []
    for workers in (0, 2):
        trainer = make_trainer(tmp_path / f"w{workers}", {"steps": 3, "num_workers": workers})
        trainer.run()
        runs.append(full_state(trainer))
    assert_bitwise_equal(runs[0], runs[1])


def test_sigterm_saves_a_resumable_checkpoint_and_restores_the_handler(tmp_path):
    import os
    import signal

    previous = signal.getsignal(signal.SIGTERM)

    def preempt(trainer, step, logs):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    result = make_trainer(tmp_path, {"steps": 6}, callbacks=[preempt]).run()
    assert result.interrupted and result.step == 2 and result.checkpoint.name == "step_00000002"
    assert signal.getsignal(signal.SIGTERM) == previous
    assert make_trainer(tmp_path, {"steps": 6}, resume=True).run().step == 6
