"""AudioProjection / AudioCrossAttention against hand-written references, and audio window gathering."""

from __future__ import annotations

import math

import pytest
import torch

from echotorrent_core.config import AudioAdapterConfig
from echotorrent_core.models.audio_adapter import AudioCrossAttention, AudioProjection

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
