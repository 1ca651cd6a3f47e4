"""wav2vec2 audio encoder producing per-video-frame features (MultiTalk / InfiniteTalk recipe).

`AudioEncoder.encode` runs the CNN feature extractor, linearly interpolates its frames (align_corners=True) to the
video frame count, then the feature projection and the transformer on those video-rate frames, and stacks the
outputs of every transformer layer (Hugging Face `hidden_states[1:]`): `[T_video, layers, dim]`.

Long audio is encoded in segments so memory stays flat: the video frames are split into segments of
`segment_seconds`; each segment is encoded together with up to `context_seconds` of neighbouring frames on each
side (CNN and transformer), and only the segment's own frames are kept. The interpolation grid is the global one,
so when the audio fits in one segment the result equals a single pass exactly. With segmenting, frames see at most
`segment + 2 * context` seconds of audio instead of all of it; for "group_norm" extractors the first conv's
normalisation statistics are also per segment.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from echotorrent_core.config import Wav2VecConfig
from echotorrent_core.media.finite import all_finite

NORMALIZE_EPS = 1e-7  # Hugging Face Wav2Vec2FeatureExtractor's variance epsilon


def normalization_constants(waveform: torch.Tensor, gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The utterance's mean and `sqrt(var + eps / gain^2)` (0-dim), from reductions that copy nothing: `[S]`.

    `(x - mean) / spread` is the normalisation of `gain * x` (`(g x - g m) / sqrt(g^2 v + eps)`) without forming it.
    """
    return waveform.mean(), torch.sqrt(waveform.var(unbiased=False) + NORMALIZE_EPS / gain**2)


def normalize_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the utterance (Hugging Face feature extractor with do_normalize): `[S]`.

    `AudioEncoder.encode` applies the same constants span by span instead of copying the whole track."""
    shift, scale = normalization_constants(waveform)
    return (waveform - shift) / scale


def prepare_waveform(waveform: torch.Tensor, sample_rate: int, target_sample_rate: int = 16000) -> torch.Tensor:
    """Mix to mono and resample: `[channels, samples]` or `[samples]` float -> `[samples']` at the target rate."""
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (1, 2):
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ValueError(f"waveform must be a [channels, samples] or [samples] tensor, got {shape}")
    if not waveform.is_floating_point():
        raise ValueError(f"waveform must be floating point (samples in [-1, 1]), got {waveform.dtype}")
    if waveform.numel() == 0 or waveform.shape[-1] == 0:
        raise ValueError(f"waveform is empty: {tuple(waveform.shape)}")
    if not all_finite(waveform):
        raise ValueError("waveform contains NaN or infinite samples")
    if sample_rate <= 0 or target_sample_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate} -> {target_sample_rate}")
    mono = waveform.float() if waveform.ndim == 1 else waveform.float().mean(dim=0)
    if int(sample_rate) == int(target_sample_rate):
        return mono
    return torchaudio.functional.resample(mono, int(sample_rate), int(target_sample_rate))


class AudioEncoder(nn.Module):
    """torchaudio wav2vec2 (`self.model`, no CTC head) returning all transformer layer outputs."""

    def __init__(self, cfg: Wav2VecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = torchaudio.models.wav2vec2_model(
            extractor_mode=cfg.extractor_mode,
            extractor_conv_layer_config=[tuple(layer) for layer in cfg.extractor_conv_layer_config],
            extractor_conv_bias=cfg.extractor_conv_bias,
            encoder_embed_dim=cfg.encoder_embed_dim,
            encoder_projection_dropout=0.0,
            encoder_pos_conv_kernel=cfg.encoder_pos_conv_kernel,
            encoder_pos_conv_groups=cfg.encoder_pos_conv_groups,
            encoder_num_layers=cfg.encoder_num_layers,
            encoder_num_heads=cfg.encoder_num_heads,
            encoder_attention_dropout=0.0,
            encoder_ff_interm_features=cfg.encoder_ff_interm_features,
            encoder_ff_interm_dropout=0.0,
            encoder_dropout=0.0,
            encoder_layer_norm_first=cfg.encoder_layer_norm_first,
            encoder_layer_drop=0.0,
            aux_num_out=None,
        )
        strides = [stride for _, _, stride in cfg.extractor_conv_layer_config]
        kernels = [kernel for _, kernel, _ in cfg.extractor_conv_layer_config]
        self.cnn_hop_samples = math.prod(strides)
        self.cnn_receptive_field = 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernels))

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def num_cnn_frames(self, num_samples: int) -> int:
        """CNN output frames for `num_samples` input samples (0 when shorter than one receptive field)."""
        length = num_samples
        for _, kernel, stride in self.cfg.extractor_conv_layer_config:
            length = max(0, (length - kernel) // stride + 1)
        return length

    def _transformer_layers(self, features: torch.Tensor) -> torch.Tensor:
        """CNN features `[B, T, C_cnn]` -> every transformer layer's output `[B, layers, T, dim]`."""
        return torch.stack(self.model.encoder.extract_features(features), dim=1)

    def hidden_states(self, waveform: torch.Tensor) -> torch.Tensor:
        """Native-rate features: waveform `[B, samples]` -> `[B, layers, T_cnn, dim]` (HF `hidden_states[1:]`)."""
        if waveform.ndim != 2 or waveform.shape[1] < self.cnn_receptive_field:
            raise ValueError(
                f"waveform must be [B, samples >= {self.cnn_receptive_field}], got {tuple(waveform.shape)}"
            )
        param = self._param()
        features, _ = self.model.feature_extractor(waveform.to(param.device, param.dtype), None)
        return self._transformer_layers(features)

    @torch.no_grad()
    def encode(
        self,
        waveform: torch.Tensor,
        fps: float,
        num_frames: int | None = None,
        normalize: bool = True,
        segment_seconds: float = 20.0,
        context_seconds: float = 3.0,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """Per-video-frame features: mono waveform `[samples]` at `cfg.sample_rate` -> `[num_frames, layers, dim]`.

        `num_frames` defaults to `round(duration * fps)` (MultiTalk truncates; pass num_frames to match it).
        `normalize` applies the Hugging Face per-utterance zero-mean / unit-variance normalisation first
        (do_normalize). The encoder hears `gain * waveform` (a loudness factor): folded into the normalisation
        constants, or applied per span, so the track is never copied whole; each span is normalised as it is cut.
        See the module docstring for segmenting. Runs without autograd.
        """
        if waveform.ndim != 1:
            raise ValueError(
                f"waveform must be mono [samples] at {self.cfg.sample_rate} Hz, got {tuple(waveform.shape)}"
            )
        if not all_finite(waveform):
            raise ValueError("waveform contains NaN or infinite samples")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if segment_seconds <= 0 or context_seconds < 0:
            raise ValueError(
                f"need segment_seconds > 0 and context_seconds >= 0, got {segment_seconds}, {context_seconds}"
            )
        total_cnn = self.num_cnn_frames(waveform.shape[0])
        if total_cnn < 1:
            raise ValueError(
                f"waveform has {waveform.shape[0]} samples; at least {self.cnn_receptive_field} are needed "
                "for one frame"
            )
        if num_frames is None:
            num_frames = round(waveform.shape[0] / self.cfg.sample_rate * fps)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        waveform = waveform.float()
        if not gain > 0 or not math.isfinite(gain):
            raise ValueError(f"gain must be a positive finite factor, got {gain}")
        shift, spread = normalization_constants(waveform, gain) if normalize else (None, 1 / gain)
        segment = max(1, round(segment_seconds * fps))
        context = round(context_seconds * fps)
        outputs = []
        for start in range(0, num_frames, segment):
            stop = min(num_frames, start + segment)
            lo, hi = max(0, start - context), min(num_frames, stop + context)
            layers = self._encode_span(waveform, lo, hi, num_frames, total_cnn, shift, spread)
            outputs.append(layers[start - lo : stop - lo])
        return torch.cat(outputs)

    def _encode_span(
        self,
        waveform: torch.Tensor,
        lo: int,
        hi: int,
        num_frames: int,
        total_cnn: int,
        shift: torch.Tensor | None,
        spread: torch.Tensor | float,
    ) -> torch.Tensor:
        """Video frames `[lo, hi)` of the global grid -> `[hi - lo, layers, dim]`; the span's samples are
        normalised as `(samples - shift) / spread` (the utterance's constants), or only divided by `spread` (1 / gain)
        when `shift` is None."""
        scale = torch.tensor((total_cnn - 1) / (num_frames - 1) if num_frames > 1 else 0.0, dtype=torch.float32)
        positions = torch.arange(lo, hi, dtype=torch.float32) * scale  # float32 like F.interpolate's grid
        left = positions.floor().long().clamp(max=total_cnn - 1)
        weight = (positions - left)[:, None]
        first, last = int(left[0]), min(total_cnn - 1, int(left[-1]) + 1)
        hop = self.cnn_hop_samples
        samples = waveform[first * hop : last * hop + self.cnn_receptive_field]
        if shift is not None:
            samples = (samples - shift) / spread
        elif spread != 1:
            samples = samples / spread
        param = self._param()
        features, _ = self.model.feature_extractor(samples[None].to(param.device, param.dtype), None)
        features = features[0, : last - first + 1].float()
        left = (left - first).to(features.device)
        right = (left + 1).clamp(max=last - first)
        weight = weight.to(features.device)
        interpolated = features[left] * (1 - weight) + features[right] * weight
        layers = self._transformer_layers(interpolated[None].to(param.dtype))
        return layers[0].transpose(0, 1)
