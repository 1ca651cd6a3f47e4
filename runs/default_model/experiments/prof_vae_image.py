"""Seconds per image-VAE training step (batch 8 x 1 x 128 x 128, L1, forward + backward + AdamW; the default
model's VAE widths) with CausalConv3d's single-frame 2D path on and off (off: the 3D convolution over two zero
past frames, as before 2026-12-08), alternated twice.
usage: OMP_NUM_THREADS=2 .venv/bin/python runs/default_model/experiments/prof_vae_image.py"""
import time

import torch

from echotorrent_core.config import VAEConfig, get_preset
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.models.vae_blocks import CausalConv3d

widths = {"base_dim": 12, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1}
torch.manual_seed(0)
vae = WanVAE(VAEConfig.from_dict(get_preset("tiny").vae.to_dict() | widths))
optimiser = torch.optim.AdamW(vae.parameters(), 1e-4)
frames = torch.rand(8, 3, 1, 128, 128) * 2 - 1


def step() -> None:
    decoded = vae.decode_raw(vae.encode_raw(frames), clamp=False)
    loss = (decoded - frames).abs().mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


two_d = CausalConv3d._takes_single_frame
for mode in ("2d", "3d", "2d", "3d"):
    CausalConv3d._takes_single_frame = two_d if mode == "2d" else (lambda self, x: False)
    step()
    start = time.perf_counter()
    for _ in range(4):
        step()
    print(mode, f"{(time.perf_counter() - start) / 4:.3f} s/step")
