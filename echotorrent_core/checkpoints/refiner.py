"""Decoder refiners: fine-tuned weights for the decoding half of a Wan VAE, stored apart from the full VAE.

A refiner file holds exactly the VAE decoder tensors in the native Wan names, `decoder.*` and `conv2.*` (the 1x1x1
convolution applied to the latents before the decoder), optionally under one outer prefix such as
`first_stage_model.` or `vae.`. Loading one gives a copy of a base VAE with those tensors replaced, so the encoder
(needed for the reference portrait) stays the base one.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .errors import CheckpointError
from .key_check import key_mismatch, listing
from .safetensors_io import read_state_dict, write_state_dict

REFINER_PREFIXES: tuple[str, ...] = ("decoder.", "conv2.")
REFINER_ANCHOR = "decoder.conv1.weight"
FORMAT_METADATA_KEY = "format"
REFINER_FORMAT = "echotorrent-decoder-refiner"


def decoder_state(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a refiner replaces: every `decoder.*` and `conv2.*` entry of `vae.state_dict()`."""
    return {key: value for key, value in vae.state_dict().items() if key.startswith(REFINER_PREFIXES)}


def _strip_prefix(state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
    """Remove the one outer prefix found in front of `decoder.conv1.weight`; raise when there is none."""
    anchors = [key for key in state if key.endswith(REFINER_ANCHOR)]
    if len(anchors) != 1:
        raise CheckpointError(
            f"{path} is not a VAE decoder refiner: expected exactly one '{REFINER_ANCHOR}' key (native Wan decoder "
            f"names, optionally prefixed), found {len(anchors)}; keys: {listing(list(state))}"
        )
    prefix = anchors[0][: -len(REFINER_ANCHOR)]
    outside = [key for key in state if not key.startswith(prefix)]
    if outside:
        raise CheckpointError(f"{path}: keys outside the prefix '{prefix}': {listing(outside)}")
    return {key[len(prefix):]: value for key, value in state.items()}


def load_decoder_refiner(path: str | Path, base_vae: torch.nn.Module) -> torch.nn.Module:
    """A copy of `base_vae` (a `WanVAE`) whose decoder and `conv2` tensors come from the refiner file at `path`.

    The copy keeps the base VAE's dtype and device. Raises `CheckpointError` when the file holds anything else
    (a full VAE with its encoder, a DiT, ...) or when its tensors do not fit the base VAE's decoder.
    """
    state, _ = read_state_dict(path)
    state = _strip_prefix(state, path)
    foreign = [key for key in state if not key.startswith(REFINER_PREFIXES)]
    if foreign:
        raise CheckpointError(
            f"{path} is not a VAE decoder refiner: it holds keys other than decoder.* and conv2.* "
            f"({listing(foreign)}); a full VAE belongs in the VAE input"
        )
    expected = decoder_state(base_vae)
    mismatch = key_mismatch(expected, state, "base VAE")
    if mismatch:
        raise CheckpointError(f"{path} does not fit the base VAE's decoder: {mismatch}")
    refined = copy.deepcopy(base_vae)
    refined.load_state_dict(
        {key: value.to(expected[key].device, expected[key].dtype) for key, value in state.items()}, strict=False
    )
    return refined.eval().requires_grad_(False)


def save_decoder_refiner(vae: torch.nn.Module, path: str | Path) -> Path:
    """Write the decoder and `conv2` tensors of `vae` (native names, no prefix) atomically."""
    return write_state_dict(path, decoder_state(vae), {FORMAT_METADATA_KEY: REFINER_FORMAT})
