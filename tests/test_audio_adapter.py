"""AudioProjection / AudioCrossAttention against hand-written references, and audio window gathering."""

from __future__ import annotations

import math

import pytest
import torch

from echotorrent_core.config import AudioAdapterConfig
from echotorrent_core.models.audio_adapter import AudioCrossAttention, AudioProjection
from echotorrent_core.models.audio_windows import (
    first_frame_window,
    latent_frame_windows,
    num_latent_frames,
    num_video_frames_for_latents,
)

CFG = AudioAdapterConfig(audio_dim=6, encoder_layers=3, intermediate_dim=16, context_tokens=4, token_dim=8)


def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def _reference_projection(proj: AudioProjection, first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Frame by frame: flatten rows in (window, layer, channel) order, three linears, per-token LayerNorm."""
    out = []
    for b in range(first.shape[0]):
        frames = []
        windows = [(first[b, 0], proj.proj1)] + [(rest[b, f], proj.proj1_vf) for f in range(rest.shape[1])]
        for window, first_layer in windows:
            flat = torch.stack([window[w, l, c] for w in range(window.shape[0])
                                for l in range(window.shape[1]) for c in range(window.shape[2])])
            h = torch.clamp(_linear(flat, first_layer), min=0)
            h = torch.clamp(_linear(h, proj.proj2), min=0)
            tokens = _linear(h, proj.proj3).view(CFG.context_tokens, CFG.token_dim)
            mean = tokens.mean(-1, keepdim=True)
            var = ((tokens - mean) ** 2).mean(-1, keepdim=True)
            tokens = (tokens - mean) / torch.sqrt(var + proj.norm.eps) * proj.norm.weight + proj.norm.bias
            frames.append(tokens)
        out.append(torch.stack(frames))
    return torch.stack(out)


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


def test_projection_parameter_names_and_shapes() -> None:
    proj = AudioProjection(CFG)
    shapes = {k: tuple(v.shape) for k, v in proj.state_dict().items()}
    assert shapes == {
        "proj1.weight": (16, 5 * 3 * 6), "proj1.bias": (16,),
        "proj1_vf.weight": (16, 8 * 3 * 6), "proj1_vf.bias": (16,),
        "proj2.weight": (16, 16), "proj2.bias": (16,),
        "proj3.weight": (4 * 8, 16), "proj3.bias": (4 * 8,),
        "norm.weight": (8,), "norm.bias": (8,),
    }
    no_norm = AudioProjection(AudioAdapterConfig(**{**CFG.__dict__, "norm_output": False}))
    assert not any(k.startswith("norm.") for k in no_norm.state_dict())


def test_projection_matches_reference() -> None:
    torch.manual_seed(0)
    proj = AudioProjection(CFG)
    _randomise(proj)
    first = torch.randn(2, 1, CFG.window, 3, 6)
    rest = torch.randn(2, 3, CFG.window_vf, 3, 6)
    out = proj(first, rest)
    assert out.shape == (2, 4, 4, 8)
    assert (out - _reference_projection(proj, first, rest)).abs().max() < 1e-5
    assert torch.allclose(proj(None, rest), out[:, 1:], atol=1e-6)
    assert torch.allclose(proj(first, None), out[:, :1], atol=1e-6)


def test_projection_rejects_bad_input() -> None:
    proj = AudioProjection(CFG)
    with pytest.raises(ValueError, match="at least one"):
        proj(None, None)
    with pytest.raises(ValueError, match="first must be"):
        proj(torch.randn(1, 1, CFG.window_vf, 3, 6), None)
    with pytest.raises(ValueError, match="rest must be"):
        proj(None, torch.randn(1, 2, CFG.window, 3, 6))
    with pytest.raises(ValueError, match="exactly one"):
        proj(torch.randn(1, 2, CFG.window, 3, 6), None)
    with pytest.raises(ValueError, match="batch sizes"):
        proj(torch.randn(1, 1, CFG.window, 3, 6), torch.randn(2, 1, CFG.window_vf, 3, 6))


def _reference_cross_attention(attn: AudioCrossAttention, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Explicit per-(batch, frame, head) softmax attention; K is the first half of kv_linear's output."""
    batch, frames, heads, dim = x.shape[0], tokens.shape[1], attn.num_heads, attn.dim
    per_frame, head_dim = x.shape[1] // frames, dim // heads
    out = torch.zeros_like(x)
    for b in range(batch):
        for f in range(frames):
            rows = slice(f * per_frame, (f + 1) * per_frame)
            q = _linear(x[b, rows], attn.q_linear)
            kv = _linear(tokens[b, f], attn.kv_linear)
            k, v = kv[:, :dim], kv[:, dim:]
            heads_out = []
            for h in range(heads):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(q[:, cols] @ k[:, cols].T / math.sqrt(head_dim), dim=-1)
                heads_out.append(weights @ v[:, cols])
            out[b, rows] = _linear(torch.cat(heads_out, dim=-1), attn.proj)
    return out


def test_cross_attention_matches_reference_and_names() -> None:
    torch.manual_seed(1)
    attn = AudioCrossAttention(dim=12, cfg=CFG, num_heads=3)
    _randomise(attn)
    assert sorted(attn.state_dict()) == [
        "kv_linear.bias", "kv_linear.weight", "proj.bias", "proj.weight", "q_linear.bias", "q_linear.weight",
    ]
    assert tuple(attn.kv_linear.weight.shape) == (24, 8)
    x = torch.randn(2, 3 * 5, 12)
    tokens = torch.randn(2, 3, 4, 8)
    out = attn(x, tokens)
    assert out.shape == x.shape
    assert (out - _reference_cross_attention(attn, x, tokens)).abs().max() < 1e-5


def test_cross_attention_is_frame_local() -> None:
    torch.manual_seed(2)
    attn = AudioCrossAttention(dim=12, cfg=CFG, num_heads=2)
    _randomise(attn)
    x = torch.randn(1, 4 * 6, 12)
    tokens = torch.randn(1, 4, 4, 8)
    changed = tokens.clone()
    changed[:, 2] = torch.randn(1, 4, 8)
    diff = (attn(x, tokens) - attn(x, changed)).abs().view(1, 4, 6, 12).amax(dim=(0, 2, 3))
    assert diff[2] > 1e-3
    assert torch.all(diff[[0, 1, 3]] == 0)


def test_cross_attention_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AudioCrossAttention(dim=10, cfg=CFG, num_heads=3)
    attn = AudioCrossAttention(dim=12, cfg=CFG, num_heads=2)
    with pytest.raises(ValueError, match="whole number"):
        attn(torch.randn(1, 7, 12), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="tokens must be"):
        attn(torch.randn(1, 8, 12), torch.randn(1, 2, 4, 7))
    with pytest.raises(ValueError, match="x must be"):
        attn(torch.randn(1, 8, 11), torch.randn(1, 2, 4, 8))


def _indexed_features(num_video_frames: int, layers: int = 2, channels: int = 3) -> torch.Tensor:
    """Rows whose every value is their own video frame index: gathered values ARE the gathered indices."""
    return torch.arange(num_video_frames, dtype=torch.float32)[:, None, None].expand(-1, layers, channels).clone()


def _gathered_rows(windows: torch.Tensor) -> list[list[int]]:
    assert torch.all(windows == windows[..., :1, :1])
    return windows[..., 0, 0].long().tolist()


def test_frame_count_helpers() -> None:
    assert num_latent_frames(81, 4) == 21
    assert num_latent_frames(1, 4) == 1
    assert num_latent_frames(6, 4) == 3
    assert num_video_frames_for_latents(21, 4) == 81
    assert num_video_frames_for_latents(1, 4) == 1
    with pytest.raises(ValueError, match="num_video_frames"):
        num_latent_frames(0, 4)
    with pytest.raises(ValueError, match="latent_frames"):
        num_video_frames_for_latents(0, 4)


def test_windows_hand_checked_indices_and_clamping() -> None:
    features = _indexed_features(13)
    assert _gathered_rows(first_frame_window(features, CFG)) == [[0, 0, 0, 1, 2]]
    assert _gathered_rows(latent_frame_windows(features, range(1, 5), CFG)) == [
        [0, 0, 1, 2, 3, 4, 5, 6],  # video frames 1..4
        [3, 4, 5, 6, 7, 8, 9, 10],  # video frames 5..8
        [7, 8, 9, 10, 11, 12, 12, 12],  # video frames 9..12, clamped at the last row
        [11, 12, 12, 12, 12, 12, 12, 12],  # past the end of the audio: clamped
    ]
    assert _gathered_rows(first_frame_window(_indexed_features(1), CFG)) == [[0, 0, 0, 0, 0]]


def _multitalk_style_windows(features: torch.Tensor, num_latents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All windows at once: per-video-frame 5-row windows, then first[:3] + middle centres + last[2:] per group."""
    video = torch.arange(num_video_frames_for_latents(num_latents, 4))
    per_frame = features[(video[:, None] + torch.arange(-2, 3)[None, :]).clamp(0, features.shape[0] - 1)]
    groups = per_frame[1:].unflatten(0, (num_latents - 1, 4))
    rest = torch.cat([groups[:, 0, :3], groups[:, 1:-1, 2], groups[:, -1, 2:]], dim=1)
    return per_frame[:1], rest


def test_lazy_chunks_equal_full_gathering() -> None:
    torch.manual_seed(3)
    features = torch.randn(41, 2, 3)
    first, rest = _multitalk_style_windows(features, 11)
    assert torch.equal(first_frame_window(features, CFG), first)
    chunks = [latent_frame_windows(features, range(s, min(s + 3, 11)), CFG) for s in range(1, 11, 3)]
    assert torch.equal(torch.cat(chunks), rest)
    assert torch.equal(latent_frame_windows(features, [7, 2], CFG), rest[[6, 1]])
    assert latent_frame_windows(features, [], CFG).shape == (0, 8, 2, 3)


def test_windows_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="features must be"):
        first_frame_window(torch.zeros(4, 3), CFG)
    with pytest.raises(ValueError, match="features must be"):
        latent_frame_windows(torch.zeros(0, 2, 3), [1], CFG)
    with pytest.raises(ValueError, match="first_frame_window"):
        latent_frame_windows(_indexed_features(9), [0, 1], CFG)
