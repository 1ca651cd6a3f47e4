"""The EchoTorrent nodes inside a real ComfyUI: their /object_info definitions, guidance and interruption over
HTTP, and readable errors for bad inputs after which the server keeps serving."""

from __future__ import annotations

import time

import pytest
import requests
from comfy_server import PACK_NAME, ComfyServer
from pack_files import (
    MODEL_FILES, PORTRAIT, ProgressListener, install_tiny_models, load_workflow, nodes_of_type, saved_video,
    summarize_mp4, write_portrait, write_speech,
)
from ui_to_api import ui_to_api

MODEL = "ECHOTORRENT_MODEL"
FEATURES = "ECHOTORRENT_AUDIO_FEATURES"
GUIDANCE = "ECHOTORRENT_GUIDANCE"
STREAM = "ECHOTORRENT_STREAM"
STREAM_REQUIRED = {"model": MODEL, "image": "IMAGE", "audio_features": FEATURES, "width": "INT", "height": "INT",
                   "seed": "INT", "steps": "INT", "shift": "FLOAT", "solver": "COMBO", "chunk_frames": "INT",
                   "window_frames": "INT"}
STREAM_OPTIONAL = {"positive": "CONDITIONING", "negative": "CONDITIONING", "guidance": GUIDANCE,
                   "clip_vision_output": "CLIP_VISION_OUTPUT"}
# node id -> (display name, category, required inputs, optional inputs, outputs)
EXPECTED_NODES = {
    "EchoTorrentLoadModel": (
        "Load EchoTorrent", "EchoTorrent/loaders",
        {"dit": "COMBO", "vae": "COMBO", "audio_encoder": "COMBO", "refiner": "COMBO", "dtype": "COMBO",
         "device": "COMBO", "audio_adapter": "COMBO"}, {"core_vae": "VAE"}, [MODEL]),
    "EchoTorrentAudioEncode": (
        "EchoTorrent Audio Encode", "EchoTorrent/audio",
        {"model": MODEL, "audio": "AUDIO", "fps": "FLOAT", "normalize_loudness": "BOOLEAN"}, {}, [FEATURES, "INT"]),
    "EchoTorrentACCGuidance": (
        "EchoTorrent ACC Guidance", "EchoTorrent/guidance",
        {"mode": "COMBO", "text_scale": "FLOAT", "audio_scale": "FLOAT", "schedule": "BOOLEAN", "phases": "STRING",
         "inside_weight": "FLOAT", "outside_weight": "FLOAT"}, {"region_mask": "MASK"}, [GUIDANCE]),
    "EchoTorrentStreamingSampler": (
        "EchoTorrent Streaming Sampler", "EchoTorrent/sampling", STREAM_REQUIRED, STREAM_OPTIONAL,
        ["IMAGE", "AUDIO", "LATENT", "FLOAT"]),
    "EchoTorrentStream": ("EchoTorrent Stream", "EchoTorrent/sampling", STREAM_REQUIRED, STREAM_OPTIONAL, [STREAM]),
    "EchoTorrentSaveStream": (
        "EchoTorrent Save Stream", "EchoTorrent/output",
        {"stream": STREAM, "filename_prefix": "STRING", "decoder": "COMBO", "crf": "INT"}, {}, ["VIDEO"]),
    "EchoTorrentRefinedVAEDecode": (
        "EchoTorrent Refined VAE Decode", "EchoTorrent/decode",
        {"model": MODEL, "latent": "LATENT", "decoder": "COMBO", "drop_reference_frame": "BOOLEAN",
         "num_frames": "INT", "chunk_frames": "INT"}, {}, ["IMAGE"]),
}
SIZE = 32
LONG_SPEECH = ("echotorrent_interrupt_speech.wav", 12.0)  # 300 frames: 25 chunks of 12 frames


@pytest.fixture(scope="module")
def prepared_server(comfy_server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    install_tiny_models(comfy_server, tmp_path_factory.mktemp("tiny-bundle"))
    write_portrait(comfy_server.input_dir / PORTRAIT)
    write_speech(comfy_server.input_dir / "echotorrent_speech.wav", 1.0)
    write_speech(comfy_server.input_dir / LONG_SPEECH[0], LONG_SPEECH[1], rate=16000, channels=1)
    return comfy_server


def _input_type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


@pytest.mark.parametrize("node_id", sorted(EXPECTED_NODES))
def test_node_definition(comfy_server: ComfyServer, node_id: str):
    display, category, required, optional, outputs = EXPECTED_NODES[node_id]
    info = comfy_server.object_info(node_id)[node_id]
    assert (info["display_name"], info["category"]) == (display, category)
    assert info["python_module"] == f"custom_nodes.{PACK_NAME}"
    assert {name: _input_type(spec) for name, spec in info["input"]["required"].items()} == required
    assert {name: _input_type(spec) for name, spec in info["input"].get("optional", {}).items()} == optional
    assert info["output"] == outputs
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert all(info["output_tooltips"]) and info["description"]


def test_save_stream_is_an_output_node(comfy_server: ComfyServer):
    nodes = comfy_server.object_info()
    assert nodes["EchoTorrentSaveStream"]["output_node"] is True
    assert nodes["EchoTorrentStream"]["output_node"] is False


def test_model_lists_show_installed_files(prepared_server: ComfyServer):
    inputs = prepared_server.object_info("EchoTorrentLoadModel")["EchoTorrentLoadModel"]["input"]["required"]
    for key, (_, name) in MODEL_FILES.items():
        assert name in inputs[key][1]["options"]
    assert inputs["refiner"][1]["options"][0] == "none"
    assert inputs["audio_adapter"][1]["options"][0] == "none"


def _generate_api(server: ComfyServer, speech: str = "echotorrent_speech.wav") -> dict:
    """The bundled generate workflow in API form at SIZE x SIZE, reading `speech`."""
    api = ui_to_api(load_workflow("echotorrent_generate"), server.object_info())
    [sampler] = nodes_of_type(api, "EchoTorrentStreamingSampler")
    sampler["inputs"]["width"] = sampler["inputs"]["height"] = SIZE
    [load_audio] = nodes_of_type(api, "LoadAudio")
    load_audio["inputs"]["audio"] = speech
    return api


def _node_id(api: dict, class_type: str) -> str:
    [node_id] = [node_id for node_id, node in api.items() if node["class_type"] == class_type]
    return node_id


def test_guidance_with_region_mask_runs_with_chunk_progress_and_previews(prepared_server: ComfyServer):
    workflow = load_workflow("echotorrent_generate")
    [guidance] = [node for node in workflow["nodes"] if node["type"] == "EchoTorrentACCGuidance"]
    guidance["mode"] = 0  # un-bypass
    api = ui_to_api(workflow, prepared_server.object_info())
    [sampler] = nodes_of_type(api, "EchoTorrentStreamingSampler")
    sampler["inputs"]["width"] = sampler["inputs"]["height"] = SIZE
    guidance_id = _node_id(api, "EchoTorrentACCGuidance")
    assert sampler["inputs"]["guidance"] == [guidance_id, 0]
    api[guidance_id]["inputs"]["region_mask"] = [_node_id(api, "LoadImage"), 1]  # the portrait's (empty) alpha mask

    with ProgressListener(prepared_server) as listener:
        outputs = prepared_server.run(api, timeout=240)["outputs"]

    video = summarize_mp4(saved_video(prepared_server, outputs, _node_id(api, "SaveVideo")))
    assert (video.frames, video.width, video.height) == (25, SIZE, SIZE)
    sampler_id = _node_id(api, "EchoTorrentStreamingSampler")
    assert [(value, total) for _, value, total in listener.progress(sampler_id)] == [(1, 3), (2, 3), (3, 3)]
    previews = listener.jpeg_previews()
    assert len(previews) == 3 and all(preview.size == (SIZE, SIZE) for preview in previews)


def test_interrupt_stops_the_sampler_within_one_chunk(prepared_server: ComfyServer):
    api = _generate_api(prepared_server, LONG_SPEECH[0])
    sampler_id = _node_id(api, "EchoTorrentStreamingSampler")
    with ProgressListener(prepared_server) as listener:
        prompt_id = prepared_server.post_prompt(api)
        deadline = time.monotonic() + 120
        while not listener.progress(sampler_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        first = listener.progress(sampler_id)
        assert first, "the sampler reported no progress"
        prepared_server.interrupt()
        interrupted_at = listener.progress(sampler_id)[-1][1]
        entry = prepared_server.wait_for(prompt_id, timeout=120)
        reported = listener.progress(sampler_id)

    total = first[0][2]
    assert total == 25
    assert entry["status"]["status_str"] == "error"
    events = [name for name, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in events and "execution_success" not in events
    assert reported[-1][1] <= interrupted_at + 1 < total  # at most the chunk in flight finished
    assert not entry["outputs"]


def _error_text(entry: dict) -> str:
    return " ".join(str(data) for name, data in entry["status"]["messages"] if name == "execution_error")


def test_bad_inputs_give_readable_errors_and_the_server_recovers(prepared_server: ComfyServer):
    missing = _generate_api(prepared_server)
    missing[_node_id(missing, "EchoTorrentLoadModel")]["inputs"]["dit"] = "not_there.safetensors"
    entry = prepared_server.wait_for(prepared_server.post_prompt(missing), timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert "DiT file 'not_there.safetensors' was not found in the ComfyUI model folders" in _error_text(entry)

    batch = _generate_api(prepared_server)
    batch["90"] = {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 48, "batch_size": 2, "color": 0}}
    batch[_node_id(batch, "EchoTorrentStreamingSampler")]["inputs"]["image"] = ["90", 0]
    entry = prepared_server.wait_for(prepared_server.post_prompt(batch), timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert "one reference image (IMAGE [1, H, W, 3]), got shape (2, 48, 48, 3)" in _error_text(entry)

    empty = _generate_api(prepared_server)
    empty["91"] = {"class_type": "EmptyAudio", "inputs": {"duration": 0.0, "sample_rate": 16000, "channels": 1}}
    empty[_node_id(empty, "EchoTorrentAudioEncode")]["inputs"]["audio"] = ["91", 0]
    entry = prepared_server.wait_for(prepared_server.post_prompt(empty), timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert "the AUDIO input is empty" in _error_text(entry)

    assert requests.get(f"{prepared_server.url}/system_stats", timeout=10).ok
    outputs = prepared_server.run(_generate_api(prepared_server), timeout=240)["outputs"]
    video = summarize_mp4(saved_video(prepared_server, outputs, _node_id(_generate_api(prepared_server), "SaveVideo")))
    assert (video.frames, video.width, video.height) == (25, SIZE, SIZE)
