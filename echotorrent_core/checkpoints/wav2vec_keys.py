"""Hugging Face wav2vec2 state dicts -> `torchaudio.models.Wav2Vec2Model` names, and the config from shapes.

Hugging Face `Wav2Vec2Model` keys (optionally under `wav2vec2.` as in `Wav2Vec2ForCTC` / `Wav2Vec2ForPreTraining`)
differ from torchaudio's only in where the encoder parts live:
`feature_projection.*` -> `encoder.feature_projection.*`, `encoder.*` -> `encoder.transformer.*`.
The positional convolution's weight norm is stored either as `weight_g` / `weight_v` (older files, e.g.
facebook/wav2vec2-base-960h, TencentGameMate/chinese-wav2vec2-base) or as `parametrizations.weight.original0/1`;
both map onto torchaudio's parametrization (`original0` = magnitude g, `original1` = direction v).
Heads and training-only tensors (`lm_head.*`, `masked_spec_embed`, `quantizer.*`, `project_hid.*`, `project_q.*`)
are dropped. Keys outside these rules are kept unchanged, so a strict load reports them as unexpected.
"""

from __future__ import annotations

import re

import torch

from echotorrent_core.config import Wav2VecConfig

HUGGINGFACE_ANCHORS: tuple[str, ...] = (
    "feature_extractor.conv_layers.0.conv.weight",
    "feature_projection.projection.weight",
    "encoder.layers.0.attention.k_proj.weight",
)
TORCHAUDIO_ANCHORS: tuple[str, ...] = (
    "feature_extractor.conv_layers.0.conv.weight",
    "encoder.feature_projection.projection.weight",
    "encoder.transformer.layers.0.attention.k_proj.weight",
)
STANDARD_CONV_STRIDES: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
STANDARD_HEAD_DIM = 64  # every published wav2vec2 (base 768 / 12 heads, large 1024 / 16 heads)

_MODEL_PREFIX = "wav2vec2."
_DROPPED_PREFIXES: tuple[str, ...] = ("lm_head.", "quantizer.", "project_hid.", "project_q.", "masked_spec_embed")
_POS_CONV = "encoder.pos_conv_embed.conv."
_WEIGHT_NORM_NAMES = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def _strip_model_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(key.startswith(_MODEL_PREFIX) for key in sd):
        return {key[len(_MODEL_PREFIX):] if key.startswith(_MODEL_PREFIX) else key: value for key, value in sd.items()}
    return dict(sd)


def is_huggingface_layout(sd: dict[str, torch.Tensor]) -> bool:
    """True when `sd` (with or without the `wav2vec2.` prefix) holds Hugging Face wav2vec2 keys."""
    keys = _strip_model_prefix(sd).keys()
    return all(anchor in keys for anchor in HUGGINGFACE_ANCHORS)


def is_torchaudio_layout(sd: dict[str, torch.Tensor]) -> bool:
    """True when `sd` holds `torchaudio.models.Wav2Vec2Model` keys."""
    return all(anchor in sd for anchor in TORCHAUDIO_ANCHORS)


def _rename(key: str) -> str:
    if key.startswith(_POS_CONV):
        leaf = key[len(_POS_CONV):]
        key = _POS_CONV + _WEIGHT_NORM_NAMES.get(leaf, leaf)
    if key.startswith("feature_projection."):
        return "encoder." + key
    if key.startswith("encoder."):
        return "encoder.transformer." + key[len("encoder."):]
    return key


def huggingface_to_torchaudio(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face wav2vec2 state dict to torchaudio `Wav2Vec2Model` keys (tensors are not copied)."""
    if not is_huggingface_layout(sd):
        missing = [a for a in HUGGINGFACE_ANCHORS if a not in _strip_model_prefix(sd)]
        raise ValueError(f"not a Hugging Face wav2vec2 state dict: missing {missing}")
    out: dict[str, torch.Tensor] = {}
    for key, value in _strip_model_prefix(sd).items():
        if key.startswith(_DROPPED_PREFIXES):
            continue
        out[_rename(key)] = value
    return out


def _layer_indices(keys: list[str], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in keys if (m := regex.match(key))})


def config_from_state_dict(
    sd: dict[str, torch.Tensor],
    num_heads: int | None = None,
    conv_strides: tuple[int, ...] | None = None,
    layer_norm_first: bool | None = None,
    sample_rate: int = 16000,
) -> Wav2VecConfig:
    """Infer a `Wav2VecConfig` from a Hugging Face or torchaudio wav2vec2 state dict.

    From shapes and key presence: conv channels / kernels, conv bias, extractor mode (`layer_norm` when every conv
    layer has a norm, else `group_norm`), embed dim, positional conv kernel / groups, layers, FFN size.
    Not visible in the weights, hence arguments: `num_heads` (default embed_dim / 64, true for all published
    models), `conv_strides` (default the standard (5, 2, 2, 2, 2, 2, 2)), `layer_norm_first` (default: True exactly
    when the extractor uses layer norms, as in every published "stable layer norm" model, e.g. large-lv60, XLS-R).
    """
    if is_huggingface_layout(sd):
        sd = huggingface_to_torchaudio(sd)
    elif not is_torchaudio_layout(sd):
        raise ValueError(
            f"not a wav2vec2 state dict: expected the Hugging Face keys {list(HUGGINGFACE_ANCHORS)} "
            f"or the torchaudio keys {list(TORCHAUDIO_ANCHORS)}"
        )
    keys = list(sd)
    conv_ids = _layer_indices(keys, r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight$")
    if conv_ids != list(range(len(conv_ids))):
        raise ValueError(f"feature extractor conv layers are not numbered 0..n-1: {conv_ids}")
    strides = conv_strides if conv_strides is not None else STANDARD_CONV_STRIDES
    if len(strides) != len(conv_ids):
        raise ValueError(
            f"the checkpoint has {len(conv_ids)} conv layers; pass conv_strides with one stride per layer "
            f"(the standard strides {STANDARD_CONV_STRIDES} cover 7 layers)"
        )
    conv_shapes = [sd[f"feature_extractor.conv_layers.{i}.conv.weight"].shape for i in conv_ids]
    conv_config = tuple((int(s[0]), int(s[2]), int(stride)) for s, stride in zip(conv_shapes, strides))
    norms = [f"feature_extractor.conv_layers.{i}.layer_norm.weight" in sd for i in conv_ids]
    extractor_mode = "layer_norm" if len(conv_ids) > 1 and all(norms) else "group_norm"

    embed_dim = int(sd["encoder.feature_projection.projection.weight"].shape[0])
    pos_weight = sd.get("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1")
    if pos_weight is None:
        raise ValueError("missing the positional conv weight (weight_v / parametrizations.weight.original1)")
    layer_ids = _layer_indices(keys, r"encoder\.transformer\.layers\.(\d+)\.")
    if layer_ids != list(range(len(layer_ids))):
        raise ValueError(f"encoder layers are not numbered 0..n-1: {layer_ids}")
    if num_heads is None:
        if embed_dim % STANDARD_HEAD_DIM:
            raise ValueError(f"cannot infer the head count for embed dim {embed_dim}; pass num_heads")
        num_heads = embed_dim // STANDARD_HEAD_DIM
    if embed_dim % num_heads:
        raise ValueError(f"embed dim {embed_dim} is not divisible by num_heads={num_heads}")
    ffn_weight = sd["encoder.transformer.layers.0.feed_forward.intermediate_dense.weight"]
    return Wav2VecConfig(
        extractor_mode=extractor_mode,
        extractor_conv_layer_config=conv_config,
        extractor_conv_bias="feature_extractor.conv_layers.0.conv.bias" in sd,
        encoder_embed_dim=embed_dim,
        encoder_pos_conv_kernel=int(pos_weight.shape[2]),
        encoder_pos_conv_groups=embed_dim // int(pos_weight.shape[1]),
        encoder_num_layers=len(layer_ids),
        encoder_num_heads=num_heads,
        encoder_ff_interm_features=int(ffn_weight.shape[0]),
        encoder_layer_norm_first=extractor_mode == "layer_norm" if layer_norm_first is None else layer_norm_first,
        sample_rate=sample_rate,
    )
