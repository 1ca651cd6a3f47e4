"""One public function per checkpoint job: load or save the DiT, the VAE and the audio encoder.

Accepted files (safetensors only):
- DiT: native Wan2.1 names, ComfyUI repackaged (`model.diffusion_model.` prefix), diffusers
  `WanTransformer3DModel`, training checkpoints (`generator_ema.` / `generator.`, FSDP / DDP / compile wrappers),
  with or without the MultiTalk/InfiniteTalk audio layers, or plus a separate audio-adapter file holding only them;
  bf16, fp16, fp32 or fp8 (upcast) tensors.
- VAE: native Wan2.1 names (`wan_2.1_vae.safetensors`), diffusers `AutoencoderKLWan`, `first_stage_model.` prefix.
- Audio encoder: Hugging Face wav2vec2 (`Wav2Vec2Model` / `Wav2Vec2ForCTC`, e.g. wav2vec2-base-960h,
  chinese-wav2vec2-base) or our own torchaudio-layout file.
The config comes from our JSON metadata when present (files written by `save_*`), else from tensor shapes.
Every failure is a `CheckpointError` naming the file, the layout seen and the missing / unexpected keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from ..config import AudioAdapterConfig, DiTConfig, VAEConfig, Wav2VecConfig, config_from_json, config_to_json
from . import dit_keys, vae_keys, wav2vec_keys
from .errors import CheckpointError
from .key_check import key_mismatch, listing
from .layouts import DetectedLayout, detect_layout, require_family
from .safetensors_io import read_state_dict, write_state_dict

CONFIG_METADATA_KEY = "echotorrent_config"
FORMAT_METADATA_KEY = "format"
NATIVE_FORMAT = "echotorrent-native"
_AUDIO_BLOCK_KEY = re.compile(r"^blocks\.\d+\.(norm_x|audio_cross_attn)\.")

ModelT = TypeVar("ModelT", bound=nn.Module)


@dataclass(frozen=True)
class LoadReport:
    """How a checkpoint was read: its path, detected layout, the resulting config and dtype."""

    path: str
    layout: DetectedLayout
    config: DiTConfig | VAEConfig | Wav2VecConfig
    dtype: torch.dtype
    num_tensors: int

    def describe(self) -> str:
        return f"{Path(self.path).name}: {self.layout.describe()}, {self.num_tensors} tensors, {self.dtype}"


def _choose_dtype(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    floating = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(floating) == 1 and next(iter(floating)) in (torch.float32, torch.float16, torch.bfloat16):
        return next(iter(floating))
    return torch.bfloat16 if any(d.itemsize == 1 for d in floating) else torch.float32


def _dequantize_scaled_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold ComfyUI's `scaled_fp8` per-tensor `*.scale_weight` factors into upcast weights."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".scale_weight") or key in ("scaled_fp8", "scale_input") or key.endswith(".scale_input"):
            continue
        if value.is_floating_point() and value.dtype.itemsize == 1:
            scale_key = key[: -len("weight")] + "scale_weight" if key.endswith("weight") else None
            value = value.to(torch.float32)
            if scale_key and scale_key in state:
                value = value * state[scale_key].to(torch.float32)
        out[key] = value
    return out


def _build_and_load(
    factory: Callable[[], ModelT], state: dict[str, torch.Tensor], dtype: torch.dtype, device: str | torch.device,
    path: object, detected: DetectedLayout, config: object, skip_init: bool = False, share: bool = False,
) -> ModelT:
    """Instantiate the model, check keys and shapes against the file, then load the tensors.

    `skip_init` builds on the meta device (no random init; for the large DiT, whose every tensor is in the file);
    models with non-persistent buffers (the VAE's latent statistics) are built normally. `share` makes the model
    use the given tensors themselves wherever dtype and device already match (no copy of another model's weights).
    """
    if skip_init:
        with torch.device("meta"):
            model = factory()
    else:
        model = factory()
    mismatch = key_mismatch(model.state_dict(), state, "model")
    if mismatch:
        raise CheckpointError(f"{path} ({detected.describe()}) does not match the model built for {config}: {mismatch}")
    converted = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=True, assign=skip_init or share)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        raise CheckpointError(f"{type(model).__name__} has tensors that are not stored in {path}")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _read(path: str | Path, prefer: str) -> tuple[dict[str, torch.Tensor], dict[str, str], DetectedLayout]:
    state, metadata = read_state_dict(path)
    detected, model_state = detect_layout(state, prefer=prefer)
    require_family(detected, prefer, path)
    return _dequantize_scaled_fp8(model_state), metadata, detected


def _config_from_metadata(metadata: dict[str, str], kind: type) -> object | None:
    if CONFIG_METADATA_KEY not in metadata:
        return None
    config = config_from_json(metadata[CONFIG_METADATA_KEY])
    if not isinstance(config, kind):
        raise CheckpointError(f"metadata describes a {type(config).__name__}, expected {kind.__name__}")
    return config


def load_dit(
    path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
    num_heads: int | None = None, audio_dim: int | None = None, audio_adapter: str | Path | None = None,
) -> tuple[nn.Module, LoadReport]:
    """Load a Wan DiT (with audio layers when present).

    `audio_adapter`: a MultiTalk/InfiniteTalk audio-layer file (`audio_proj.*`, `blocks.N.norm_x.*`,
    `blocks.N.audio_cross_attn.*`, as published beside a Wan2.1 base) applied on top of the base DiT; its layers
    replace any the base has. Files without our metadata get their config from shapes; `num_heads` (default: head
    dim 128) and `audio_dim` (default: 768, the wav2vec2-base width) settle what shapes cannot tell.
    """
    from ..models.dit import WanDiT

    state, metadata, detected = _read(path, "dit")
    if detected.layout == "diffusers":
        state = dit_keys.diffusers_to_native(state)
    config = _config_from_metadata(metadata, DiTConfig) or dit_keys.config_from_state_dict(
        state, num_heads=num_heads, audio_dim=audio_dim
    )
    if audio_adapter is not None:
        adapter_state, adapter_config = _read_audio_adapter(audio_adapter)
        state = {k: v for k, v in state.items() if not is_audio_key(k)} | adapter_state
        audio_config = adapter_config or dit_keys.audio_config_from_state_dict(
            state, audio_dim or _audio_dim(config)
        )
        config = replace(config, audio=audio_config)
    chosen = _choose_dtype(state, dtype)
    source = path if audio_adapter is None else f"{path} + audio adapter {audio_adapter}"
    model = _build_and_load(lambda: WanDiT(config), state, chosen, device, source, detected, config, skip_init=True)
    return model, LoadReport(str(source), detected, config, chosen, len(state))


def is_audio_key(key: str) -> bool:
    """Whether a native DiT key belongs to the MultiTalk/InfiniteTalk audio layers."""
    return key.startswith("audio_proj.") or bool(_AUDIO_BLOCK_KEY.match(key))


def _audio_dim(config: DiTConfig) -> int | None:
    return None if config.audio is None else config.audio.audio_dim


def _read_audio_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], AudioAdapterConfig | None]:
    """The audio layers of an adapter file (prefixes removed) and their config when our metadata has it; anything
    else in the file is an error."""
    state, metadata, _ = _read(path, "audio_adapter")
    foreign = [key for key in state if not is_audio_key(key)]
    if foreign:
        raise CheckpointError(
            f"{path} is not an audio adapter: besides audio layers it holds {len(foreign)} other tensors "
            f"({listing(foreign)}); a full DiT belongs in the DiT input"
        )
    config = _config_from_metadata(metadata, DiTConfig)
    return state, None if config is None else config.audio


def load_vae(
    path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, LoadReport]:
    """Load a Wan2.1 VAE (native or diffusers layout)."""
    state, metadata, detected = _read(path, "vae")
    config = _config_from_metadata(metadata, VAEConfig)
    return _vae_from_detected(state, detected, config, dtype, device, str(path), share=False)


def vae_from_state_dict(
    state: dict[str, torch.Tensor], source: str, dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, LoadReport]:
    """A Wan2.1 VAE from another program's in-memory weights (e.g. ComfyUI's loaded VAE, native names, any of the
    accepted prefixes); `source` names them in errors. Tensors already in `dtype` on `device` are used as they are,
    so no second copy of the weights is made; the config comes from the shapes."""
    detected, model_state = detect_layout(dict(state), prefer="vae")
    require_family(detected, "vae", source)
    return _vae_from_detected(model_state, detected, None, dtype, device, source, share=True)


def _vae_from_detected(
    state: dict[str, torch.Tensor], detected: DetectedLayout, config: VAEConfig | None, dtype: torch.dtype | None,
    device: str | torch.device, source: str, share: bool,
) -> tuple[nn.Module, LoadReport]:
    from ..models.vae import WanVAE

    if detected.layout == "diffusers":
        state = vae_keys.diffusers_to_native(state)
    config = config or vae_keys.config_from_state_dict(state)
    chosen = _choose_dtype(state, dtype)
    model = _build_and_load(lambda: WanVAE(config), state, chosen, device, source, detected, config, share=share)
    return model, LoadReport(source, detected, config, chosen, len(state))


def load_audio_encoder(
    path: str | Path, dtype: torch.dtype | None = torch.float32, device: str | torch.device = "cpu"
) -> tuple[nn.Module, LoadReport]:
    """Load a wav2vec2 audio encoder from Hugging Face weights or our torchaudio-layout file."""
    from ..models.wav2vec import AudioEncoder

    state, metadata, detected = _read(path, "wav2vec")
    config = _config_from_metadata(metadata, Wav2VecConfig)
    if detected.layout == "huggingface":
        config = config or wav2vec_keys.config_from_state_dict(state)
        state = wav2vec_keys.huggingface_to_torchaudio(state)
    elif config is None:
        raise CheckpointError(f"{path}: a torchaudio-layout wav2vec2 file needs our config metadata; none found")
    chosen = _choose_dtype(state, dtype)
    encoder_state = {f"model.{key}": value for key, value in state.items()}
    model = _build_and_load(lambda: AudioEncoder(config), encoder_state, chosen, device, path, detected, config)
    return model, LoadReport(str(path), detected, config, chosen, len(state))


def _save(model: nn.Module, config: object, path: str | Path, strip: str = "") -> Path:
    state = {key[len(strip):]: value for key, value in model.state_dict().items() if key.startswith(strip)}
    metadata = {CONFIG_METADATA_KEY: config_to_json(config), FORMAT_METADATA_KEY: NATIVE_FORMAT}
    return write_state_dict(path, state, metadata)


def save_dit(model: nn.Module, path: str | Path) -> Path:
    """Write a DiT in the native Wan layout with its config in the metadata (atomic)."""
    return _save(model, model.cfg, path)


def save_audio_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write only a DiT's audio layers (the MultiTalk/InfiniteTalk names) with its config in the metadata (atomic)."""
    if model.cfg.audio is None:
        raise ValueError("this DiT has no audio layers to save")
    state = {key: value for key, value in model.state_dict().items() if is_audio_key(key)}
    metadata = {CONFIG_METADATA_KEY: config_to_json(model.cfg), FORMAT_METADATA_KEY: NATIVE_FORMAT}
    return write_state_dict(path, state, metadata)


def save_vae(model: nn.Module, path: str | Path) -> Path:
    """Write a VAE in the native Wan layout with its config in the metadata (atomic)."""
    return _save(model, model.cfg, path)


def save_audio_encoder(model: nn.Module, path: str | Path) -> Path:
    """Write an audio encoder in the torchaudio layout with its config in the metadata (atomic)."""
    return _save(model, model.cfg, path, strip="model.")
