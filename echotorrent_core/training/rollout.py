"""Self-rollout of the causal student on the streaming sampler's own chunk loop, with gradients where asked.

`rollout` runs exactly what `streaming.StreamingSampler` runs for a stream (same KV cache with sink + rolling
window, same RoPE frame positions (`settings.rope_layout`) through `WanDiT.forward_chunk`, same timesteps, same
noise drawn in the same order from a CPU generator seeded with `settings.seed`, same guidance combination, the clean
pass at t = 0 that writes each chunk into the cache), batched over B streams and stopping at the latents (no VAE
decode). Without gradients its latents equal the sampler's (tests/test_rollout.py), so training and inference cannot
drift apart.

Gradients (Self-Forcing): chunk c stops denoising at `exit_steps[c]` (default: the last step) and, when c is in
`grad_chunks`, that last pass keeps autograd; earlier passes and the cache-writing pass run without it (the cache
stores detached keys / values), so memory stays one chunk pass per trained chunk. Long-tail forcing puts only the
tail chunks in `grad_chunks`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from .. import flow
from ..guidance import ConditionVariant, GuidancePolicy
from ..models.conditioning import Conditioning
from ..streaming.settings import StreamSettings
from .stages.avatar_batch import check_avatar_model, conditioning


@dataclass(frozen=True)
class RolloutResult:
    """latents `[B, C, chunks * chunk_frames, h, w]` (generated frames, without the sink; float32) and the exit
    step of every chunk."""

    latents: torch.Tensor
    exit_steps: tuple[int, ...]


def denoising_timesteps(settings: StreamSettings) -> torch.Tensor:
    """The chunk's timestep list `[steps]`, as the sampler's ChunkDenoiser builds it from the settings."""
    if settings.solver == "few_step":
        return flow.few_step_timesteps_for(settings.steps, settings.shift)
    return flow.many_step_timesteps(settings.steps, settings.shift)


def _variant_conditions(
    student: torch.nn.Module, batch: dict, negative_text: torch.Tensor | None, frames: int,
    variants: list[ConditionVariant],
) -> dict[ConditionVariant, Conditioning]:
    """Whole-stream conditioning `[frames]` of each guidance variant (null audio = zero features, null text = the
    negative text or the empty text)."""
    drop = torch.zeros(batch["latents"].shape[0], dtype=torch.bool, device=batch["latents"].device)
    out = {}
    for variant in variants:
        if variant.has_text:
            source, keep_text = batch, None
        elif negative_text is not None:
            source, keep_text = dict(batch, text=negative_text), None
        else:
            source, keep_text = batch, drop
        keep_audio = None if variant.has_audio else drop
        out[variant] = conditioning(student, source, range(frames), keep_text, keep_audio)
    return out


def rollout(
    student: torch.nn.Module,
    reference_latent: torch.Tensor,
    audio: torch.Tensor | None,
    settings: StreamSettings,
    num_chunks: int,
    text: torch.Tensor | None = None,
    negative_text: torch.Tensor | None = None,
    guidance: GuidancePolicy | None = None,
    exit_steps: Sequence[int] | None = None,
    grad_chunks: Collection[int] = (),
    generator: torch.Generator | None = None,
    init_latents: torch.Tensor | None = None,
    start_step: int = 0,
) -> RolloutResult:
    """Generate `num_chunks` chunks of B streams.

    reference_latent `[B, C, 1, h, w]` (the sink, e.g. `StreamingSampler.reference_latent`); audio `[B, T, L, A]` one
    row per output video frame (None for a model without audio layers); text / negative_text `[B, L_text, text_dim]`
    (None = the empty text, as the sampler's default); guidance the sampler's policy (default single pass);
    exit_steps per chunk in `[0, steps)`; grad_chunks the chunk indices whose exit pass keeps gradients; generator
    the CPU noise generator (default: seeded with `settings.seed`, as the sampler). init_latents
    `[B, C, chunks * n, h, w]` with start_step k > 0 start every chunk SDEdit-style from those latents noised to
    the k-th timestep (the chunk's noise draw, `x_t = (1 - s) x0 + s eps`) and run steps k .. exit only.
    """
    check_avatar_model(student)
    if reference_latent.ndim != 5 or reference_latent.shape[2] != settings.sink_frames:
        raise ValueError(
            f"reference_latent must be [B, C, {settings.sink_frames}, h, w] (the sink), "
            f"got {tuple(reference_latent.shape)}"
        )
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    policy = guidance or GuidancePolicy()
    timesteps = denoising_timesteps(settings)
    steps = len(timesteps)
    exits = tuple([steps - 1] * num_chunks if exit_steps is None else (int(e) for e in exit_steps))
    if len(exits) != num_chunks or any(not 0 <= e < steps for e in exits):
        raise ValueError(f"exit_steps must give one step in [0, {steps}) per chunk ({num_chunks}), got {list(exits)}")
    if (init_latents is None) != (start_step == 0) or any(e < start_step for e in exits):
        raise ValueError(f"init_latents and a start_step in (0, min(exit_steps)] go together, got start_step "
                         f"{start_step} with init_latents {'given' if init_latents is not None else 'None'}")
    generator = generator or torch.Generator().manual_seed(settings.seed)
    param = next(student.parameters())
    dtype, device = param.dtype, param.device
    size, channels, _, h, w = reference_latent.shape
    n, sink = settings.chunk_frames, settings.sink_frames
    stream_frames = num_chunks * n
    batch = {"latents": reference_latent}
    if audio is not None:
        batch["audio"] = audio
    if text is not None:
        batch["text"] = text

    wanted = sorted({v for i in range(steps) for v in policy.variants_for_step(i, steps)} | {ConditionVariant.FULL},
                    key=list(ConditionVariant).index)
    with torch.set_grad_enabled(bool(grad_chunks) and torch.is_grad_enabled()):
        conditions = _variant_conditions(student, batch, negative_text, sink + stream_frames, wanted)
    patch = student.cfg.patch_size
    cache = student.create_kv_cache(size, (h // patch[1]) * (w // patch[2]), sink,
                                    settings.window_frames or stream_frames, dtype, device, chunk_frames=n,
                                    rope_layout=settings.rope_layout)
    with torch.no_grad():
        clean = torch.zeros(size, sink, device=device)
        sink_condition = conditions[ConditionVariant.FULL].audio_frames(0, sink)
        student.forward_chunk(reference_latent.to(dtype), clean, sink_condition, cache, 0, write_cache=True)

    def noise(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device, torch.float32)

    outputs = []
    for chunk, exit_step in enumerate(exits):
        start = sink + chunk * n
        chunk_conditions = {v: c.audio_frames(start, start + n) for v, c in conditions.items()}
        frame_indices = torch.arange(start - sink, start - sink + n, device=device)
        x = noise((size, channels, n, h, w))
        if init_latents is not None:
            t_start = torch.full((size, n), float(timesteps[start_step]), device=device)
            x = flow.few_step_transition(init_latents[:, :, chunk * n : (chunk + 1) * n].to(device, torch.float32),
                                         t_start, noise=x)
        for i in range(start_step, exit_step + 1):
            t = torch.full((size, n), float(timesteps[i]), device=device)
            with torch.set_grad_enabled(chunk in grad_chunks and i == exit_step and torch.is_grad_enabled()):
                predictions = {
                    variant: student.forward_chunk(x.to(dtype), t, chunk_conditions[variant], cache, start).float()
                    for variant in policy.variants_for_step(i, steps)
                }
                velocity = policy.combine(predictions, i, steps, frame_indices)
                x0 = flow.x0_from_velocity(x, velocity, t)
            if i == exit_step:
                break
            t_next = torch.full((size, n), float(timesteps[i + 1]), device=device)
            if settings.solver == "few_step":
                x = flow.few_step_transition(x0, t_next, noise=noise(tuple(x.shape)))
            else:
                x = flow.euler_step(x, velocity, t, t_next)
        with torch.no_grad():
            student.forward_chunk(x0.detach().to(dtype), torch.zeros(size, n, device=device),
                                  chunk_conditions[ConditionVariant.FULL], cache, start, write_cache=True)
        outputs.append(x0)
    return RolloutResult(torch.cat(outputs, dim=2), exits)
