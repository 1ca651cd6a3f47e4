"""Fixtures for the browser tests: the integration suite's real ComfyUI server (imported, not copied), prepared with
the bundled workflows' input files and model names, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

INTEGRATION_DIR = Path(__file__).resolve().parents[1] / "integration"
sys.path.insert(0, str(INTEGRATION_DIR))  # comfy_server.py, pack_files.py, ui_to_api.py

from comfy_server import REPO_ROOT, ComfyServer  # noqa: E402
from pack_files import PORTRAIT, install_tiny_models, write_portrait, write_speech  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from front_end import CHROMIUM, CHROMIUM_ARGS, ConsoleLog, opened_app  # noqa: E402


def _load_integration_fixtures():
    """The integration conftest as a module of its own name, so its fixtures can be re-exported here."""
    spec = importlib.util.spec_from_file_location("integration_server_fixtures", INTEGRATION_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_fixtures()
comfyui_path = _integration.comfyui_path
comfy_server = _integration.comfy_server

SPEECH_FILES = ("echotorrent_speech.wav", "echotorrent_long_speech.wav")  # the LoadAudio files of the workflows


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """/usr/bin/chromium, installed with scripts/install_chromium.sh if missing; a failure when it cannot be."""
    if not os.access(CHROMIUM, os.X_OK):
        installer = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "install_chromium.sh")], capture_output=True, text=True
        )
        if installer.returncode != 0:
            pytest.fail(f"installing chromium failed:\n{installer.stdout}\n{installer.stderr}")
        if not os.access(CHROMIUM, os.X_OK):
            reason = installer.stdout.strip().splitlines()[-1] if installer.stdout.strip() else "no reason given"
            pytest.fail(f"{CHROMIUM} is absent and cannot be installed here ({reason}); install Debian's chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    """Debian's Chromium, headless, with a fresh temporary profile; Playwright never downloads a browser."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def front_end_server(comfy_server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    """The server with the files the workflows name (portrait, speech, model files), so every combo value exists,
    and the first-run template browser turned off (the tests open it themselves)."""
    install_tiny_models(comfy_server, tmp_path_factory.mktemp("tiny-bundle"))
    write_portrait(comfy_server.input_dir / PORTRAIT)
    for name in SPEECH_FILES:
        write_speech(comfy_server.input_dir / name, seconds=1.0)
    requests.post(f"{comfy_server.url}/settings", json={"Comfy.TutorialCompleted": True}, timeout=10).raise_for_status()
    return comfy_server


@pytest.fixture
def app_page(browser: Browser, front_end_server: ComfyServer) -> Iterator[tuple[Page, ConsoleLog]]:
    """The ComfyUI app open in a fresh browser context, and the log of its console."""
    with opened_app(browser, front_end_server.url) as opened:
        yield opened


@pytest.fixture(scope="session")
def object_info(front_end_server: ComfyServer) -> dict:
    return front_end_server.object_info()
