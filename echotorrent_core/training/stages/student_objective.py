"""The causal student's objectives on the inference chunk layout (StreamSettings chunk / sink / window).

Sequence = the clean reference latent (the sink, t = 0) then `num_chunks` chunks of `chunk_frames`; each chunk has
its own timestep (diffusion forcing). Two ways for a chunk to see the chunks before it:
- "noisy": one `WanDiT.forward` with `BlockCausal(chunk, sink, window)` over the whole sequence; earlier chunks are
  seen at their own noise levels (CausVid's ODE regression / diffusion forcing). A chunk drawn clean (t = 0, with
  `clean_chunk_probability`) is context exactly as the cache holds it at inference and carries no loss.
- "clean": the inference path itself: `forward_chunk` against the KV cache, each chunk's clean latents written at
  t = 0 after its pass (teacher forcing); gradients through the chunk's own pass only (the cache is detached).
RoPE frame positions follow `settings.rope_layout` in both ("relative": the rolled window is shifted down to follow
the sink, "absolute": stream indices; `models/attention.py`), exactly as `forward_chunk` streams. Objectives: "ode"
regresses x0 on teacher ODE states at the student's own few-step timesteps (CausVid); "flow" is flow matching on
data latents with per-chunk shifted timesteps.
"""

from __future__ import annotations

import torch

from ... import flow
from ...models.conditioning import Conditioning
from ...streaming.settings import StreamSettings
from ..losses.flow_matching import flow_matching_loss, x0_regression_loss
from .avatar_batch import conditioning


def per_frame(chunk_values: torch.Tensor, settings: StreamSettings) -> torch.Tensor:
    """Per-chunk timesteps `[B, chunks]` -> per-frame `[B, sink + chunks * n]` with 0 on the sink."""
    frames = chunk_values.float().repeat_interleave(settings.chunk_frames, dim=1)
    return torch.cat([frames.new_zeros(frames.shape[0], settings.sink_frames), frames], dim=1)


def _frames(cond: Conditioning, start: int, stop: int) -> Conditioning:
    return cond if cond.audio is None else cond.audio_frames(start, stop)


def causal_velocity(
    student: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    settings: StreamSettings,
    context: str,
    clean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Velocity of the generated frames `[B, C, F, h, w]` for the sequence x_t `[B, C, sink + F, h, w]` at t
    `[B, sink + F]` (sink frames clean); `clean` `[B, C, sink + F, h, w]` are the latents the "clean" context
    writes into the cache after each chunk (ignored by "noisy")."""
    sink, n = settings.sink_frames, settings.chunk_frames
    if (x_t.shape[2] - sink) % n or x_t.shape[2] <= sink:
        raise ValueError(f"a student sequence is {sink} sink frame(s) + whole chunks of {n}, got {x_t.shape[2]} frames")
    dtype = next(student.parameters()).dtype
    if context == "noisy":
        return student(x_t.to(dtype), t, cond, attention=settings.attention)[:, :, sink:]
    if context != "clean":
        raise ValueError(f"context must be 'noisy' or 'clean', got {context!r}")
    if clean is None:
        raise ValueError("the clean context needs the clean latents of the sequence")
    size, _, frames, h, w = x_t.shape
    patch = student.cfg.patch_size
    cache = student.create_kv_cache(size, (h // patch[1]) * (w // patch[2]), sink,
                                    settings.window_frames or frames - sink, dtype, x_t.device,
                                    chunk_frames=n, rope_layout=settings.rope_layout)
    zeros = torch.zeros(size, sink, device=x_t.device)
    with torch.no_grad():
        student.forward_chunk(clean[:, :, :sink].to(dtype), zeros, _frames(cond, 0, sink), cache, 0, write_cache=True)
    outputs = []
    for start in range(sink, frames, n):
        chunk_cond = _frames(cond, start, start + n)
        outputs.append(student.forward_chunk(x_t[:, :, start : start + n].to(dtype), t[:, start : start + n],
                                             chunk_cond, cache, start))
        with torch.no_grad():
            student.forward_chunk(clean[:, :, start : start + n].to(dtype), torch.zeros_like(t[:, start : start + n]),
                                  chunk_cond, cache, start, write_cache=True)
    return torch.cat(outputs, dim=2)


def ode_regression_loss(
    student: torch.nn.Module,
    batch: dict,
    settings: StreamSettings,
    student_timesteps: torch.Tensor,
    step_index: torch.Tensor,
    context: str = "noisy",
) -> tuple[torch.Tensor, dict[str, float]]:
    """x0 regression on teacher pairs.

    batch `latents` `[B, C, sink + F, h, w]` (reference + teacher x0), `trajectory` `[B, S, C, F, h, w]` (teacher
    states at `student_timesteps` `[S]`), audio / text; step_index `[B, chunks]` in `[0, S]` (S = a clean chunk,
    t = 0, context only). Returns `(loss, logs)`.
    """
    latents, trajectory = batch["latents"], batch["trajectory"]
    sink, n = settings.sink_frames, settings.chunk_frames
    steps = trajectory.shape[1]
    chunks = step_index.shape[1]
    if trajectory.shape[3] != chunks * n or latents.shape[2] != sink + chunks * n:
        raise ValueError(f"the pairs hold {trajectory.shape[3]} generated frames, not {chunks} chunks of {n}")
    target = latents[:, :, sink:]
    frame_step = step_index.to(latents.device).repeat_interleave(n, dim=1)  # [B, F]
    states = torch.cat([trajectory, target[:, None]], dim=1)  # index S = the clean x0
    frame = torch.arange(target.shape[2], device=latents.device)[None, :]
    sample = torch.arange(target.shape[0], device=latents.device)[:, None]
    x_gen = states.permute(0, 3, 1, 2, 4, 5)[sample, frame, frame_step].permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
    table = torch.cat([student_timesteps.float().to(latents.device), latents.new_zeros(1)])
    t = per_frame(table[step_index.to(latents.device)], settings)
    x_t = torch.cat([latents[:, :, :sink], x_gen.to(latents.dtype)], dim=2)
    cond = conditioning(student, batch, range(latents.shape[2]))
    velocity = causal_velocity(student, x_t, t, cond, settings, context, clean=latents)
    x0 = flow.x0_from_velocity(x_gen.float(), velocity.float(), t[:, sink:])
    weights = (t[:, sink:] > 0).float()
    loss, logs = x0_regression_loss(x0, target, weights)
    return loss, logs | {"clean_chunks": float((step_index == steps).float().mean())}


def causal_flow_loss(
    student: torch.nn.Module,
    batch: dict,
    settings: StreamSettings,
    chunk_timesteps: torch.Tensor,
    noise: torch.Tensor,
    context: str = "noisy",
    keep_text: torch.Tensor | None = None,
    keep_audio: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Flow matching on data latents `[B, C, sink + F, h, w]` with per-chunk timesteps `[B, chunks]` (0 = clean
    context chunk, no loss); noise like the generated latents `[B, C, F, h, w]`. Returns `(loss, logs)`."""
    latents = batch["latents"]
    sink = settings.sink_frames
    t = per_frame(chunk_timesteps.to(latents.device), settings)
    x0 = latents[:, :, sink:]
    x_gen = flow.add_noise(x0, noise, t[:, sink:])
    x_t = torch.cat([latents[:, :, :sink], x_gen], dim=2)
    cond = conditioning(student, batch, range(latents.shape[2]), keep_text, keep_audio)
    velocity = causal_velocity(student, x_t, t, cond, settings, context, clean=latents)
    return flow_matching_loss(velocity, x0, noise, (t[:, sink:] > 0).float())
