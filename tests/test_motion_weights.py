"""Per-cell motion weights of the flow-matching loss: mean 1, uniform on still windows, heavier where x0 moves."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.training.losses.flow_matching import flow_matching_loss, masked_mean
from echotorrent_core.training.losses.motion_weights import motion_cell_weights
from echotorrent_core.training.losses.reconstruction import ReconstructionWeights, motion_weighted_l1, reconstruction_loss


def _window_with_a_moving_cell(batch: int = 2) -> torch.Tensor:
    """`[B, 4, 5, 6, 6]` latents, constant in time except cell (4, 2), which alternates in sign."""
    torch.manual_seed(0)
    x0 = torch.randn(batch, 4, 1, 6, 6).expand(-1, -1, 5, -1, -1).clone()
    x0[:, :, 1:, 4, 2] += torch.tensor([1.0, -1.0, 1.0, -1.0])
    return x0


def test_weights_have_mean_one_and_favour_the_moving_cell() -> None:
    weights = motion_cell_weights(_window_with_a_moving_cell(), strength=4.0)
    assert weights.shape == (2, 1, 1, 6, 6)
    assert torch.allclose(weights.mean(dim=(3, 4)), torch.ones(2, 1, 1))
    moving, still = weights[:, 0, 0, 4, 2], weights[:, 0, 0, 0, 0]
    # one moving cell of 36 holds all the motion: 1 + 4 * 36 against 1 before rescaling
    assert torch.allclose(moving / still, torch.full((2,), 1 + 4.0 * 36))


def test_still_windows_and_zero_strength_give_uniform_weights() -> None:
    still = torch.randn(3, 4, 1, 5, 5).expand(-1, -1, 4, -1, -1)
    assert torch.equal(motion_cell_weights(still, 2.0), torch.ones(3, 1, 1, 5, 5))
    assert torch.allclose(motion_cell_weights(_window_with_a_moving_cell(), 0.0), torch.ones(2, 1, 1, 6, 6))


def test_the_reference_frame_does_not_count_as_motion() -> None:
    x0 = torch.zeros(1, 2, 4, 3, 3)
    x0[:, :, 0, 1, 1] = 5.0  # only the reference differs at (1, 1)
    assert torch.equal(motion_cell_weights(x0, 3.0), torch.ones(1, 1, 1, 3, 3))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="strength"):
        motion_cell_weights(torch.zeros(1, 2, 3, 4, 4), -1.0)
    with pytest.raises(ValueError, match="F > 1"):
        motion_cell_weights(torch.zeros(1, 2, 1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="cell_weights"):
        masked_mean(torch.zeros(2, 3, 4, 5, 5), None, torch.ones(2, 1, 4, 5, 5))


def test_weighted_loss_moves_towards_the_moving_cells_and_logs_the_plain_mse() -> None:
    x0 = _window_with_a_moving_cell()
    noise = torch.randn_like(x0)
    frames = torch.ones(2, 5)
    frames[:, 0] = 0
    velocity = noise - x0
    velocity[:, :, :, 4, 2] += 1.0  # all of the error sits on the moving cell
    plain, plain_logs = flow_matching_loss(velocity, x0, noise, frames)
    weighted, logs = flow_matching_loss(velocity, x0, noise, frames, motion_cell_weights(x0, 4.0))
    assert weighted > 10 * plain
    assert logs["flow_mse"] == pytest.approx(plain_logs["flow_mse"]) == pytest.approx(float(plain))
    uniform, _ = flow_matching_loss(velocity, x0, noise, frames, torch.ones(2, 1, 1, 6, 6))
    assert torch.allclose(uniform, plain)


def test_motion_weighted_l1_scores_the_moving_pixels_only() -> None:
    target = _window_with_a_moving_cell()[:, :3]  # a "video" [B, 3, T, H, W]
    decoded = target.clone()
    decoded[:, :, :, 0, 0] += 1.0  # error on a still pixel: not counted
    assert motion_weighted_l1(decoded, target) == 0
    decoded[:, :, :, 4, 2] += 0.5  # error on the moving pixel, weighted by 36 (all the motion is there)
    expected = 36 * 0.5 * (1 / 36)  # mean over pixels of weight x error
    assert torch.allclose(motion_weighted_l1(decoded, target), torch.tensor(expected))
    loss, logs = reconstruction_loss(decoded, target, torch.zeros(2, 4, 2, 1, 1), torch.zeros(2, 4, 2, 1, 1),
                                     ReconstructionWeights(ssim=0.0, high_frequency=0.0, motion_l1=2.0))
    assert logs["motion_l1"] == pytest.approx(expected)
    assert float(loss) == pytest.approx(logs["l1"] + 2.0 * expected + 1e-6 * logs["kl"])
