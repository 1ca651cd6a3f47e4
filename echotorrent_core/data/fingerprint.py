"""Fingerprints of the encoders and settings a preprocessing cache was built with (a mismatch rebuilds it)."""

from __future__ import annotations

import hashlib
import json

import torch

# Parameters of the Wan VAE that its encoder output depends on (the decoder may change without a rebuild).
VAE_ENCODER_PREFIXES = ("encoder.", "conv1.")


def tensor_digest(tensors: dict[str, torch.Tensor], hasher: "hashlib._Hash") -> None:
    """Feed every tensor's name, dtype, shape and bytes into `hasher`, in name order."""
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        hasher.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())


def encoder_fingerprint(vae: torch.nn.Module, audio_encoder: torch.nn.Module, settings: dict) -> str:
    """sha256 over the VAE encoder's weights and config, the audio encoder's weights and config, and `settings`.

    Hashing reads every weight once (about 1 s per GB on a CPU).
    """
    hasher = hashlib.sha256()
    vae_state = {k: v for k, v in vae.state_dict().items() if k.startswith(VAE_ENCODER_PREFIXES)}
    payload = {"vae": vae.cfg.to_dict(), "audio_encoder": audio_encoder.cfg.to_dict(), "settings": settings}
    hasher.update(json.dumps(payload, sort_keys=True, default=str).encode())
    tensor_digest(vae_state, hasher)
    tensor_digest(audio_encoder.state_dict(), hasher)
    return hasher.hexdigest()
