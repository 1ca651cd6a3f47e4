"""The VAE ceiling of any VAE file: held-out clips stream-encoded and decoded by it, measured like the models.

    .venv/bin/python scripts/vae_ceiling.py VAE.safetensors DATA_DIR OUT_DIR [--limit N] [--threads 2]

The recipe's `evaluate_vae` step does this for the `vae_mouth` export (the VAE the bundle ships) (`echotorrent_core/recipes/
vae_reconstruction.py`); this script measures a candidate VAE before it replaces that one. Prints the held-out and
shuffled-audio means (Sync-C / Sync-D / best offset, landmark C, PSNR, face found) and the ground truth's, and writes
the whole result to OUT_DIR/vae_metrics.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echotorrent_core.metrics.report import write_json  # noqa: E402
from echotorrent_core.metrics.sync_expert import SHIPPED_WEIGHTS, load_sync_expert  # noqa: E402
from echotorrent_core.recipes.vae_reconstruction import evaluate_vae_ceiling  # noqa: E402

KEYS = ("sync_c", "sync_d", "sync_offset", "landmark_c", "landmark_offset", "psnr", "face_found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae", type=Path)
    parser.add_argument("data", type=Path, help="a clip folder with a held-out split (the recipe's RUN/data)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, help="first N held-out clips (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metrics = evaluate_vae_ceiling(args.vae, args.data, args.out, load_sync_expert(SHIPPED_WEIGHTS), args.limit)
    write_json(args.out / "vae_metrics.json", metrics)
    rows = {"reconstruction": metrics["heldout"], "shuffled audio": metrics["shuffled_audio"],
            "ground truth": metrics["ground_truth"]}
    for name, row in rows.items():
        print(f"{name:15s} " + "  ".join(f"{k} {row[k]:.3f}" for k in KEYS if k in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
