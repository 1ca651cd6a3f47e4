"""Wan DiT state-dict names: diffusers <-> native Wan2.1, anchor keys for layout detection, config from shapes.

The diffusers `WanTransformer3DModel` stores the same tensors under other names (no reshapes or transposes:
`scale_shift_table` is `[1, 6, dim]` per block and `[1, 2, dim]` at the top in both layouts). Keys outside the
tables below (the MultiTalk / InfiniteTalk audio layers `audio_proj.*`, `blocks.N.norm_x.*`,
`blocks.N.audio_cross_attn.*`) pass through unchanged.
"""

from __future__ import annotations

import math
import re

import torch

from echotorrent_core.config import AudioAdapterConfig, DiTConfig

# Keys every native Wan DiT has; a state dict holding them (after prefix stripping) is in the native layout.
NATIVE_ANCHOR_KEYS: frozenset[str] = frozenset(
    {
        "patch_embedding.weight",
        "text_embedding.0.weight",
        "time_embedding.0.weight",
        "time_projection.1.weight",
        "blocks.0.modulation",
        "blocks.0.self_attn.q.weight",
        "blocks.0.cross_attn.k.weight",
        "head.head.weight",
        "head.modulation",
    }
)

# Keys every diffusers WanTransformer3DModel has.
DIFFUSERS_ANCHOR_KEYS: frozenset[str] = frozenset(
    {
        "patch_embedding.weight",
        "condition_embedder.time_proj.weight",
        "condition_embedder.text_embedder.linear_1.weight",
        "blocks.0.attn1.to_q.weight",
        "blocks.0.scale_shift_table",
        "proj_out.weight",
        "scale_shift_table",
    }
)

# (diffusers module or parameter, native module or parameter), outside the blocks.
_TOP_LEVEL: tuple[tuple[str, str], ...] = (
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("proj_out", "head.head"),
    ("scale_shift_table", "head.modulation"),
)

# (diffusers, native) inside `blocks.N.`.
_IN_BLOCK: tuple[tuple[str, str], ...] = tuple(
    (f"{d_attn}.{d_name}", f"{n_attn}.{n_name}")
    for d_attn, n_attn in (("attn1", "self_attn"), ("attn2", "cross_attn"))
    for d_name, n_name in (
        ("to_q", "q"),
        ("to_k", "k"),
        ("to_v", "v"),
        ("to_out.0", "o"),
        ("norm_q", "norm_q"),
        ("norm_k", "norm_k"),
        ("add_k_proj", "k_img"),
        ("add_v_proj", "v_img"),
        ("norm_added_k", "norm_k_img"),
    )
) + (
    ("norm2", "norm3"),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("scale_shift_table", "modulation"),
)

_BLOCK_KEY = re.compile(r"^(blocks\.\d+\.)(.+)$")


def _rename(name: str, table: tuple[tuple[str, str], ...]) -> str:
    for source, target in table:
        if name == source or name.startswith(source + "."):
            return target + name[len(source) :]
    return name


def _convert(
    sd: dict[str, torch.Tensor], top: tuple[tuple[str, str], ...], block: tuple[tuple[str, str], ...]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        match = _BLOCK_KEY.match(key)
        new_key = match.group(1) + _rename(match.group(2), block) if match else _rename(key, top)
        if new_key in out:
            raise ValueError(f"two keys map to {new_key!r}; is the state dict a mix of layouts?")
        out[new_key] = value
    return out


def _swap(table: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((b, a) for a, b in table)


def diffusers_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers `WanTransformer3DModel` state dict to native Wan2.1 names (tensors are shared)."""
    return _convert(sd, _TOP_LEVEL, _IN_BLOCK)


def native_to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a native Wan2.1 DiT state dict to diffusers `WanTransformer3DModel` names (tensors are shared)."""
    return _convert(sd, _swap(_TOP_LEVEL), _swap(_IN_BLOCK))


def _shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"native Wan DiT state dict lacks {key!r}; is it another model or another layout?")
    return tuple(sd[key].shape)


def audio_config_from_state_dict(sd: dict[str, torch.Tensor], audio_dim: int | None) -> AudioAdapterConfig:
    """Audio adapter sizes from `audio_proj.*` / `audio_cross_attn` shapes (odd window, VAE temporal stride 4)."""
    stride = AudioAdapterConfig.vae_temporal_stride
    intermediate, first_in = _shape(sd, "audio_proj.proj1.weight")
    _, rest_in = _shape(sd, "audio_proj.proj1_vf.weight")
    proj3_out, _ = _shape(sd, "audio_proj.proj3.weight")
    norm_output = "audio_proj.norm.weight" in sd
    if norm_output:
        token_dim = _shape(sd, "audio_proj.norm.weight")[0]
    else:
        token_dim = _shape(sd, "blocks.0.audio_cross_attn.kv_linear.weight")[1]
    window = next(
        (
            w
            for w in range(1, 64, 2)
            if first_in % w == 0 and first_in // w * AudioAdapterConfig(window=w).window_vf == rest_in
        ),
        None,
    )
    if window is None:
        raise ValueError(
            f"audio_proj.proj1 ({first_in} inputs) and proj1_vf ({rest_in} inputs) match no odd audio window "
            f"with VAE temporal stride {stride}"
        )
    row_dim = first_in // window
    if audio_dim is None:
        if row_dim % 768 != 0:
            raise ValueError(
                f"one audio window row has {row_dim} values (layers x audio_dim); pass audio_dim, the wav2vec2 width"
            )
        audio_dim = 768
    if row_dim % audio_dim != 0:
        raise ValueError(f"one audio window row has {row_dim} values, not a multiple of audio_dim {audio_dim}")
    if proj3_out % token_dim != 0:
        raise ValueError(f"audio_proj.proj3 outputs {proj3_out} values, not a multiple of token_dim {token_dim}")
    return AudioAdapterConfig(
        audio_dim=audio_dim,
        encoder_layers=row_dim // audio_dim,
        window=window,
        vae_temporal_stride=stride,
        intermediate_dim=intermediate,
        context_tokens=proj3_out // token_dim,
        token_dim=token_dim,
        norm_output=norm_output,
    )


def config_from_state_dict(
    sd: dict[str, torch.Tensor], num_heads: int | None = None, audio_dim: int | None = None
) -> DiTConfig:
    """Infer a `DiTConfig` from the tensor shapes of a native-layout state dict.

    Head count is not visible in shapes: `num_heads` overrides it, otherwise head dim 128 is assumed (every
    released Wan2.1 size), which needs dim % 128 == 0. The audio window row size is layers x audio_dim;
    `audio_dim` (the wav2vec2 width) splits it, defaulting to 768 when the row size is a multiple of it.
    text_len, eps and rope_theta keep their Wan defaults.
    """
    dim, in_dim, *patch = _shape(sd, "patch_embedding.weight")
    if num_heads is None:
        if dim % 128 != 0:
            raise ValueError(f"cannot infer num_heads for dim {dim} (not a multiple of head dim 128); pass num_heads")
        num_heads = dim // 128
    block_ids = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.", k))})
    if not block_ids or block_ids != list(range(len(block_ids))):
        raise ValueError(f"expected blocks numbered 0..N-1, found block indices {block_ids[:8]}...")
    head_out, _ = _shape(sd, "head.head.weight")
    patch_values = math.prod(patch)
    if head_out % patch_values != 0:
        raise ValueError(f"head.head has {head_out} outputs, not a multiple of the patch volume {patch_values}")
    image_dim = _shape(sd, "img_emb.proj.1.weight")[1] if "img_emb.proj.1.weight" in sd else None
    has_audio = any(k.startswith("audio_proj.") for k in sd)
    return DiTConfig(
        dim=dim,
        ffn_dim=_shape(sd, "blocks.0.ffn.0.weight")[0],
        num_heads=num_heads,
        num_layers=len(block_ids),
        in_dim=in_dim,
        out_dim=head_out // patch_values,
        text_dim=_shape(sd, "text_embedding.0.weight")[1],
        freq_dim=_shape(sd, "time_embedding.0.weight")[1],
        patch_size=tuple(patch),
        image_dim=image_dim,
        audio=audio_config_from_state_dict(sd, audio_dim) if has_audio else None,
    )
