"""Checkpoint loading: layouts (native, ComfyUI, diffusers, training), dtypes, metadata, and clear failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from echotorrent_core.checkpoints import dit_keys
from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.loaders import load_dit, load_vae, save_dit, save_vae
from echotorrent_core.config import get_preset
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE

TINY = get_preset("tiny")
TINY_AUDIO_DIM = TINY.dit.audio.audio_dim


@pytest.fixture(scope="module")
def tiny_dit() -> WanDiT:
    torch.manual_seed(0)
    return WanDiT(TINY.dit).eval()


def _save_plain(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_native_round_trip_keeps_config_and_weights(tiny_dit: WanDiT, tmp_path: Path) -> None:
    path = save_dit(tiny_dit, tmp_path / "dit.safetensors")
    loaded, report = load_dit(path)
    assert report.config == TINY.dit
    assert report.layout.layout == "native" and report.layout.prefix == ""
    _assert_same_weights(tiny_dit, loaded)


def test_diffusers_and_comfyui_layouts_load_to_identical_tensors(tiny_dit: WanDiT, tmp_path: Path) -> None:
    native = tiny_dit.state_dict()
    comfy = _save_plain({f"model.diffusion_model.{k}": v for k, v in native.items()}, tmp_path / "comfy.safetensors")
    diffusers = _save_plain(dit_keys.native_to_diffusers(native), tmp_path / "diffusers.safetensors")
    from_comfy, comfy_report = load_dit(comfy, num_heads=TINY.dit.num_heads, audio_dim=TINY_AUDIO_DIM)
    from_diffusers, diffusers_report = load_dit(diffusers, num_heads=TINY.dit.num_heads, audio_dim=TINY_AUDIO_DIM)
    assert comfy_report.layout.prefix == "model.diffusion_model."
    assert diffusers_report.layout.layout == "diffusers"
    # text_len is not visible in the weights: files without metadata get Wan's 512
    assert comfy_report.config == diffusers_report.config == replace(TINY.dit, text_len=512)
    _assert_same_weights(from_comfy, from_diffusers)
    _assert_same_weights(from_comfy, tiny_dit)


def test_training_checkpoint_prefers_ema_and_strips_wrappers(tiny_dit: WanDiT, tmp_path: Path) -> None:
    native = tiny_dit.state_dict()
    state = {f"generator_ema._fsdp_wrapped_module.model.{k}": v for k, v in native.items()}
    state |= {f"generator.model.{k}": torch.zeros_like(v) for k, v in native.items()}
    state |= {"fake_score.model.patch_embedding.weight": torch.zeros(3)}
    loaded, report = load_dit(_save_plain(state, tmp_path / "train.safetensors"), num_heads=2, audio_dim=TINY_AUDIO_DIM)
    assert report.layout.training_group == "generator_ema."
    assert report.layout.prefix == "model."
    _assert_same_weights(loaded, tiny_dit)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_files_load_in_their_dtype_or_the_requested_one(tiny_dit: WanDiT, tmp_path: Path, dtype) -> None:
    half = tiny_dit.to(dtype)
    try:
        path = save_dit(half, tmp_path / "half.safetensors")
    finally:
        tiny_dit.float()
    kept, report = load_dit(path)
    assert report.dtype == dtype and next(kept.parameters()).dtype == dtype
    upcast, _ = load_dit(path, dtype=torch.float32)
    assert next(upcast.parameters()).dtype == torch.float32


def test_vae_file_given_as_dit_names_what_it_is(tmp_path: Path) -> None:
    path = save_vae(WanVAE(TINY.vae), tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match=r"holds a Wan VAE.*expected a Wan DiT"):
        load_dit(path)
    loaded, report = load_vae(path)
    assert report.config == TINY.vae


def test_dit_file_given_as_vae_names_what_it_is(tiny_dit: WanDiT, tmp_path: Path) -> None:
    path = save_dit(tiny_dit, tmp_path / "dit.safetensors")
    with pytest.raises(CheckpointError, match=r"holds a Wan DiT.*expected a Wan VAE"):
        load_vae(path)


def test_truncated_file_is_reported_as_truncated(tiny_dit: WanDiT, tmp_path: Path) -> None:
    path = save_dit(tiny_dit, tmp_path / "dit.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_dit(path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"PK\x03\x04" + b"\x00" * 64, "zip archive"),
        (b"\x80\x04\x95" + b"\x00" * 64, "pickle"),
        (b"", "empty"),
        (b"hello world, not a model", "not safetensors"),
    ],
)
def test_non_safetensors_files_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_dit(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_dit(tmp_path / "nope.safetensors")


def test_missing_and_unexpected_keys_are_listed(tiny_dit: WanDiT, tmp_path: Path) -> None:
    state = dict(tiny_dit.state_dict())
    del state["blocks.1.ffn.2.bias"]
    state["blocks.0.extra_layer.weight"] = torch.zeros(2)
    path = _save_plain(state, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match=r"missing 1 keys: blocks\.1\.ffn\.2\.bias.*unexpected 1 keys: blocks\.0\.extra_layer"):
        load_dit(path, num_heads=2, audio_dim=TINY_AUDIO_DIM)


def test_unrecognised_tensors_are_refused(tmp_path: Path) -> None:
    path = _save_plain({"some.other.weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        load_dit(path)


def test_scaled_fp8_weights_are_dequantised(tiny_dit: WanDiT, tmp_path: Path) -> None:
    state = dict(tiny_dit.state_dict())
    key = "blocks.0.ffn.0.weight"
    scale = state[key].abs().max() / 448.0
    state[key] = (state[key] / scale).to(torch.float8_e4m3fn)
    state[key.replace("weight", "scale_weight")] = scale.reshape(1)
    path = _save_plain({f"model.diffusion_model.{k}": v for k, v in state.items()}, tmp_path / "fp8.safetensors")
    loaded, report = load_dit(path, dtype=torch.float32, num_heads=2, audio_dim=TINY_AUDIO_DIM)
    reference = tiny_dit.state_dict()[key]
    torch.testing.assert_close(loaded.state_dict()[key], reference, atol=float(reference.abs().max()) * 0.07, rtol=0)


def _split_audio_layers(model: WanDiT) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from echotorrent_core.checkpoints.loaders import is_audio_key

    state = model.state_dict()
    base = {k: v for k, v in state.items() if not is_audio_key(k)}
    audio = {k: v for k, v in state.items() if is_audio_key(k)}
    return base, audio


def test_base_dit_plus_audio_adapter_file_equals_the_full_model(tiny_dit: WanDiT, tmp_path: Path) -> None:
    base, audio = _split_audio_layers(tiny_dit)
    assert audio and all(k.startswith(("audio_proj.", "blocks.")) for k in audio)
    base_file = _save_plain({f"model.diffusion_model.{k}": v for k, v in base.items()}, tmp_path / "base.safetensors")
    adapter_file = _save_plain(audio, tmp_path / "infinitetalk.safetensors")
    merged, report = load_dit(base_file, num_heads=2, audio_dim=TINY_AUDIO_DIM, audio_adapter=adapter_file)
    assert report.config.audio == TINY.dit.audio
    assert "audio adapter" in report.path
    _assert_same_weights(merged, tiny_dit)
    without, _ = load_dit(base_file, num_heads=2)
    assert without.cfg.audio is None


def test_audio_adapter_misuse_is_named(tiny_dit: WanDiT, tmp_path: Path) -> None:
    base, audio = _split_audio_layers(tiny_dit)
    adapter_file = _save_plain(audio, tmp_path / "adapter.safetensors")
    with pytest.raises(CheckpointError, match=r"holds a MultiTalk/InfiniteTalk audio adapter.*expected a Wan DiT"):
        load_dit(adapter_file)
    full_file = save_dit(tiny_dit, tmp_path / "full.safetensors")
    with pytest.raises(CheckpointError, match="is not an audio adapter"):
        load_dit(full_file, audio_adapter=full_file)
    extra_block = {k.replace("blocks.1.", "blocks.2."): v.clone() for k, v in audio.items() if k.startswith("blocks.1.")}
    too_deep = _save_plain(audio | extra_block, tmp_path / "deep.safetensors")
    base_file = _save_plain(base, tmp_path / "base.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected \d+ keys: blocks\.2\.audio_cross_attn"):
        load_dit(base_file, num_heads=2, audio_dim=TINY_AUDIO_DIM, audio_adapter=too_deep)
