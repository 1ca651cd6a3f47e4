"""How much of a decoded video's error is a colour shift its portrait reveals? For every held-out clip of DATA and
every FOLDER of its videos: the package's fit_colour_map from the video's frame 0 to the real frame 0 (the portrait),
at several ridges, applied to frames 1.. and scored by PSNR against the real clip (frame 0 is the fit, not scored).
usage: colour_map_psnr.py DATA FOLDER [FOLDER ...]"""
import json
import sys

import numpy as np
import torch

from echotorrent_core.media.colour_map import apply_colour_map, fit_colour_map
from echotorrent_core.media.video_reader import read_video_frames

data, folders = sys.argv[1], sys.argv[2:]
clips = [c for c in json.load(open(f"{data}/index.json"))["clips"] if c["split"] == "heldout"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / ((a - b) ** 2).mean()))


for folder in folders:
    rows = {r: [] for r in ("none", 0.0, 1e-3, 1e-2, 1e-1)}
    for c in clips:
        real = read_video_frames(f"{data}/{c['video']}")[0].float().permute(3, 0, 1, 2) / 127.5 - 1
        vid = read_video_frames(f"{folder}/{c['id']}.mp4")[0].float().permute(3, 0, 1, 2) / 127.5 - 1
        n = min(real.shape[1], vid.shape[1])
        for r in rows:
            out = vid[:, 1:n]
            if r != "none":
                out = apply_colour_map(out, fit_colour_map(vid[:, 0], real[:, 0], r))
            rows[r].append(psnr(out, real[:, 1:n]))
    print(folder, {r: round(float(np.mean(v)), 2) for r, v in rows.items()})
