"""Instrumentation of the models during a benchmark run: VAE decode time, decoder feature cache, DiT KV caches.

The samplers keep their stream state private, so the probes watch the models instead: forward hooks on
`vae.decoder` (called once per decoder step: a stream's first latent, then a chunk's latents, with the stream's
`FeatureCache` as its second argument) and a wrapper around `dit.create_kv_cache` that keeps the caches the
sampler creates. Both are removed on exit.
"""

from __future__ import annotations

import time
from types import TracebackType

import torch

from ..models.kv_cache import KVCache


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelProbe:
    """Context manager recording every decoder step `(start, seconds)`, the decoder cache size after the last
    step and the KV caches the DiT creates."""

    def __init__(self, dit: torch.nn.Module, vae: torch.nn.Module) -> None:
        self.dit = dit
        self.vae = vae
        self.device = next(vae.parameters()).device
        self.decode_steps: list[tuple[float, float]] = []
        self.decoder_cache_numel = 0
        self.kv_caches: list[KVCache] = []
        self._started = 0.0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes allocated by the KV cache created last (0 when the sampler made none)."""
        return self.kv_caches[-1].allocated_bytes if self.kv_caches else 0

    def take_decode_seconds(self, since: float) -> float:
        """Seconds of the decoder steps that started at or after `since` (a `time.perf_counter` value); forgets
        every step recorded so far."""
        seconds = sum(duration for start, duration in self.decode_steps if start >= since)
        self.decode_steps.clear()
        return seconds

    def _before_decode(self, module: torch.nn.Module, args: tuple) -> None:
        _synchronize(self.device)
        self._started = time.perf_counter()

    def _after_decode(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        _synchronize(self.device)
        self.decode_steps.append((self._started, time.perf_counter() - self._started))
        self.decoder_cache_numel = args[1].numel()

    def _create_kv_cache(self, *args, **kwargs) -> KVCache:
        cache = type(self.dit).create_kv_cache(self.dit, *args, **kwargs)
        self.kv_caches.append(cache)
        return cache

    def __enter__(self) -> "ModelProbe":
        self._handles = [
            self.vae.decoder.register_forward_pre_hook(self._before_decode),
            self.vae.decoder.register_forward_hook(self._after_decode),
        ]
        self.dit.create_kv_cache = self._create_kv_cache
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        del self.dit.create_kv_cache
