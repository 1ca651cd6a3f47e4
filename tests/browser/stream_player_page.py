"""Driving the pack's stream player in the front end: the generation workflow loaded into the app with test inputs,
prompts queued through the front end (its graph-to-prompt conversion and this tab's client id), the player's
snapshot, screenshots of the node."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comfy_server import REPO_ROOT
from pack_files import load_workflow
from playwright.sync_api import Page

ARTIFACTS = REPO_ROOT / ".cache" / "test-artifacts" / "stream_player"
SAMPLER = "EchoTorrentStreamingSampler"
SAVE_STREAM = "EchoTorrentSaveStream"

LOAD_WORKFLOW = """async ([workflow, audio, width, height, seed, settingsType, playerType]) => {
    await app.loadGraphData(workflow);
    const byType = type => app.graph.nodes.find(node => node.type === type);
    const set = (node, name, value) => { node.widgets.find(w => w.name === name).value = value; };
    set(byType('LoadAudio'), 'audio', audio);
    const settings = byType(settingsType);
    set(settings, 'width', width);
    set(settings, 'height', height);
    set(settings, 'seed', seed);
    const player = byType(playerType);
    app.canvas.ds.scale = 1;
    app.canvas.centerOnNode(player);
    app.canvas.setDirty(true, true);
    return String(player.id);
}"""
SET_SEED = """([id, seed]) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'seed').value = seed; }"""
QUEUE = """async () => {
    const { api } = await import('/scripts/api.js');
    const queued = await api.queuePrompt(0, await app.graphToPrompt());
    return queued.prompt_id;
}"""
SNAPSHOT = """id => app.graph.getNodeById(id)?.echotorrentPlayer?.snapshot() ?? null"""
CLIENT_ID = """async () => (await import('/scripts/api.js')).api.clientId"""


def load_generate_workflow(page: Page, audio: str, size: tuple[int, int], seed: int) -> str:
    """Open workflows/echotorrent_generate.json with `audio` in Load Audio and the sampler at `size` (width,
    height); return the sampler's node id."""
    return page.evaluate(LOAD_WORKFLOW, [load_workflow("echotorrent_generate"), audio, *size, seed, SAMPLER, SAMPLER])


def load_long_stream_workflow(page: Page, audio: str, size: tuple[int, int], seed: int) -> str:
    """Open workflows/echotorrent_long_stream.json (Stream -> Save Stream) with `audio` and the stream at `size`;
    return the Save Stream node's id."""
    return page.evaluate(LOAD_WORKFLOW, [load_workflow("echotorrent_long_stream"), audio, *size, seed,
                                         "EchoTorrentStream", SAVE_STREAM])


def set_seed(page: Page, node: str, seed: int) -> None:
    page.evaluate(SET_SEED, [node, seed])


def queue(page: Page) -> str:
    """Queue the open graph as the front end's Run does; return the prompt id."""
    return page.evaluate(QUEUE)


def client_id(page: Page) -> str:
    return page.evaluate(CLIENT_ID)


def snapshot(page: Page, node: str) -> dict[str, Any] | None:
    """The player's state on node `node` (None when the node or its player is absent)."""
    return page.evaluate(SNAPSHOT, node)


def wait_for_player(page: Page, node: str, condition: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str) -> dict[str, Any]:
    """Poll the player's snapshot until `condition` holds; fail with the last snapshot's summary after `timeout`."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = snapshot(page, node)
        if state is not None and condition(state):
            return state
        time.sleep(0.05)
    summary = None if state is None else {key: state[key] for key in ("current", "state", "status", "mediaTime")}
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; player: {summary}")


def run_of(state: dict[str, Any], prompt_id: str) -> dict[str, Any] | None:
    return next((run for run in state["runs"] if run["promptId"] == prompt_id), None)


def playbacks_of(state: dict[str, Any], prompt_id: str, mode: str | None = None) -> list[dict[str, Any]]:
    return [p for p in state["playbacks"] if p["promptId"] == prompt_id and mode in (None, p["mode"])]


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the page under .cache/test-artifacts/stream_player/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path)
    print(f"screenshot: {path}")
    return path
