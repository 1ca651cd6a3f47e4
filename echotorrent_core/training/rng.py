"""Every random number generator a training step can touch, as plain tensors (saved in safetensors, no pickle):
torch CPU, torch CUDA (the current device), Python `random`, NumPy's legacy global generator."""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The current generator states as tensors: torch_cpu uint8, python int64 [625] + gauss [2] float64,
    numpy keys int64 [624] + pos/has_gauss int64 [2] + cached gaussian float64 [1], torch_cuda uint8."""
    version, internal, gauss = random.getstate()
    if version != 3:
        raise RuntimeError(f"unsupported Python random state version {version}")
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    if kind != "MT19937":
        raise RuntimeError(f"unsupported NumPy random state {kind}")
    state = {
        "torch_cpu": torch.get_rng_state(),
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": torch.tensor([0.0 if gauss is None else 1.0, gauss or 0.0], dtype=torch.float64),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([cached], dtype=torch.float64),
    }
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set every generator back to a `capture_rng` result."""
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    flag, gauss = state["python_gauss"].tolist()
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), gauss if flag else None))
    pos, has_gauss = state["numpy_pos"].tolist()
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(state["numpy_gauss"][0])))
    if device.type == "cuda":
        if "torch_cuda" not in state:
            raise RuntimeError("the checkpoint was written without CUDA; its CUDA generator state is missing")
        torch.cuda.set_rng_state(state["torch_cuda"].to(torch.uint8), device)


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), Python and NumPy."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
