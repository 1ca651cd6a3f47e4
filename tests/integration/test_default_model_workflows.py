"""Both bundled workflows run as downloaded on the embedded default model: a ComfyUI whose model folders are empty
lists `echotorrent_core/default_model`'s files in Load EchoTorrent (no copying), and the example inputs, copied into
its input folder under the names the workflows load, become an mp4 with the speech.

While the model is not shipped, a random stand-in bundle (marked by `STAND_IN_MARK`, no manifest) is written into
`echotorrent_core/default_model/` for this module and removed afterwards (a leftover one from a killed run is
replaced); a real bundle there is used as it is and never touched.
"""

from __future__ import annotations

import math
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfy_server import PACK_NAME, REPO_ROOT, ComfyServer, make_base_dir
from pack_files import FPS, MODEL_FILES, PORTRAIT, load_workflow, nodes_of_type, saved_video, summarize_mp4
from test_workflows import AUDIO_TOLERANCE_SECONDS, GENERATORS, SPEECH, TEST_SIZE, VIDEO_WRITERS
from ui_to_api import ui_to_api

from echotorrent_core.cli import DEFAULT_BUNDLE
from echotorrent_core.random_bundle import write_random_bundle

EXAMPLES = REPO_ROOT / "example_inputs"
STAND_IN_MARK = ".integration-test-stand-in"


@pytest.fixture(scope="module")
def default_bundle() -> Iterator[Path]:
    if (DEFAULT_BUNDLE / STAND_IN_MARK).is_file():
        shutil.rmtree(DEFAULT_BUNDLE)
    placed = not DEFAULT_BUNDLE.exists()
    if placed:
        write_random_bundle(DEFAULT_BUNDLE)
        (DEFAULT_BUNDLE / STAND_IN_MARK).write_text("random weights written by " + __file__ + "\n")
    try:
        yield DEFAULT_BUNDLE
    finally:
        if placed:
            shutil.rmtree(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def bare_server(comfyui_path: Path, default_bundle: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """A ComfyUI with empty model folders and the examples in its input folder."""
    server = ComfyServer.start(comfyui_path, make_base_dir(tmp_path_factory.mktemp("bare-base"), REPO_ROOT,
                                                           PACK_NAME))
    try:
        shutil.copy(EXAMPLES / "portrait.png", server.input_dir / PORTRAIT)
        for file_name, _ in SPEECH.values():
            shutil.copy(EXAMPLES / "speech.wav", server.input_dir / file_name)
        yield server
    finally:
        server.stop()


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def test_load_echotorrent_lists_the_default_model(bare_server: ComfyServer):
    inputs = bare_server.object_info()["EchoTorrentLoadModel"]["input"]["required"]
    for key, (_, name) in MODEL_FILES.items():
        options = inputs[key][1]["options"]  # V3 combo: ["COMBO", {"options": [...]}]
        assert name in options, f"{name} is not offered for {key}: {options}"
    assert not any((bare_server.base_dir / "models" / folder / name).exists() for folder, name in MODEL_FILES.values())


@pytest.mark.parametrize("name", sorted(SPEECH))
def test_workflow_runs_as_downloaded_on_the_default_model(bare_server: ComfyServer, name: str):
    api = ui_to_api(load_workflow(name), bare_server.object_info())
    [generator] = [node for node in api.values() if node["class_type"] in GENERATORS]
    if (DEFAULT_BUNDLE / STAND_IN_MARK).is_file():  # the tiny random stand-in runs at a CPU-friendly size
        generator["inputs"]["width"], generator["inputs"]["height"] = TEST_SIZE
    size = (generator["inputs"]["width"], generator["inputs"]["height"])

    outputs = bare_server.run(api, timeout=300)["outputs"]

    [save_id] = [node_id for node_id, node in api.items() if node["class_type"] in VIDEO_WRITERS]
    video = summarize_mp4(saved_video(bare_server, outputs, save_id))
    seconds = _seconds(EXAMPLES / "speech.wav")
    assert video.frames == math.floor(seconds * FPS)
    assert (video.width, video.height) == size and video.fps == FPS
    assert abs(video.audio_seconds - seconds) <= AUDIO_TOLERANCE_SECONDS
    assert nodes_of_type(api, "EchoTorrentLoadModel")
