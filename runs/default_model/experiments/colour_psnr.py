"""Held-out single frames through VAE files' image path (each frame encoded alone, posterior mean): PSNR of the whole
frame, a 64 px centre crop (the face) and a 64 px corner (background), and the mean colour error (mean absolute
difference of the per-channel frame means, in the [-1, 1] range; sepia reconstructions score ~0.1).
usage: colour_psnr.py FRAMES.safetensors VAE [VAE ...]  (FRAMES: the `vae` stage's single-frame cache, e.g.
RUN/vae_image_frames/frames_heldout_128px_1f.safetensors)"""
import sys

import torch
from safetensors.torch import load_file

from echotorrent_core.checkpoints.loaders import load_vae

torch.set_num_threads(2)
frames = load_file(sys.argv[1])["video"]  # [N, 1, 3, 128, 128] uint8
frames = frames[torch.linspace(0, len(frames) - 1, 32).long()].permute(0, 2, 1, 3, 4).float() / 127.5 - 1
for path in sys.argv[2:]:
    vae = load_vae(path, dtype=torch.float32)[0].eval()
    row = [path]
    with torch.no_grad():
        for name, x in (("whole", frames), ("centre64", frames[..., 32:96, 32:96]), ("corner64", frames[..., :64, :64])):
            y = vae.decode_raw(vae.encode_raw(x))
            psnr = (10 * torch.log10(1 / ((y - x) / 2).square().flatten(1).mean(1))).mean().item()
            colour = (y.mean((2, 3, 4)) - x.mean((2, 3, 4))).abs().mean().item()
            row.append(f"{name} {psnr:.2f} dB (colour error {colour:.3f})")
    print("; ".join(row))
