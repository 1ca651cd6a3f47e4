"""Decoder refiners: save / load round trip, prefixed files, the base VAE left untouched, clear failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.refiner import decoder_state, load_decoder_refiner, save_decoder_refiner
from echotorrent_core.config import get_preset
from echotorrent_core.models.vae import WanVAE

TINY_VAE = get_preset("tiny").vae


def _vae(seed: int) -> WanVAE:
    torch.manual_seed(seed)
    return WanVAE(TINY_VAE).eval()


def _latents() -> torch.Tensor:
    return torch.randn(1, TINY_VAE.z_dim, 2, 4, 4, generator=torch.Generator().manual_seed(3))


def test_round_trip_replaces_only_the_decoder(tmp_path: Path):
    base, tuned = _vae(0), _vae(1)
    path = save_decoder_refiner(tuned, tmp_path / "refiner.safetensors")

    refined = load_decoder_refiner(path, base)

    assert refined is not base
    for key, value in refined.state_dict().items():
        source = tuned if key.startswith(("decoder.", "conv2.")) else base
        torch.testing.assert_close(value, source.state_dict()[key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        torch.testing.assert_close(refined.decode(_latents()), tuned.decode(_latents()))
        assert not torch.equal(base.decode(_latents()), tuned.decode(_latents()))
    for key, value in base.state_dict().items():
        torch.testing.assert_close(value, _vae(0).state_dict()[key], rtol=0, atol=0, msg=key)


def test_saved_file_holds_only_decoder_keys(tmp_path: Path):
    vae = _vae(0)
    path = save_decoder_refiner(vae, tmp_path / "refiner.safetensors")
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    assert keys == set(decoder_state(vae))
    assert any(key.startswith("conv2.") for key in keys) and any(key.startswith("decoder.") for key in keys)
    assert not any(key.startswith(("encoder.", "conv1.")) for key in keys)


def test_prefixed_refiner_loads(tmp_path: Path):
    base, tuned = _vae(0), _vae(1)
    path = tmp_path / "prefixed.safetensors"
    save_file({f"first_stage_model.{k}": v.contiguous() for k, v in decoder_state(tuned).items()}, str(path))

    refined = load_decoder_refiner(path, base)

    torch.testing.assert_close(refined.state_dict()["decoder.conv1.weight"], tuned.state_dict()["decoder.conv1.weight"])


def test_refiner_keeps_the_base_dtype(tmp_path: Path):
    base = _vae(0).to(torch.bfloat16)
    path = save_decoder_refiner(_vae(1), tmp_path / "refiner.safetensors")
    refined = load_decoder_refiner(path, base)
    assert {p.dtype for p in refined.parameters()} == {torch.bfloat16}


def test_full_vae_is_rejected(tmp_path: Path):
    path = tmp_path / "full_vae.safetensors"
    save_file({k: v.contiguous() for k, v in _vae(0).state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match=r"other than decoder\.\* and conv2\.\*.*encoder\."):
        load_decoder_refiner(path, _vae(0))


def test_unrelated_file_is_rejected(tmp_path: Path):
    path = tmp_path / "other.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(path))
    expected = r"other\.safetensors is not a VAE decoder refiner.*decoder\.conv1\.weight"
    with pytest.raises(CheckpointError, match=expected):
        load_decoder_refiner(path, _vae(0))


def test_decoder_of_another_size_is_rejected(tmp_path: Path):
    wider = WanVAE(replace(TINY_VAE, base_dim=16))
    path = save_decoder_refiner(wider, tmp_path / "wider.safetensors")
    with pytest.raises(CheckpointError, match="does not fit the base VAE's decoder: shape mismatches"):
        load_decoder_refiner(path, _vae(0))


def test_missing_decoder_keys_are_named(tmp_path: Path):
    state = decoder_state(_vae(1))
    del state["conv2.weight"]
    path = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match=r"missing 1 keys: conv2\.weight"):
        load_decoder_refiner(path, _vae(0))
