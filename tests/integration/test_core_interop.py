"""Core ComfyUI nodes and the pack's nodes together in a real server: the sampler's LATENT decodes with core VAE
Decode (core Load VAE on the workflows' VAE file), core VAE Encode's LATENT decodes with Refined VAE Decode, and a
core-loaded VAE with a CLIP_VISION_OUTPUT drives an image-to-video checkpoint end to end.

The CLIP_VISION_OUTPUT comes from the harness's test-only node (comfy_test_nodes: seeded random CLIP-H features in
core's output object), because core CLIPVisionLoader only builds full-size CLIP models.
"""

from __future__ import annotations

import pytest
import torch
from comfy_server import ComfyServer
from pack_files import (
    FPS, I2V_DIT, MODEL_FILES, PORTRAIT, codecs, install_tiny_models, saved_video, summarize_mp4, write_portrait,
    write_speech,
)
from safetensors.torch import load_file

SIZE = 32
SPEECH = "echotorrent_interop_speech.wav"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def prepared_server(comfy_server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    install_tiny_models(comfy_server, tmp_path_factory.mktemp("tiny-bundle"))
    write_portrait(comfy_server.input_dir / PORTRAIT)
    write_speech(comfy_server.input_dir / SPEECH, 1.0)
    return comfy_server


def _front(dit: str = MODEL_FILES["dit"][1], core_vae: bool = False) -> dict:
    """Loader (optionally fed by core Load VAE), portrait, speech and audio features as API nodes "1".."5"."""
    loader = {"dit": dit, "vae": MODEL_FILES["vae"][1], "audio_encoder": MODEL_FILES["audio_encoder"][1],
              "refiner": "none", "dtype": "auto", "device": "auto", "audio_adapter": "none"}
    graph = {
        "1": {"class_type": "EchoTorrentLoadModel", "inputs": loader},
        "2": {"class_type": "LoadImage", "inputs": {"image": PORTRAIT}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": SPEECH}},
        "4": {"class_type": "EchoTorrentAudioEncode",
              "inputs": {"model": ["1", 0], "audio": ["3", 0], "fps": float(FPS), "normalize_loudness": True}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": MODEL_FILES["vae"][1]}},
    }
    if core_vae:
        loader["core_vae"] = ["5", 0]
    return graph


def _generator(class_type: str, seed: int = 3, **extra) -> dict:
    inputs = {"model": ["1", 0], "image": ["2", 0], "audio_features": ["4", 0], "width": SIZE, "height": SIZE,
              "seed": seed, "steps": 2, "shift": 5.0, "solver": "few_step", "chunk_frames": 3, "window_frames": 6}
    return {"class_type": class_type, "inputs": {**inputs, **extra}}


def _save(images: list, name: str) -> dict:
    return {"class_type": "EchoTorrentTestSaveTensors", "inputs": {"images": images, "name": name}}


def _refined_decode(latent: list) -> dict:
    return {"class_type": "EchoTorrentRefinedVAEDecode",
            "inputs": {"model": ["1", 0], "latent": latent, "decoder": "base", "drop_reference_frame": False,
                       "num_frames": 0, "chunk_frames": 2}}


def _tensors(server: ComfyServer, name: str) -> torch.Tensor:
    return load_file(server.output_dir / f"{name}.safetensors")["images"]


def test_latents_cross_between_core_and_pack_decoders(prepared_server: ComfyServer):
    graph = _front()
    graph |= {
        "10": _generator("EchoTorrentStreamingSampler"),
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 2], "vae": ["5", 0]}},
        "12": _refined_decode(["10", 2]),
        "13": _save(["11", 0], "interop_core_decode"), "14": _save(["12", 0], "interop_our_decode"),
        "15": _save(["10", 0], "interop_sampler_frames"),
        # a core Wan LATENT: core VAE Encode of 9 frames (the portrait repeated) -> 3 latent frames
        "20": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear",
                                                        "width": SIZE, "height": SIZE, "crop": "center"}},
        "21": {"class_type": "RepeatImageBatch", "inputs": {"image": ["20", 0], "amount": 9}},
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["5", 0]}},
        "23": {"class_type": "VAEDecode", "inputs": {"samples": ["22", 0], "vae": ["5", 0]}},
        "24": _refined_decode(["22", 0]),
        "25": _save(["23", 0], "interop_core_latent_core_decode"), "26": _save(["24", 0], "interop_core_latent_ours"),
    }
    prepared_server.run(graph, timeout=240)

    core, ours = _tensors(prepared_server, "interop_core_decode"), _tensors(prepared_server, "interop_our_decode")
    frames = _tensors(prepared_server, "interop_sampler_frames")
    assert core.shape == ours.shape == (1 + 4 * 9, SIZE, SIZE, 3)  # portrait latent + 3 chunks of 3 latent frames
    assert (core - ours).abs().max() < TOLERANCE
    assert (core[1 : 1 + frames.shape[0]] - frames).abs().max() < TOLERANCE  # the video the sampler streamed
    theirs, mine = (_tensors(prepared_server, name)
                    for name in ("interop_core_latent_core_decode", "interop_core_latent_ours"))
    assert theirs.shape == mine.shape == (9, SIZE, SIZE, 3)
    assert (theirs - mine).abs().max() < TOLERANCE


def test_core_vae_and_clip_vision_drive_an_i2v_checkpoint(prepared_server: ComfyServer):
    graph = _front(dit=I2V_DIT[1], core_vae=True)
    for seed in (1, 2):
        graph |= {
            f"3{seed}": {"class_type": "EchoTorrentTestClipVisionOutput", "inputs": {"seed": seed}},
            f"4{seed}": _generator("EchoTorrentStream", clip_vision_output=[f"3{seed}", 0]),
            f"5{seed}": {"class_type": "EchoTorrentSaveStream",
                         "inputs": {"stream": [f"4{seed}", 0], "filename_prefix": f"video/i2v_clip{seed}",
                                    "decoder": "auto", "crf": 0}},
            f"6{seed}": _generator("EchoTorrentStreamingSampler", clip_vision_output=[f"3{seed}", 0]),
            f"7{seed}": _save([f"6{seed}", 0], f"i2v_frames_clip{seed}"),
        }
    outputs = prepared_server.run(graph, timeout=240)["outputs"]

    for seed in (1, 2):
        path = saved_video(prepared_server, outputs, f"5{seed}")
        assert codecs(path) == {"h264", "aac"}
        video = summarize_mp4(path)
        assert (video.frames, video.width, video.height) == (FPS, SIZE, SIZE)
        assert abs(video.audio_seconds - 1.0) < 0.05
    first, second = (_tensors(prepared_server, f"i2v_frames_clip{seed}") for seed in (1, 2))
    assert first.shape == (FPS, SIZE, SIZE, 3) and torch.isfinite(first).all()
    assert (first - second).abs().mean() > 1e-3  # the CLIP features reach the DiT


def test_i2v_checkpoint_without_clip_features_says_what_to_connect(prepared_server: ComfyServer):
    graph = _front(dit=I2V_DIT[1], core_vae=True)
    graph |= {"10": _generator("EchoTorrentStreamingSampler"), "11": _save(["10", 0], "i2v_missing_clip")}
    entry = prepared_server.wait_for(prepared_server.post_prompt(graph), timeout=120)
    assert entry["status"]["status_str"] == "error"
    errors = " ".join(str(data) for name, data in entry["status"]["messages"] if name == "execution_error")
    assert "this DiT is an image-to-video checkpoint: connect clip_vision_output" in errors
