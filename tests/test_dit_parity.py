"""WanDiT against the reference diffusers WanTransformer3DModel, and the diffusers <-> native key maps."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import WanTransformer3DModel

from echotorrent_core.checkpoints.dit_keys import (
    DIFFUSERS_ANCHOR_KEYS,
    NATIVE_ANCHOR_KEYS,
    config_from_state_dict,
    diffusers_to_native,
    native_to_diffusers,
)
from echotorrent_core.config import PRESETS
from echotorrent_core.models.dit import WanDiT

HEADS, HEAD_DIM = 2, 32
TEXT_LEN = 512  # diffusers' i2v attention assumes 512 text tokens
IMAGE_TOKENS, IMAGE_DIM = 257, 48
FRAMES, HEIGHT, WIDTH = 3, 4, 6
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)


def _reference(image: bool) -> WanTransformer3DModel:
    torch.manual_seed(0)
    model = WanTransformer3DModel(
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        in_channels=36 if image else 16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=96,
        num_layers=2,
        image_dim=IMAGE_DIM if image else None,
        added_kv_proj_dim=HEADS * HEAD_DIM if image else None,
    )
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def _converted(reference: WanTransformer3DModel) -> WanDiT:
    native_sd = diffusers_to_native(reference.state_dict())
    cfg = config_from_state_dict(native_sd, num_heads=HEADS)
    model = WanDiT(cfg).eval()
    model.load_state_dict(native_sd, strict=True)
    return model


@pytest.mark.parametrize("image", [False, True], ids=["t2v", "i2v"])
@pytest.mark.parametrize("per_frame_t", [False, True], ids=["t_per_sample", "t_per_frame"])
def test_matches_diffusers(image: bool, per_frame_t: bool) -> None:
    reference = _reference(image)
    model = _converted(reference)
    assert model.cfg.text_len == TEXT_LEN
    torch.manual_seed(1)
    batch = 2
    x = torch.randn(batch, 16, FRAMES, HEIGHT, WIDTH)
    y = torch.randn(batch, 20, FRAMES, HEIGHT, WIDTH) if image else None
    text = torch.randn(batch, TEXT_LEN, 32)
    clip = torch.randn(batch, IMAGE_TOKENS, IMAGE_DIM) if image else None
    t = torch.rand(batch, FRAMES) * 1000 if per_frame_t else torch.tensor([999.0, 250.0])
    ref_t = t.repeat_interleave(TOKENS_PER_FRAME, dim=1) if per_frame_t else t
    ref_x = torch.cat([x, y], dim=1) if image else x

    with torch.no_grad():
        expected = reference(ref_x, ref_t, text, encoder_hidden_states_image=clip, return_dict=False)[0]
        cond = model.prepare_conditioning(text=text, clip_fea=clip)
        actual = model(x, t, cond, y=y)

    assert actual.shape == expected.shape == (batch, 16, FRAMES, HEIGHT, WIDTH)
    assert expected.abs().mean() > 0.1
    assert (actual - expected).abs().max() < 1e-4


def test_short_text_is_zero_padded_like_wan() -> None:
    reference = _reference(image=False)
    model = _converted(reference)
    torch.manual_seed(2)
    x = torch.randn(1, 16, FRAMES, HEIGHT, WIDTH)
    text = torch.randn(1, 7, 32)
    padded = torch.cat([text, torch.zeros(1, TEXT_LEN - 7, 32)], dim=1)
    t = torch.tensor([500.0])
    with torch.no_grad():
        expected = reference(x, t, padded, return_dict=False)[0]
        actual = model(x, t, model.prepare_conditioning(text=text))
    assert (actual - expected).abs().max() < 1e-4


@pytest.mark.parametrize("image", [False, True], ids=["t2v", "i2v"])
def test_key_maps_round_trip(image: bool) -> None:
    diffusers_sd = _reference(image).state_dict()
    native_sd = diffusers_to_native(diffusers_sd)
    assert NATIVE_ANCHOR_KEYS <= native_sd.keys()
    assert DIFFUSERS_ANCHOR_KEYS <= diffusers_sd.keys()
    assert not DIFFUSERS_ANCHOR_KEYS - {"patch_embedding.weight"} & native_sd.keys()

    back = native_to_diffusers(native_sd)
    assert back.keys() == diffusers_sd.keys()
    assert all(back[k] is diffusers_sd[k] for k in back)

    again = diffusers_to_native(back)
    assert again.keys() == native_sd.keys()
    assert all(again[k] is native_sd[k] for k in again)
    assert native_sd["head.modulation"].shape == (1, 2, HEADS * HEAD_DIM)
    assert native_sd["blocks.1.modulation"].shape == (1, 6, HEADS * HEAD_DIM)


def test_audio_keys_pass_through_and_config_is_recovered() -> None:
    torch.manual_seed(3)
    cfg = PRESETS["tiny"].dit
    native_sd = WanDiT(cfg).state_dict()
    audio_keys = {k for k in native_sd if "audio" in k or "norm_x" in k}
    assert "audio_proj.proj1_vf.weight" in audio_keys and "blocks.1.audio_cross_attn.kv_linear.weight" in audio_keys

    diffusers_sd = native_to_diffusers(native_sd)
    assert audio_keys <= diffusers_sd.keys()
    assert diffusers_to_native(diffusers_sd).keys() == native_sd.keys()

    inferred = config_from_state_dict(native_sd, num_heads=cfg.num_heads, audio_dim=cfg.audio.audio_dim)
    assert dataclasses.replace(inferred, text_len=cfg.text_len) == cfg


def test_config_inference_of_real_sizes_and_errors() -> None:
    cfg = PRESETS["wan2.1-i2v-14b"].dit
    shapes = {
        "patch_embedding.weight": (cfg.dim, cfg.in_dim, 1, 2, 2),
        "text_embedding.0.weight": (cfg.dim, cfg.text_dim),
        "time_embedding.0.weight": (cfg.dim, cfg.freq_dim),
        "blocks.0.ffn.0.weight": (cfg.ffn_dim, cfg.dim),
        "head.head.weight": (cfg.out_dim * 4, cfg.dim),
        "img_emb.proj.1.weight": (cfg.image_dim, cfg.image_dim),
        "audio_proj.proj1.weight": (512, 5 * 12 * 768),
        "audio_proj.proj1_vf.weight": (512, 8 * 12 * 768),
        "audio_proj.proj3.weight": (32 * 768, 512),
        "audio_proj.norm.weight": (768,),
    }
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    sd.update({f"blocks.{i}.modulation": torch.empty(1, 6, cfg.dim, device="meta") for i in range(cfg.num_layers)})
    assert config_from_state_dict(sd) == cfg

    with pytest.raises(ValueError, match="pass num_heads"):
        config_from_state_dict(diffusers_to_native(_reference(image=False).state_dict()))
    with pytest.raises(ValueError, match="lacks 'head.head.weight'"):
        config_from_state_dict({k: v for k, v in sd.items() if k != "head.head.weight"})
    with pytest.raises(ValueError, match="lacks 'head.head.weight'; is it another model or another layout"):
        config_from_state_dict(_reference(image=False).state_dict(), num_heads=HEADS)
