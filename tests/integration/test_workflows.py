"""The bundled UI workflows, converted with ui_to_api and run over HTTP on a tiny random model, write an mp4 with
the audio's frame count, the sampler's resolution and the speech as its sound track; the long-stream one writes it
chunk by chunk (EchoTorrent Save Stream) without any frame batch in the graph."""

from __future__ import annotations

import math

import pytest
from comfy_server import ComfyServer
from pack_files import (
    FPS, MODEL_FILES, PORTRAIT, install_tiny_models, load_workflow, nodes_of_type, saved_video, summarize_mp4,
    write_portrait, write_speech,
)
from ui_to_api import ui_to_api

# The graphs ask for 480x832; the tiny random model is run at a CPU-friendly size instead.
TEST_SIZE = (64, 48)  # width, height
SPEECH = {  # workflow -> (the speech file it loads, seconds written there)
    "echotorrent_generate": ("echotorrent_speech.wav", 1.0),
    "echotorrent_long_stream": ("echotorrent_long_speech.wav", 2.2),
}
AUDIO_TOLERANCE_SECONDS = 0.05  # aac frame padding
GENERATORS = ("EchoTorrentStreamingSampler", "EchoTorrentStream")  # the node holding width and height
VIDEO_WRITERS = ("SaveVideo", "EchoTorrentSaveStream")


@pytest.fixture(scope="module")
def prepared_server(comfy_server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    install_tiny_models(comfy_server, tmp_path_factory.mktemp("tiny-bundle"))
    write_portrait(comfy_server.input_dir / PORTRAIT)
    for file_name, seconds in SPEECH.values():
        write_speech(comfy_server.input_dir / file_name, seconds)
    return comfy_server


@pytest.mark.parametrize("name", sorted(SPEECH))
def test_workflow_writes_a_video_with_the_speech(prepared_server: ComfyServer, name: str):
    workflow = load_workflow(name)
    assert any(node["type"] == "Note" for node in workflow["nodes"])
    api = ui_to_api(workflow, prepared_server.object_info())
    [loader] = nodes_of_type(api, "EchoTorrentLoadModel")
    assert [loader["inputs"][key] for key in MODEL_FILES] == [name for _, name in MODEL_FILES.values()]
    [generator] = [node for node in api.values() if node["class_type"] in GENERATORS]
    generator["inputs"]["width"], generator["inputs"]["height"] = TEST_SIZE

    outputs = prepared_server.run(api, timeout=240)["outputs"]

    [save_id] = [node_id for node_id, node in api.items() if node["class_type"] in VIDEO_WRITERS]
    video = summarize_mp4(saved_video(prepared_server, outputs, save_id))
    _, seconds = SPEECH[name]
    assert video.frames == math.floor(seconds * FPS)
    assert (video.width, video.height) == TEST_SIZE
    assert video.fps == FPS
    assert abs(video.audio_seconds - seconds) <= AUDIO_TOLERANCE_SECONDS


def test_long_stream_holds_no_frame_batch(prepared_server: ComfyServer):
    """The long-stream graph writes the stream chunk by chunk: Stream -> Save Stream, no IMAGE batch anywhere."""
    info = prepared_server.object_info()
    api = ui_to_api(load_workflow("echotorrent_long_stream"), info)
    [stream_id] = [node_id for node_id, node in api.items() if node["class_type"] == "EchoTorrentStream"]
    [save] = nodes_of_type(api, "EchoTorrentSaveStream")
    assert save["inputs"]["stream"] == [stream_id, 0]
    assert not nodes_of_type(api, "EchoTorrentStreamingSampler") and not nodes_of_type(api, "SaveVideo")
    frame_batches = [node["class_type"] for node in api.values()
                     if "IMAGE" in info[node["class_type"]]["output"] and node["class_type"] != "LoadImage"]
    assert frame_batches == []


def test_generate_workflow_ships_guidance_bypassed(prepared_server: ComfyServer):
    workflow = load_workflow("echotorrent_generate")
    [guidance] = [node for node in workflow["nodes"] if node["type"] == "EchoTorrentACCGuidance"]
    assert guidance["mode"] == 4  # bypassed: distilled models run one pass per step
    api = ui_to_api(workflow, prepared_server.object_info())
    [sampler] = nodes_of_type(api, "EchoTorrentStreamingSampler")
    assert "guidance" not in sampler["inputs"] and not nodes_of_type(api, "EchoTorrentACCGuidance")


@pytest.mark.parametrize("name", sorted(SPEECH))
def test_workflow_links_match_their_slots(name: str):
    """Every link is listed by its origin output and named by its target input, with matching types, as the front
    end requires to draw the graph."""
    workflow = load_workflow(name)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == len(workflow["links"])
    for link_id, origin, origin_slot, target, target_slot, link_type in workflow["links"]:
        output = nodes[origin]["outputs"][origin_slot]
        target_input = nodes[target]["inputs"][target_slot]
        assert link_id in output["links"] and target_input["link"] == link_id
        assert output["type"] == target_input["type"] == link_type
    linked = {link[0] for link in workflow["links"]}
    for node in nodes.values():
        for output in node["outputs"]:
            assert set(output["links"] or []) <= linked
