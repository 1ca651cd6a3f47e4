"""Comparing a file's tensors with what a model expects, for error messages that name the keys."""

from __future__ import annotations

import torch

MAX_LISTED_KEYS = 8


def listing(names: list[str]) -> str:
    """The first `MAX_LISTED_KEYS` names, sorted, and how many more there are."""
    shown = ", ".join(sorted(names)[:MAX_LISTED_KEYS])
    more = len(names) - MAX_LISTED_KEYS
    return shown + (f" (+{more} more)" if more > 0 else "")


def key_mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], against: str) -> str | None:
    """Missing, unexpected and wrongly shaped keys of `state` against `expected`, or None when they fit.

    `against` names the expected side in the shape report, e.g. "model" -> "shape mismatches (file vs model)".
    """
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                  if key in state and state[key].shape != value.shape]
    details = []
    if missing:
        details.append(f"missing {len(missing)} keys: {listing(missing)}")
    if unexpected:
        details.append(f"unexpected {len(unexpected)} keys: {listing(unexpected)}")
    if mismatched:
        details.append(f"shape mismatches (file vs {against}): {listing(mismatched)}")
    return "; ".join(details) or None
