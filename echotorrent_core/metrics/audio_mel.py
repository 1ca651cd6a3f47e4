"""Log-mel audio features for the sync expert: one 0.2 s window per video frame (as SyncNet's audio input).

16 kHz mono, 25 ms Hann windows every 10 ms, 40 mel bands, log, then standardised per band over the clip (so
loudness and the recording chain do not matter). The window of video frame t is the `WINDOW_SECONDS` of audio
centred on that frame's centre, i.e. `MEL_WINDOW` mel frames; indices past either end repeat the edge frame.
"""

from __future__ import annotations

import torch
import torchaudio

from ..media import to_mono_resampled

MEL_RATE = 16_000
MEL_HOP = 160  # 10 ms
MEL_BANDS = 40
WINDOW_SECONDS = 0.2
MEL_WINDOW = round(WINDOW_SECONDS * MEL_RATE / MEL_HOP)  # 20 mel frames

_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=MEL_RATE, n_fft=512, win_length=400, hop_length=MEL_HOP,
                                            n_mels=MEL_BANDS)


def log_mel(waveform: torch.Tensor, rate: int) -> torch.Tensor:
    """Speech `[S]` or `[C, S]` at `rate` -> standardised log-mel `[mel_frames, MEL_BANDS]` (100 frames per s)."""
    mono = to_mono_resampled(waveform, rate, MEL_RATE)
    mel = torch.log(_MEL(mono) + 1e-6).T
    return (mel - mel.mean(0)) / mel.std(0).clamp_min(1e-3)


def mel_windows(mel: torch.Tensor, frames: int, fps: float) -> torch.Tensor:
    """Per-video-frame audio windows `[frames, 1, MEL_BANDS, MEL_WINDOW]` from a log-mel `[mel_frames, MEL_BANDS]`."""
    hops_per_second = MEL_RATE / MEL_HOP
    centres = ((torch.arange(frames) + 0.5) / fps * hops_per_second).round().long()
    index = centres[:, None] + torch.arange(MEL_WINDOW)[None] - MEL_WINDOW // 2
    windows = mel[index.clamp(0, len(mel) - 1)]  # [frames, MEL_WINDOW, MEL_BANDS]
    return windows.transpose(1, 2).unsqueeze(1).contiguous()
