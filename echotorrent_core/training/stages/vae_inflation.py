"""Inflate an image-trained VAE into a per-frame video VAE, the start of the video stages.

A Wan VAE trained on single frames (`frames = 1`) only ever multiplies zeros with the past taps of its causal
convolutions and never runs its `time_conv` layers, so those hold their random initialisation. `inflate_image_vae`
zeroes every past tap and sets each `time_conv` to pass the current frame on (downsampling: the last frame of each
stride-2 pair; upsampling: the same frame into both output frames). The VAE then encodes each latent `k > 0` from
frame `4k` alone, exactly as the image path encodes it, and decodes every latent into that image repeated: a
video VAE that already reconstructs still frames, which video training then teaches to move.
"""

from __future__ import annotations

import torch

from ...models.vae import WanVAE
from ...models.vae_blocks import CausalConv3d, Resample


def _pass_current_frame(conv: CausalConv3d, copies: int) -> None:
    """Weight `[copies * C, C, 3, 1, 1]`: identity on the last (current) tap of each copy, zeros elsewhere."""
    channels = conv.in_channels
    identity = torch.eye(channels, dtype=conv.weight.dtype, device=conv.weight.device)
    conv.weight.zero_()
    for copy in range(copies):
        conv.weight[copy * channels : (copy + 1) * channels, :, -1, 0, 0] = identity
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def inflate_image_vae(vae: WanVAE) -> WanVAE:
    """In place, and returned: past taps of every causal convolution zeroed, `time_conv` layers passing frames on."""
    time_convs = set()
    for module in vae.modules():
        if isinstance(module, Resample) and hasattr(module, "time_conv"):
            _pass_current_frame(module.time_conv, 2 if module.mode == "upsample3d" else 1)
            time_convs.add(module.time_conv)
    for module in vae.modules():
        if isinstance(module, CausalConv3d) and module not in time_convs and module.weight.shape[2] > 1:
            module.weight[:, :, :-1].zero_()
    return vae
