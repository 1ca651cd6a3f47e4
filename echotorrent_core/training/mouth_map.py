"""Where the mouth is on the latent grid, measured on ground-truth training latents (the teacher's `loss_map`).

For each latent cell (h, w) a ridge readout from its C channels to the latent frame's mean SynthTalk `mouth_open`
(both as deviations from their window's mean, so identity and pose offsets drop out) is fit on the training windows
of half the training clips (every other clip id) and scored, R^2, on the windows of the other half. The map is that
R^2 clamped at 0: 0 where a cell does not follow the mouth. A cached window has 1 + 4F frames encoded by the causal
VAE: latent 0 is frame 0 alone, latent j >= 1 holds frames 4j-3 .. 4j.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoints.safetensors_io import write_state_dict
from ..data.cache_dataset import CachedWindows
from .losses.cell_map import MAP_KEY

RIDGE = 10.0


def _deviations(windows: CachedWindows, picks: list[int], latent_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell features `[N * F, h, w, C]` and mouth targets `[N * F]`, each minus its window's mean."""
    z, mouth = [], []
    for i in picks:
        item = windows[i]
        if "mouth_open" not in item["params"]:
            raise ValueError(f"window {i} of the cache has no params.mouth_open: the mouth map needs SynthTalk clips")
        z.append(item["latents"][:, 1:1 + latent_frames].float())
        opening = item["params"]["mouth_open"].float()
        mouth.append(torch.stack([opening[4 * j - 3:4 * j + 1].mean() for j in range(1, latent_frames + 1)]))
    latents, target = torch.stack(z), torch.stack(mouth)  # [N, C, F, h, w], [N, F]
    latents = latents - latents.mean(dim=2, keepdim=True)
    target = target - target.mean(dim=1, keepdim=True)
    return latents.permute(0, 2, 3, 4, 1).flatten(0, 1), target.flatten()


def measure_mouth_map(cache: str | Path, latent_frames: int, ridge: float = RIDGE) -> tuple[torch.Tensor, dict]:
    """The map `[h, w]` (held-out R^2 clamped at 0) from the train split of a cache, and a report
    (windows and clips on each side, the R^2 grid)."""
    windows = CachedWindows(Path(cache), split="train")
    clips = sorted({windows.info(i)["clip"] for i in range(len(windows))})
    if len(clips) < 2:
        raise ValueError(f"the mouth map needs at least 2 training clips in {cache}, got {len(clips)}")
    fit_clips = set(clips[0::2])
    fit = [i for i in range(len(windows)) if windows.info(i)["clip"] in fit_clips]
    score = [i for i in range(len(windows)) if windows.info(i)["clip"] not in fit_clips]
    x_fit, y_fit = _deviations(windows, fit, latent_frames)
    x_score, y_score = _deviations(windows, score, latent_frames)
    channels = x_fit.shape[-1]
    gram = torch.einsum("nhwc,nhwd->hwcd", x_fit, x_fit) + ridge * torch.eye(channels)
    coef = torch.linalg.solve(gram, torch.einsum("nhwc,n->hwc", x_fit, y_fit)[..., None])[..., 0]  # [h, w, C]
    residual = y_score[:, None, None] - torch.einsum("nhwc,hwc->nhw", x_score, coef)
    r2 = 1 - residual.square().mean(0) / y_score.square().mean().clamp_min(1e-12)
    report = {"fit_windows": len(fit), "fit_clips": len(fit_clips), "score_windows": len(score),
              "score_clips": len(clips) - len(fit_clips), "ridge": ridge, "max_r2": float(r2.max()),
              "cells_over_0.3": int((r2 > 0.3).sum()), "r2": [[round(float(v), 4) for v in row] for row in r2]}
    return r2.clamp_min(0.0).contiguous(), report


def write_mouth_map(path: str | Path, weights: torch.Tensor, report: dict) -> Path:
    """Write the map as the safetensors file `losses.cell_map.load_cell_map` reads."""
    metadata = {k: str(v) for k, v in report.items() if k != "r2"}
    return write_state_dict(path, {MAP_KEY: weights}, metadata=metadata)
