"""The pack's networks under ComfyUI's model management, like core models.

Each network is wrapped in a `comfy.model_patcher.ModelPatcher` (load device = where it runs, offload device = where
ComfyUI parks it between runs) and is moved onto its device with `comfy.model_management.load_models_gpu` right
before a node uses it. ComfyUI then offloads it when another model needs the memory and on "Unload Models"; "Free
model and node cache" also drops the node outputs that hold it, which releases the weights. On the CPU (`--cpu`)
load and offload device are the same and loading moves nothing.

The networks are plain torch modules (no ComfyUI cast-weight layers), so they are always loaded whole
(`force_full_load`); ComfyUI makes room for them by offloading other models first.
"""

from __future__ import annotations

import comfy.model_management
import comfy.model_patcher
import torch

from .types import EchoTorrentModel

OFFLOAD_DEVICES = {  # role -> the core function that names its offload device (as for core models of that kind)
    "dit": comfy.model_management.unet_offload_device,
    "vae": comfy.model_management.vae_offload_device,
    "refiner": comfy.model_management.vae_offload_device,
    "audio_encoder": comfy.model_management.text_encoder_offload_device,
}


def offload_device(role: str, load_device: torch.device) -> torch.device:
    """Where ComfyUI keeps network `role` between runs; the load device itself when that is the CPU."""
    if load_device.type == "cpu":
        return load_device
    return OFFLOAD_DEVICES[role]()


def manage(module: torch.nn.Module, role: str, load_device: torch.device) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher for `module` (already on its offload device) that loads it onto `load_device`."""
    return comfy.model_patcher.ModelPatcher(module, load_device=load_device,
                                            offload_device=offload_device(role, load_device))


def load_to_device(model: EchoTorrentModel, *roles: str) -> None:
    """Move the networks `roles` of `model` onto their load device (a no-op for those already there)."""
    patchers = [model.patchers[role] for role in roles if role in model.patchers]
    comfy.model_management.load_models_gpu(patchers, force_full_load=True)
