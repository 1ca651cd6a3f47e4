"""Everything the metrics read from one video, measured once by the instruments (no generator involved).

`measure_video(frames, fps, audio, rate)` runs the face mesh (landmarks, lip gap, mouth crops) and the audio
front ends (log-mel windows, phone-derived opening). Videos at another frame rate are resampled to `EVAL_FPS`
by nearest frame, the rate the sync expert was trained at. `with_audio` swaps the soundtrack (the shifted- and
shuffled-audio controls) without re-running the face mesh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..media import read_video_frames
from .audio_mel import log_mel, mel_windows
from .face_mesh import FaceTrack, track_face
from .mouth_crops import mouth_crops
from .phone_opening import phone_opening

EVAL_FPS = 25.0


@dataclass(frozen=True)
class VideoMeasurements:
    """frames `[T, H, W, 3]` uint8 at `fps`; audio `[C, S]` at `rate`; face `track`; mouth `crops` `[T, 32, 48]`;
    `audio_windows` `[T, 1, 40, 20]` log-mel; `lip_gap` `[T]` (face mesh); `phone_opening` `[T]` (from speech)."""

    frames: np.ndarray
    fps: float
    audio: torch.Tensor
    rate: int
    track: FaceTrack
    crops: torch.Tensor
    audio_windows: torch.Tensor
    lip_gap: torch.Tensor
    phone_opening: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _audio_features(audio: torch.Tensor, rate: int, frames: int, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return mel_windows(log_mel(audio, rate), frames, fps), phone_opening(audio, rate, frames, fps)


def resample_frames(frames: np.ndarray, fps: float, target_fps: float = EVAL_FPS) -> np.ndarray:
    """Nearest-frame resampling of `[T, H, W, 3]` from `fps` to `target_fps` (identity when equal)."""
    if abs(fps - target_fps) < 1e-6:
        return frames
    count = int(np.floor(len(frames) / fps * target_fps))
    index = np.minimum(np.round((np.arange(count) + 0.5) / target_fps * fps - 0.5).astype(int), len(frames) - 1)
    return frames[np.maximum(index, 0)]


def measure_video(frames: np.ndarray | torch.Tensor, fps: float, audio: torch.Tensor, rate: int,
                  progress: bool = False) -> VideoMeasurements:
    """Run every instrument on RGB frames `[T, H, W, 3]` uint8 and their soundtrack `[C, S]` or `[S]`."""
    frames = resample_frames(np.asarray(frames), fps)
    audio = audio if audio.ndim == 2 else audio[None]
    track = track_face(frames, progress=progress)
    windows, opening = _audio_features(audio, rate, len(frames), EVAL_FPS)
    return VideoMeasurements(frames, EVAL_FPS, audio, rate, track, mouth_crops(frames, track), windows,
                             track.lip_gap(), opening)


def measure_file(path: str | os.PathLike[str], progress: bool = False) -> VideoMeasurements:
    """`measure_video` of a video file with its own audio track (raises if it has none)."""
    frames, fps, audio, rate = read_video_frames(path)
    if audio is None:
        raise ValueError(f"{path} has no audio track; lip sync needs the speech the video was made from")
    return measure_video(frames.numpy(), fps, audio, rate, progress=progress)


def with_audio(measured: VideoMeasurements, audio: torch.Tensor, rate: int) -> VideoMeasurements:
    """The same video measured against another soundtrack `[C, S]` or `[S]`."""
    audio = audio if audio.ndim == 2 else audio[None]
    windows, opening = _audio_features(audio, rate, measured.num_frames, measured.fps)
    return replace(measured, audio=audio, rate=rate, audio_windows=windows, phone_opening=opening)
