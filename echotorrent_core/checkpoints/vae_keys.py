"""Wan2.1 VAE key names: diffusers `AutoencoderKLWan` <-> native Wan names, and the config from tensor shapes.

Native names are those of the public Wan2.1 `wan/modules/vae.py` (and of ComfyUI's `wan_2.1_vae.safetensors`).
Both layouts store the same tensors with the same shapes (RMS norm `gamma` is `[C, 1, 1, 1]` in residual blocks
and heads, `[C, 1, 1]` in the attention blocks), so conversion only renames:

| native                                   | diffusers                                            |
|------------------------------------------|------------------------------------------------------|
| `conv1`, `conv2`                         | `quant_conv`, `post_quant_conv`                      |
| `{enc,dec}.conv1`                        | `{enc,dec}.conv_in`                                  |
| `{enc,dec}.head.0.gamma`, `.head.2`      | `{enc,dec}.norm_out.gamma`, `.conv_out`              |
| `{enc,dec}.middle.0` / `.1` / `.2`       | `{enc,dec}.mid_block.resnets.0` / `.attentions.0` / `.resnets.1` |
| `encoder.downsamples.N`                  | `encoder.down_blocks.N` (same flat index)            |
| `decoder.upsamples.N` (flat)             | `decoder.up_blocks.L.resnets.J`, `decoder.up_blocks.L.upsamplers.0` |
| residual `residual.{0,2,3,6}`, `shortcut`| `norm1`, `conv1`, `norm2`, `conv2`, `conv_shortcut`  |
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..config import WAN_LATENTS_MEAN, WAN_LATENTS_STD, VAEConfig

# Keys every native Wan2.1 VAE state dict has, whatever its size (for layout detection).
NATIVE_ANCHOR_KEYS: frozenset[str] = frozenset(
    {
        "encoder.conv1.weight",
        "encoder.head.0.gamma",
        "encoder.head.2.weight",
        "conv1.weight",
        "conv2.weight",
        "decoder.conv1.weight",
        "decoder.middle.1.to_qkv.weight",
        "decoder.head.0.gamma",
        "decoder.head.2.weight",
    }
)

# The same anchors in the diffusers layout.
DIFFUSERS_ANCHOR_KEYS: frozenset[str] = frozenset(
    {
        "encoder.conv_in.weight",
        "encoder.norm_out.gamma",
        "encoder.conv_out.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
        "decoder.conv_in.weight",
        "decoder.mid_block.attentions.0.to_qkv.weight",
        "decoder.norm_out.gamma",
        "decoder.conv_out.weight",
    }
)

_RESIDUAL_TO_DIFFUSERS = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_RESIDUAL_TO_NATIVE = {v: k for k, v in _RESIDUAL_TO_DIFFUSERS.items()}
_ATTENTION_SUFFIXES = frozenset({"norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"})
_RESAMPLE_SUFFIXES = frozenset({"resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias"})

_FIXED_TO_DIFFUSERS = {
    "conv1.weight": "quant_conv.weight",
    "conv1.bias": "quant_conv.bias",
    "conv2.weight": "post_quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
}
for _part in ("encoder", "decoder"):
    _FIXED_TO_DIFFUSERS.update(
        {
            f"{_part}.conv1.weight": f"{_part}.conv_in.weight",
            f"{_part}.conv1.bias": f"{_part}.conv_in.bias",
            f"{_part}.head.0.gamma": f"{_part}.norm_out.gamma",
            f"{_part}.head.2.weight": f"{_part}.conv_out.weight",
            f"{_part}.head.2.bias": f"{_part}.conv_out.bias",
        }
    )
_FIXED_TO_NATIVE = {v: k for k, v in _FIXED_TO_DIFFUSERS.items()}

_NATIVE_MIDDLE = re.compile(r"^(encoder|decoder)\.middle\.([012])\.(.+)$")
_NATIVE_DOWN = re.compile(r"^encoder\.downsamples\.(\d+)\.(.+)$")
_NATIVE_UP = re.compile(r"^decoder\.upsamples\.(\d+)\.(.+)$")
_DIFFUSERS_MID_RESNET = re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$")
_DIFFUSERS_MID_ATTENTION = re.compile(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$")
_DIFFUSERS_DOWN = re.compile(r"^encoder\.down_blocks\.(\d+)\.(.+)$")
_DIFFUSERS_UP_RESNET = re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")
_DIFFUSERS_UP_SAMPLER = re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$")


def _unexpected(key: str, layout: str) -> ValueError:
    return ValueError(f"unexpected key {key!r} for a {layout} Wan2.1 VAE state dict")


def _residual_or_resample(suffix: str, residual_map: Mapping[str, str], key: str, layout: str) -> str:
    if suffix in residual_map:
        return residual_map[suffix]
    if suffix in _RESAMPLE_SUFFIXES:
        return suffix
    raise _unexpected(key, layout)


def _decoder_levels(native_keys: list[str]) -> dict[int, tuple[int, int | None]]:
    """Flat `decoder.upsamples` index -> (level, resnet index, or None for the level's upsampler)."""
    by_index: dict[int, set[str]] = {}
    for key in native_keys:
        match = _NATIVE_UP.match(key)
        if match:
            by_index.setdefault(int(match.group(1)), set()).add(match.group(2))
    positions: dict[int, tuple[int, int | None]] = {}
    level, resnet = 0, 0
    for index in sorted(by_index):
        if by_index[index] & _RESAMPLE_SUFFIXES:
            positions[index] = (level, None)
            level, resnet = level + 1, 0
        else:
            positions[index] = (level, resnet)
            resnet += 1
    return positions


def native_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a native Wan2.1 VAE state dict to diffusers `AutoencoderKLWan` names (tensors are shared, not copied).

    Raises ValueError on a key that is not part of the native layout.
    """
    up_positions = _decoder_levels(list(state_dict))
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in _FIXED_TO_DIFFUSERS:
            new_key = _FIXED_TO_DIFFUSERS[key]
        elif match := _NATIVE_MIDDLE.match(key):
            part, index, suffix = match.groups()
            if index == "1" and suffix in _ATTENTION_SUFFIXES:
                new_key = f"{part}.mid_block.attentions.0.{suffix}"
            elif index != "1" and suffix in _RESIDUAL_TO_DIFFUSERS:
                new_key = f"{part}.mid_block.resnets.{int(index) // 2}.{_RESIDUAL_TO_DIFFUSERS[suffix]}"
            else:
                raise _unexpected(key, "native")
        elif match := _NATIVE_DOWN.match(key):
            index, suffix = match.groups()
            new_key = f"encoder.down_blocks.{index}.{_residual_or_resample(suffix, _RESIDUAL_TO_DIFFUSERS, key, 'native')}"
        elif match := _NATIVE_UP.match(key):
            index, suffix = match.groups()
            level, resnet = up_positions[int(index)]
            if resnet is None and suffix in _RESAMPLE_SUFFIXES:
                new_key = f"decoder.up_blocks.{level}.upsamplers.0.{suffix}"
            elif resnet is not None and suffix in _RESIDUAL_TO_DIFFUSERS:
                new_key = f"decoder.up_blocks.{level}.resnets.{resnet}.{_RESIDUAL_TO_DIFFUSERS[suffix]}"
            else:
                raise _unexpected(key, "native")
        else:
            raise _unexpected(key, "native")
        converted[new_key] = tensor
    return converted


def _decoder_offsets(diffusers_keys: list[str]) -> dict[int, tuple[int, int]]:
    """Decoder level -> (flat index of its first resnet, number of resnets), from diffusers keys."""
    resnets: dict[int, int] = {}
    samplers: set[int] = set()
    for key in diffusers_keys:
        if match := _DIFFUSERS_UP_RESNET.match(key):
            level, resnet = int(match.group(1)), int(match.group(2))
            resnets[level] = max(resnets.get(level, 0), resnet + 1)
        elif match := _DIFFUSERS_UP_SAMPLER.match(key):
            samplers.add(int(match.group(1)))
    offsets: dict[int, tuple[int, int]] = {}
    start = 0
    for level in sorted(set(resnets) | samplers):
        count = resnets.get(level, 0)
        offsets[level] = (start, count)
        start += count + (1 if level in samplers else 0)
    return offsets


def diffusers_to_native(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers `AutoencoderKLWan` state dict to native Wan2.1 names (tensors are shared, not copied).

    Raises ValueError on a key that is not part of the diffusers Wan2.1 layout (e.g. Wan2.2's residual blocks).
    """
    offsets = _decoder_offsets(list(state_dict))
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in _FIXED_TO_NATIVE:
            new_key = _FIXED_TO_NATIVE[key]
        elif match := _DIFFUSERS_MID_RESNET.match(key):
            part, index, suffix = match.groups()
            if suffix not in _RESIDUAL_TO_NATIVE:
                raise _unexpected(key, "diffusers")
            new_key = f"{part}.middle.{2 * int(index)}.{_RESIDUAL_TO_NATIVE[suffix]}"
        elif match := _DIFFUSERS_MID_ATTENTION.match(key):
            part, suffix = match.groups()
            if suffix not in _ATTENTION_SUFFIXES:
                raise _unexpected(key, "diffusers")
            new_key = f"{part}.middle.1.{suffix}"
        elif match := _DIFFUSERS_DOWN.match(key):
            index, suffix = match.groups()
            new_key = f"encoder.downsamples.{index}.{_residual_or_resample(suffix, _RESIDUAL_TO_NATIVE, key, 'diffusers')}"
        elif match := _DIFFUSERS_UP_RESNET.match(key):
            level, resnet, suffix = match.groups()
            if suffix not in _RESIDUAL_TO_NATIVE:
                raise _unexpected(key, "diffusers")
            start, _ = offsets[int(level)]
            new_key = f"decoder.upsamples.{start + int(resnet)}.{_RESIDUAL_TO_NATIVE[suffix]}"
        elif match := _DIFFUSERS_UP_SAMPLER.match(key):
            level, suffix = match.groups()
            if suffix not in _RESAMPLE_SUFFIXES:
                raise _unexpected(key, "diffusers")
            start, count = offsets[int(level)]
            new_key = f"decoder.upsamples.{start + count}.{suffix}"
        else:
            raise _unexpected(key, "diffusers")
        converted[new_key] = tensor
    return converted


def _encoder_blocks(state_dict: Mapping[str, torch.Tensor]) -> dict[int, set[str]]:
    blocks: dict[int, set[str]] = {}
    for key in state_dict:
        if match := _NATIVE_DOWN.match(key):
            blocks.setdefault(int(match.group(1)), set()).add(match.group(2))
    return blocks


def config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    latents_mean: tuple[float, ...] | None = None,
    latents_std: tuple[float, ...] | None = None,
) -> VAEConfig:
    """Infer the `VAEConfig` of a native Wan2.1 VAE state dict from its tensor shapes.

    base_dim: `encoder.conv1` output channels; z_dim: `conv2` channels; levels and `num_res_blocks` from the
    `encoder.downsamples` sequence (resamples close a level); dim_mult from each level's residual output channels;
    temporal_downsample from the presence of `time_conv` in each encoder resample. Latent statistics are not stored
    in checkpoints: pass them, or get the Wan2.1 constants when z_dim is 16.
    """
    missing = sorted(NATIVE_ANCHOR_KEYS - set(state_dict))
    if missing:
        raise ValueError(f"not a native Wan2.1 VAE state dict: missing {missing}")
    base_dim = state_dict["encoder.conv1.weight"].shape[0]
    z_dim = state_dict["conv2.weight"].shape[0]

    dim_mult: list[int] = []
    temporal_downsample: list[bool] = []
    res_blocks_per_level: list[int] = []
    level_blocks, level_channels = 0, None
    blocks = _encoder_blocks(state_dict)
    if sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise ValueError(f"expected encoder.downsamples.0..N without gaps, got indices {sorted(blocks)}")
    for index in sorted(blocks):
        suffixes = blocks[index]
        if suffixes & _RESAMPLE_SUFFIXES:
            if level_blocks == 0:
                raise ValueError(f"encoder.downsamples.{index} closes a level that has no residual blocks")
            temporal_downsample.append("time_conv.weight" in suffixes)
            dim_mult.append(level_channels // base_dim)
            res_blocks_per_level.append(level_blocks)
            level_blocks = 0
        elif "residual.2.weight" in suffixes:
            level_channels = state_dict[f"encoder.downsamples.{index}.residual.2.weight"].shape[0]
            level_blocks += 1
        else:
            raise ValueError(f"encoder.downsamples.{index} is neither a residual block nor a resample: {sorted(suffixes)}")
    dim_mult.append(level_channels // base_dim)
    res_blocks_per_level.append(level_blocks)
    if len(set(res_blocks_per_level)) != 1 or level_blocks == 0:
        raise ValueError(f"expected the same number of residual blocks on every level, got {res_blocks_per_level}")

    if latents_mean is None and latents_std is None and z_dim == len(WAN_LATENTS_MEAN):
        latents_mean, latents_std = WAN_LATENTS_MEAN, WAN_LATENTS_STD
    if latents_mean is None or latents_std is None:
        raise ValueError(f"z_dim is {z_dim}: pass latents_mean and latents_std (the Wan2.1 constants have 16 channels)")
    cfg = VAEConfig(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=tuple(dim_mult),
        num_res_blocks=res_blocks_per_level[0],
        temporal_downsample=tuple(temporal_downsample),
        latents_mean=tuple(latents_mean),
        latents_std=tuple(latents_std),
    )
    decoder_in = state_dict["decoder.conv1.weight"].shape
    if tuple(decoder_in[:2]) != (base_dim * dim_mult[-1], z_dim):
        raise ValueError(
            f"decoder.conv1.weight has shape {tuple(decoder_in)}, inconsistent with the encoder "
            f"(expected [{base_dim * dim_mult[-1]}, {z_dim}, ...])"
        )
    return cfg
