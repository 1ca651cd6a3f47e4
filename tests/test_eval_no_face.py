"""`evaluate_videos`: a video without a detectable face (a failed generation) is reported with face_found 0 beside
the videos that have one, instead of stopping the evaluation; a video one frame longer than its ground truth is
compared on the ground truth's frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echotorrent_core.data.synthtalk import ClipSpec, render_clip
from echotorrent_core.media.video_writer import Mp4StreamWriter
from echotorrent_core.metrics.evaluate import evaluate_measured
from echotorrent_core.metrics.measurements import measure_video
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


def test_a_video_one_frame_longer_than_its_clip_is_compared_on_the_clip_frames() -> None:
    """A generator streams as many frames as the audio lasts; a clip's audio can outlast its last frame by one."""
    clip = render_clip(ClipSpec(seed=4, domain="calm", size=128, split="heldout", seconds=2.0))
    audio = torch.from_numpy(clip.audio)
    expert = load_sync_expert()
    longer = np.concatenate([clip.frames, clip.frames[-1:]])
    measured = measure_video(longer, 25.0, audio, 16000)
    metrics = evaluate_measured(measured, expert, clip.frames[0], clip.frames)
    assert metrics["frames"] == len(clip.frames) + 1 and metrics["psnr"] > 90  # identical on the clip's frames
    too_long = measure_video(np.concatenate([longer, clip.frames[-2:]]), 25.0, audio, 16000)
    with pytest.raises(ValueError, match="does not match the video"):
        evaluate_measured(too_long, expert, clip.frames[0], clip.frames)
