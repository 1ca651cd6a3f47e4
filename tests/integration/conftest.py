"""Fixtures that run a real ComfyUI 0.3.75 with this repository installed as the custom node `echotorrent`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfy_server import PACK_NAME, REPO_ROOT, ComfyServer, make_base_dir


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts the server as `integration` (deselect with `-m "not integration"`)."""
    for item in items:
        if "comfy_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    """The ComfyUI tree ($COMFYUI_PATH or .cache/ComfyUI), set up by scripts/setup_comfyui.py if needed."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "setup_comfyui.py")], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/setup_comfyui.py failed:\n{result.stdout}\n{result.stderr}")
    return Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()


@pytest.fixture(scope="session")
def comfy_server(comfyui_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """One ComfyUI server for the session, in a private base folder; stopped by PID at the end."""
    base = make_base_dir(tmp_path_factory.mktemp("comfyui-base"), REPO_ROOT, PACK_NAME)
    server = ComfyServer.start(comfyui_path, base)
    try:
        yield server
    finally:
        server.stop()
