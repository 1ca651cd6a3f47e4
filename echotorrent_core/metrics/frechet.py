"""Frechet distance between two feature sets, each fitted by a Gaussian (as FID / FVD compute it):
`|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))`. Used on the sync expert's mouth-window embeddings as an
FVD stand-in (the I3D network FVD uses cannot be downloaded here)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Features `[N, D]` and `[M, D]` (N, M >= 2) -> Frechet distance of their Gaussian fits (float64)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected two feature sets [N, D] and [M, D] with N, M >= 2, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    x, y = a.double().numpy(), b.double().numpy()
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y)
    if np.iscomplexobj(root):
        root = root.real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2.0 * root))
