"""Stage `student`: the training forwards equal the streaming forwards, teacher ODE pairs, one short step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echotorrent_core.checkpoints.loaders import load_dit, save_dit
from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.streaming import CachedContext, StreamSettings
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.avatar_batch import conditioning
from echotorrent_core.training.stages.ode_pairs import ode_sigmas, teacher_trajectory
from echotorrent_core.training.stages.sample_files import TensorSamples
from echotorrent_core.training.stages.student_objective import causal_velocity, per_frame

from stage_fixtures import TINY, write_avatar_samples
from test_stages import _batch, _changed, _one_step

SETTINGS = StreamSettings(chunk_frames=2, window_frames=2, steps=3)  # 3 chunks of 2 + sink; the window rolls
LAYOUTS = pytest.mark.parametrize("layout", ["relative", "absolute"])


def _model(seed: int = 0) -> WanDiT:
    torch.manual_seed(seed)
    return WanDiT(TINY.dit).eval()


def _inputs(tmp_path, count: int = 1):
    batch = _batch(TensorSamples(write_avatar_samples(tmp_path / "samples.safetensors", latent_frames=6)), count)
    t = per_frame(torch.tensor([[900.0, 400.0, 700.0]]).expand(count, -1), SETTINGS)
    x_t = batch["latents"] + 0.5 * torch.randn(batch["latents"].shape) * (t > 0).float()[:, None, :, None, None]
    return batch, t, x_t


@LAYOUTS
def test_noisy_context_forward_equals_streaming_the_same_inputs_through_the_cache(tmp_path, layout: str) -> None:
    settings = dataclasses.replace(SETTINGS, rope_layout=layout)
    model = _model()
    batch, t, x_t = _inputs(tmp_path)
    cond = conditioning(model, batch, range(7))
    with torch.no_grad():
        trained = causal_velocity(model, x_t, t, cond, settings, "noisy")
        context = CachedContext(model, settings, (4, 4), 6, torch.float32, torch.device("cpu"))
        context.begin(x_t[:, :, :1], cond.audio_frames(0, 1))
        streamed = []
        for start in (1, 3, 5):
            chunk_cond = cond.audio_frames(start, start + 2)
            streamed.append(context.predict(x_t[:, :, start : start + 2], t[:, start : start + 2], chunk_cond, start))
            context.commit(x_t[:, :, start : start + 2], chunk_cond, start)  # commit writes at t = 0
    # The cache holds context at t = 0 while the noisy forward sees it at its own t: equal only for the first chunk.
    assert (trained[:, :, :2] - streamed[0]).abs().max() < 1e-4
    assert (trained[:, :, 2:] - torch.cat(streamed[1:], dim=2)).abs().max() > 1e-3


@LAYOUTS
def test_noisy_forward_with_clean_context_chunks_equals_the_cached_stream(tmp_path, layout: str) -> None:
    settings = dataclasses.replace(SETTINGS, rope_layout=layout)
    model = _model()
    batch, t, x_t = _inputs(tmp_path)
    cond = conditioning(model, batch, range(7))
    streamed = []
    with torch.no_grad():
        context = CachedContext(model, settings, (4, 4), 6, torch.float32, torch.device("cpu"))
        context.begin(batch["latents"][:, :, :1], cond.audio_frames(0, 1))
        for start in (1, 3, 5):
            chunk_cond = cond.audio_frames(start, start + 2)
            streamed.append(context.predict(x_t[:, :, start : start + 2], t[:, start : start + 2], chunk_cond, start))
            context.commit(batch["latents"][:, :, start : start + 2], chunk_cond, start)
        trained_clean = causal_velocity(model, x_t, t, cond, settings, "clean", clean=batch["latents"])
        # "noisy" with every earlier chunk clean (t = 0) is the stream too, chunk by chunk.
        for index, start in enumerate((1, 3, 5)):
            x = torch.cat([batch["latents"][:, :, :start], x_t[:, :, start : start + 2]], dim=2)
            chunk_t = t[:, : start + 2].clone()
            chunk_t[:, :start] = 0
            noisy = causal_velocity(model, x, chunk_t, cond.audio_frames(0, start + 2), settings, "noisy")
            assert (noisy[:, :, -2:] - streamed[index]).abs().max() < 1e-4
    assert (trained_clean - torch.cat(streamed, dim=2)).abs().max() < 1e-4


class _StraightFlow(WanDiT):
    """Predicts the exact velocity `(x - x0) / s` of the straight path to a fixed `x0`: Euler is then exact."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__(TINY.dit)
        self.target = target

    def forward(self, x, t, cond, y=None, attention=None, frame_offset=0):
        sigma = (t / 1000)[:, None, :, None, None]
        return torch.where(sigma > 0, (x - self.target) / sigma.clamp_min(1e-9), torch.zeros_like(x))


def test_teacher_trajectory_records_the_states_at_the_student_timesteps(tmp_path) -> None:
    batch, _, _ = _inputs(tmp_path)
    target = batch["latents"].clone()
    target[:, :, 1:] = torch.randn(target[:, :, 1:].shape)
    teacher = _StraightFlow(target)
    student_t = torch.tensor([1000.0, 833.3333, 625.0])
    sigmas = ode_sigmas(5, 3.0, student_t)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    noise = torch.randn(target[:, :, 1:].shape)
    policy = GuidancePolicy(GuidanceMode.TEXT_AUDIO_CFG, text_scale=3.0, audio_scale=2.0)
    states, x0 = teacher_trajectory(teacher, batch, noise, policy, sigmas, student_t)
    assert torch.allclose(x0, target[:, :, 1:], atol=1e-4)
    for k, t_value in enumerate(student_t.tolist()):
        expected = target[:, :, 1:] + t_value / 1000 * (noise - target[:, :, 1:])
        assert torch.allclose(states[:, k], expected, atol=1e-4)


def _student_stage(tmp_path, **overrides):
    """A student stage on a saved tiny teacher and data (written on the first call, reused after)."""
    teacher = _model(seed=3)
    teacher_path, data = tmp_path / "teacher.safetensors", tmp_path / "samples.safetensors"
    if not teacher_path.exists():
        save_dit(teacher, teacher_path)
        write_avatar_samples(data, latent_frames=4)
    config = get_stage("student").Config(
        data=str(data), teacher=str(teacher_path), latent_frames=4, chunk_frames=2, window_frames=2, steps=2,
        ode_pairs=3, teacher_steps=4, **overrides,
    )
    return get_stage("student")(config, TrainerConfig(out_dir=str(tmp_path / "run")), "cpu"), teacher


def test_student_stage_ode_step_on_cached_teacher_pairs(tmp_path) -> None:
    stage, teacher = _student_stage(tmp_path, clean_chunk_probability=0.5)
    pairs = stage.dataset("train")
    assert len(pairs) == 3 and pairs[0]["trajectory"].shape == (2, 16, 4, 4, 4)
    assert (pairs[0]["trajectory"][0] - pairs[1]["trajectory"][0]).abs().max() > 0.1  # each pair its own noise
    torch.manual_seed(0)
    _, before = _one_step(stage, _batch(pairs, 2))
    assert _changed(stage.model, before) > 0
    assert stage.frozen_modules() == {}  # the teacher only made the pairs; the loss never runs it
    cache = tmp_path / "run" / "data" / "ode_pairs_train.safetensors"
    written = cache.stat().st_mtime_ns
    again, _ = _student_stage(tmp_path, clean_chunk_probability=0.5)
    assert len(again.dataset("train")) == 3 and cache.stat().st_mtime_ns == written  # reused
    save_dit(_model(seed=4), tmp_path / "teacher.safetensors")
    retrained, _ = _student_stage(tmp_path, clean_chunk_probability=0.5)
    assert not torch.equal(retrained.dataset("train")[0]["latents"], pairs[0]["latents"])  # a new teacher: regenerated
    paths = stage.export(tmp_path / "out")
    loaded, _ = load_dit(paths[0])
    assert loaded.cfg == stage.model.cfg and paths[1].name == "student_stream.json"


def test_student_stage_flow_step_with_the_clean_context(tmp_path) -> None:
    stage, _ = _student_stage(tmp_path, objective="flow", context="clean")
    torch.manual_seed(0)
    loss, before = _one_step(stage, _batch(stage.dataset("train"), 2))
    assert _changed(stage.model, before) > 0
