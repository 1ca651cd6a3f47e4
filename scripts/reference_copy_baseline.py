"""How much of a window's latents the portrait latent alone explains: the floor a teacher's flow MSE at t -> 1000
should reach on held-out identities if it learned to copy the reference.

    .venv/bin/python scripts/reference_copy_baseline.py CACHE_DIR [--latent-frames 6] [--max-windows 4000]

From the latent cache (`echotorrent cache build`, or a DiT stage's `avatar_cache/`): for every generated latent
frame j, a per-cell affine map (z x z matrix + bias, shared over cells, fitted by least squares on the train
split) from the reference latent (frame 0) to latent frame j. Prints, on the held-out split, per element:
- `var`: the latents' variance around their per-channel mean (the MSE of predicting the mean),
- `copy`: the MSE of the fitted map (what a teacher conditioned on the portrait can reach at t = 1000 without the
  audio: at t -> 1000 the flow target eps - x0 needs x0, and x_t tells nothing about it),
- `temporal`: the MSE of the window's own mean over its generated frames (an oracle that knows the clip: what is
  left for the audio and motion to explain),
and the same restricted to the 10% of latent cells that move most (the mouth, eyes and head edges).
"""

from __future__ import annotations

import argparse

import torch

from echotorrent_core.data.cache_dataset import CachedWindows
from echotorrent_core.training.losses.motion_weights import relative_motion


def stacked_latents(cache: str, split: str, frames: int, limit: int) -> torch.Tensor:
    """`[N, z, 1 + frames, h, w]` latents of up to `limit` windows of `split` (evenly spaced over the split)."""
    windows = CachedWindows(cache, split=split)
    if len(windows) == 0:
        raise SystemExit(f"{cache} has no windows of split {split!r}")
    step = max(1, len(windows) // limit)
    return torch.stack([windows[i]["latents"][:, : 1 + frames] for i in range(0, len(windows), step)][:limit])


def fit_maps(latents: torch.Tensor) -> list[torch.Tensor]:
    """One `[z + 1, z]` least-squares map per generated frame: `[ref, 1] @ map ~= frame j` over all cells."""
    z = latents.shape[1]
    ref = latents[:, :, 0].permute(0, 2, 3, 1).reshape(-1, z)
    design = torch.cat([ref, torch.ones(ref.shape[0], 1)], dim=1).double()
    maps = []
    for j in range(1, latents.shape[2]):
        target = latents[:, :, j].permute(0, 2, 3, 1).reshape(-1, z).double()
        maps.append(torch.linalg.lstsq(design, target).solution.float())
    return maps


def report(latents: torch.Tensor, maps: list[torch.Tensor]) -> dict[str, float]:
    z = latents.shape[1]
    generated = latents[:, :, 1:]
    ref = latents[:, :, 0].permute(0, 2, 3, 1).reshape(-1, z)
    design = torch.cat([ref, torch.ones(ref.shape[0], 1)], dim=1)
    copies = torch.stack([(design @ m).reshape(latents.shape[0], *latents.shape[3:], z).permute(0, 3, 1, 2)
                          for m in maps], dim=2)
    mean = generated.mean(dim=(0, 2, 3, 4), keepdim=True)
    own_mean = generated.mean(dim=2, keepdim=True)
    motion = relative_motion(latents)  # [N, h, w]
    moving = motion >= motion.flatten(1).quantile(0.9, dim=1)[:, None, None]
    mask = moving[:, None, None].expand_as(generated)
    rows = {}
    for name, prediction in (("var", mean), ("copy", copies), ("temporal", own_mean)):
        error = (generated - prediction).pow(2)
        rows[name] = float(error.mean())
        rows[f"{name}_moving"] = float(error[mask].mean())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache")
    parser.add_argument("--latent-frames", type=int, default=6)
    parser.add_argument("--max-windows", type=int, default=4000)
    args = parser.parse_args()
    train = stacked_latents(args.cache, "train", args.latent_frames, args.max_windows)
    heldout = stacked_latents(args.cache, "heldout", args.latent_frames, args.max_windows)
    maps = fit_maps(train)
    print(f"{train.shape[0]} train / {heldout.shape[0]} held-out windows, latents {tuple(train.shape[1:])}")
    for split, latents in (("train", train), ("heldout", heldout)):
        rows = report(latents, maps)
        print(f"{split:8s} " + "  ".join(f"{k} {v:.4f}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
