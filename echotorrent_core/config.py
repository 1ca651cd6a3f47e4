"""Model configurations and presets.

Every size constant of the models lives here (never in pipelines). Configs are frozen dataclasses so they can
be hashed (loader caches) and serialised to JSON (safetensors metadata) with `to_dict` / `from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Per-channel latent statistics of the Wan2.1 VAE (public Wan code); latents are stored as (z - mean) / std.
WAN_LATENTS_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN_LATENTS_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


@dataclass(frozen=True)
class AudioAdapterConfig:
    """MultiTalk/InfiniteTalk-style audio conditioning of the DiT.

    A latent frame's audio window (`window` rows for the first latent frame of a video, `window_vf` rows for
    the others, each row `encoder_layers` x `audio_dim`) is mapped by `audio_proj` to `context_tokens` tokens of
    size `token_dim`; every block cross-attends from the visual tokens of a frame to that frame's tokens.
    """

    audio_dim: int = 768  # wav2vec2 hidden size
    encoder_layers: int = 12  # stacked wav2vec2 hidden layers per audio frame
    window: int = 5  # audio frames seen by one video frame (offsets -2..2)
    vae_temporal_stride: int = 4  # video frames per latent frame after the first
    intermediate_dim: int = 512
    context_tokens: int = 32
    token_dim: int = 768
    norm_output: bool = True  # `audio_proj.norm` LayerNorm on the tokens

    @property
    def window_vf(self) -> int:
        """Rows gathered for a latent frame after the first: 3 + 2 + 3 = 8 for window 5 and stride 4."""
        half = self.window // 2
        return (half + 1) * 2 + (self.vae_temporal_stride - 2)


@dataclass(frozen=True)
class DiTConfig:
    """Wan2.1 DiT hyper-parameters (native names in comments)."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16  # 36 for image-to-video (16 noise + 4 mask + 16 condition)
    out_dim: int = 16
    text_dim: int = 4096  # umT5-XXL
    text_len: int = 512  # text context is zero-padded to this length, as in the Wan code
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    rope_theta: float = 10000.0
    image_dim: int | None = None  # CLIP feature size (1280) when the checkpoint has `img_emb`, else None
    audio: AudioAdapterConfig | None = None

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_branch(self) -> bool:
        return self.image_dim is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiTConfig":
        data = dict(data)
        if data.get("audio") is not None:
            data["audio"] = AudioAdapterConfig(**data["audio"])
        data["patch_size"] = tuple(data.get("patch_size", (1, 2, 2)))
        return cls(**data)


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal 3D VAE hyper-parameters: stride (4, 8, 8), T frames -> 1 + (T - 1) / 4 latents."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latents_mean: tuple[float, ...] = WAN_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN_LATENTS_STD
    # How many previous latents a streamed chunk is decoded after, from a fresh causal cache; 0 = the whole causal
    # history (the public Wan behaviour). A decoder trained on short windows needs a bound (see StreamingDecoder).
    decode_context_latents: int = 0
    # How many previous latents' frames each latent is encoded after, from a fresh causal cache; 0 = the whole
    # history. A bound makes an encoder trained on short windows stationary on long videos (WanVAE.moments).
    encode_context_latents: int = 0

    @property
    def temporal_stride(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_stride(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VAEConfig":
        data = dict(data)
        for key in ("dim_mult", "temporal_downsample", "latents_mean", "latents_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Wav2VecConfig:
    """wav2vec2 encoder hyper-parameters, named after `torchaudio.models.wav2vec2_model` arguments."""

    extractor_mode: str = "group_norm"  # "layer_norm" for the large "stable layer norm" variants
    extractor_conv_layer_config: tuple[tuple[int, int, int], ...] = (
        (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2),
    )
    extractor_conv_bias: bool = False
    encoder_embed_dim: int = 768
    encoder_pos_conv_kernel: int = 128
    encoder_pos_conv_groups: int = 16
    encoder_num_layers: int = 12
    encoder_num_heads: int = 12
    encoder_ff_interm_features: int = 3072
    encoder_layer_norm_first: bool = False
    sample_rate: int = 16000

    @property
    def frame_rate(self) -> float:
        """Feature frames per second at the CNN output (50 for the standard extractor at 16 kHz)."""
        stride = 1
        for _, _, s in self.extractor_conv_layer_config:
            stride *= s
        return self.sample_rate / stride

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Wav2VecConfig":
        data = dict(data)
        if "extractor_conv_layer_config" in data:
            data["extractor_conv_layer_config"] = tuple(tuple(x) for x in data["extractor_conv_layer_config"])
        return cls(**data)


@dataclass(frozen=True)
class ModelPreset:
    """A named bundle of the three model configs."""

    name: str
    dit: DiTConfig
    vae: VAEConfig = field(default_factory=VAEConfig)
    wav2vec: Wav2VecConfig = field(default_factory=Wav2VecConfig)


_TINY_AUDIO = AudioAdapterConfig(
    audio_dim=32, encoder_layers=2, intermediate_dim=32, context_tokens=4, token_dim=32
)

_TINY_VAE = VAEConfig(base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
_TINY_WAV2VEC = Wav2VecConfig(
    extractor_conv_layer_config=((16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 2, 2), (16, 2, 2)),
    encoder_embed_dim=32,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4,
    encoder_num_layers=2,
    encoder_num_heads=2,
    encoder_ff_interm_features=64,
)

PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        name="tiny",
        dit=DiTConfig(
            dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=8, freq_dim=32, audio=_TINY_AUDIO
        ),
        vae=_TINY_VAE,
        wav2vec=_TINY_WAV2VEC,
    ),
    # The tiny model as an image-to-video checkpoint: 4 mask + 16 condition input channels and a CLIP ViT-H branch.
    "tiny-i2v": ModelPreset(
        name="tiny-i2v",
        dit=DiTConfig(
            dim=64, ffn_dim=128, num_heads=2, num_layers=2, in_dim=36, text_dim=32, text_len=8, freq_dim=32,
            image_dim=1280, audio=_TINY_AUDIO,
        ),
        vae=_TINY_VAE,
        wav2vec=_TINY_WAV2VEC,
    ),
    "wan2.1-1.3b": ModelPreset(
        name="wan2.1-1.3b",
        dit=DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, audio=AudioAdapterConfig()),
    ),
    # Wan2.1-1.3B and the Wan VAE at a quarter of their width: same depth and layout, about 1/16 of the compute,
    # so the real models' DiT-to-VAE proportions at a size a CPU can time (benchmarks).
    "wan2.1-1.3b-quarter": ModelPreset(
        name="wan2.1-1.3b-quarter",
        dit=DiTConfig(dim=384, ffn_dim=2240, num_heads=3, num_layers=30, audio=AudioAdapterConfig()),
        vae=VAEConfig(base_dim=24),
    ),
    "wan2.1-14b": ModelPreset(
        name="wan2.1-14b",
        dit=DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, audio=AudioAdapterConfig()),
    ),
    "wan2.1-i2v-14b": ModelPreset(
        name="wan2.1-i2v-14b",
        dit=DiTConfig(
            dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, image_dim=1280, audio=AudioAdapterConfig()
        ),
    ),
}


def get_preset(name: str) -> ModelPreset:
    """Return the preset called `name`; the error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}") from None


def config_to_json(config: DiTConfig | VAEConfig | Wav2VecConfig) -> str:
    """Serialise a config for safetensors metadata (`{"kind": ..., "config": {...}}`)."""
    return json.dumps({"kind": type(config).__name__, "config": config.to_dict()}, sort_keys=True)


def config_from_json(text: str) -> DiTConfig | VAEConfig | Wav2VecConfig:
    """Inverse of `config_to_json`."""
    payload = json.loads(text)
    kinds = {cls.__name__: cls for cls in (DiTConfig, VAEConfig, Wav2VecConfig)}
    if payload.get("kind") not in kinds:
        raise ValueError(f"config metadata names kind {payload.get('kind')!r}; expected one of {sorted(kinds)}")
    return kinds[payload["kind"]].from_dict(payload["config"])
