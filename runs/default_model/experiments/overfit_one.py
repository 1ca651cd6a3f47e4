"""Can the small VAE fit one 128 px frame? Starting from VAE, 200 Adam steps (lr 1e-3, plain L1) on frame 0 of the
training clip CLIP of DATA, one thread; prints PSNR and the mean colour error (levels, R G B) every 50 steps.
usage: overfit_one.py VAE DATA CLIP"""
import json
import sys
import time

import torch

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.media.video_reader import read_video_frames

torch.set_num_threads(1)
vae_path, data, clip_id = sys.argv[1:4]
clip = next(c for c in json.load(open(f"{data}/index.json"))["clips"] if c["id"] == clip_id)
x = read_video_frames(f"{data}/{clip['video']}")[0][:1].permute(3, 0, 1, 2)[None].float() / 127.5 - 1
vae = load_vae(vae_path, dtype=torch.float32)[0].train().requires_grad_(True)
optimiser = torch.optim.Adam(vae.parameters(), lr=1e-3)


def score() -> tuple[float, list[float]]:
    with torch.no_grad():
        y = vae.decode_raw(vae.encode_raw(x)).clamp(-1, 1)
    return float(10 * torch.log10(4 / ((y - x) ** 2).mean())), ((y - x).mean((0, 2, 3, 4)) * 127.5).round().tolist()


print("start", score())
began = time.time()
for step in range(1, 201):
    loss = (vae.decode_raw(vae.encode_raw(x), clamp=False) - x).abs().mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    if step % 50 == 0:
        print(step, round(loss.item(), 4), score(), f"{(time.time() - began) / step:.2f} s/step", flush=True)
