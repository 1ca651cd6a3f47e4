"""`training.mouth_map`: the per-cell mouth map finds the cells whose latents follow mouth_open, on a cache built
by hand with the signal planted in known cells (and nothing but noise elsewhere)."""

from __future__ import annotations

import pytest
import torch

from echotorrent_core.checkpoints.safetensors_io import write_state_dict
from echotorrent_core.data.cache_index import empty_index, next_shard_path, write_index
from echotorrent_core.training.losses.cell_map import load_cell_map
from echotorrent_core.training.mouth_map import measure_mouth_map, write_mouth_map

LATENTS, GRID, CHANNELS = 4, 6, 3
MOUTH_CELLS = ((3, 2), (3, 3))


def _write_cache(folder, clips: int, windows_per_clip: int = 3, params: bool = True):
    """Windows whose latent frame j at MOUTH_CELLS holds 6 x (mean mouth_open of frames 4j-3..4j) + noise in channel
    0; every other cell and channel is noise (and a per-window offset the map must ignore)."""
    generator = torch.Generator().manual_seed(0)
    index = empty_index("test", {})
    for c in range(clips):
        tensors, descriptors = {}, []
        for k in range(windows_per_clip):
            mouth = torch.rand(1 + 4 * LATENTS, generator=generator)
            latents = torch.randn(CHANNELS, 1 + LATENTS, GRID, GRID, generator=generator) * 0.3
            latents += torch.randn(CHANNELS, 1, GRID, GRID, generator=generator)  # identity / pose offset
            for j in range(1, 1 + LATENTS):
                for h, w in MOUTH_CELLS:
                    latents[0, j, h, w] += 6.0 * mouth[4 * j - 3:4 * j + 1].mean()
            tensors[f"{k}.latents"] = latents
            if params:
                tensors[f"{k}.params.mouth_open"] = mouth
            descriptors.append({"key": str(k), "clip": f"clip-{c}", "window": k, "split": "train"})
        name, path = next_shard_path(folder, index)
        write_state_dict(path, tensors)
        index["shards"].append({"file": name, "clip": f"clip-{c}", "signature": None, "windows": descriptors})
        index["next_shard"] += 1
    index["complete"] = True
    write_index(folder, index)
    return folder


def test_the_map_marks_the_cells_that_follow_the_mouth(tmp_path) -> None:
    cache = _write_cache(tmp_path / "cache", clips=6)
    weights, report = measure_mouth_map(cache, LATENTS)
    assert weights.shape == (GRID, GRID) and (weights >= 0).all()
    for h, w in MOUTH_CELLS:
        assert weights[h, w] > 0.5
    others = weights.clone()
    for h, w in MOUTH_CELLS:
        others[h, w] = 0
    assert others.max() < 0.1
    assert (report["fit_clips"], report["score_clips"], report["fit_windows"]) == (3, 3, 9)
    path = write_mouth_map(tmp_path / "map.safetensors", weights, report)
    assert torch.equal(load_cell_map(path), weights)


def test_the_map_needs_synthtalk_params_and_two_clips(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least 2 training clips"):
        measure_mouth_map(_write_cache(tmp_path / "one", clips=1), LATENTS)
    with pytest.raises(ValueError, match="params.mouth_open"):
        measure_mouth_map(_write_cache(tmp_path / "bare", clips=2, params=False), LATENTS)
