"""A fixed per-cell loss weight map `[h, w]` of the latent grid, e.g. where the mouth sits in face-centred crops.

Motion weights (`motion_weights`) follow whatever moves in a window (head edges, eyes, blinks as much as the
mouth); a map measured once on the training data (`runs/default_model/experiments/mouth_map.py`: how well each
cell's latent follows SynthTalk's mouth opening) can single out the cells that only the audio explains. The file is
a safetensors file with one float tensor `map` `[h, w]`, values >= 0.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...checkpoints.safetensors_io import read_state_dict

MAP_KEY = "map"


def load_cell_map(path: str | Path) -> torch.Tensor:
    """The map `[h, w]` float32 from a safetensors file; raises naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"loss map not found: {path} (expected a safetensors file with a tensor {MAP_KEY!r})")
    tensors, _ = read_state_dict(path)
    if MAP_KEY not in tensors:
        raise ValueError(f"{path}: expected a tensor {MAP_KEY!r} [h, w], found {sorted(tensors)}")
    weights = tensors[MAP_KEY].float()
    if weights.ndim != 2 or not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{path}: {MAP_KEY!r} must be a finite, non-negative [h, w] map, "
                         f"got shape {tuple(weights.shape)}")
    return weights


def map_cell_weights(weights: torch.Tensor, strength: float) -> torch.Tensor:
    """`[1, 1, 1, h, w]` cell weights with mean 1: `1 + strength * map / mean(map)`, rescaled to mean 1; uniform
    for an all-zero map (no cell marked, e.g. too little data to find the mouth)."""
    if strength < 0:
        raise ValueError(f"loss map weighting strength must be >= 0, got {strength}")
    mean = weights.mean()
    cells = 1.0 + strength * (weights / mean if float(mean) > 0 else torch.zeros_like(weights))
    return (cells / cells.mean())[None, None, None]


def combine_cell_weights(*weights: torch.Tensor | None) -> torch.Tensor | None:
    """The product of the given `[B or 1, 1, 1, h, w]` cell weights (None entries skipped), rescaled to mean 1 per
    sample; None when none is given."""
    given = [w for w in weights if w is not None]
    if not given:
        return None
    product = given[0]
    for w in given[1:]:
        product = product * w.to(product.device)
    return product / product.mean(dim=(3, 4), keepdim=True)
