"""WanVAE: parity with diffusers AutoencoderKLWan, native key layout, streaming decode, input validation."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from tiny_vae import tiny_vae

from echotorrent_core.checkpoints.vae_keys import (
    DIFFUSERS_ANCHOR_KEYS,
    NATIVE_ANCHOR_KEYS,
    config_from_state_dict,
    diffusers_to_native,
    native_to_diffusers,
)
from echotorrent_core.config import VAEConfig
from echotorrent_core.models.vae import StreamingDecoder, WanVAE

TOLERANCE = 1e-4

PARITY_CASES = [
    # (base_dim, z_dim, dim_mult, num_res_blocks, frames, height, width)
    (8, 16, (1, 2, 2, 2), 1, 9, 32, 32),
    (8, 4, (1, 2, 4, 4), 2, 5, 32, 48),
    (8, 4, (1, 2, 4, 4), 1, 1, 16, 16),  # a single image
]


def _random_diffusers_vae(base_dim: int, z_dim: int, dim_mult: tuple[int, ...], num_res_blocks: int) -> AutoencoderKLWan:
    latents_mean = (torch.randn(z_dim) * 0.5).tolist()
    latents_std = (torch.rand(z_dim) + 0.5).tolist()
    vae = AutoencoderKLWan(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=list(dim_mult),
        num_res_blocks=num_res_blocks,
        temperal_downsample=[False, True, True],
        latents_mean=latents_mean,
        latents_std=latents_std,
    ).eval()
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("gamma"):  # default ones would hide a misplaced norm
                param.mul_(1.0 + 0.3 * torch.randn_like(param))
    return vae


def _native_from(reference: AutoencoderKLWan) -> WanVAE:
    native_sd = diffusers_to_native(reference.state_dict())
    cfg = config_from_state_dict(
        native_sd,
        latents_mean=tuple(reference.config.latents_mean),
        latents_std=tuple(reference.config.latents_std),
    )
    model = WanVAE(cfg).eval()
    model.load_state_dict(native_sd, strict=True)
    return model


@pytest.mark.parametrize("case", PARITY_CASES)
def test_encode_decode_match_diffusers(case: tuple) -> None:
    base_dim, z_dim, dim_mult, num_res_blocks, frames, height, width = case
    torch.manual_seed(0)
    reference = _random_diffusers_vae(base_dim, z_dim, dim_mult, num_res_blocks)
    model = _native_from(reference)
    video = torch.rand(1, 3, frames, height, width) * 2 - 1
    mean = torch.tensor(reference.config.latents_mean).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(reference.config.latents_std).view(1, z_dim, 1, 1, 1)
    with torch.no_grad():
        expected_mu = reference.encode(video).latent_dist.mean
        mu = model.encode_raw(video)
        latents = model.encode(video)
        z = torch.randn_like(mu)
        expected_video = reference.decode(z).sample
        decoded_raw = model.decode_raw(z)
        decoded = model.decode((z - mean) / std)
    assert mu.shape == (1, z_dim, 1 + (frames - 1) // 4, height // 8, width // 8)
    assert (mu - expected_mu).abs().max() < TOLERANCE
    assert (latents - (expected_mu - mean) / std).abs().max() < TOLERANCE
    assert decoded_raw.shape == (1, 3, frames, height, width)
    inside = (expected_video.abs() < 0.999).float().mean()
    assert inside > 0.5, "clamping would hide most of the decoder output"
    assert (decoded_raw - expected_video).abs().max() < TOLERANCE
    assert (decoded - expected_video).abs().max() < TOLERANCE


def test_full_size_native_layout() -> None:
    with torch.device("meta"):
        reference = AutoencoderKLWan()
        model = WanVAE(VAEConfig())
    native_sd = model.state_dict()
    converted = diffusers_to_native(reference.state_dict())
    assert set(converted) == set(native_sd)
    assert all(converted[k].shape == native_sd[k].shape for k in native_sd)
    assert NATIVE_ANCHOR_KEYS <= set(native_sd)
    assert DIFFUSERS_ANCHOR_KEYS <= set(reference.state_dict())
    # Shapes of the public wan_2.1_vae.safetensors layout.
    expected_shapes = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.downsamples.8.time_conv.weight": (384, 384, 3, 1, 1),
        "encoder.middle.1.norm.gamma": (384, 1, 1),
        "encoder.head.0.gamma": (384, 1, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv2.weight": (16, 16, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
    }
    assert {k: tuple(native_sd[k].shape) for k in expected_shapes} == expected_shapes
    assert "decoder.upsamples.11.time_conv.weight" not in native_sd
    # diffusers' own single-file converter agrees with ours on every name.
    official = convert_wan_vae_to_diffusers(dict(native_sd))
    ours = native_to_diffusers(native_sd)
    assert set(official) == set(ours)
    assert all(official[k] is ours[k] for k in ours)
    assert config_from_state_dict(native_sd) == VAEConfig()


@pytest.mark.parametrize("num_res_blocks", [1, 2])
def test_key_round_trip_and_config(num_res_blocks: int) -> None:
    torch.manual_seed(1)
    cfg = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=num_res_blocks,
                    latents_mean=(0.0, 0.1, 0.2, 0.3), latents_std=(1.0, 1.5, 2.0, 2.5))
    native_sd = WanVAE(cfg).state_dict()
    diffusers_sd = native_to_diffusers(native_sd)
    back = diffusers_to_native(diffusers_sd)
    assert list(back) == list(native_sd)
    assert all(back[k] is native_sd[k] for k in native_sd)
    again = native_to_diffusers(back)
    assert again.keys() == diffusers_sd.keys()
    assert config_from_state_dict(native_sd, cfg.latents_mean, cfg.latents_std) == cfg
    reference = AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=num_res_blocks)
    assert set(diffusers_sd) == set(reference.state_dict())


@pytest.mark.parametrize("split", [[1] * 7, [1, 3, 3], [2, 5], [4, 1, 2], [7]])
def test_streaming_decode_equals_full_decode(split: list[int]) -> None:
    model = tiny_vae(2)
    latents = torch.randn(2, 4, sum(split), 2, 3)
    streamer = StreamingDecoder(model)
    with torch.no_grad():
        full = model.decode(latents)
        chunks = []
        for chunk in latents.split(split, dim=2):
            frames = streamer.decode_chunk(chunk)
            expected_frames = 4 * chunk.shape[2] - (3 if not chunks else 0)
            assert frames.shape == (2, 3, expected_frames, 16, 24)
            chunks.append(frames)
    assert full.shape == (2, 3, 1 + 4 * (sum(split) - 1), 16, 24)
    assert (torch.cat(chunks, dim=2) - full).abs().max() < 1e-5


def test_streaming_cache_has_fixed_size_and_resets() -> None:
    model = tiny_vae(3)
    torch.manual_seed(3)
    latents = torch.randn(1, 4, 20, 2, 2)
    streamer = StreamingDecoder(model)
    shapes, sizes = [], []
    with torch.no_grad():
        first = streamer.decode_chunk(latents[:, :, :2])
        for i in range(2, 20):
            streamer.decode_chunk(latents[:, :, i : i + 1])
            shapes.append(streamer.cache.shapes())
            sizes.append(streamer.cache.numel())
        assert all(s == shapes[0] for s in shapes)
        assert len(set(sizes)) == 1
        assert max(shape[2] for shape in shapes[0]) == 2
        streamer.reset()
        assert not streamer.started
        restarted = streamer.decode_chunk(latents[:, :, :2])
    assert torch.equal(first, restarted)


def test_bad_inputs_raise() -> None:
    model = tiny_vae(4)
    with pytest.raises(ValueError, match="3, T, H, W"):
        model.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match="T = 1 \\+ 4"):
        model.encode(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        model.encode(torch.zeros(1, 3, 5, 20, 16))
    with pytest.raises(ValueError, match="3, T, H, W"):
        model.encode(torch.zeros(3, 5, 16, 16))
    with pytest.raises(ValueError, match="latents"):
        model.decode(torch.zeros(1, 16, 2, 2, 2))
    with pytest.raises(ValueError, match="at least one latent frame"):
        model.decode_raw(torch.zeros(1, 4, 0, 2, 2))
    streamer = StreamingDecoder(model)
    with torch.no_grad():
        streamer.decode_chunk(torch.zeros(1, 4, 1, 2, 2))
    with pytest.raises(ValueError, match="reset"):
        streamer.decode_chunk(torch.zeros(1, 4, 1, 2, 3))
    with pytest.raises(ValueError, match="latents_mean"):
        WanVAE(VAEConfig(z_dim=4, base_dim=4))
    with pytest.raises(ValueError, match="temporal_downsample"):
        WanVAE(VAEConfig(base_dim=4, dim_mult=(1, 2), temporal_downsample=(False, True)))


def test_bad_state_dicts_raise() -> None:
    model = tiny_vae(5)
    native_sd = model.state_dict()
    with pytest.raises(ValueError, match="missing"):
        config_from_state_dict({k: v for k, v in native_sd.items() if k != "decoder.head.2.weight"})
    with pytest.raises(ValueError, match="latents_mean"):
        config_from_state_dict(native_sd)
    with pytest.raises(ValueError, match="unexpected key"):
        native_to_diffusers({**native_sd, "encoder.downsamples.0.residual.9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected key"):
        native_to_diffusers({**native_sd, "model.diffusion_model.x": torch.zeros(1)})
    diffusers_sd = native_to_diffusers(native_sd)
    with pytest.raises(ValueError, match="unexpected key"):
        diffusers_to_native({**diffusers_sd, "decoder.up_blocks.0.avg_shortcut.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected key"):
        diffusers_to_native(native_sd)


def test_bfloat16_keeps_dtype_and_stays_close_to_float32() -> None:
    model = tiny_vae(6)
    torch.manual_seed(6)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = model.encode(video)
        decoded = model.decode(latents)
        model.to(torch.bfloat16)
        latents_bf16 = model.encode(video.bfloat16())
        decoded_bf16 = model.decode(latents_bf16)
    assert latents_bf16.dtype == decoded_bf16.dtype == torch.bfloat16
    assert (latents_bf16.float() - latents).abs().max() < 0.02
    assert (decoded_bf16.float() - decoded).abs().max() < 0.1
