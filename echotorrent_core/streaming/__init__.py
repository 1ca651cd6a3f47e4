"""Streaming generation: the chunk loop over the causal DiT with a KV cache and a streaming VAE decoder."""

from .context import CachedContext, RecomputedContext
from .sampler import ChunkOutput, StreamingSampler
from .settings import StreamSettings

__all__ = ["CachedContext", "ChunkOutput", "RecomputedContext", "StreamSettings", "StreamingSampler"]
