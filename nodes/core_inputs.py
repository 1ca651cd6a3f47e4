"""Core ComfyUI objects as EchoTorrent inputs: a VAE from Load VAE, a CLIP_VISION_OUTPUT from CLIP Vision Encode."""

from __future__ import annotations

from typing import Any

import torch

from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.loaders import LoadReport, vae_from_state_dict

WAN21_LATENT_CHANNELS = 16
CLIP_TOKENS = 257  # CLIP ViT-H/14 at 224 px: class token + 16 x 16 patches


def wan_vae_from_core(core_vae: Any, dtype: torch.dtype, device: torch.device) -> tuple[torch.nn.Module, LoadReport]:
    """Our WanVAE from a core `comfy.sd.VAE` holding a Wan 2.1 VAE (its `first_stage_model` has the native Wan
    names). Tensors already in `dtype` on `device` are shared with the core VAE, not copied."""
    network = getattr(core_vae, "first_stage_model", None)
    channels = getattr(core_vae, "latent_channels", None)
    if network is None or channels != WAN21_LATENT_CHANNELS or getattr(core_vae, "latent_dim", None) != 3:
        raise ValueError(
            f"the VAE input must be a Wan 2.1 video VAE from Load VAE (16 latent channels, 3D latents, e.g. "
            f"wan_2.1_vae.safetensors); got {type(network).__name__} with {channels} latent channels"
        )
    try:
        return vae_from_state_dict(network.state_dict(), "the VAE input (Load VAE)", dtype=dtype, device=device)
    except CheckpointError as error:
        raise CheckpointError(f"the VAE input could not be used as a Wan 2.1 VAE: {error}") from error


def clip_features_from_core(clip_vision_output: Any | None, image_dim: int | None) -> torch.Tensor | None:
    """The CLIP image features `[1, 257, image_dim]` an image-to-video DiT reads (the CLIP_VISION_OUTPUT's
    `penultimate_hidden_states`, as core Wan nodes use them), checked against the DiT: an I2V checkpoint needs
    them, a text-to-video one has no use for them."""
    if image_dim is None:
        if clip_vision_output is not None:
            raise ValueError("clip_vision_output is connected, but this DiT has no CLIP image branch (img_emb); "
                             "disconnect it or load an image-to-video checkpoint")
        return None
    if clip_vision_output is None:
        raise ValueError("this DiT is an image-to-video checkpoint: connect clip_vision_output (CLIP Vision Encode "
                         "of the portrait with a CLIP-H vision model such as clip_vision_h.safetensors)")
    features = getattr(clip_vision_output, "penultimate_hidden_states", None)
    expected = (1, CLIP_TOKENS, image_dim)
    if not isinstance(features, torch.Tensor) or tuple(features.shape) != expected:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"clip_vision_output must hold penultimate_hidden_states {list(expected)} (CLIP ViT-H of one "
                         f"image); got {shape}")
    return features.float().cpu()
