"""The pack's models live under ComfyUI's memory management, in a real server of their own (so its memory figures
belong to this module alone): ComfyUI's node cache (not the pack) keeps a loaded model between runs, and "Free
model and node cache" (POST /free) gives its memory back to the system, measured on the server process's VmRSS.

The DiT here is made large (a few hundred MB of float32 weights, at a tiny resolution so it runs in seconds) so its
memory stands far above the noise of a running server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from comfy_server import PACK_NAME, REPO_ROOT, ComfyServer, make_base_dir
from pack_files import MODEL_FILES, PORTRAIT, install_tiny_models, process_memory, write_portrait, write_speech

from echotorrent_core.checkpoints.loaders import save_dit
from echotorrent_core.config import get_preset
from echotorrent_core.models.dit import WanDiT

LARGE_DIT = "echotorrent_large_dit.safetensors"
SPEECH = "echotorrent_memory_speech.wav"
SIZE = 32
RELEASE_TIMEOUT = 30.0  # seconds for the server's worker to act on /free


@pytest.fixture(scope="module")
def server(comfyui_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ComfyServer, int]]:
    """A fresh server with the tiny networks plus a large DiT; yields it and the DiT's weight bytes."""
    base = make_base_dir(tmp_path_factory.mktemp("memory-base"), REPO_ROOT, PACK_NAME)
    started = ComfyServer.start(comfyui_path, base)
    try:
        install_tiny_models(started, tmp_path_factory.mktemp("tiny-bundle"))
        cfg = replace(get_preset("tiny").dit, dim=1024, ffn_dim=16384, num_heads=8)
        dit = WanDiT(cfg)
        save_dit(dit, base / "models" / "echotorrent" / LARGE_DIT)
        weight_bytes = sum(t.numel() * t.element_size() for t in dit.state_dict().values())
        del dit
        write_portrait(started.input_dir / PORTRAIT)
        write_speech(started.input_dir / SPEECH, 0.5)
        yield started, weight_bytes
    finally:
        started.stop()


def _graph(seed: int) -> dict:
    loader = {"dit": LARGE_DIT, "vae": MODEL_FILES["vae"][1], "audio_encoder": MODEL_FILES["audio_encoder"][1],
              "refiner": "none", "dtype": "fp32", "device": "auto", "audio_adapter": "none"}
    stream = {"model": ["1", 0], "image": ["2", 0], "audio_features": ["4", 0], "width": SIZE, "height": SIZE,
              "seed": seed, "steps": 1, "shift": 5.0, "solver": "few_step", "chunk_frames": 3, "window_frames": 6}
    return {
        "1": {"class_type": "EchoTorrentLoadModel", "inputs": loader},
        "2": {"class_type": "LoadImage", "inputs": {"image": PORTRAIT}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": SPEECH}},
        "4": {"class_type": "EchoTorrentAudioEncode",
              "inputs": {"model": ["1", 0], "audio": ["3", 0], "fps": 25.0, "normalize_loudness": True}},
        "5": {"class_type": "EchoTorrentStream", "inputs": stream},
        "6": {"class_type": "EchoTorrentSaveStream",
              "inputs": {"stream": ["5", 0], "filename_prefix": "video/memory", "decoder": "base", "crf": 23}},
    }


def _cached_nodes(entry: dict) -> set[str]:
    return {node for name, data in entry["status"]["messages"] if name == "execution_cached" for node in data["nodes"]}


def _rss(server: ComfyServer) -> int:
    return process_memory(server.pid)["VmRSS"]


def test_comfyui_keeps_the_model_between_runs_and_free_returns_its_memory(server: tuple[ComfyServer, int]):
    comfy, weight_bytes = server
    assert weight_bytes > 300 * 2**20
    before_load = _rss(comfy)
    comfy.run(_graph(seed=1), timeout=300)
    loaded = _rss(comfy)
    again = comfy.run(_graph(seed=2), timeout=300)  # a new seed: the sampler runs, the loader's output is reused
    assert "1" in _cached_nodes(again) and "6" not in _cached_nodes(again)
    with_model = _rss(comfy)

    comfy.free(unload_models=True, free_memory=True)  # the front end's "Free model and node cache"
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while _rss(comfy) > with_model - 0.9 * weight_bytes and time.monotonic() < deadline:
        time.sleep(0.5)
    after_free = _rss(comfy)
    print(f"VmRSS MiB: before load {before_load / 2**20:.0f}, after the first run {loaded / 2**20:.0f}, "
          f"after the second {with_model / 2**20:.0f}, after /free {after_free / 2**20:.0f}; "
          f"DiT weights {weight_bytes / 2**20:.0f}")
    assert loaded - before_load > 0.9 * weight_bytes  # the model was resident
    assert with_model - after_free > 0.9 * weight_bytes  # and its memory went back to the system

    rerun = comfy.run(_graph(seed=2), timeout=300)
    assert "1" not in _cached_nodes(rerun)  # nothing kept it: the loader reads the files again
