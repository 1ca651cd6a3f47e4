"""Where the mouth is on the latent grid, measured on ground-truth training latents only: for each latent cell
(h, w), a ridge readout from its C channels to the latent frame's mean SynthTalk `mouth_open` (both as deviations
from their window's mean, so identity and pose offsets drop out) is fit on the training windows of half the training
clips and scored (R^2) on the other half. The map (R^2 clamped at 0) is written as `{"map": [h, w]}` for the teacher's
`loss_map`; the grid is printed in percent.
usage: mouth_map.py CACHE OUT.safetensors"""
import sys
from pathlib import Path

import torch

from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.data.cache_dataset import CachedWindows

LATENTS, RIDGE = 6, 10.0


def deviations(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell features `[N * 6, h, w, C]` and mouth targets `[N * 6]`, each minus its window's mean."""
    z = torch.stack([it["latents"][:, 1:1 + LATENTS].float() for it in items])  # [N, C, 6, h, w]
    mouth = torch.stack([torch.stack([it["params"]["mouth_open"][4 * j - 3:4 * j + 1].float().mean()
                                      for j in range(1, LATENTS + 1)]) for it in items])  # [N, 6]
    z = z - z.mean(dim=2, keepdim=True)
    mouth = mouth - mouth.mean(dim=1, keepdim=True)
    return z.permute(0, 2, 3, 4, 1).flatten(0, 1), mouth.flatten()


windows = CachedWindows(Path(sys.argv[1]), split="train")
clips = sorted({windows.info(i)["clip"] for i in range(len(windows))})
fit_clips = set(clips[0::2])
fit = [windows[i] for i in range(len(windows)) if windows.info(i)["clip"] in fit_clips]
score = [windows[i] for i in range(len(windows)) if windows.info(i)["clip"] not in fit_clips]
x_fit, y_fit = deviations(fit)
x_score, y_score = deviations(score)
channels = x_fit.shape[-1]
gram = torch.einsum("nhwc,nhwd->hwcd", x_fit, x_fit) + RIDGE * torch.eye(channels)
coef = torch.linalg.solve(gram, torch.einsum("nhwc,n->hwc", x_fit, y_fit)[..., None])[..., 0]  # [h, w, C]
residual = y_score[:, None, None] - torch.einsum("nhwc,hwc->nhw", x_score, coef)
r2 = 1 - residual.square().mean(0) / y_score.square().mean()
weights = r2.clamp_min(0.0)
write_state_dict(sys.argv[2], {"map": weights.contiguous()},
                 metadata={"fit_windows": str(len(fit)), "score_windows": str(len(score)), "ridge": str(RIDGE)})
print(f"{len(fit)} windows fit ({len(fit_clips)} clips), {len(score)} scored ({len(clips) - len(fit_clips)} clips); "
      f"per-cell held-out R^2 of mouth_open, percent (max {float(r2.max()):.3f}; cells over 0.1: "
      f"{int((r2 > 0.1).sum())}, over 0.3: {int((r2 > 0.3).sum())})")
for row in r2:
    print(" ".join(f"{max(0.0, float(v)) * 100:3.0f}" for v in row))
