"""The cross-attention context projected once per conditioning gives the same outputs as projecting every pass."""

from __future__ import annotations

from dataclasses import replace

import torch

from echotorrent_core.config import get_preset
from echotorrent_core.models.attention import BlockCausal
from echotorrent_core.models.dit import WanDiT

TINY = get_preset("tiny")


def test_precomputed_context_equals_per_pass_projection() -> None:
    torch.manual_seed(0)
    cfg = replace(TINY.dit, in_dim=36, image_dim=24)
    dit = WanDiT(cfg).eval()
    audio = cfg.audio
    cond = dit.prepare_conditioning(
        text=torch.randn(1, 5, cfg.text_dim), clip_fea=torch.randn(1, 257, 24),
        audio_rest=torch.randn(1, 4, audio.window_vf, audio.encoder_layers, audio.audio_dim),
    )
    assert cond.context_kv is not None and len(cond.context_kv) == cfg.num_layers
    x, y = torch.randn(1, 16, 4, 4, 4), torch.randn(1, 20, 4, 4, 4)
    t = torch.tensor([[900.0, 900.0, 500.0, 500.0]])
    with torch.no_grad():
        cached = dit(x, t, cond, y=y, attention=BlockCausal(chunk_frames=2, sink_frames=0))
        projected = dit(x, t, replace(cond, context_kv=None), y=y, attention=BlockCausal(chunk_frames=2, sink_frames=0))
    assert torch.equal(cached, projected)
