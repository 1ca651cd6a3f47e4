"""Does the face mesh read the mouth of a video? For every held-out clip of DATA, the Pearson r at offset 0 of the
face mesh's lip gap with SynthTalk's ground-truth `mouth_open` (the renderer's parameter, independent of every model
and of the audio), for the real clip and for the same clip's video in each FOLDER (a VAE reconstruction or a
generated video); also against `mouth_open` averaged over the 4 frames of each latent (frame 0 alone, then 1-4,
5-8, ...), the most a video can follow when each latent carries one mouth state. A video whose mesh finds no face
counts as nan (reported).
usage: lip_gap_readability.py DATA FOLDER [FOLDER ...]"""
import json
import sys

import numpy as np
from safetensors.torch import load_file

from echotorrent_core.metrics.face_mesh import NoFaceFoundError
from echotorrent_core.metrics.measurements import measure_file


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], float), np.asarray(b[:n], float)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-8 and b.std() > 1e-8 else float("nan")


def latent_mean(mouth: np.ndarray) -> np.ndarray:
    """Each frame replaced by the mean of its latent's frames (frame 0 alone, then groups of 4)."""
    out = mouth.copy()
    for start in range(1, len(mouth), 4):
        out[start:start + 4] = mouth[start:start + 4].mean()
    return out


data, folders = sys.argv[1], sys.argv[2:]
clips = [c for c in json.load(open(f"{data}/index.json"))["clips"] if c["split"] == "heldout"]
sources = {"real": lambda c: f"{data}/{c['video']}"} | {f: (lambda c, f=f: f"{f}/{c['id']}.mp4") for f in folders}
results = {name: {"frame": [], "latent_mean": [], "no_face": 0} for name in sources}
for clip in clips:
    mouth = load_file(f"{data}/{clip['params']}")["mouth_open"].numpy()
    for name, path in sources.items():
        try:
            gap = measure_file(path(clip)).lip_gap.numpy()
        except NoFaceFoundError:
            results[name]["no_face"] += 1
            gap = None
        for kind, target in (("frame", mouth), ("latent_mean", latent_mean(mouth))):
            results[name][kind].append(float("nan") if gap is None else pearson(gap, target))
for name, row in results.items():
    print(f"{name}: r(lip gap, mouth_open) {np.nanmean(row['frame']):.3f}, with the latent-mean mouth "
          f"{np.nanmean(row['latent_mean']):.3f} ({len(clips) - row['no_face']} of {len(clips)} clips with a face)")
print(json.dumps(results))
