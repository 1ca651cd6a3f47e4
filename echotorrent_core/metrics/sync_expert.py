"""The audio-visual sync expert: a small SyncNet-style two-stream network, trained on ground truth, then frozen.

Video stream: `VIDEO_FRAMES` consecutive grayscale mouth crops (`mouth_crops.py`), stacked as channels and
standardised per window, `[N, 5, 32, 48]` -> unit embedding `[N, EMBED_DIM]`. Audio stream: the 0.2 s log-mel
window of the centre frame (`audio_mel.py`), `[N, 1, 40, 20]` -> unit embedding `[N, EMBED_DIM]`. In sync, the
two embeddings of a frame are close; the SyncNet protocol (`sync_protocol.py`) reads Sync-C / Sync-D / offset
from their distances. About 0.25 M parameters at width 16: a 10 s clip embeds in well under a second on one CPU core.
Weights are safetensors with the config in the metadata; nothing here is pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoints.safetensors_io import read_state_dict, write_state_dict
from .audio_mel import MEL_BANDS, MEL_WINDOW
from .mouth_crops import CROP_HEIGHT, CROP_WIDTH

VIDEO_FRAMES = 5
METADATA_KEY = "echotorrent_sync_expert"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "sync_expert.safetensors"


@dataclass(frozen=True)
class SyncExpertConfig:
    """Network widths; the input sizes are fixed by the crop and mel modules."""

    width: int = 16
    hidden: int = 128
    embed_dim: int = 64


def _conv(in_channels: int, out_channels: int, stride: int | tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                         nn.GroupNorm(8, out_channels), nn.ReLU())


class SyncExpert(nn.Module):
    """Two-stream embedding network; `embed_video` / `embed_audio` return L2-normalised `[N, embed_dim]`."""

    def __init__(self, cfg: SyncExpertConfig = SyncExpertConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.video = nn.Sequential(_conv(VIDEO_FRAMES, w, 1), _conv(w, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2),
                                   nn.Flatten())
        self.audio = nn.Sequential(_conv(1, w, (2, 1)), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), nn.Flatten())
        video_flat = 2 * w * (CROP_HEIGHT // 8) * (CROP_WIDTH // 8)
        audio_flat = 2 * w * (MEL_BANDS // 8) * (MEL_WINDOW // 4)
        self.video_head = nn.Sequential(nn.Linear(video_flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.embed_dim))
        self.audio_head = nn.Sequential(nn.Linear(audio_flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.embed_dim))

    def embed_video(self, windows: torch.Tensor) -> torch.Tensor:
        """Mouth-crop windows `[N, 5, 32, 48]` in [0, 1] -> `[N, embed_dim]` unit vectors."""
        mean = windows.mean(dim=(1, 2, 3), keepdim=True)
        std = windows.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        return nn.functional.normalize(self.video_head(self.video((windows - mean) / std)), dim=-1)

    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """Log-mel windows `[N, 1, 40, 20]` -> `[N, embed_dim]` unit vectors."""
        return nn.functional.normalize(self.audio_head(self.audio(windows)), dim=-1)


def video_windows(crops: torch.Tensor) -> torch.Tensor:
    """Per-frame crop windows `[T, 5, h, w]` (frames t-2..t+2, repeated at the ends) from crops `[T, h, w]`."""
    frames = crops.shape[0]
    index = torch.arange(frames)[:, None] + torch.arange(VIDEO_FRAMES)[None] - VIDEO_FRAMES // 2
    return crops[index.clamp(0, frames - 1)]


def save_sync_expert(model: SyncExpert, path: str | Path, extra: dict | None = None) -> Path:
    """Write the weights atomically as safetensors, the config (+ `extra`) as JSON metadata."""
    metadata = {METADATA_KEY: json.dumps({"config": asdict(model.cfg), **(extra or {})})}
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    return write_state_dict(path, state, metadata)


def load_sync_expert(path: str | Path = SHIPPED_WEIGHTS) -> SyncExpert:
    """A frozen (eval-mode, no-grad) sync expert from a file written by `save_sync_expert`."""
    state, metadata = read_state_dict(path)
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a sync-expert file (no '{METADATA_KEY}' metadata); write one with "
                         "`echotorrent eval train-sync-expert`")
    model = SyncExpert(SyncExpertConfig(**json.loads(metadata[METADATA_KEY])["config"]))
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model
