"""Stage `audio_encoder`: pretrain a wav2vec2-layout speech encoder to carry phonetic content, voice-independently.

No pretrained wav2vec2 can be downloaded here, so the default model's encoder is trained from scratch, supervised:
a linear phone classifier reads every transformer layer (a learned softmax mix of the layers, as the DiT's audio
projection reads all of them) at the video rate and is trained with cross-entropy against ground-truth phone
timing (espeak-ng events / pocketsphinx alignment, `phone_windows.py`). The encoder runs exactly as at inference:
CNN features linearly interpolated to the video frame rate (align_corners=True), then the transformer
(`video_rate_layers` equals `AudioEncoder.encode` on one window). Only the encoder is exported; the classifier is a
training device. Training on many voices (neural, HTS, diphone, formant synthesis, real recordings) and testing on
voices held out of training is what makes the phonetic content, not the voice, reach the DiT.

Augmentation (drawn inside the loss from the global torch RNG, so resume stays exact): a random gain and additive
white noise at a random SNR. The encoder's input normalisation (zero mean, unit variance per window) is applied as
`AudioEncoder.encode(normalize=True)` does. Scales to GPUs with a larger `batch_size` and a longer window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoints.loaders import load_audio_encoder, save_audio_encoder
from ...config import Wav2VecConfig, get_preset
from ...data.synthtalk.phones import PHONE_ID, PHONES, SILENCE
from ...models.wav2vec import AudioEncoder, normalize_waveform
from ..registry import register_stage
from ..stage import Stage
from .network_init import initial_network
from .phone_windows import prepare_phone_windows
from .sample_files import TensorSamples, file_fingerprint, split_samples


@dataclass
class AudioEncoderStageConfig:
    """data: a clip folder with phone_segments in its params; preset / wav2vec: the Wav2VecConfig (a preset's, with
    field overrides); init: continue from an encoder file; frames: video frames per window (x 640 samples at 16 kHz
    and 25 fps); windows_per_clip; noise_snr_db: the range additive white noise is drawn from (None: no noise);
    gain_db: random gain range."""

    data: str
    preset: str = "tiny"
    wav2vec: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    frames: int = 50
    windows_per_clip: int = 8
    limit_clips: int | None = None
    heldout_split: str = "heldout"
    fps: float = 25.0
    noise_snr_db: tuple[float, float] | None = (10.0, 40.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    cache_dir: str | None = None


def video_rate_layers(encoder: AudioEncoder, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Differentiable `AudioEncoder.encode` of a batch: normalised waveforms `[B, samples]` -> every transformer
    layer at the video rate `[B, layers, num_frames, dim]` (CNN features interpolated with align_corners=True)."""
    frames = encoder.num_cnn_frames(waveform.shape[1])
    if frames < 1:
        raise ValueError(f"window of {waveform.shape[1]} samples is shorter than the CNN's receptive field")
    # Only the samples the CNN frames cover, as `encode` feeds them (group-norm extractors normalise over them).
    covered = (frames - 1) * encoder.cnn_hop_samples + encoder.cnn_receptive_field
    features, _ = encoder.model.feature_extractor(waveform[:, :covered], None)
    interpolated = F.interpolate(features.transpose(1, 2), size=num_frames, mode="linear", align_corners=True)
    return encoder._transformer_layers(interpolated.transpose(1, 2))


class PhoneProbe(nn.Module):
    """The encoder plus a phone classifier over a learned softmax mix of its layers."""

    def __init__(self, encoder: AudioEncoder, num_phones: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.layer_logits = nn.Parameter(torch.zeros(encoder.cfg.encoder_num_layers))
        self.classifier = nn.Linear(encoder.cfg.encoder_embed_dim, num_phones)

    def forward(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Normalised waveforms `[B, samples]` -> phone logits `[B, num_frames, num_phones]`."""
        layers = video_rate_layers(self.encoder, waveform, num_frames)
        mixed = torch.einsum("l,bltd->btd", self.layer_logits.softmax(0), layers)
        return self.classifier(mixed)


def augment(audio: torch.Tensor, gain_db: tuple[float, float], snr_db: tuple[float, float] | None) -> torch.Tensor:
    """Random gain and white noise per window of `[B, samples]` (global torch RNG)."""
    batch = audio.shape[0]
    gain = 10 ** (torch.empty(batch, 1).uniform_(*gain_db) / 20)
    audio = audio * gain.to(audio)
    if snr_db is None:
        return audio
    snr = torch.empty(batch, 1).uniform_(*snr_db).to(audio)
    power = audio.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10)
    noise = torch.randn(audio.shape).to(audio) * (power / 10 ** (snr / 10)).sqrt()
    return audio + noise


def normalise_batch(audio: torch.Tensor) -> torch.Tensor:
    """Per-window zero mean / unit variance, as `AudioEncoder.encode(normalize=True)`: `[B, samples]`."""
    return torch.stack([normalize_waveform(window) for window in audio])


@register_stage
class AudioEncoderStage(Stage):
    name = "audio_encoder"
    Config = AudioEncoderStageConfig

    def __init__(self, config: AudioEncoderStageConfig, trainer_config, device: torch.device) -> None:
        super().__init__(config, trainer_config, device)
        encoder = initial_network(
            config.init, lambda path: load_audio_encoder(path, dtype=torch.float32)[0],
            lambda: AudioEncoder(Wav2VecConfig.from_dict(get_preset(config.preset).wav2vec.to_dict() | config.wav2vec)),
            trainer_config.seed)
        self.probe = PhoneProbe(encoder, len(PHONES))
        self.cache_dir = Path(config.cache_dir or Path(trainer_config.out_dir) / "data")
        self._datasets: dict[str, TensorSamples | None] = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.probe}

    def blocks(self, role: str) -> list[nn.Module]:
        return list(self.probe.encoder.model.encoder.transformer.layers)

    def dataset(self, split: str) -> TensorSamples | None:
        if split not in self._datasets:
            self._datasets[split] = self._load(split)
        return self._datasets[split]

    def _load(self, split: str) -> TensorSamples | None:
        config = self.config
        rate = self.probe.encoder.cfg.sample_rate
        path = lambda name: self.cache_dir / f"phones_{name}_{config.frames}f.safetensors"
        fingerprint = lambda name: {
            "kind": "phone_windows", "index": file_fingerprint(Path(config.data) / "index.json"), "split": name,
            "frames": config.frames, "windows": config.windows_per_clip, "limit": config.limit_clips,
            "fps": config.fps, "rate": rate, "phones": list(PHONES),
        }
        build = lambda name: prepare_phone_windows(config.data, name, config.frames, config.windows_per_clip,
                                                   PHONE_ID[SILENCE], rate, config.fps, config.limit_clips)
        return split_samples(config.data, split, config.heldout_split, path, fingerprint, build)

    def _logits(self, audio: torch.Tensor, train: bool) -> torch.Tensor:
        if train:
            audio = augment(audio, self.config.gain_db, self.config.noise_snr_db)
        return self.probe(normalise_batch(audio), self.config.frames)

    def generator_loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self._logits(batch["audio"], train=True)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["phones"].flatten())
        accuracy = (logits.argmax(-1) == batch["phones"]).float().mean()
        return loss, {"phone_ce": loss.item(), "phone_acc": accuracy.item()}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out frame phone accuracy (clean audio), the majority-class baseline and the speech-frame accuracy."""
        heldout = self.dataset("heldout")
        if heldout is None:
            return {}
        return phone_accuracy(self.probe, heldout, self.config.frames, self.device)

    def export(self, out_dir: Path) -> list[Path]:
        weights = self.export_weights("generator")
        encoder = AudioEncoder(self.probe.encoder.cfg)
        encoder.load_state_dict({k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")})
        return [save_audio_encoder(encoder, Path(out_dir) / "audio_encoder.safetensors")]


def phone_accuracy(probe: PhoneProbe, windows: TensorSamples, frames: int, device: torch.device,
                   batch_size: int = 16) -> dict[str, float]:
    """Frame accuracy of `probe` on `windows`, on speech frames only, and the majority-class baseline."""
    silence = PHONE_ID[SILENCE]
    correct = speech_correct = speech = total = 0
    counts = torch.zeros(len(PHONES), dtype=torch.int64)
    for start in range(0, len(windows), batch_size):
        items = [windows[i] for i in range(start, min(len(windows), start + batch_size))]
        audio = torch.stack([item["audio"] for item in items]).to(device)
        labels = torch.stack([item["phones"] for item in items]).to(device)
        predicted = probe(normalise_batch(audio), frames).argmax(-1)
        hit = predicted == labels
        is_speech = labels != silence
        correct += int(hit.sum())
        speech_correct += int((hit & is_speech).sum())
        speech += int(is_speech.sum())
        total += labels.numel()
        counts += torch.bincount(labels.flatten().cpu(), minlength=len(PHONES))
    return {"phone_acc": correct / total, "speech_phone_acc": speech_correct / max(speech, 1),
            "majority_acc": int(counts.max()) / total}
