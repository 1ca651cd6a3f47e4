"""The pack loads into a real ComfyUI server, and a UI-format core workflow runs over HTTP through ui_to_api."""

import io
import math
import re
import wave
from pathlib import Path

import av
import numpy as np
import requests
from comfy_server import PACK_NAME, REPO_ROOT, ComfyServer
from PIL import Image
from ui_to_api import ui_to_api

SAMPLE_RATE = 16000
TONE_SAMPLES = 8000


def test_pack_is_imported_without_error(comfy_server: ComfyServer):
    log = comfy_server.log_text()
    import_lines = [line for line in log.splitlines() if re.search(rf"seconds.*: .*custom_nodes/{PACK_NAME}$", line)]
    assert len(import_lines) == 1, f"no import-time line for the pack in the server log:\n{log}"
    assert "IMPORT FAILED" not in import_lines[0], log
    assert f"Cannot import {comfy_server.base_dir / 'custom_nodes' / PACK_NAME}" not in log


def test_pack_nodes_are_registered_under_the_echotorrent_category_with_tooltips(comfy_server: ComfyServer):
    ours = {name: info for name, info in comfy_server.object_info().items()
            if info.get("python_module") == f"custom_nodes.{PACK_NAME}"}
    assert ours, "the pack registered no nodes"
    for name, info in ours.items():
        assert info["category"].startswith("EchoTorrent/"), (name, info["category"])
        for section in ("required", "optional"):
            for input_name, spec in info["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_front_end_scripts_are_served_once_each(comfy_server: ComfyServer):
    web = REPO_ROOT / "web"
    scripts = sorted(web.rglob("*.js"))
    assert web / "stream_player_extension.js" in scripts  # the player's entry: the list below cannot be empty
    served = [url for url in comfy_server.get_json("/extensions") if "echotorrent" in url]
    assert sorted(served) == sorted(f"/extensions/{PACK_NAME}/{path.relative_to(web)}" for path in scripts)
    for path in scripts:
        response = requests.get(f"{comfy_server.url}/extensions/{PACK_NAME}/{path.relative_to(web)}", timeout=30)
        assert response.status_code == 200, path.name
        assert "javascript" in response.headers["Content-Type"], (path.name, response.headers["Content-Type"])
        assert response.content == path.read_bytes(), path.name


def test_stream_event_route_answers_with_the_kept_streams(comfy_server: ComfyServer):
    for prefix in ("", "/api"):
        assert comfy_server.get_json(f"{prefix}/echotorrent/events?clientId=nobody") == {"streams": []}
    response = requests.get(f"{comfy_server.url}/echotorrent/events?after=x", timeout=30)
    assert response.status_code == 400 and "after" in response.json()["error"]


def test_workflow_templates_list_the_pack_workflows(comfy_server: ComfyServer):
    listed = comfy_server.get_json("/workflow_templates").get(PACK_NAME, [])
    assert sorted(listed) == sorted(path.stem for path in (REPO_ROOT / "workflows").glob("*.json"))


def test_every_workflow_template_has_a_thumbnail(comfy_server: ComfyServer):
    """The template browser shows `workflows/<name>.jpg` on each card."""
    for workflow in sorted((REPO_ROOT / "workflows").glob("*.json")):
        response = requests.get(f"{comfy_server.url}/api/workflow_templates/{PACK_NAME}/{workflow.stem}.jpg", timeout=30)
        assert response.status_code == 200, workflow.name
        with Image.open(io.BytesIO(response.content)) as thumbnail:
            assert thumbnail.format == "JPEG" and min(thumbnail.size) >= 128


def write_tone(path: Path) -> np.ndarray:
    """Write a mono 16-bit 440 Hz tone; return its samples as floats in [-1, 1]."""
    samples = np.array([round(12000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(TONE_SAMPLES)], np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return samples.astype(np.float32) / 32768


def core_ui_workflow() -> dict:
    """LoadAudio -> SaveAudio, and PrimitiveNode(width) -> EmptyImage -> Reroute -> bypassed ImageInvert -> SaveImage,
    plus a Note, in the UI format the front end saves."""
    return {
        "last_node_id": 8, "last_link_id": 5, "version": 0.4, "extra": {}, "groups": [], "config": {},
        "nodes": [
            {"id": 1, "type": "LoadAudio", "pos": [0, 0], "size": [300, 130], "flags": {}, "order": 0, "mode": 0,
             "inputs": [], "outputs": [{"name": "AUDIO", "type": "AUDIO", "links": [1]}],
             "properties": {"Node name for S&R": "LoadAudio"}, "widgets_values": ["tone.wav", None, None]},
            {"id": 2, "type": "SaveAudio", "pos": [400, 0], "size": [300, 100], "flags": {}, "order": 1, "mode": 0,
             "inputs": [{"name": "audio", "type": "AUDIO", "link": 1}], "outputs": [],
             "properties": {}, "widgets_values": ["audio/echotorrent_smoke", None]},
            {"id": 3, "type": "PrimitiveNode", "pos": [0, 200], "size": [200, 80], "flags": {}, "order": 2, "mode": 0,
             "inputs": [], "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "width"}, "links": [2]}],
             "title": "width", "properties": {"Run widget replace on values": False}, "widgets_values": [24, "fixed"]},
            {"id": 4, "type": "EmptyImage", "pos": [250, 200], "size": [300, 130], "flags": {}, "order": 3, "mode": 0,
             "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 2}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}],
             "properties": {}, "widgets_values": [512, 16, 1, 0xFF0000]},
            {"id": 5, "type": "Reroute", "pos": [600, 200], "size": [75, 26], "flags": {}, "order": 4, "mode": 0,
             "inputs": [{"name": "", "type": "*", "link": 3}], "outputs": [{"name": "", "type": "IMAGE", "links": [4]}],
             "properties": {"showOutputText": False, "horizontal": False}},
            {"id": 8, "type": "ImageInvert", "pos": [700, 200], "size": [200, 30], "flags": {}, "order": 5, "mode": 4,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 4}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [5]}], "properties": {}},
            {"id": 6, "type": "SaveImage", "pos": [950, 200], "size": [300, 300], "flags": {}, "order": 6, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 5}], "outputs": [],
             "properties": {}, "widgets_values": ["echotorrent_smoke"]},
            {"id": 7, "type": "Note", "pos": [0, 400], "size": [300, 100], "flags": {}, "order": 7, "mode": 0,
             "inputs": [], "outputs": [], "properties": {}, "widgets_values": ["Smoke test graph."]},
        ],
        "links": [[1, 1, 0, 2, 0, "AUDIO"], [2, 3, 0, 4, 0, "INT"], [3, 4, 0, 5, 0, "*"], [4, 5, 0, 8, 0, "IMAGE"],
                  [5, 8, 0, 6, 0, "IMAGE"]],
    }


def output_path(server: ComfyServer, record: dict) -> Path:
    return server.output_dir / record["subfolder"] / record["filename"]


def decode_mono(path: Path) -> tuple[np.ndarray, int]:
    """Samples of the first audio stream as float32 mono, and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        chunks = [converted.to_ndarray()[0] for frame in container.decode(stream) for converted in to_float.resample(frame)]
        return np.concatenate(chunks), stream.rate


def test_core_ui_workflow_runs_over_http(comfy_server: ComfyServer):
    tone = write_tone(comfy_server.input_dir / "tone.wav")
    prompt = ui_to_api(core_ui_workflow(), comfy_server.object_info())
    assert sorted(prompt) == ["1", "2", "4", "6"]

    outputs = comfy_server.run(prompt)["outputs"]

    [audio_record] = outputs["2"]["audio"]
    samples, rate = decode_mono(output_path(comfy_server, audio_record))
    assert rate == SAMPLE_RATE
    assert samples.shape == tone.shape
    np.testing.assert_allclose(samples, tone, atol=1e-3)

    [image_record] = outputs["6"]["images"]
    with Image.open(output_path(comfy_server, image_record)) as image:
        assert image.size == (24, 16)  # the PrimitiveNode's width, not the stale widget value
        assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)  # red: ImageInvert was bypassed
