"""Recognise which model and which key layout a state dict holds, and strip the prefixes around it.

Accepted wrappings, in the order they are undone:
1. wrapper tokens anywhere in a key: FSDP `_fsdp_wrapped_module.`, activation checkpointing
   `_checkpoint_wrapped_module.`, torch.compile `_orig_mod.`;
2. training checkpoints with several networks: `generator_ema.` is preferred over `generator.` (critic `fake_score.`
   and teacher `real_score.` entries are ignored);
3. any outer prefix in front of a model's anchor keys, e.g. ComfyUI's `model.diffusion_model.`, `first_stage_model.`,
   DDP `module.`, Self-Forcing's `model.`, Hugging Face's `wav2vec2.`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import CheckpointError

WRAPPER_TOKENS: tuple[str, ...] = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
TRAINING_GROUPS: tuple[str, ...] = ("generator_ema.", "generator.")

# (family, layout) -> keys that must all be present (after the outer prefix) for that layout.
LAYOUT_ANCHORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("dit", "native"): ("patch_embedding.weight", "blocks.0.self_attn.q.weight", "head.head.weight"),
    ("dit", "diffusers"): ("patch_embedding.weight", "blocks.0.attn1.to_q.weight", "proj_out.weight"),
    ("audio_adapter", "multitalk"): ("audio_proj.proj1.weight", "blocks.0.audio_cross_attn.q_linear.weight"),
    ("vae", "native"): ("encoder.conv1.weight", "decoder.conv1.weight", "conv1.weight"),
    ("vae", "diffusers"): ("encoder.conv_in.weight", "decoder.conv_in.weight", "quant_conv.weight"),
    ("wav2vec", "torchaudio"): ("feature_extractor.conv_layers.0.conv.weight", "encoder.transformer.layers.0.attention.k_proj.weight"),
    ("wav2vec", "huggingface"): ("feature_extractor.conv_layers.0.conv.weight", "encoder.layers.0.attention.k_proj.weight"),
}

FAMILY_NAMES = {
    "dit": "Wan DiT (diffusion model)",
    "audio_adapter": "MultiTalk/InfiniteTalk audio adapter (audio layers only, applied on a Wan DiT)",
    "vae": "Wan VAE",
    "wav2vec": "wav2vec2 audio encoder",
}


@dataclass(frozen=True)
class DetectedLayout:
    """What `detect_layout` found: the model family, its key layout and how the keys were wrapped."""

    family: str  # "dit" | "audio_adapter" | "vae" | "wav2vec"
    layout: str  # "native" | "diffusers" | "multitalk" | "torchaudio" | "huggingface"
    prefix: str  # outer prefix stripped, e.g. "model.diffusion_model."
    training_group: str | None  # "generator_ema." / "generator." for training checkpoints
    ignored_keys: int  # keys outside the selected model (other networks in the same file)

    def describe(self) -> str:
        parts = [f"{FAMILY_NAMES[self.family]}, {self.layout} layout"]
        if self.training_group:
            parts.append(f"training checkpoint group '{self.training_group}'")
        if self.prefix:
            parts.append(f"prefix '{self.prefix}'")
        return "; ".join(parts)


def _remove_wrapper_tokens(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for token in WRAPPER_TOKENS:
            key = key.replace(token, "")
        cleaned[key] = value
    return cleaned


def _select_training_group(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    for group in TRAINING_GROUPS:
        selected = {key[len(group):]: value for key, value in state.items() if key.startswith(group)}
        if selected:
            return selected, group
    return state, None


def _find_prefix(keys: set[str], anchors: tuple[str, ...]) -> str | None:
    first = anchors[0]
    for key in keys:
        if key.endswith(first):
            prefix = key[: len(key) - len(first)]
            if all(prefix + anchor in keys for anchor in anchors):
                return prefix
    return None


def detect_layout(
    state: dict[str, torch.Tensor], prefer: str | None = None
) -> tuple[DetectedLayout, dict[str, torch.Tensor]]:
    """Find the model in `state` (the `prefer` family first, for files holding several models); returns the layout
    and that model's keys with every wrapping removed."""
    unwrapped, group = _select_training_group(_remove_wrapper_tokens(state))
    keys = set(unwrapped)
    candidates = sorted(LAYOUT_ANCHORS.items(), key=lambda item: item[0][0] != prefer)
    for (family, layout), anchors in candidates:
        prefix = _find_prefix(keys, anchors)
        if prefix is None:
            continue
        selected = {key[len(prefix):]: value for key, value in unwrapped.items() if key.startswith(prefix)}
        detected = DetectedLayout(family, layout, prefix, group, len(state) - len(selected))
        return detected, selected
    sample = ", ".join(sorted(keys)[:6])
    raise CheckpointError(
        "unrecognised checkpoint: no Wan DiT, Wan VAE or wav2vec2 layout found "
        f"({len(keys)} tensors, e.g. {sample})"
    )


def require_family(detected: DetectedLayout, expected: str, path: object) -> None:
    """Raise a clear error when a file holds another model than the one asked for."""
    if detected.family != expected:
        raise CheckpointError(
            f"{path} holds a {detected.describe()}; expected a {FAMILY_NAMES[expected]} checkpoint"
        )
