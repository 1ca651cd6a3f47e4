"""The SyncNet evaluation protocol (Chung & Zisserman 2016, as its public evaluation code scores videos).

Per video frame t there is a visual feature v_t and an audio feature a_t. For every offset k in [-K, K] the
distance curve is `d(k) = mean_t dist(v_t, a_{t+k})` over the frames where both exist (SyncNet pads the audio
with zeros instead; we average only real pairs, so the ends of a clip do not bias the curve). Then

    Sync-D     = min_k d(k)                  (lower is better)
    Sync-C     = median_k d(k) - min_k d(k)  (the confidence; higher is better)
    offset     = argmin_k d(k)               (frames; > 0: the sound lags the picture by that many frames)

For scalar signals (the landmark-measured lip gap against the audio's phone-derived opening) the same protocol
runs on `dist = 1 - Pearson correlation` of the two series at each offset: Sync-C is then the best correlation
minus the median correlation, and 1 - Sync-D the best correlation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

DEFAULT_MAX_OFFSET = 15  # frames either side, as SyncNet searches (+-0.6 s at 25 fps)
CONSTANT_SIGNAL_STD = 1e-8  # a series flatter than this has no correlation with anything (a frozen mouth)


@dataclass(frozen=True)
class SyncScores:
    """One video's sync scores: Sync-C (`confidence`), Sync-D (`min_distance`), best `offset`, the confidence the
    unshifted pairing gets (`confidence_at_zero` = median - d(0)), and the whole curve (offsets -K..K)."""

    confidence: float
    min_distance: float
    offset: int
    confidence_at_zero: float
    curve: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def _check_lengths(video_frames: int, audio_frames: int, max_offset: int) -> None:
    if video_frames != audio_frames:
        raise ValueError(f"video and audio features must have the same number of frames, got {video_frames} and "
                         f"{audio_frames}")
    needed = 2 * max_offset + 1
    if video_frames < needed:
        raise ValueError(f"the sync protocol over offsets +-{max_offset} needs at least {needed} frames, got "
                         f"{video_frames}; use a longer clip or a smaller max_offset")


def offset_distance_curve(
    video: torch.Tensor, audio: torch.Tensor, max_offset: int = DEFAULT_MAX_OFFSET
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Euclidean distance of video `[T, D]` to audio `[T, D]` features at each offset.

    Returns (offsets `[2K+1]` int, curve `[2K+1]` float); offset k pairs video frame t with audio frame t + k.
    """
    if video.ndim != 2 or audio.ndim != 2 or video.shape[1] != audio.shape[1]:
        raise ValueError(f"expected video and audio features shaped [T, D] with the same D, got "
                         f"{tuple(video.shape)} and {tuple(audio.shape)}")
    frames = video.shape[0]
    offsets = torch.arange(-max_offset, max_offset + 1)
    curve = torch.empty(len(offsets), dtype=torch.float64)
    for index, k in enumerate(offsets.tolist()):
        v = video[max(0, -k): frames - max(0, k)]
        a = audio[max(0, k): frames - max(0, -k)]
        curve[index] = (v.double() - a.double()).norm(dim=1).mean()
    return offsets, curve


def scores_from_curve(offsets: torch.Tensor, curve: torch.Tensor) -> SyncScores:
    """Sync-C = median - min, Sync-D = min, offset = argmin of a distance curve (see the module docstring)."""
    best = int(torch.argmin(curve))
    median = float(curve.median())
    zero = int((offsets == 0).nonzero()[0, 0])
    return SyncScores(
        confidence=median - float(curve[best]),
        min_distance=float(curve[best]),
        offset=int(offsets[best]),
        confidence_at_zero=median - float(curve[zero]),
        curve=tuple(float(d) for d in curve),
    )


def embedding_sync_scores(
    video: torch.Tensor, audio: torch.Tensor, max_offset: int = DEFAULT_MAX_OFFSET
) -> SyncScores:
    """SyncNet scores of per-frame video and audio embeddings `[T, D]` (a sync expert's outputs)."""
    _check_lengths(video.shape[0], audio.shape[0], max_offset)
    return scores_from_curve(*offset_distance_curve(video, audio, max_offset))


def _correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x = x - x.mean()
    y = y - y.mean()
    if x.std() < CONSTANT_SIGNAL_STD or y.std() < CONSTANT_SIGNAL_STD:
        return 0.0
    return float((x * y).sum() / (x.norm() * y.norm()))


def signal_sync_scores(
    visual: torch.Tensor, audio: torch.Tensor, max_offset: int = DEFAULT_MAX_OFFSET
) -> SyncScores:
    """The protocol on two scalar series `[T]` with `dist = 1 - Pearson r` at each offset (cross-correlation)."""
    if visual.ndim != 1 or audio.ndim != 1:
        raise ValueError(f"expected two series shaped [T], got {tuple(visual.shape)} and {tuple(audio.shape)}")
    _check_lengths(visual.shape[0], audio.shape[0], max_offset)
    frames = visual.shape[0]
    offsets = torch.arange(-max_offset, max_offset + 1)
    curve = torch.tensor([
        1.0 - _correlation(visual[max(0, -k): frames - max(0, k)].double(), audio[max(0, k): frames - max(0, -k)].double())
        for k in offsets.tolist()
    ], dtype=torch.float64)
    return scores_from_curve(offsets, curve)
