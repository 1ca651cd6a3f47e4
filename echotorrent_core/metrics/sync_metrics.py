"""The two lip-sync measures of a measured video, both on the SyncNet protocol (`sync_protocol.py`):
the sync expert's embeddings (mouth crops x log-mel), and the face mesh's lip gap x the phone-derived opening."""

from __future__ import annotations

import torch

from .measurements import VideoMeasurements
from .sync_expert import SyncExpert, video_windows
from .sync_protocol import DEFAULT_MAX_OFFSET, SyncScores, embedding_sync_scores, signal_sync_scores

BATCH = 256


@torch.no_grad()
def expert_embeddings(expert: SyncExpert, crops: torch.Tensor, audio_windows: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mouth crops `[T, 32, 48]` + log-mel windows `[T, 1, 40, 20]` -> per-frame (video `[T, D]`, audio `[T, D]`)
    embeddings."""
    windows = video_windows(crops)
    video = torch.cat([expert.embed_video(windows[i: i + BATCH]) for i in range(0, len(windows), BATCH)])
    audio = torch.cat([expert.embed_audio(audio_windows[i: i + BATCH]) for i in range(0, len(audio_windows), BATCH)])
    return video, audio


def expert_sync(expert: SyncExpert, measured: VideoMeasurements, max_offset: int = DEFAULT_MAX_OFFSET) -> SyncScores:
    """Sync-C / Sync-D / offset from the sync expert."""
    video, audio = expert_embeddings(expert, measured.crops, measured.audio_windows)
    return embedding_sync_scores(video, audio, max_offset=max_offset)


def landmark_sync(measured: VideoMeasurements, max_offset: int = DEFAULT_MAX_OFFSET) -> SyncScores:
    """The protocol on the landmark lip gap against the phone-derived opening (1 - correlation distances)."""
    return signal_sync_scores(measured.lip_gap, measured.phone_opening, max_offset=max_offset)
