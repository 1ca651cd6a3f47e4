"""How well a VAE's image path keeps the mouth: every frame of the held-out clips of DATA encoded and decoded alone
(the single-frame path, the portrait's encoding), then PSNR against the frame, and the Pearson r of the face
mesh's lip gap with SynthTalk's `mouth_open` (the renderer's parameter, independent of every model), per clip then
averaged, for the real frames and for each VAE's reconstructions.
usage: image_path_readability.py DATA VAE.safetensors [VAE.safetensors ...] [--limit N]"""
import argparse
import json

import numpy as np
import torch
from safetensors.torch import load_file

from echotorrent_core.checkpoints.loaders import load_vae
from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.metrics.face_mesh import NoFaceFoundError, track_face

parser = argparse.ArgumentParser()
parser.add_argument("data")
parser.add_argument("vaes", nargs="+")
parser.add_argument("--limit", type=int, default=None)
args = parser.parse_args()
clips = [c for c in json.load(open(f"{args.data}/index.json"))["clips"] if c["split"] == "heldout"][: args.limit]
vaes = {path: load_vae(path)[0].eval() for path in args.vaes}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-8 and b.std() > 1e-8 else float("nan")


def lip_gap_r(frames: np.ndarray, mouth: np.ndarray) -> tuple[float, float]:
    """(r, share of frames with a face); (nan, 0) when the mesh finds no face at all."""
    try:
        track = track_face(frames)
    except NoFaceFoundError:
        return float("nan"), 0.0
    n = min(len(mouth), len(frames))
    return pearson(track.lip_gap().numpy()[:n], mouth[:n]), track.found_fraction


@torch.no_grad()
def image_path(vae, frames: np.ndarray) -> np.ndarray:
    """`[T, H, W, 3]` uint8 -> each frame encoded and decoded alone, `[T, H, W, 3]` uint8."""
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)[:, :, None]
    out = torch.cat([vae.decode(vae.encode(batch)) for batch in video.split(16)])
    return out[:, :, 0].add(1.0).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


results = {"real": {"r": [], "found": []}} | {path: {"r": [], "found": [], "psnr": []} for path in vaes}
for clip in clips:
    frames = read_video_frames(f"{args.data}/{clip['video']}")[0].numpy()
    mouth = load_file(f"{args.data}/{clip['params']}")["mouth_open"].numpy()
    r, found = lip_gap_r(frames, mouth)
    results["real"]["r"].append(r)
    results["real"]["found"].append(found)
    for path, vae in vaes.items():
        recon = image_path(vae, frames)
        mse = np.mean((recon.astype(np.float64) - frames.astype(np.float64)) ** 2)
        r, found = lip_gap_r(recon, mouth)
        results[path]["r"].append(r)
        results[path]["found"].append(found)
        results[path]["psnr"].append(float(10 * np.log10(255.0**2 / mse)))
    print(clip["id"], {name: round(v["r"][-1], 3) for name, v in results.items()}, flush=True)
for name, values in results.items():
    summary = {key: round(float(np.nanmean(v)), 3) for key, v in values.items()}
    print(f"{name}: {summary} ({len(clips)} clips)")
print(json.dumps(results))
