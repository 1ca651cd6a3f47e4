"""A real ComfyUI server for integration tests: a private base folder, start, HTTP helpers, log capture, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "echotorrent"  # the custom_nodes folder name ComfyUI loads this repository under
TEST_NODES = ("echotorrent_test_nodes", Path(__file__).resolve().parent / "comfy_test_nodes")  # (name, folder)
BASE_SUBFOLDERS = ("custom_nodes", "models", "input", "output", "temp", "user")
# Runs `main.py ARGS` as `python main.py ARGS` would, without the editable install of this repository, so the pack
# loads as it does for people who clone it into custom_nodes without pip-installing it.
LAUNCH_WITHOUT_EDITABLE_INSTALL = (
    "import os, runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable___echotorrent')]; "
    "sys.argv = sys.argv[1:]; sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


class ComfyServerError(RuntimeError):
    """The server failed to start, rejected a prompt, or did not finish one in time."""


def make_base_dir(base: Path, pack_dir: Path, pack_name: str) -> Path:
    """Create a ComfyUI base folder under `base` with `pack_dir` linked in as `custom_nodes/<pack_name>`, and the
    harness's test-only nodes beside it."""
    for name in BASE_SUBFOLDERS:
        (base / name).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / pack_name).symlink_to(pack_dir, target_is_directory=True)
    test_name, test_dir = TEST_NODES
    (base / "custom_nodes" / test_name).symlink_to(test_dir, target_is_directory=True)
    return base


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyServer:
    """A `main.py --cpu` process listening on loopback, started with `start` and always ended with `stop`."""

    def __init__(self, process: subprocess.Popen, base_dir: Path, port: int, log_path: Path) -> None:
        self.process = process
        self.base_dir = base_dir
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.client_id = uuid.uuid4().hex

    @classmethod
    def start(cls, comfy_dir: Path, base_dir: Path, ready_timeout: float = 60.0) -> ComfyServer:
        """Start ComfyUI on a free port with `base_dir` as its base folder; return once it answers HTTP."""
        port = free_loopback_port()
        log_path = base_dir / "comfyui.log"
        command = [
            sys.executable, "-c", LAUNCH_WITHOUT_EDITABLE_INSTALL, str(comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--base-directory", str(base_dir), "--database-url", f"sqlite:///{base_dir / 'user' / 'comfyui.db'}",
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        server = cls(process, base_dir, port, log_path)
        try:
            server.wait_until_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ComfyServerError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system_stats", timeout=2).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.25)
        raise ComfyServerError(f"ComfyUI did not answer /system_stats within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server process by its PID; kill it if it does not exit within `grace` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def get_json(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        return self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))

    def post_prompt(self, api_graph: dict[str, Any]) -> str:
        """Queue an API-format graph; return its prompt id. Raises with the server's node errors when rejected."""
        response = requests.post(f"{self.url}/prompt", json={"prompt": api_graph, "client_id": self.client_id}, timeout=30)
        if not response.ok:
            raise ComfyServerError(f"ComfyUI rejected the prompt (HTTP {response.status_code}): {response.text}")
        return response.json()["prompt_id"]

    def wait_for(self, prompt_id: str, timeout: float) -> dict[str, Any]:
        """The `/history` entry of a prompt once it has finished, successfully or not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            if self.process.poll() is not None:
                raise ComfyServerError(f"ComfyUI exited while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise ComfyServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")

    def run(self, api_graph: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Queue a graph and wait for it; raise with the execution messages unless it succeeded."""
        entry = self.wait_for(self.post_prompt(api_graph), timeout)
        if entry["status"]["status_str"] != "success":
            raise ComfyServerError(f"prompt failed: {entry['status'].get('messages')}\n{self.log_tail()}")
        return entry

    def interrupt(self) -> None:
        requests.post(f"{self.url}/interrupt", timeout=10).raise_for_status()

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """The front end's "Unload Models" (unload_models) / "Free model and node cache" (both)."""
        response = requests.post(f"{self.url}/free", json={"unload_models": unload_models, "free_memory": free_memory},
                                 timeout=10)
        response.raise_for_status()

    @property
    def pid(self) -> int:
        """The server's process id (main.py runs inside the launched interpreter)."""
        return self.process.pid
