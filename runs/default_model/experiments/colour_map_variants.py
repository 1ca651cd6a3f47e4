"""Colour maps applied after the fact to generated videos, measured like the recipe's evaluation (sync expert,
landmarks, PSNR; shuffled-audio control). For every video SRC/videos/<id>.mp4 of the held-out clips of DATA, a map
is fitted from the video's frame 0 to the portrait SRC/portraits/<id>.png (the stream fits it on the decoded portrait
instead) and applied to every frame, written with the video's sound to OUT/<variant>/videos/<id>.mp4:
  none:       the video as it is (the baseline, re-measured)
  whole:      media.colour_map's affine RGB map (what StreamSettings.colour_match does)
  keep_luma:  the same map, then each pixel's grey level (ITU-R 601, what the sync expert's crops read) put back to
              a global affine function of the unmapped grey level (fitted on frame 0): the map changes chroma only
              and the grey-level contrast the expert reads is the original's up to gain and offset
  face:       media.colour_map's map fitted on the portrait's face only (inside the convex hull of the face mesh's
              points on the portrait), applied to the whole frame
usage: colour_map_variants.py DATA SRC OUT [VARIANT ...]"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from echotorrent_core.media.colour_map import apply_colour_map, fit_colour_map
from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.media.video_writer import Mp4StreamWriter
from echotorrent_core.metrics.face_mesh import track_face
from echotorrent_core.metrics.sync_expert import SHIPPED_WEIGHTS, load_sync_expert
from echotorrent_core.recipes.evaluation import _mean, measure_videos

GREY = torch.tensor([0.299, 0.587, 0.114])


def grey(video: torch.Tensor) -> torch.Tensor:
    return torch.einsum("c,c...->...", GREY, video)


def mapped(variant: str, video: torch.Tensor, portrait: torch.Tensor) -> torch.Tensor:
    """video `[3, T, H, W]`, portrait `[3, H, W]`, both in [-1, 1]."""
    if variant == "none":
        return video
    if variant == "face":
        pixels = ((portrait + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        hull = cv2.convexHull(track_face(pixels[None]).points[0].numpy().round().astype(np.int32))
        mask = np.zeros(pixels.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, hull, 1)
        inside = torch.from_numpy(mask.astype(bool))
        face_map = fit_colour_map(video[:, 0][:, inside][:, None], portrait[:, inside][:, None])
        return apply_colour_map(video, face_map)
    out = apply_colour_map(video, fit_colour_map(video[:, 0], portrait))
    if variant == "keep_luma":
        y, y_portrait = grey(video[:, 0]).flatten(), grey(portrait).flatten()
        gain, offset = np.polyfit(y.numpy(), y_portrait.numpy(), 1)
        out = (out + (gain * grey(video) + offset - grey(out))[None]).clamp(-1, 1)
    return out


data, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
variants = sys.argv[4:] or ["none", "whole", "keep_luma", "face"]
clips = [c for c in json.load(open(f"{data}/index.json"))["clips"] if c["split"] == "heldout"]
expert = load_sync_expert(SHIPPED_WEIGHTS)
for variant in variants:
    folder = out / variant / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        frames, fps, audio, rate = read_video_frames(src / "videos" / f"{clip['id']}.mp4")
        video = frames.permute(3, 0, 1, 2).float() / 127.5 - 1
        portrait = torch.from_numpy(np.array(Image.open(src / "portraits" / f"{clip['id']}.png").convert("RGB")))
        result = mapped(variant, video, portrait.permute(2, 0, 1).float() / 127.5 - 1)
        pixels = ((result + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        with Mp4StreamWriter(folder / f"{clip['id']}.mp4", fps=fps, width=pixels.shape[2], height=pixels.shape[1],
                             audio=audio, audio_rate=rate) as writer:
            writer.write(pixels)
    payload = measure_videos(folder, data, expert)
    means, shuffled = _mean(payload["clips"]), _mean(payload["shuffled_audio"])
    print(f"{variant}: Sync-C {means['sync_c']:.3f} (shuffled {shuffled['sync_c']:.3f}), landmark C "
          f"{means['landmark_c']:.3f} (shuffled {shuffled['landmark_c']:.3f}), PSNR {means['psnr']:.2f}, "
          f"identity {means['identity_similarity']:.3f}, face found {means['face_found']:.3f}", flush=True)
    (out / variant / "clips.json").write_text(json.dumps(payload["clips"]))
