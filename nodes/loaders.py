"""Load EchoTorrent: DiT + VAE (a file or a core VAE) + audio encoder (+ decoder refiner) from ComfyUI's model folders.

Nothing is cached here: ComfyUI keeps the node's output while its inputs and `fingerprint_inputs` (the files' paths,
sizes and mtimes) are unchanged, and drops it on "Free model and node cache". The networks are loaded onto their
offload device and handed to ComfyUI's model management (nodes/memory.py), which moves them onto the device when a
node runs them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import comfy.model_management
import folder_paths
import torch
from comfy_api.latest import io

from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.loaders import load_audio_encoder, load_dit, load_vae
from echotorrent_core.checkpoints.refiner import load_decoder_refiner
from echotorrent_core.cli import DEFAULT_BUNDLE
from echotorrent_core.precision import default_dit_dtype

from .core_inputs import wan_vae_from_core
from .memory import manage, offload_device
from .types import EchoTorrentModel, ModelType

ECHOTORRENT_FOLDER = "echotorrent"
WAV2VEC2_FOLDER = "wav2vec2"
AUDIO_ENCODERS_FOLDER = "audio_encoders"  # built into recent ComfyUI (a no-op there), added for older ones
for _name in (ECHOTORRENT_FOLDER, WAV2VEC2_FOLDER, AUDIO_ENCODERS_FOLDER):
    folder_paths.add_model_folder_path(_name, os.path.join(folder_paths.models_dir, _name))
# The package's embedded default model (dit / vae / audio_encoder.safetensors) is listed without copying files: its
# folder is an extra path of the DiT, VAE and audio-encoder folders, searched after the user's own model folders.
for _name in (ECHOTORRENT_FOLDER, "vae", AUDIO_ENCODERS_FOLDER):
    folder_paths.add_model_folder_path(_name, str(DEFAULT_BUNDLE))

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
    return default_dit_dtype(device) if choice == "auto" else DTYPES[choice]


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _checked_load(role: str, path: Path, load: Callable[[], Any]) -> Any:
    """`load()`, with checkpoint errors naming the role and the file."""
    try:
        return load()
    except CheckpointError as error:
        raise CheckpointError(f"{role} {path.name!r} could not be used: {error}") from error


class LoadEchoTorrent(io.ComfyNode):
    """Loads the EchoTorrent networks once and hands them on as one ECHOTORRENT_MODEL."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentLoadModel",
            display_name="Load EchoTorrent",
            category="EchoTorrent/loaders",
            description="Loads the causal Wan2.1 DiT with audio layers, the Wan VAE (or takes a core VAE from Load "
                        "VAE), the wav2vec2 audio encoder and an optional decoder refiner (safetensors only). ComfyUI "
                        "manages their memory like its own models and reloads them when a file changes.",
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
                               tooltip="Weight dtype of the DiT and VAE; auto = bf16 on a GPU, fp32 on the CPU (as "
                                       "ComfyUI's own VAE). On CPUs with AMX, bf16 decodes about 1.9x faster."),
                io.Combo.Input("device", options=["auto", "cpu", "cuda"], default="auto",
                               tooltip="Where the networks run; auto = ComfyUI's device (the CPU under --cpu)."),
                io.Combo.Input("audio_adapter", options=[NO_AUDIO_ADAPTER] + model_files(AUDIO_ADAPTER_FOLDERS),
                               default=NO_AUDIO_ADAPTER,
                               tooltip="Optional MultiTalk/InfiniteTalk audio-layer file applied on the DiT (e.g. an "
                                       "InfiniteTalk adapter on a Wan2.1 base); 'none' uses the DiT file as it is."),
                io.Vae.Input("core_vae", display_name="vae (Load VAE)", optional=True,
                             tooltip="Optional Wan 2.1 VAE from core Load VAE; when connected it replaces the vae "
                                     "file (its weights are converted, not copied, when dtype and device match)."),
            ],
            outputs=[ModelType.Output("model", display_name="model", tooltip="The loaded EchoTorrent networks.")],
        )

    @classmethod
    def fingerprint_inputs(cls, dit: str, vae: str, audio_encoder: str, refiner: str, dtype: str,
                           device: str, audio_adapter: str = NO_AUDIO_ADAPTER, core_vae: Any = None) -> tuple:
        """Changes when a chosen file changes on disk, so ComfyUI runs the loader again instead of reusing its
        last output (a file that cannot be found is left to `execute` to report; a connected core VAE is
        covered by ComfyUI's own check of the node upstream)."""
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
                audio_adapter: str = NO_AUDIO_ADAPTER, core_vae: Any = None) -> io.NodeOutput:
        load_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, load_device)
        dit_path = find_model_file(DIT_FOLDERS, dit, "DiT")
        encoder_path = find_model_file(AUDIO_ENCODER_FOLDERS, audio_encoder, "audio encoder")
        vae_path = None if core_vae is not None else find_model_file(VAE_FOLDERS, vae, "VAE")
        refiner_path = None if refiner == NO_REFINER else find_model_file(REFINER_FOLDERS, refiner, "decoder refiner")
        adapter_path = (None if audio_adapter == NO_AUDIO_ADAPTER
                        else find_model_file(AUDIO_ADAPTER_FOLDERS, audio_adapter, "audio adapter"))

        parked = {role: offload_device(role, load_device) for role in ("dit", "vae", "audio_encoder")}
        dit_model, dit_report = _checked_load("DiT", dit_path, lambda: load_dit(
            dit_path, dtype=torch_dtype, device=parked["dit"], audio_adapter=adapter_path))
        if core_vae is not None:
            vae_model, vae_report = wan_vae_from_core(core_vae, torch_dtype, parked["vae"])
        else:
            vae_model, vae_report = _checked_load("VAE", vae_path, lambda: load_vae(
                vae_path, dtype=torch_dtype, device=parked["vae"]))
        encoder, encoder_report = _checked_load("audio encoder", encoder_path, lambda: load_audio_encoder(
            encoder_path, dtype=torch.float32, device=parked["audio_encoder"]))
        refined = None
        if refiner_path is not None:
            refined = _checked_load("decoder refiner", refiner_path,
                                    lambda: load_decoder_refiner(refiner_path, vae_model))
        networks = {"dit": dit_model, "vae": vae_model, "audio_encoder": encoder, "refiner": refined}
        patchers = {role: manage(module, role, load_device) for role, module in networks.items() if module is not None}
        return io.NodeOutput(EchoTorrentModel(dit_model, vae_model, encoder, (dit_report, vae_report, encoder_report),
                                              refined, patchers))
