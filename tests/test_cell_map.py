"""The fixed per-cell loss map (`losses.cell_map`) and the teacher stage's `loss_map` option."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echotorrent_core import flow
from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.models.attention import Bidirectional
from echotorrent_core.training.config import TrainerConfig
from echotorrent_core.training.losses.cell_map import combine_cell_weights, load_cell_map, map_cell_weights
from echotorrent_core.training.losses.flow_matching import sample_timesteps
from echotorrent_core.training.registry import get_stage
from echotorrent_core.training.stages.avatar_batch import conditioning, keep_mask
from echotorrent_core.training.stages.teacher_objective import (
    reference_frame_timesteps,
    teacher_eval_losses,
    teacher_loss,
)

from stage_fixtures import write_avatar_samples


def test_map_weights_have_mean_one_and_follow_the_map() -> None:
    weights = torch.zeros(4, 4)
    weights[2, 1] = 3.0
    cells = map_cell_weights(weights, 1.0)
    assert cells.shape == (1, 1, 1, 4, 4)
    assert float(cells.mean()) == pytest.approx(1.0)
    # 1 + 1 * map / mean(map): 17 at the one cell, 1 elsewhere, then / mean (32 / 16 = 2)
    assert float(cells[0, 0, 0, 2, 1]) == pytest.approx(17.0 / 2.0)
    assert float(cells[0, 0, 0, 0, 0]) == pytest.approx(0.5)
    assert torch.equal(map_cell_weights(weights, 0.0), torch.ones(1, 1, 1, 4, 4))
    with pytest.raises(ValueError, match=">= 0"):
        map_cell_weights(weights, -1.0)


def test_combined_weights_are_the_renormalised_product() -> None:
    a = torch.rand(2, 1, 1, 3, 3) + 0.5
    b = torch.rand(1, 1, 1, 3, 3) + 0.5
    combined = combine_cell_weights(a, None, b)
    expected = a * b / (a * b).mean(dim=(3, 4), keepdim=True)
    assert torch.allclose(combined, expected)
    assert combine_cell_weights(None, None) is None


def test_load_cell_map_names_what_it_expected(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="loss map not found"):
        load_cell_map(tmp_path / "missing.safetensors")
    write_state_dict(tmp_path / "other.safetensors", {"weights": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="expected a tensor 'map'"):
        load_cell_map(tmp_path / "other.safetensors")
    write_state_dict(tmp_path / "negative.safetensors", {"map": -torch.ones(2, 2)})
    with pytest.raises(ValueError, match="non-negative"):
        load_cell_map(tmp_path / "negative.safetensors")
    write_state_dict(tmp_path / "good.safetensors", {"map": torch.arange(4.0).reshape(2, 2)})
    assert torch.equal(load_cell_map(tmp_path / "good.safetensors"), torch.arange(4.0).reshape(2, 2))


def _stage(tmp_path, **changes):
    data = write_avatar_samples(tmp_path / "samples.safetensors")
    config = dataclasses.replace(get_stage("teacher").Config(data=str(data)), **changes)
    return get_stage("teacher")(config, TrainerConfig(out_dir=str(tmp_path)), "cpu")


@torch.no_grad()
def test_teacher_loss_with_a_map_is_the_hand_weighted_velocity_error(tmp_path) -> None:
    stage = _stage(tmp_path)
    dataset = stage.dataset("train")
    batch = {key: torch.stack([dataset[i][key] for i in range(2)]) for key in dataset[0]}
    latents = batch["latents"]
    h, w = latents.shape[-2:]
    weights = torch.zeros(h, w)
    weights[1, 2] = 1.0
    cells = map_cell_weights(weights, 5.0)
    t = torch.tensor([400.0, 900.0])
    noise = torch.randn(latents.shape)
    loss, logs = teacher_loss(stage.model, batch, t, noise, map_weights=cells)
    frame_t = reference_frame_timesteps(t, latents.shape[2])
    velocity = stage.model(flow.add_noise(latents, noise, frame_t), frame_t,
                           conditioning(stage.model, batch, range(latents.shape[2])), attention=Bidirectional())
    error = (velocity - (noise - latents))[:, :, 1:].square()
    assert torch.allclose(loss, (error * cells).mean(), rtol=1e-5)
    assert logs["flow_mse"] == pytest.approx(float(error.mean()), rel=1e-5)


def test_teacher_stage_trains_with_the_configured_map(tmp_path) -> None:
    plain = _stage(tmp_path)
    h, w = plain.dataset("train")[0]["latents"].shape[-2:]
    weights = torch.rand(h, w, generator=torch.Generator().manual_seed(3))
    path = write_state_dict(tmp_path / "mouth_map.safetensors", {"map": weights})
    stage = _stage(tmp_path, loss_map=str(path), loss_map_weighting=2.0, motion_weighting=3.0)
    dataset = stage.dataset("train")
    batch = {key: torch.stack([dataset[i][key] for i in range(2)]) for key in dataset[0]}
    torch.manual_seed(0)
    loss, _ = stage.generator_loss(batch, 0)
    torch.manual_seed(0)
    config = stage.config
    t = sample_timesteps((2,), config.shift)
    noise = torch.randn(batch["latents"].shape)
    keep_text = keep_mask(2, 1.0 - config.text_dropout, "cpu")
    keep_audio = keep_mask(2, 1.0 - config.audio_dropout, "cpu")
    expected, _ = teacher_loss(stage.model, batch, t, noise, keep_text, keep_audio, 3.0, map_cell_weights(weights, 2.0))
    unmapped, _ = teacher_loss(stage.model, batch, t, noise, keep_text, keep_audio, 3.0)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, unmapped)


def test_teacher_evaluation_reports_the_audio_gain_where_the_map_is(tmp_path) -> None:
    plain = _stage(tmp_path)
    h, w = plain.dataset("train")[0]["latents"].shape[-2:]
    weights = torch.zeros(h, w)
    weights[0, 0] = 1.0
    path = write_state_dict(tmp_path / "mouth_map.safetensors", {"map": weights})
    stage = _stage(tmp_path, loss_map=str(path), loss_map_weighting=4.0)
    stage.samples._datasets["heldout"] = stage.dataset("train")
    logs = stage.evaluate(0)
    plain.samples._datasets["heldout"] = plain.dataset("train")
    plain_logs = plain.evaluate(0)
    names = {f"{k}_t{t}" for k in ("flow_mse", "audio_gain") for t in (250, 500, 750, 950)}
    assert set(plain_logs) == names
    assert set(logs) - set(plain_logs) == {f"map_{name}" for name in names}
    assert logs["map_flow_mse_t500"] != pytest.approx(logs["flow_mse_t500"])
    assert all(v > 0 for v in logs.values())


def test_the_evaluation_losses_come_from_one_forward_pass_and_equal_the_training_loss(tmp_path) -> None:
    stage = _stage(tmp_path)
    dataset = stage.dataset("train")
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]) for k in dataset[0]}
    h, w = batch["latents"].shape[-2:]
    weights = torch.zeros(h, w)
    weights[1, 1] = 1.0
    cells = map_cell_weights(weights, 4.0)
    t, noise = torch.full((2,), 500.0), torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(1))
    silence = torch.zeros(2, dtype=torch.bool)
    calls = []
    hook = stage.model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        plain, mapped = teacher_eval_losses(stage.model, batch, t, noise, keep_audio=silence, map_weights=cells)
        assert len(calls) == 1
        assert teacher_eval_losses(stage.model, batch, t, noise)[1] is None
        hook.remove()
        assert torch.allclose(plain, teacher_loss(stage.model, batch, t, noise, keep_audio=silence)[0])
        assert torch.allclose(mapped, teacher_loss(stage.model, batch, t, noise, keep_audio=silence,
                                                   map_weights=cells)[0])
