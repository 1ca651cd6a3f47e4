"""The portrait colour map: an affine RGB map fitted from the decoded portrait to the portrait itself."""

import pytest
import torch

from echotorrent_core.media.colour_map import IDENTITY_COLOUR_MAP, apply_colour_map, fit_colour_map


def _image(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 32, 40, generator=generator) * 1.6 - 0.8


def test_fit_recovers_an_affine_colour_shift() -> None:
    target = _image()
    matrix = torch.tensor([[0.9, 0.1, 0.0], [-0.05, 1.1, 0.05], [0.0, 0.08, 0.85]])
    bias = torch.tensor([0.05, -0.1, 0.02])
    decoded = torch.einsum("ij,jhw->ihw", matrix, target) + bias[:, None, None]
    fitted = fit_colour_map(decoded, target, ridge=0.0)
    mapped = apply_colour_map(decoded[:, None], fitted)[:, 0]
    assert (mapped - target).abs().max() < 1e-4


def test_identical_images_give_the_identity_map() -> None:
    image = _image(1)
    assert torch.allclose(fit_colour_map(image, image), IDENTITY_COLOUR_MAP, atol=1e-5)


def test_ridge_pulls_a_flat_portrait_towards_the_identity() -> None:
    decoded = torch.full((3, 16, 16), 0.2)  # one colour: the 3x3 part is not determined by the data
    target = torch.full((3, 16, 16), 0.3)
    fitted = fit_colour_map(decoded, target)
    assert torch.isfinite(fitted).all()
    assert torch.allclose(apply_colour_map(decoded[:, None], fitted)[:, 0], target, atol=1e-2)
    assert torch.allclose(fitted[:3], torch.eye(3), atol=0.2)


def test_apply_keeps_shape_dtype_and_range() -> None:
    video = torch.rand(1, 3, 5, 8, 8, dtype=torch.float64) * 2 - 1
    fitted = IDENTITY_COLOUR_MAP.clone()
    fitted[3] = 0.5
    out = apply_colour_map(video, fitted)
    assert out.shape == video.shape and out.dtype == video.dtype
    assert out.max() <= 1.0 and torch.allclose(out.clamp(max=0.999), (video + 0.5).clamp(-1, 1).clamp(max=0.999))


def test_bad_shapes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        fit_colour_map(torch.zeros(4, 8, 8), torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        fit_colour_map(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match=r"\[4, 3\]"):
        apply_colour_map(torch.zeros(3, 1, 8, 8), torch.zeros(3, 3))
