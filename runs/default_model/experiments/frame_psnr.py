"""Held-out per-frame PSNR of VAE files: frames encoded alone (T = 1, the image path) and, for the 25-frame windows,
every frame of a bounded streaming reconstruction.
usage: frame_psnr.py VAE [VAE ...] (reads the 25-frame window cache /work/runs/default_model/vae_frames/)"""
import sys

import torch
from safetensors.torch import load_file

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.models.vae import decode_as_stream

torch.set_num_threads(2)
frames = load_file("/work/runs/default_model/vae_frames/frames_heldout_128px_25f.safetensors")["video"]
windows = frames[torch.linspace(0, len(frames) - 1, 12).long()]  # [12, 25, 3, 128, 128] uint8
x = windows.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0


def psnr(a, b):
    mse = ((a.clamp(-1, 1) - b) / 2).square().flatten(1).mean(1)
    return (10 * torch.log10(1 / mse)).mean().item()


for path in sys.argv[1:]:
    vae = load_vae(path, dtype=torch.float32)[0].eval()
    with torch.no_grad():
        images = x.transpose(1, 2).flatten(0, 1)[::4, :, None]  # [75, 3, 1, S, S]
        mu = vae.moments(images).chunk(2, dim=1)[0]
        image_psnr = psnr(decode_as_stream(vae, mu).flatten(1), images.flatten(1))
        mu = vae.moments(x).chunk(2, dim=1)[0]
        ctx = vae.cfg.decode_context_latents or 2
        video = decode_as_stream(vae, mu, 3, ctx)
        per_frame = [psnr(video[:, :, t].flatten(1), x[:, :, t].flatten(1)) for t in range(x.shape[2])]
    print(f"{path}: image path {image_psnr:.2f} dB; 25-frame windows {sum(per_frame)/len(per_frame):.2f} dB "
          f"(frame 0 {per_frame[0]:.2f}, frames 1-4 {sum(per_frame[1:5])/4:.2f})")
