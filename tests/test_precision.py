"""Default weight dtypes (`echotorrent_core.precision`): a bf16 VAE on CPUs with native bf16 (AMX or AVX512-BF16),
fp32 otherwise, and a bf16 streamed decode that matches the fp32 one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_vae import tiny_vae

from echotorrent_core import precision
from echotorrent_core.models.vae import StreamingDecoder
from echotorrent_core.pipeline import bundle_paths, load_bundle
from echotorrent_core.random_bundle import write_random_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return write_random_bundle(tmp_path_factory.mktemp("bundle"), "tiny", seed=0)


def _dtypes(bundle) -> tuple[torch.dtype, torch.dtype, torch.dtype]:
    return tuple(next(m.parameters()).dtype for m in (bundle.dit, bundle.vae, bundle.audio_encoder))


@pytest.mark.parametrize(("units", "vae"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_vae_dtype_follows_the_cpu(bundle_dir: Path, monkeypatch, units: bool, vae: torch.dtype):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: units)
    paths = bundle_paths(bundle_dir)
    assert _dtypes(load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])) == (torch.float32, vae,
                                                                                        torch.float32)


def test_an_explicit_dtype_wins(bundle_dir: Path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    paths = bundle_paths(bundle_dir)
    fp32 = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"], dtype=torch.float32)
    assert _dtypes(fp32) == (torch.float32,) * 3
    mixed = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"], vae_dtype=torch.float32)
    assert _dtypes(mixed) == (torch.float32,) * 3


def test_cuda_defaults_to_bf16():
    cuda = torch.device("cuda")
    assert precision.default_dit_dtype(cuda) == precision.default_vae_dtype(cuda) == torch.bfloat16


def test_bf16_streamed_decode_matches_fp32():
    full = tiny_vae(7, decode_context_latents=2)
    half = tiny_vae(7, decode_context_latents=2).to(torch.bfloat16)
    latents = torch.randn(1, 4, 10, 4, 4)
    with torch.inference_mode():
        outputs = []
        for model, dtype in ((full, torch.float32), (half, torch.bfloat16)):
            decoder = StreamingDecoder(model)
            outputs.append(torch.cat([decoder.decode_chunk(c.to(dtype)) for c in latents.split([1, 3, 3, 3], 2)],
                                     2).float())
    reference, approx = outputs
    relative = ((approx - reference).norm() / reference.norm()).item()
    # bf16 rounds to 2^-8 relative; through this random VAE's ~20 layers that adds up to ~3% (measured 2.9%). The
    # trained default VAE decodes at 64 dB PSNR from fp32 (bench/results/2026-12-02-cpu-bf16-vae.md).
    assert reference.abs().mean() > 1e-3 and relative < 0.05, relative
