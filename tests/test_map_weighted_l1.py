"""The mouth-map weighted reconstruction term of the VAE stages: the map spread over pixels, the term's weighting,
and the stage's refusal of a map it cannot place."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.training.losses.reconstruction import (
    ReconstructionWeights,
    map_weighted_l1,
    pixel_map_weights,
    reconstruction_loss,
)
from echotorrent_core.training.stages.vae import VAEStageConfig


def test_the_cell_map_is_spread_over_its_pixels_with_mean_one() -> None:
    cells = torch.zeros(4, 4)
    cells[2, 1] = 3.0
    pixels = pixel_map_weights(cells, 32)
    assert pixels.shape == (32, 32) and abs(float(pixels.mean()) - 1.0) < 1e-6
    assert torch.all(pixels[16:24, 8:16] == 16.0) and float(pixels.sum() - pixels[16:24, 8:16].sum()) == 0.0
    assert torch.equal(pixel_map_weights(torch.zeros(4, 4), 32), torch.ones(32, 32))  # no cell marked: uniform
    with pytest.raises(ValueError, match="divide the frame size 30"):
        pixel_map_weights(cells, 30)


def test_only_errors_inside_the_map_count() -> None:
    target = torch.zeros(1, 3, 2, 16, 16)
    weights = pixel_map_weights(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), 16)  # the bottom-right 8 x 8 quarter
    outside, inside = target.clone(), target.clone()
    outside[..., :6, :] = 0.5  # its Laplacian reaches row 6, not the quarter
    inside[..., 9:15, 9:15] = 0.5  # off the quarter's border: its Laplacian stays inside too
    assert float(map_weighted_l1(outside, target, weights)) == pytest.approx(0.0, abs=1e-6)
    plain = float(map_weighted_l1(inside, target, torch.ones(16, 16)))
    assert float(map_weighted_l1(inside, target, weights)) == pytest.approx(4.0 * plain, rel=1e-5)


def test_the_reconstruction_loss_adds_the_term_and_needs_a_map_of_the_frame_size() -> None:
    decoded, target = torch.rand(1, 3, 5, 16, 16), torch.rand(1, 3, 5, 16, 16)
    mu = logvar = torch.zeros(1, 4, 2, 2, 2)
    base, _ = reconstruction_loss(decoded, target, mu, logvar, ReconstructionWeights())
    weights = ReconstructionWeights(map_l1=2.0)
    total, logs = reconstruction_loss(decoded, target, mu, logvar, weights, torch.ones(16, 16))
    assert float(total) == pytest.approx(float(base) + 2.0 * logs["map_l1"], rel=1e-5)
    with pytest.raises(ValueError, match="pixel_map of the frame size"):
        reconstruction_loss(decoded, target, mu, logvar, weights, torch.ones(8, 8))


def test_the_stage_refuses_a_map_loss_without_a_map_or_on_crops() -> None:
    with pytest.raises(ValueError, match="needs loss_map"):
        VAEStageConfig(data="d", map_l1=1.0)
    with pytest.raises(ValueError, match="whole frames"):
        VAEStageConfig(data="d", map_l1=1.0, loss_map="m.safetensors", size=64, crop=32)
