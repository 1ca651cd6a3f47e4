"""Default weight dtypes per device: bf16 on CUDA; on the CPU fp32, except the VAE where the CPU multiplies bf16 in
hardware: Intel AMX decodes the default model's 128 px chunks 1.9x faster at 64 dB PSNR from fp32
(`bench/results/2026-12-02-cpu-bf16-vae.md`), AVX512-BF16 (e.g. AMD Zen 4) 1.2x faster
(`bench/results/2026-12-03-cpu-default-model.md`). Without either, bf16 convolutions are emulated and slower."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions in hardware here: Intel AMX tiles or AVX512-BF16 instructions."""
    try:
        hardware = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        return bool(hardware) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_dit_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def default_vae_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA and on CPUs with native bf16 (`cpu_has_native_bf16`), fp32 elsewhere."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32
