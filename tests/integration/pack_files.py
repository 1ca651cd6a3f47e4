"""Shared by the EchoTorrent integration tests: tiny random model files under the names the bundled workflows use,
input media, workflow loading, mp4 inspection and a websocket listener for progress events."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import struct
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import torch
from comfy_server import REPO_ROOT, ComfyServer
from PIL import Image

from echotorrent_core.checkpoints.loaders import save_dit, save_vae
from echotorrent_core.config import VAEConfig, get_preset
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.random_bundle import write_random_bundle

WORKFLOWS_DIR = REPO_ROOT / "workflows"
PREVIEW_EVENT, JPEG_FORMAT = 1, 1  # binary websocket message: u32 event, u32 image format, image bytes
# models/<folder>/<name>: the file names the bundled workflows select (the embedded default model's files, which
# nodes/loaders.py lists from echotorrent_core/default_model; files of these names in the server's own model folders
# are found first, so the tiny stand-ins below take the default's place).
MODEL_FILES = {
    "dit": ("echotorrent", "dit.safetensors"),
    "vae": ("vae", "vae.safetensors"),
    "audio_encoder": ("audio_encoders", "audio_encoder.safetensors"),
}
I2V_DIT = ("echotorrent", "echotorrent_i2v_dit.safetensors")  # tiny image-to-video DiT (in_dim 36, CLIP branch)
# The tiny VAE at the layout core ComfyUI builds for every Wan 2.1 VAE file (dim_mult 1,2,4,4, two residual blocks per
# level), so that core Load VAE reads the workflows' VAE file too.
CORE_LOADABLE_VAE = VAEConfig(base_dim=8)
PORTRAIT = "echotorrent_portrait.png"
FPS = 25


def install_tiny_models(server: ComfyServer, scratch: Path) -> None:
    """Write the tiny random networks into the server's model folders under the workflows' file names (the VAE in
    the layout core Load VAE reads), plus a tiny image-to-video DiT."""
    bundle = write_random_bundle(scratch)
    torch.manual_seed(0)
    save_vae(WanVAE(CORE_LOADABLE_VAE), bundle / "vae.safetensors")
    for source, (folder, name) in MODEL_FILES.items():
        target = server.base_dir / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(bundle / f"{source}.safetensors", target / name)
    save_dit(WanDiT(get_preset("tiny-i2v").dit), server.base_dir / "models" / I2V_DIT[0] / I2V_DIT[1])


def write_portrait(path: Path, width: int = 80, height: int = 96) -> None:
    gradient = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (height, 1))] * 3, axis=-1)
    pixels[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = (200, 120, 90)
    Image.fromarray(pixels).save(path)


def write_speech(path: Path, seconds: float, rate: int = 22050, channels: int = 2) -> None:
    """A 16-bit WAV of an amplitude-modulated tone (speech-like loudness changes)."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * math.pi * 220 * t) * (1 + np.sin(2 * math.pi * 3 * t)) / 2
    samples = np.repeat((tone * 32767).astype(np.int16)[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def load_workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS_DIR / f"{name}.json").read_text())


def nodes_of_type(api_graph: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [node for node in api_graph.values() if node["class_type"] == class_type]


@dataclass(frozen=True)
class Mp4Summary:
    frames: int
    width: int
    height: int
    fps: float
    audio_seconds: float
    audio_rate: int


def summarize_mp4(path: Path) -> Mp4Summary:
    """Decode every video frame and the audio stream of an mp4."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        width, height, fps = video.codec_context.width, video.codec_context.height, float(video.average_rate)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
        rate = audio.rate
    return Mp4Summary(frames, width, height, fps, samples / rate, rate)


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process in bytes, from /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024  # reported in kB
    return fields


def codecs(path: Path) -> set[str]:
    with av.open(str(path)) as container:
        return {stream.codec_context.name for stream in container.streams}


def saved_video(server: ComfyServer, outputs: dict[str, Any], node_id: str) -> Path:
    [record] = outputs[node_id]["images"]
    return server.output_dir / record["subfolder"] / record["filename"]


class ProgressListener:
    """Collects the server's websocket messages (JSON events and binary previews) for the harness's client id, in a
    background thread."""

    def __init__(self, server: ComfyServer) -> None:
        self.url = server.url.replace("http://", "ws://") + f"/ws?clientId={server.client_id}"
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.binary: list[bytes] = []
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def __enter__(self) -> ProgressListener:
        self._thread.start()
        if not self._connected.wait(10):
            raise RuntimeError(f"could not open {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _listen(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as socket:
            self._connected.set()
            while not self._stop.is_set():
                try:
                    message = await socket.receive(timeout=0.1)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append((time.monotonic(), json.loads(message.data)))
                elif message.type == aiohttp.WSMsgType.BINARY:
                    self.binary.append(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

    def progress(self, node_id: str) -> list[tuple[float, int, int]]:
        """(arrival time, value, max) of every `progress` event of node `node_id` so far."""
        return [(at, data["data"]["value"], data["data"]["max"]) for at, data in list(self.messages)
                if data.get("type") == "progress" and data["data"].get("node") == node_id]

    def jpeg_previews(self) -> list[Image.Image]:
        """The JPEG preview images received so far."""
        header = struct.pack(">II", PREVIEW_EVENT, JPEG_FORMAT)
        return [Image.open(io.BytesIO(data[len(header):])) for data in list(self.binary) if data.startswith(header)]
