"""Stage `acc_dmd`: the DMD gradient, the decoupled CFG identity, ACC's weight, the role contract, one trainer step
and the exported one-pass student."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from stage_fixtures import TINY, write_avatar_samples

from echotorrent_core import flow
from echotorrent_core.checkpoints.loaders import load_dit, save_dit
from echotorrent_core.guidance import ConditionVariant, GuidanceMode, GuidancePolicy
from echotorrent_core.guidance_schedule import PhasedSpatiotemporalSchedule
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.streaming import StreamingSampler, StreamSettings
from echotorrent_core.training.config import parse_config
from echotorrent_core.training.losses.dmd import decoupled_cfg_gradient, dmd_loss, normalised_dmd_gradient
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.acc_dmd_eval import heldout_metrics
from echotorrent_core.training.stages.sample_files import TensorSamples
from echotorrent_core.training.trainer import Trainer

SETTINGS = StreamSettings(chunk_frames=2, window_frames=2, steps=2)
FLAT = {"phases": [[0.0, 1.0, 1.0]], "inside_weight": 1.0, "outside_weight": 1.0, "chunk_start_weight": 1.0,
        "rollout_end_weight": 1.0}


def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_dmd_loss_gradient_is_the_normalised_dmd_gradient() -> None:
    x = _random(2, 3, 4, 5, 6, seed=0).requires_grad_(True)
    x0_fake, x0_real = _random(2, 3, 4, 5, 6, seed=1), _random(2, 3, 4, 5, 6, seed=2)
    grad = normalised_dmd_gradient(x, x0_fake - x0_real, x0_real)
    per_sample = torch.stack([(x[i] - x0_real[i]).abs().mean() for i in range(2)]).detach()
    assert torch.allclose(grad, (x0_fake - x0_real) / per_sample[:, None, None, None, None])
    dmd_loss(x, grad).backward()
    assert torch.allclose(x.grad, grad / x.numel(), atol=1e-9)


def _scores(seed: int = 3) -> tuple[torch.Tensor, ...]:
    x_t = _random(2, 4, 4, 4, 4, seed=seed)
    t = torch.tensor([700.0, 300.0])
    v_fake, v_cond, v_uncond = (_random(2, 4, 4, 4, 4, seed=seed + k) for k in (1, 2, 3))
    return x_t, t, v_fake, v_cond, v_uncond


def test_decoupled_gradient_equals_the_plain_cfg_teacher_gradient_under_a_unit_schedule() -> None:
    x_t, t, v_fake, v_cond, v_uncond = _scores()
    scale = 4.0
    guided = GuidancePolicy(GuidanceMode.AUDIO_CFG, audio_scale=scale).combine(
        {ConditionVariant.FULL: v_cond, ConditionVariant.TEXT_ONLY: v_uncond}, 0, 1)
    x0_cfg = flow.x0_from_velocity(x_t, guided, t)
    x0 = {name: flow.x0_from_velocity(x_t, v, t) for name, v in (("f", v_fake), ("c", v_cond), ("u", v_uncond))}
    schedule = PhasedSpatiotemporalSchedule.from_dict(dict(FLAT, chunk_frames=2))
    weight = schedule.weight_map(1 - t / 1000, torch.arange(4), (4, 4))
    assert torch.equal(weight, torch.ones_like(weight))
    terms = decoupled_cfg_gradient(x0["f"], x0["c"], x0["u"], scale, weight)
    assert torch.allclose(terms.total, x0["f"] - x0_cfg, atol=1e-5)
    assert torch.allclose(terms.real, x0_cfg, atol=1e-5)
    assert terms.augmentation.abs().mean() > 0.1 and terms.matching.abs().mean() > 0.1


def test_a_zero_schedule_weight_removes_the_cfg_term() -> None:
    x_t, t, v_fake, v_cond, v_uncond = _scores(seed=7)
    x0_fake, x0_cond, x0_uncond = (flow.x0_from_velocity(x_t, v, t) for v in (v_fake, v_cond, v_uncond))
    # default schedule: no audio guidance over the last quarter of denoising (t < 250)
    schedule = PhasedSpatiotemporalSchedule(chunk_frames=2)
    weight = schedule.weight_map(torch.tensor([0.9, 0.1]), torch.arange(4), (4, 4))
    terms = decoupled_cfg_gradient(x0_fake, x0_cond, x0_uncond, 4.0, weight)
    assert torch.equal(terms.augmentation[0], torch.zeros_like(terms.augmentation[0]))
    assert torch.equal(terms.real[0], x0_cond[0].float()) and torch.equal(terms.total[0], (x0_fake - x0_cond)[0])
    assert terms.augmentation[1].abs().min() > 0  # sample 1 (early phase) keeps its CFG term everywhere


def _files(root: Path) -> dict:
    samples = write_avatar_samples(root / "samples.safetensors", latent_frames=4)
    torch.manual_seed(3)
    teacher = save_dit(WanDiT(TINY.dit), root / "teacher" / "teacher.safetensors")
    torch.manual_seed(4)
    student = save_dit(WanDiT(TINY.dit), root / "student" / "student.safetensors")
    (root / "student" / "student_stream.json").write_text(json.dumps(asdict(SETTINGS)))
    return {"data": str(samples), "teacher": str(teacher), "student": str(student), "latent_frames": 4,
            "critic_steps": 1, "eval_samples": 2}


def _trainer(stage: dict, out: Path) -> Trainer:
    cls = get_stage("acc_dmd")
    table = {"steps": 1, "batch_size": 2, "betas": [0.0, 0.999], "ema_decay": 0.9, "checkpoint_every": 1,
             "log_every": 1}
    return Trainer(cls, parse_config({"trainer": table, "stage": stage}, cls.Config, "acc_dmd"), out_dir=out)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    return _files(tmp_path_factory.mktemp("acc_dmd"))


def _grads(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_each_loss_reaches_only_its_own_role(files, tmp_path) -> None:
    trainer = _trainer(files, tmp_path)
    stage, batch = trainer.stage, {k: v[:2] for k, v in trainer.stage.collate(
        [trainer.train_set[i] for i in range(2)]).items()}
    critic_loss, _ = stage.critic_loss(batch, 0)
    critic_loss.backward()
    assert _grads(stage.critic) > 0 and _grads(stage.student) == 0 and _grads(stage.teacher) == 0
    stage.critic.zero_grad(set_to_none=True)
    loss, logs = stage.generator_loss(batch, 0)
    loss.backward()
    assert _grads(stage.student) > 0 and _grads(stage.critic) == 0 and _grads(stage.teacher) == 0
    # the critic starts as the teacher: before its first update only the CFG-augmentation term is left
    assert logs["dmd/cfg_augmentation"] > 0 and logs["dmd/matching"] == 0


def test_one_generator_and_one_critic_step_through_the_trainer_then_a_one_pass_student(files, tmp_path) -> None:
    trainer = _trainer(files, tmp_path / "run")
    before = {role: {k: v.clone() for k, v in m.state_dict().items()} for role, m in trainer.modules.items()}
    teacher = {k: v.clone() for k, v in trainer.stage.teacher.state_dict().items()}
    result = trainer.run()
    for role, module in trainer.modules.items():
        assert any(not torch.equal(before[role][k], v) for k, v in module.state_dict().items()), role
    assert all(torch.equal(teacher[k], v) for k, v in trainer.stage.teacher.state_dict().items())
    for key in ("loss/generator", "loss/critic", "dmd/matching", "dmd/cfg_augmentation", "critic/flow_mse"):
        assert torch.isfinite(torch.tensor(result.logs[key])), key
    assert result.logs["dmd/matching"] > 0  # the critic moved away from the teacher before the generator step
    exported = {path.name: path for path in result.exported}
    assert json.loads(exported["acc_dmd.json"].read_text())["inference_guidance"] == "single"
    model, _ = load_dit(exported["student.safetensors"])
    settings = StreamSettings(**json.loads(exported["student_stream.json"].read_text()))
    assert settings == SETTINGS
    torch.manual_seed(0)
    sampler = StreamingSampler(model.eval(), WanVAE(TINY.vae).eval(), settings, GuidancePolicy(GuidanceMode.SINGLE))
    features = _random(16, TINY.dit.audio.encoder_layers, TINY.dit.audio.audio_dim, seed=9)
    chunks = list(sampler.stream(torch.rand(3, 32, 32) * 2 - 1, features))
    assert len(chunks) == 2
    for chunk in chunks:
        assert chunk.passes_per_step == 1 and chunk.passes == settings.steps + 1
        assert torch.isfinite(chunk.latents).all()


def test_heldout_audio_sensitivity_is_zero_exactly_when_the_windows_share_their_audio(files) -> None:
    dataset = TensorSamples(files["data"])
    same_audio = [dict(dataset[i], audio=dataset[0]["audio"]) for i in range(2)]
    torch.manual_seed(5)
    model = WanDiT(TINY.dit).eval()
    varied = heldout_metrics(model, dataset, SETTINGS, 2, torch.device("cpu"))
    shared = heldout_metrics(model, same_audio, SETTINGS, 2, torch.device("cpu"))
    assert shared["audio_sensitivity"] == 0 and shared["audio_sensitivity_face"] == 0
    assert varied["audio_sensitivity"] > 1e-4 and varied["audio_sensitivity_background"] > 1e-4
    assert all(torch.isfinite(torch.tensor(v)) for v in varied.values()) and varied["flow_mse"] > 0
