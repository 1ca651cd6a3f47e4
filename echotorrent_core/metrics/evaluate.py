"""All metrics of one measured video, and of a set of videos (the Frechet distance is a set-level score).

`evaluate_measured(measured, expert, reference, truth)`:
- sync expert: Sync-C, Sync-D, best offset, confidence at offset 0;
- landmark sync (face-mesh lip gap x phone-derived opening): confidence, best correlation, offset, confidence at
  offset 0;
- identity against the reference portrait `[H, W, 3]` uint8 (dlib descriptors, drift per minute);
- colour drift against the reference and temporal flicker; with ground-truth frames `[T, H, W, 3]` also PSNR,
  SSIM, the Laplacian / FFT detail ratios and the flicker ratio, over the frames both have: the ground truth is cut to
  the video's length, and a video up to `EXTRA_FRAMES_ALLOWED` frame longer than the clip (a generator streams as
  many frames as the audio lasts, and a clip's audio track can outlast its last video frame) is compared on the
  clip's frames.
Every value is a plain float / int so the result writes to JSON as it is.
"""

from __future__ import annotations

import numpy as np
import torch

from .face_mesh import track_face
from .identity import face_descriptors, identity_scores, sample_indices
from .image_quality import colour_drift, detail_ratios, psnr, ssim, temporal_flicker
from .frechet import frechet_distance
from .measurements import VideoMeasurements
from .sync_expert import SyncExpert
from .sync_metrics import expert_embeddings, expert_sync, landmark_sync

EXTRA_FRAMES_ALLOWED = 1  # frames a video may run past its ground truth (audio rounding), compared without them


def _unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def reference_descriptor(reference: np.ndarray) -> torch.Tensor:
    """dlib descriptor `[128]` of a reference portrait `[H, W, 3]` uint8 (face found by the face mesh)."""
    return face_descriptors(reference[None], track_face(reference[None]), [0])[0]


def evaluate_measured(measured: VideoMeasurements, expert: SyncExpert, reference: np.ndarray,
                      truth: np.ndarray | None = None, reference_embedding: torch.Tensor | None = None) -> dict:
    """Metric name -> value for one video (see the module docstring)."""
    sync = expert_sync(expert, measured)
    landmark = landmark_sync(measured)
    indices = sample_indices(measured.num_frames, measured.fps)
    descriptors = face_descriptors(measured.frames, measured.track, indices)
    reference_embedding = reference_descriptor(reference) if reference_embedding is None else reference_embedding
    identity = identity_scores(descriptors, reference_embedding, torch.tensor(indices) / measured.fps)
    video = _unit(measured.frames)
    result = {
        "frames": measured.num_frames, "face_found": measured.track.found_fraction,
        "sync_c": sync.confidence, "sync_d": sync.min_distance, "sync_offset": sync.offset,
        "sync_c_at_zero": sync.confidence_at_zero,
        "landmark_c": landmark.confidence, "landmark_r": 1.0 - landmark.min_distance, "landmark_offset": landmark.offset,
        "landmark_c_at_zero": landmark.confidence_at_zero,
        "identity_similarity": identity.similarity, "identity_min_similarity": identity.min_similarity,
        "identity_distance": identity.distance, "identity_drift_per_minute": identity.drift_per_minute,
        "flicker": temporal_flicker(video), "colour_drift": colour_drift(video, _unit(reference[None])[0]),
    }
    if truth is not None:
        gt = _unit(truth[: measured.num_frames])
        if 0 <= video.shape[0] - gt.shape[0] <= EXTRA_FRAMES_ALLOWED:
            video = video[: gt.shape[0]]
        if gt.shape != video.shape:
            raise ValueError(f"ground truth {tuple(gt.shape)} does not match the video {tuple(video.shape)}")
        result.update(psnr=psnr(video, gt), ssim=ssim(video, gt), **detail_ratios(video, gt),
                      flicker_ratio=result["flicker"] / max(temporal_flicker(gt), 1e-9))
    return result


def mouth_features(expert: SyncExpert, measured: VideoMeasurements) -> torch.Tensor:
    """The sync expert's per-frame mouth-window embeddings `[T, D]` (the FVD stand-in's feature space)."""
    return expert_embeddings(expert, measured.crops, measured.audio_windows)[0]


def frechet_mouth_distance(generated: list[torch.Tensor], truth: list[torch.Tensor]) -> float:
    """Frechet distance between the pooled mouth features `[T_i, D]` of two sets of videos."""
    return frechet_distance(torch.cat(generated), torch.cat(truth))
