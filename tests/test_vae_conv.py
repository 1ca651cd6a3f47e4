"""CausalConv3d's direct oneDNN path, and its single-frame path (one input frame: only the kernel's last temporal tap
meets data), compute the same convolution (and gradients) as the reference conv3d of the zero-padded input."""

import pytest
import torch
import torch.nn.functional as F

from echotorrent_core.models.vae_blocks import CausalConv3d


@pytest.mark.parametrize("channels, kernel, stride, padding, frames, batch", [
    (8, 3, 1, 1, 7, 1),          # the small-channel case PyTorch sends to its slow fallback
    (4, (3, 1, 1), (2, 1, 1), 0, 7, 1),  # a temporal downsample
    (6, (1, 3, 3), (1, 2, 2), (0, 1, 1), 7, 1),
    (8, 3, 1, 1, 1, 2),          # single frames (the image path): the 2D path
    (3, (3, 1, 1), 1, (1, 0, 0), 1, 2),
    (6, (1, 3, 3), (1, 2, 2), (0, 1, 1), 1, 1),
    (5, 1, 1, 0, 1, 2),
])
def test_matches_float64_reference_with_gradients(channels, kernel, stride, padding, frames, batch) -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(channels, 5, kernel, stride=stride, padding=padding)
    x = torch.randn(batch, channels, frames, 12, 10, requires_grad=True)
    out = conv(x)
    past = conv.past_frames
    reference_input = F.pad(x.double(), (0, 0, 0, 0, past, 0))
    reference = F.conv3d(reference_input, conv.weight.double(), conv.bias.double(), conv.stride, conv.padding)
    assert out.shape == reference.shape
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(out)
    out.backward(grad)
    x_grad, w_grad = x.grad.clone(), conv.weight.grad.clone()
    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    F.conv3d(F.pad(x64, (0, 0, 0, 0, past, 0)), w64, conv.bias.detach().double(), conv.stride,
             conv.padding).backward(grad.double())
    torch.testing.assert_close(x_grad.double(), x64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w_grad.double(), w64.grad, rtol=1e-4, atol=1e-4)


def test_stream_started_by_one_frame_matches_the_whole_video() -> None:
    """A cached stream whose first step is one frame (the 2D path), then 4 frames, equals the whole 5 frames."""
    from echotorrent_core.models.vae_cache import FeatureCache

    torch.manual_seed(0)
    conv = CausalConv3d(6, 4, 3, padding=1)
    x = torch.randn(2, 6, 5, 9, 8)
    cache = FeatureCache()
    first = conv(x[:, :, :1], cache)
    cache.begin_step()
    stepped = torch.cat([first, conv(x[:, :, 1:], cache)], dim=2)
    torch.testing.assert_close(stepped, conv(x), rtol=1e-5, atol=1e-5)


def test_rms_norm_matches_normalize_reference_including_zero_vectors() -> None:
    from echotorrent_core.models.vae_blocks import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 3, 5, 4)
    x[0, :, 0, 0, 0] = 0.0  # a zero vector must stay zero, not NaN
    reference = F.normalize(x.double(), dim=1) * 8**0.5 * norm.gamma.double()
    torch.testing.assert_close(norm(x).double(), reference, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(norm(x)).all()
    half = norm(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), reference, rtol=2e-2, atol=2e-2)
