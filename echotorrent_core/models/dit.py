"""WanDiT: the Wan2.1 diffusion transformer, bidirectional or block-causal, with a streaming KV-cache step.

Parameter names are the native Wan2.1 ones (`patch_embedding`, `text_embedding.{0,2}`, `time_embedding.{0,2}`,
`time_projection.1`, `blocks.N.*`, `head.*`, i2v `img_emb.proj.*`) plus the MultiTalk/InfiniteTalk audio layers
(`audio_proj.*`, `blocks.N.norm_x`, `blocks.N.audio_cross_attn.*`). Timesteps may differ per latent frame
(`t` `[B, F]`): the modulation of a frame's tokens uses that frame's timestep, as in causal (Self-Forcing) Wan.
RoPE is applied inside the attention (keys are cached before it), at the positions of the attention mode's rule.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from echotorrent_core.config import DiTConfig

from .attention import AttentionMode, Bidirectional, BlockCausal
from .attention import attention as scaled_attention
from .audio_adapter import AudioProjection
from .block_causal import BlockCausalAttention
from .conditioning import Conditioning
from .dit_block import Attend, WanBlock
from .embeddings import Head, ImageEmbedding, timestep_sinusoid
from .kv_cache import KVCache
from .rope import apply_rope, grid_positions, rope_angles, rope_axis_dims


class WanDiT(nn.Module):
    """Wan2.1 DiT with optional CLIP image branch (cfg.image_dim) and audio adapter (cfg.audio)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.num_heads != 0:
            raise ValueError(f"dim {cfg.dim} is not divisible by num_heads {cfg.num_heads}")
        rope_axis_dims(cfg.head_dim)
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(dim, cfg.out_dim * math.prod(cfg.patch_size), cfg.eps)
        if cfg.image_dim is not None:
            self.img_emb = ImageEmbedding(cfg.image_dim, dim)
        if cfg.audio is not None:
            self.audio_proj = AudioProjection(cfg.audio)

    def prepare_conditioning(
        self,
        text: torch.Tensor | None = None,
        clip_fea: torch.Tensor | None = None,
        audio_first: torch.Tensor | None = None,
        audio_rest: torch.Tensor | None = None,
    ) -> Conditioning:
        """Embed the conditions once, including every block's projected cross-attention keys / values.

        text `[B, L, text_dim]` with L <= text_len (None = an all-zero context, the same as an empty text);
        clip_fea `[B, N_img, image_dim]` (required exactly when the model has an image branch); audio_first
        `[B, 1, window, layers, audio_dim]` and / or audio_rest `[B, F', window_vf, layers, audio_dim]` (only for a
        model with an audio adapter). Inputs are cast to the model's dtype. Returns a `Conditioning` whose tensors
        are in the model's width and dtype.
        """
        cfg = self.cfg
        given = [v for v in (text, clip_fea, audio_first, audio_rest) if v is not None]
        if not given:
            raise ValueError("prepare_conditioning needs at least one of text, clip_fea, audio_first, audio_rest")
        batch = given[0].shape[0]
        dtype = self.text_embedding[0].weight.dtype
        if text is None:
            text = self.text_embedding[0].weight.new_zeros(batch, cfg.text_len, cfg.text_dim)
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != cfg.text_dim or text.shape[1] > cfg.text_len:
            raise ValueError(
                f"text must be [B={batch}, L <= {cfg.text_len}, {cfg.text_dim}], got {tuple(text.shape)}"
            )
        text = F.pad(text.to(dtype), (0, 0, 0, cfg.text_len - text.shape[1]))
        image = None
        if cfg.image_dim is None and clip_fea is not None:
            raise ValueError("this DiT has no image branch (image_dim is None) but clip_fea was given")
        if cfg.image_dim is not None:
            shape = None if clip_fea is None else tuple(clip_fea.shape)
            if shape is None or len(shape) != 3 or shape[0] != batch or shape[2] != cfg.image_dim:
                raise ValueError(f"this i2v DiT needs clip_fea [B={batch}, 257, {cfg.image_dim}], got {shape}")
            image = self.img_emb(clip_fea.to(dtype))
        audio = None
        if audio_first is not None or audio_rest is not None:
            if cfg.audio is None:
                raise ValueError("this DiT has no audio adapter (cfg.audio is None) but audio windows were given")
            audio = self.audio_proj(
                None if audio_first is None else audio_first.to(dtype),
                None if audio_rest is None else audio_rest.to(dtype),
            )
            if audio.shape[0] != batch:
                raise ValueError(f"audio batch {audio.shape[0]} differs from the conditioning batch {batch}")
        text = self.text_embedding(text)
        context_kv = tuple(block.cross_attn.context_kv(text, image) for block in self.blocks)
        return Conditioning(text=text, image=image, audio=audio, context_kv=context_kv)

    def create_kv_cache(
        self,
        batch: int,
        tokens_per_frame: int,
        sink_frames: int,
        window_frames: int,
        dtype: torch.dtype,
        device: torch.device | str,
        chunk_frames: int = 3,
        rope_layout: str = "relative",
    ) -> KVCache:
        """Allocate the self-attention cache once: per block K/V `[batch, heads, (sink + window + chunk_frames) *
        tokens_per_frame, head_dim]` plus one rotated-key workspace (see `KVCache`). `window_frames` must be finite
        (use the stream length to keep every frame); `chunk_frames` is the most frames one chunk may have;
        `rope_layout` "relative" (default) or "absolute" as in `BlockCausal`. `dtype` must be the model's."""
        if window_frames is None:
            raise ValueError("a KV cache needs a finite window_frames; pass the stream length to keep every frame")
        return KVCache(
            num_blocks=len(self.blocks),
            batch=batch,
            tokens_per_frame=tokens_per_frame,
            heads=self.cfg.num_heads,
            head_dim=self.cfg.head_dim,
            sink_frames=sink_frames,
            window_frames=window_frames,
            dtype=dtype,
            device=device,
            chunk_frames=chunk_frames,
            rope_layout=rope_layout,
            rope_theta=self.cfg.rope_theta,
        )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        y: torch.Tensor | None = None,
        attention: AttentionMode = Bidirectional(),
        frame_offset: int = 0,
    ) -> torch.Tensor:
        """Predict the flow velocity of a whole clip.

        x `[B, C_x, F, H, W]` and y `[B, C_y, F, H, W]` or None with C_x + C_y = in_dim (i2v: 16 noisy latents +
        20 mask/condition channels); t `[B]` or `[B, F]` Wan timesteps; cond with audio covering the F frames.
        `attention` is `Bidirectional()` (RoPE frame positions `frame_offset + local index`) or `BlockCausal(...)`:
        the visibility counts frames from the start of the sequence, each chunk is one SDPA call over the keys it
        sees (no dense mask; differentiable) and RoPE follows `attention.rope_layout`, with sequence frame `i` taken
        as stream frame `i` for the sink and `i + frame_offset` after it (the numbering `forward_chunk` uses, so
        the chunks of this forward equal `forward_chunk` calls at `frame_start = local start + frame_offset`).
        Inputs are cast to the model's dtype. Returns `[B, out_dim, F, H, W]` in the model's dtype.
        """
        tokens, grid = self._embed_video(x, y)
        frames, rows, cols = grid
        if isinstance(attention, BlockCausal):
            attend: Attend = BlockCausalAttention(attention, grid, frame_offset, self.cfg.head_dim,
                                                  self.cfg.rope_theta, tokens.device)
        elif isinstance(attention, Bidirectional):
            positions = grid_positions(range(frame_offset, frame_offset + frames), rows, cols, tokens.device)
            rope = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_theta)

            def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return scaled_attention(apply_rope(q, *rope), apply_rope(k, *rope), v)
        else:
            raise ValueError(f"attention must be Bidirectional() or BlockCausal(...), got {attention!r}")
        return self._run(tokens, grid, t, cond, lambda block_index: attend)

    def forward_chunk(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        cache: KVCache,
        frame_start: int,
        y: torch.Tensor | None = None,
        write_cache: bool = False,
    ) -> torch.Tensor:
        """One streaming step: a chunk of n latent frames attends to the cached sink + window and to itself.

        x `[B, C_x, n, H, W]`, y `[B, C_y, n, H, W]` or None (C_x + C_y = in_dim); t `[B]` or `[B, n]`; cond with
        audio tokens `[B, n, context_tokens, token_dim]` for exactly these frames (or None); cache from
        `create_kv_cache` with tokens_per_frame = (H / 2) * (W / 2) and the model's dtype; frame_start the stream
        index of the chunk's first frame (RoPE positions follow the cache's `rope_layout`). A chunk inside the
        sink must be the whole sink: frame_start = 0 and n = sink_frames. Every pass writes the chunk's keys
        (after norm, before RoPE) and values into the cache slots the chunk occupies (detached from autograd;
        those slots held frames outside this and every later chunk's window); write_cache=True also commits
        them, so later chunks see the chunk. Under `torch.no_grad` nothing is allocated for the cache per pass;
        with autograd enabled gradients reach this chunk's inputs. Returns `[B, out_dim, n, H, W]` in the
        model's dtype.
        """
        tokens, grid = self._embed_video(x, y)
        frames, rows, cols = grid
        if cache.tokens_per_frame != rows * cols or cache.batch != tokens.shape[0]:
            raise ValueError(
                f"cache holds batch {cache.batch} x {cache.tokens_per_frame} tokens per frame, but the chunk has "
                f"batch {tokens.shape[0]} x {rows * cols} tokens per frame"
            )
        if cache.dtype != tokens.dtype:
            raise ValueError(f"the cache holds {cache.dtype}, the model computes in {tokens.dtype}")
        step = cache.begin_pass(frame_start, frames, rows, cols)
        attend = cache.attend_with_grad if torch.is_grad_enabled() else cache.attend

        def attend_for_block(block_index: int) -> Attend:
            return lambda q, k, v: attend(block_index, step, q, k, v)

        out = self._run(tokens, grid, t, cond, attend_for_block)
        if write_cache:
            cache.commit(frame_start, frames)
        return out

    def _embed_video(
        self, x: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """x (+ y) `[B, in_dim, F, H, W]` -> tokens `[B, f * h * w, dim]` and the token grid (f, h, w)."""
        cfg = self.cfg
        if x.ndim != 5:
            raise ValueError(f"x must be [B, C, F, H, W], got {tuple(x.shape)}")
        if y is not None:
            if y.ndim != 5 or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
                raise ValueError(f"y must be [B, C_y, F, H, W] matching x {tuple(x.shape)}, got {tuple(y.shape)}")
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        if x.shape[1] != cfg.in_dim:
            raise ValueError(
                f"x (+ y) has {x.shape[1]} channels, the DiT expects in_dim = {cfg.in_dim}"
                + (" (i2v: pass the 20 mask/condition channels as y)" if cfg.in_dim > cfg.out_dim else "")
            )
        if any(size % patch for size, patch in zip(x.shape[2:], cfg.patch_size)):
            raise ValueError(
                f"frames/height/width {tuple(x.shape[2:])} must be multiples of the patch {cfg.patch_size}"
            )
        tokens = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        grid = tuple(tokens.shape[2:])
        return tokens.flatten(2).transpose(1, 2).contiguous(), grid

    def _time_embedding(self, t: torch.Tensor, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t `[B]` or `[B, F]` -> time embedding `[B, Ft, dim]` and block modulation `[B, Ft, 6, dim]` (Ft = 1 or F)."""
        if not torch.is_tensor(t) or not (t.shape == (batch,) or t.shape == (batch, frames)):
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"t must be a tensor [B={batch}] or [B={batch}, F={frames}], got {shape}")
        t = t.reshape(batch, -1)
        e = self.time_embedding(timestep_sinusoid(t, self.cfg.freq_dim).to(self.time_embedding[0].weight.dtype))
        return e, self.time_projection(e).unflatten(-1, (6, self.cfg.dim))

    def _run(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int, int],
        t: torch.Tensor,
        cond: Conditioning,
        attend_for_block: Callable[[int], Attend],
    ) -> torch.Tensor:
        """Blocks and head over tokens `[B, L, dim]` -> unpatchified output `[B, out_dim, F, H, W]`."""
        batch = tokens.shape[0]
        frames = grid[0]
        self._check_conditioning(cond, batch, frames)
        e, e6 = self._time_embedding(t, batch, frames)
        contexts = cond.context_kv or [block.cross_attn.context_kv(cond.text, cond.image) for block in self.blocks]
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, e6, attend_for_block(index), contexts[index], cond.audio)
        out = self.head(tokens, e)
        return self._unpatchify(out, grid)

    def _check_conditioning(self, cond: Conditioning, batch: int, frames: int) -> None:
        expected_text = (batch, self.cfg.text_len, self.cfg.dim)
        if tuple(cond.text.shape) != expected_text:
            raise ValueError(
                f"conditioning text must be {expected_text} (from prepare_conditioning), got {tuple(cond.text.shape)}"
            )
        if self.cfg.has_image_branch and cond.image is None:
            raise ValueError("this i2v DiT needs CLIP image tokens: prepare_conditioning(clip_fea=...)")
        if cond.audio is not None:
            if self.cfg.audio is None:
                raise ValueError("the conditioning carries audio tokens but this DiT has no audio adapter")
            if cond.audio.shape[:2] != (batch, frames):
                raise ValueError(
                    f"conditioning audio covers {tuple(cond.audio.shape[:2])} (batch, frames) but the latents are "
                    f"({batch}, {frames}); select the frames being run with cond.audio_frames(start, stop)"
                )

    def _unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """`[B, f*h*w, out_dim * pt*ph*pw]` -> `[B, out_dim, f*pt, h*ph, w*pw]`."""
        pt, ph, pw = self.cfg.patch_size
        frames, rows, cols = grid
        out = out.reshape(out.shape[0], frames, rows, cols, pt, ph, pw, self.cfg.out_dim)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(out.shape[0], self.cfg.out_dim, frames * pt, rows * ph, cols * pw)

