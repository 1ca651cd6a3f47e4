"""Parity with ComfyUI's own Wan code, the implementation ComfyUI users run: same native weights, same numbers.

Our DiT and VAE state dicts load into `comfy.ldm.wan.model.WanModel` and `comfy.ldm.wan.vae.WanVAE` unchanged (the
native names are shared), and both sides compute the same outputs on random small configurations.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from echotorrent_core.config import DiTConfig, VAEConfig
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def comfy(comfyui_path: Path):
    """ComfyUI's modules, imported in CPU mode."""
    if str(comfyui_path) not in sys.path:
        sys.path.insert(0, str(comfyui_path))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops

    return comfy


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Random values in every parameter (zero-initialised modulations would hide mistakes)."""
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return module


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
def test_dit_matches_comfyui_wan_model(comfy, i2v: bool) -> None:
    torch.manual_seed(0)
    cfg = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16, freq_dim=32,
                    in_dim=36 if i2v else 16, image_dim=1280 if i2v else None)  # ComfyUI fixes CLIP at 1280
    ours = _perturbed(WanDiT(cfg)).eval()
    theirs = comfy.ldm.wan.model.WanModel(
        model_type="i2v" if i2v else "t2v", dim=64, ffn_dim=128, freq_dim=32, text_dim=32, num_heads=2, num_layers=2,
        text_len=16, in_dim=cfg.in_dim, out_dim=16, device="cpu", dtype=torch.float32,
        operations=comfy.ops.disable_weight_init, **({"image_model": "clip"} if i2v else {}),
    )
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    theirs.eval()
    x = torch.randn(1, cfg.in_dim, 3, 8, 12)
    t = torch.tensor([637.0])
    text = torch.randn(1, cfg.text_len, cfg.text_dim)
    clip = torch.randn(1, 257, 1280) if i2v else None
    with torch.no_grad():
        cond = ours.prepare_conditioning(text=text, clip_fea=clip)
        expected = theirs(x, t, text, clip_fea=clip)
        got = ours(x[:, :16], t, cond, y=x[:, 16:] if i2v else None)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < TOLERANCE


def test_vae_matches_comfyui_wan_vae(comfy) -> None:
    torch.manual_seed(0)
    cfg = VAEConfig(base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
    ours = WanVAE(cfg).eval()
    with torch.no_grad():
        for name, param in ours.named_parameters():
            if name.endswith("gamma"):
                param.add_(torch.randn_like(param) * 0.1)
    theirs = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                     temperal_downsample=[False, True, True])
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        mu_ours, mu_theirs = ours.encode_raw(video), theirs.encode(video)
        frames_ours = ours.decode_raw(mu_ours, clamp=False)
        frames_theirs = theirs.decode(mu_ours)
    assert (mu_ours - mu_theirs).abs().max() < TOLERANCE
    assert (frames_ours - frames_theirs).abs().max() < TOLERANCE


def test_wan_2_1_vae_file_layout_is_ours(comfy) -> None:
    """The full-size ComfyUI VAE (the `wan_2.1_vae.safetensors` layout) has exactly our key names and shapes."""
    with torch.device("meta"):
        theirs = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                         temperal_downsample=[False, True, True])
        ours = WanVAE(replace(VAEConfig()))
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert theirs_shapes == ours_shapes
