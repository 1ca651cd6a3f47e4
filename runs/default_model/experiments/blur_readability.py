"""How sharp must a 128 px frame be for the face mesh to read the mouth? Every held-out real clip of DATA blurred
(Gaussian sigma in pixels) -> PSNR against the real frames and Pearson r of the mesh's lip gap with SynthTalk's
`mouth_open` (the renderer's parameter). usage: blur_readability.py DATA"""
import json
import sys

import cv2
import numpy as np
from safetensors.torch import load_file

from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.metrics.face_mesh import NoFaceFoundError, track_face

data = sys.argv[1]
clips = [c for c in json.load(open(f"{data}/index.json"))["clips"] if c["split"] == "heldout"]
sigmas = [0.0, 0.7, 1.0, 1.4, 2.0]
results = {s: {"r": [], "psnr": []} for s in sigmas}
for clip in clips:
    frames = read_video_frames(f"{data}/{clip['video']}")[0].numpy()
    mouth = load_file(f"{data}/{clip['params']}")["mouth_open"].numpy()
    for s in sigmas:
        blurred = frames if s == 0 else np.stack([cv2.GaussianBlur(x, (0, 0), s) for x in frames])
        mse = ((blurred.astype(float) - frames.astype(float)) ** 2).mean()
        results[s]["psnr"].append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
        try:
            gap = track_face(blurred).lip_gap().numpy()
            n = min(len(gap), len(mouth))
            results[s]["r"].append(float(np.corrcoef(gap[:n], mouth[:n])[0, 1]))
        except NoFaceFoundError:
            results[s]["r"].append(float("nan"))
for s in sigmas:
    print(f"sigma {s}: PSNR {np.mean(results[s]['psnr']):.1f} dB, r {np.nanmean(results[s]['r']):.3f}")
