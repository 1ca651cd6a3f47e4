"""A PNG strip of the image path on one held-out clip: rows = the real frames, then each VAE's single-frame
reconstructions; columns = the 5 frames with the widest `mouth_open` and the 2 most closed, each whole and as a 3x
mouth crop (rows 64-112, columns 32-96 of the 128 px frame).
usage: image_path_strip.py DATA CLIP_ID OUT.png VAE.safetensors [VAE.safetensors ...]"""
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.media.video_reader import read_video_frames

data, clip, out, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
real = read_video_frames(f"{data}/clips/{clip}.mp4")[0].numpy()
mouth = load_file(f"{data}/params/{clip}.safetensors")["mouth_open"].numpy()[: len(real)]
order = np.argsort(mouth)
chosen = [int(i) for i in list(order[-5:]) + list(order[:2])]


@torch.no_grad()
def image_path(path: str, frames: np.ndarray) -> np.ndarray:
    vae = load_vae(path)[0].eval()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)[:, :, None]
    decoded = vae.decode(vae.encode(video))[:, :, 0]
    return decoded.add(1.0).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


rows = []
for frames in [real[chosen]] + [image_path(path, real[chosen]) for path in paths]:
    columns = []
    for frame in frames:
        whole = np.array(Image.fromarray(frame).resize((192, 192), Image.BICUBIC))
        crop = np.array(Image.fromarray(frame[64:112, 32:96]).resize((192, 144), Image.NEAREST))
        columns.append(np.concatenate([whole, crop], 0))
    rows.append(np.concatenate(columns, 1))
Image.fromarray(np.concatenate(rows, 0)).save(out)
print(out, "mouth_open of the columns:", np.round(mouth[chosen], 2))
