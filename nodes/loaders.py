"""Load EchoTorrent: DiT + VAE + audio encoder (+ decoder refiner) from ComfyUI's model folders, cached."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import comfy.model_management
import folder_paths
import torch
from comfy_api.latest import io

from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.loaders import load_audio_encoder, load_dit, load_vae
from echotorrent_core.checkpoints.refiner import load_decoder_refiner

from .types import EchoTorrentModel, ModelType

ECHOTORRENT_FOLDER = "echotorrent"
WAV2VEC2_FOLDER = "wav2vec2"
AUDIO_ENCODERS_FOLDER = "audio_encoders"  # built into recent ComfyUI (a no-op there), added for older ones
for _name in (ECHOTORRENT_FOLDER, WAV2VEC2_FOLDER, AUDIO_ENCODERS_FOLDER):
    folder_paths.add_model_folder_path(_name, os.path.join(folder_paths.models_dir, _name))

DIT_FOLDERS = (ECHOTORRENT_FOLDER, "diffusion_models")
VAE_FOLDERS = ("vae",)
AUDIO_ENCODER_FOLDERS = (AUDIO_ENCODERS_FOLDER, WAV2VEC2_FOLDER)
REFINER_FOLDERS = (ECHOTORRENT_FOLDER, "vae")
AUDIO_ADAPTER_FOLDERS = (ECHOTORRENT_FOLDER, "diffusion_models")
NO_REFINER = "none"
NO_AUDIO_ADAPTER = "none"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_files(folders: tuple[str, ...]) -> list[str]:
    """The .safetensors files of the ComfyUI model folders `folders` (names relative to their folder)."""
    names = {name for folder in folders for name in folder_paths.get_filename_list(folder)}
    return sorted(name for name in names if name.lower().endswith(".safetensors"))


def find_model_file(folders: tuple[str, ...], name: str, role: str) -> Path:
    """Full path of `name` in the first of `folders` that has it; the error lists the folders searched."""
    for folder in folders:
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return Path(path)
    searched = [path for folder in folders for path in folder_paths.get_folder_paths(folder)]
    raise FileNotFoundError(
        f"{role} file {name!r} was not found in the ComfyUI model folders {list(folders)} ({', '.join(searched)}); "
        f"expected a .safetensors {role} there"
    )


def resolve_device(choice: str) -> torch.device:
    """auto = ComfyUI's device (the CPU under --cpu); cuda must be available."""
    if choice == "auto":
        return comfy.model_management.get_torch_device()
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was chosen but no CUDA GPU is available to this ComfyUI; choose auto or cpu")
    return torch.device(choice)


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    """auto = bf16 on CUDA, fp32 elsewhere (the DiT and VAE; the audio encoder always runs in fp32)."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[choice]


def _file_key(path: Path, *settings: Hashable) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, *settings)


class LoadCache:
    """The last object loaded for each role, reused while its key (files, mtimes, settings) is unchanged."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, Any]] = {}

    def get(self, role: str, key: tuple, load: Callable[[], Any]) -> Any:
        entry = self._entries.get(role)
        if entry is not None and entry[0] == key:
            return entry[1]
        self._entries.pop(role, None)  # drop the old model before loading the new one
        value = load()
        self._entries[role] = (key, value)
        return value


LOAD_CACHE = LoadCache()


def _load_cached(role: str, key: tuple, path: Path, load: Callable[[], Any]) -> Any:
    """The cached `role` object while `key` holds, else `load()`; checkpoint errors name the role and the file."""

    def checked() -> Any:
        try:
            return load()
        except CheckpointError as error:
            raise CheckpointError(f"{role} {path.name!r} could not be used: {error}") from error

    return LOAD_CACHE.get(role, key, checked)


class LoadEchoTorrent(io.ComfyNode):
    """Loads the EchoTorrent networks once and hands them on as one ECHOTORRENT_MODEL."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentLoadModel",
            display_name="Load EchoTorrent",
            category="EchoTorrent/loaders",
            description="Loads the causal Wan2.1 DiT with audio layers, the Wan VAE, the wav2vec2 audio encoder and "
                        "an optional decoder refiner (safetensors only). Loads are cached until a file changes.",
            inputs=[
                io.Combo.Input("dit", options=model_files(DIT_FOLDERS),
                               tooltip="The EchoTorrent DiT (causal Wan2.1 with audio layers), from models/echotorrent "
                                       "or models/diffusion_models."),
                io.Combo.Input("vae", options=model_files(VAE_FOLDERS),
                               tooltip="The Wan2.1 VAE from models/vae, e.g. wan_2.1_vae.safetensors."),
                io.Combo.Input("audio_encoder", options=model_files(AUDIO_ENCODER_FOLDERS),
                               tooltip="The wav2vec2 speech encoder from models/audio_encoders or models/wav2vec2."),
                io.Combo.Input("refiner", options=[NO_REFINER] + model_files(REFINER_FOLDERS), default=NO_REFINER,
                               tooltip="Optional decoder refiner (VAE decoder weights only) used by Refined VAE "
                                       "Decode; 'none' keeps the base decoder."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight dtype of the DiT and VAE; auto = bf16 on a GPU, fp32 on the CPU."),
                io.Combo.Input("device", options=["auto", "cpu", "cuda"], default="auto",
                               tooltip="Where the networks run; auto = ComfyUI's device (the CPU under --cpu)."),
                io.Combo.Input("audio_adapter", options=[NO_AUDIO_ADAPTER] + model_files(AUDIO_ADAPTER_FOLDERS),
                               default=NO_AUDIO_ADAPTER,
                               tooltip="Optional MultiTalk/InfiniteTalk audio-layer file applied on the DiT (e.g. an "
                                       "InfiniteTalk adapter on a Wan2.1 base); 'none' uses the DiT file as it is."),
            ],
            outputs=[ModelType.Output("model", display_name="model", tooltip="The loaded EchoTorrent networks.")],
        )

    @classmethod
    def fingerprint_inputs(cls, dit: str, vae: str, audio_encoder: str, refiner: str, dtype: str,
                           device: str, audio_adapter: str = NO_AUDIO_ADAPTER) -> tuple:
        """Changes when a chosen file changes on disk, so ComfyUI runs the loader again instead of reusing its
        last output (a file that cannot be found is left to `execute` to report)."""
        chosen = [(DIT_FOLDERS, dit), (VAE_FOLDERS, vae), (AUDIO_ENCODER_FOLDERS, audio_encoder)]
        if refiner != NO_REFINER:
            chosen.append((REFINER_FOLDERS, refiner))
        if audio_adapter != NO_AUDIO_ADAPTER:
            chosen.append((AUDIO_ADAPTER_FOLDERS, audio_adapter))
        stamps = []
        for folders, name in chosen:
            try:
                stamps.append(_file_key(find_model_file(folders, name, "model")))
            except FileNotFoundError:
                stamps.append((name,))
        return (*stamps, dtype, device)

    @classmethod
    def execute(cls, dit: str, vae: str, audio_encoder: str, refiner: str, dtype: str, device: str,
                audio_adapter: str = NO_AUDIO_ADAPTER) -> io.NodeOutput:
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        paths = {
            "dit": find_model_file(DIT_FOLDERS, dit, "DiT"),
            "vae": find_model_file(VAE_FOLDERS, vae, "VAE"),
            "audio_encoder": find_model_file(AUDIO_ENCODER_FOLDERS, audio_encoder, "audio encoder"),
        }
        keys = {
            "dit": _file_key(paths["dit"], torch_dtype, torch_device),
            "vae": _file_key(paths["vae"], torch_dtype, torch_device),
            "audio_encoder": _file_key(paths["audio_encoder"], torch.float32, torch_device),
        }
        if refiner != NO_REFINER:
            paths["refiner"] = find_model_file(REFINER_FOLDERS, refiner, "decoder refiner")
            keys["refiner"] = _file_key(paths["refiner"]) + keys["vae"]
        if audio_adapter != NO_AUDIO_ADAPTER:
            paths["audio_adapter"] = find_model_file(AUDIO_ADAPTER_FOLDERS, audio_adapter, "audio adapter")
            keys["dit"] += _file_key(paths["audio_adapter"])
        bundle_key = tuple(sorted(keys.items()))
        model = LOAD_CACHE.get("model", bundle_key, lambda: cls._load(paths, keys, torch_dtype, torch_device))
        return io.NodeOutput(model)

    @classmethod
    def _load(cls, paths: dict[str, Path], keys: dict[str, tuple], dtype: torch.dtype,
              device: torch.device) -> EchoTorrentModel:
        dit_model, dit_report = _load_cached(
            "DiT", keys["dit"], paths["dit"],
            lambda: load_dit(paths["dit"], dtype=dtype, device=device, audio_adapter=paths.get("audio_adapter")))
        vae_model, vae_report = _load_cached(
            "VAE", keys["vae"], paths["vae"], lambda: load_vae(paths["vae"], dtype=dtype, device=device))
        encoder, encoder_report = _load_cached(
            "audio encoder", keys["audio_encoder"], paths["audio_encoder"],
            lambda: load_audio_encoder(paths["audio_encoder"], dtype=torch.float32, device=device))
        refined = None
        if "refiner" in paths:
            refined = _load_cached("decoder refiner", keys["refiner"], paths["refiner"],
                                   lambda: load_decoder_refiner(paths["refiner"], vae_model))
        return EchoTorrentModel(dit_model, vae_model, encoder, (dit_report, vae_report, encoder_report), refined)
