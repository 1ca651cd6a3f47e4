"""Per-latent-frame audio windows (MultiTalk / InfiniteTalk layout).

Audio features have one row per video frame (`[T_video, L, C]`, row 0 = the first frame of the clip). Video frame
`v` sees the rows `v - half .. v + half` (`half = window // 2`). The Wan VAE maps video frame 0 to latent frame 0
and video frames `stride * j - (stride - 1) .. stride * j` to latent frame `j >= 1`. Latent frame 0 gets the full
window of video frame 0 (`window` rows); latent frame j >= 1 concatenates the first video frame's rows
`[0 .. half]` (offsets -half..0), the centre row of each middle video frame, and the last video frame's rows
`[half ..]` (offsets 0..half): `window_vf` rows (3 + 2 + 3 = 8 for window 5, stride 4).

Clamping: every row index is clamped to `[0, T_video - 1]`, as the public code does, so windows at the start of the
clip repeat row 0 and windows that reach past the end of the audio (including latent frames beyond the last video
frame that has audio) repeat the last row.

Windows are gathered only for the requested latent frames, so streaming can ask chunk by chunk without
materialising the windows of a whole (possibly very long) clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from echotorrent_core.config import AudioAdapterConfig

_DEFAULT = AudioAdapterConfig()


def num_latent_frames(num_video_frames: int, stride: int) -> int:
    """Latent frames needed to cover `num_video_frames` video frames: `1 + ceil((T - 1) / stride)`."""
    if num_video_frames < 1:
        raise ValueError(f"num_video_frames must be >= 1, got {num_video_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return 1 + -(-(num_video_frames - 1) // stride)


def num_video_frames_for_latents(latent_frames: int, stride: int) -> int:
    """Video frames produced by `latent_frames` latent frames: `1 + (F - 1) * stride`."""
    if latent_frames < 1:
        raise ValueError(f"latent_frames must be >= 1, got {latent_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return 1 + (latent_frames - 1) * stride


def _check_features(features: torch.Tensor) -> None:
    if features.ndim != 3 or features.shape[0] == 0:
        raise ValueError(
            f"features must be [T_video >= 1, layers, channels] (one row per video frame), got {tuple(features.shape)}"
        )


def _row_offsets(cfg: AudioAdapterConfig) -> torch.Tensor:
    """Row indices relative to the group's first video frame, `[window_vf]` long."""
    stride = cfg.vae_temporal_stride
    if stride < 2:
        raise ValueError(f"vae_temporal_stride must be >= 2 for the first/middle/last window layout, got {stride}")
    half = cfg.window // 2
    first = torch.arange(-half, 1)
    middle = torch.arange(1, stride - 1)
    last = torch.arange(stride - 1, stride + half)
    return torch.cat([first, middle, last])


def first_frame_rows(num_rows: int, cfg: AudioAdapterConfig = _DEFAULT) -> torch.Tensor:
    """Row indices `[window]` of latent frame 0's window (rows -half..half of frame 0) in `num_rows` feature rows."""
    half = cfg.window // 2
    return torch.arange(-half, cfg.window - half).clamp(0, num_rows - 1)


def first_frame_window(features: torch.Tensor, cfg: AudioAdapterConfig = _DEFAULT) -> torch.Tensor:
    """Window of latent frame 0: features `[T_video, L, C]` -> `[1, window, L, C]` (rows -half..half of frame 0)."""
    _check_features(features)
    return features[first_frame_rows(features.shape[0], cfg).to(features.device)].unsqueeze(0)


def latent_frame_rows(
    num_rows: int, latent_frames: range | Sequence[int], cfg: AudioAdapterConfig = _DEFAULT
) -> torch.Tensor:
    """Row indices `[len(latent_frames), window_vf]` of the windows of latent frames j >= 1 in `num_rows` rows."""
    frames = torch.as_tensor(list(latent_frames), dtype=torch.long)
    if frames.ndim != 1:
        raise ValueError(f"latent_frames must be a flat sequence of ints, got shape {tuple(frames.shape)}")
    if frames.numel() > 0 and int(frames.min()) < 1:
        raise ValueError(
            f"latent_frame_windows takes latent frames >= 1 (use first_frame_window for frame 0), got {frames.tolist()}"
        )
    offsets = _row_offsets(cfg)
    group_start = cfg.vae_temporal_stride * frames - (cfg.vae_temporal_stride - 1)
    return (group_start[:, None] + offsets[None, :]).clamp(0, num_rows - 1)


def latent_frame_windows(
    features: torch.Tensor, latent_frames: range | Sequence[int], cfg: AudioAdapterConfig = _DEFAULT
) -> torch.Tensor:
    """Windows of latent frames j >= 1: features `[T_video, L, C]` -> `[len(latent_frames), window_vf, L, C]`."""
    _check_features(features)
    return features[latent_frame_rows(features.shape[0], latent_frames, cfg).to(features.device)]
