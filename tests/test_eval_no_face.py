"""`evaluate_videos`: a video without a detectable face (a failed generation) is reported with face_found 0 beside
the videos that have one, instead of stopping the evaluation."""

from __future__ import annotations

import numpy as np
import torch

from echotorrent_core.data.synthtalk import ClipSpec, render_clip
from echotorrent_core.media.video_writer import Mp4StreamWriter
from echotorrent_core.metrics.run_eval import evaluate_videos
from echotorrent_core.metrics.sync_expert import load_sync_expert


def test_faceless_video_counts_as_face_not_found(tmp_path) -> None:
    clip = render_clip(ClipSpec(seed=3, domain="calm", size=128, split="heldout", seconds=3.0))
    audio = torch.from_numpy(clip.audio)
    videos = tmp_path / "videos"
    videos.mkdir()
    with Mp4StreamWriter(videos / "talking.mp4", 25, 128, 128, audio, 16000) as out:
        out.write(clip.frames)
    with Mp4StreamWriter(videos / "flat.mp4", 25, 128, 128, audio, 16000) as out:
        out.write(np.full_like(clip.frames, 120))
    report = evaluate_videos(videos, load_sync_expert(), progress=False)
    rows = {row["clip"]: row for row in report["clips"]}
    assert rows["flat"]["face_found"] == 0.0 and "no face" in rows["flat"]["error"]
    assert rows["talking"]["face_found"] == 1.0 and len(rows["talking"]) > 3  # real metrics were computed
    assert report["summary"]["face_found"] == 0.5
