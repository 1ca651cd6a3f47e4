"""Held-out evaluation of the refiner: base decoder vs control vs refiner, on real, self-degraded and student latents.

Every number is one of the project's independent detail metrics (`metrics/image_quality.py`: PSNR and SSIM against
the real frames, Laplacian and FFT high-band energy relative to the real frames, temporal flicker and its ratio to
the real frames' flicker), computed on the frames the streaming decode gives (the sink frame dropped, as inference
does), averaged over windows. PSNR / SSIM are meaningful only where the latents are aligned with the real frames:
real latents, and roughly the self-degraded ones; for student latents only the detail ratios and flicker count.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ...metrics.image_quality import detail_ratios, psnr, ssim, temporal_flicker
from .refiner_decode import DecoderHalf, streaming_decode

METRICS = ("psnr", "ssim", "laplacian_ratio", "high_band_ratio", "flicker", "flicker_ratio")


def _unit(video: torch.Tensor) -> torch.Tensor:
    """One video `[3, T, H, W]` in [-1, 1] -> `[T, 3, H, W]` in [0, 1]."""
    return ((video.float().clamp(-1, 1) + 1) / 2).transpose(0, 1).cpu()


def window_metrics(decoded: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Metrics of one decoded video against its real frames, both `[3, T, H, W]` in [-1, 1]."""
    video, real = _unit(decoded), _unit(truth)
    flicker = temporal_flicker(video)
    return {"psnr": psnr(video, real), "ssim": ssim(video, real), **detail_ratios(video, real),
            "flicker": flicker, "flicker_ratio": flicker / max(temporal_flicker(real), 1e-12)}


@torch.no_grad()
def evaluate_decoders(decoders: Mapping[str, DecoderHalf], sources: Mapping[str, torch.Tensor],
                      pixels: torch.Tensor, chunk_frames: int) -> dict[str, dict[str, dict[str, float]]]:
    """`{source: {decoder: {metric: mean over windows}}}`.

    sources: latents `[N, z, 1 + F, h, w]` by name (latent 0 the sink); pixels uint8 `[N, 3, 1 + 4F, S, S]`, the
    real frames of the same windows.
    """
    truth = pixels.float() / 127.5 - 1.0
    table: dict[str, dict[str, dict[str, float]]] = {}
    for source, latents in sources.items():
        table[source] = {}
        for name, decoder in decoders.items():
            device = decoder.latents_mean.device
            rows = [window_metrics(streaming_decode(decoder, latents[i : i + 1].to(device), chunk_frames)[0, :, 1:],
                                   truth[i, :, 1:]) for i in range(latents.shape[0])]
            table[source][name] = {key: sum(row[key] for row in rows) / len(rows) for key in METRICS}
    return table


def flatten(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """`{"source/decoder/metric": value}` (the trainer logs them as eval/...)."""
    return {f"{s}/{d}/{m}": v for s, decoders in table.items() for d, row in decoders.items() for m, v in row.items()}


def format_table(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Plain-text table: one row per (latents, decoder), one column per metric."""
    header = f"{'latents':<10}{'decoder':<10}" + "".join(f"{m:>17}" for m in METRICS)
    lines = [header, "-" * len(header)]
    for source, decoders in table.items():
        for name, row in decoders.items():
            lines.append(f"{source:<10}{name:<10}" + "".join(f"{row[m]:>17.4f}" for m in METRICS))
    return "\n".join(lines)
