"""Default weight dtypes per device: bf16 on CUDA; on the CPU fp32, except the VAE where the CPU multiplies bf16 in
hardware (Intel AMX), which decodes the default model's 128 px chunks 1.9x faster at 64 dB PSNR from fp32
(`bench/results/2026-12-02-cpu-bf16-vae.md`). Without AMX, bf16 convolutions are emulated and slower than fp32."""

from __future__ import annotations

import torch


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU has Intel AMX tiles with bf16 (what oneDNN uses for fast bf16 convolutions)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported()) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_dit_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def default_vae_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA and on CPUs with bf16 matrix units, fp32 elsewhere."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_matrix_units()):
        return torch.bfloat16
    return torch.float32
