"""Packaging a trained model set as a bundle folder (`pipeline.py`'s layout) and its manifest.

`write_bundle` writes `dit.safetensors` (the student), `vae.safetensors`, `audio_encoder.safetensors` and
`bundle.json` (the generation defaults `pipeline.bundle_defaults` returns: height, width, fps and the student's
stream settings, guidance "single"). Files are float32 unless the bundle would exceed `max_bytes` or one file
`max_file_bytes` (the repository keeps every tracked file under 20 MiB); then the DiT and the VAE are stored in
float16 (loaders upcast on load). `manifest.json` records how to remake it: commands,
configs (copied beside it), stage wall times, data seed and clips, metrics, the sha256 of every file, and the
source and licence of every asset (the SynthTalk sources table, copied as `SOURCES.md`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from ..checkpoints.loaders import load_dit, load_vae, save_dit, save_vae
from ..metrics.report import write_json
from ..pipeline import BUNDLE_FILES, BUNDLE_SETTINGS_FILE
from .runner import sha256_file

MAX_BUNDLE_BYTES = 40 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024
MANIFEST_FILE = "manifest.json"
SOURCES = Path(__file__).resolve().parents[1] / "data" / "synthtalk" / "SOURCES.md"


def write_bundle(out: Path, dit: Path, vae: Path, audio_encoder: Path, stream: dict, size: int,
                 max_bytes: int = MAX_BUNDLE_BYTES, max_file_bytes: int = MAX_FILE_BYTES) -> list[Path]:
    """The bundle files in `out` (see the module docstring); raises when even float16 exceeds `max_bytes`."""
    out.mkdir(parents=True, exist_ok=True)
    targets = {name: out / file for name, file in BUNDLE_FILES.items()}
    for name, source in (("dit", dit), ("vae", vae), ("audio_encoder", audio_encoder)):
        shutil.copyfile(source, targets[name])
    sizes = [p.stat().st_size for p in targets.values()]
    if sum(sizes) > max_bytes or max(sizes) > max_file_bytes:
        save_dit(load_dit(dit, dtype=torch.float16)[0], targets["dit"])
        save_vae(load_vae(vae, dtype=torch.float16)[0], targets["vae"])
    sizes = [p.stat().st_size for p in targets.values()]
    if sum(sizes) > max_bytes or max(sizes) > max_file_bytes:
        raise ValueError(f"the bundle is {sum(sizes) / 2**20:.1f} MiB (largest file {max(sizes) / 2**20:.1f} MiB) "
                         f"even in float16, over the {max_bytes / 2**20:.0f} MiB budget or the "
                         f"{max_file_bytes / 2**20:.0f} MiB per file: shrink the stage configs")
    defaults = {"height": size, "width": size, "fps": stream.get("fps", 25.0), "guidance": "single",
                **{k: v for k, v in stream.items() if k not in ("fps", "seed")}}
    settings = out / BUNDLE_SETTINGS_FILE
    settings.write_text(json.dumps(defaults, indent=2) + "\n")
    return [*targets.values(), settings]


def asset_table(path: Path = SOURCES) -> list[dict[str, str]]:
    """The rows of the SynthTalk sources table (voice names, engine / asset, version, licence, split use)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in path.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    header, body = rows[0], rows[1:]
    return [dict(zip(header, row)) for row in body]


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "git_commit": _git_commit()}


def write_manifest(out: Path, configs: list[Path], content: dict) -> Path:
    """`out/manifest.json` with `content` plus the files' sha256 / bytes / dtype, the configs copied into
    `out/configs/`, the assets table and the machine; `SOURCES.md` copied beside it."""
    shutil.rmtree(out / "configs", ignore_errors=True)  # only this run's configs (a stage may have been replaced)
    (out / "configs").mkdir()
    for config in configs:
        shutil.copyfile(config, out / "configs" / config.name)
    shutil.copyfile(SOURCES, out / "SOURCES.md")
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        entry = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, "pt") as handle:
                entry["dtypes"] = sorted({str(handle.get_slice(k).get_dtype()) for k in handle.keys()})
        files[path.relative_to(out).as_posix()] = entry
    model_bytes = sum(files[f]["bytes"] for f in BUNDLE_FILES.values())
    manifest = {**content, "files": files, "model_bytes": model_bytes, "assets": {
        "faces_and_motion": "procedural (echotorrent_core/data/synthtalk, this project's licence)",
        "speech": asset_table()}, "machine": machine()}
    return write_json(out / MANIFEST_FILE, manifest)


def verify_manifest(folder: str | Path) -> list[str]:
    """Files of a bundle whose sha256 differs from its manifest (or that are missing); empty when all match."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    return [name for name, entry in manifest["files"].items()
            if not (folder / name).is_file() or sha256_file(folder / name) != entry["sha256"]]
