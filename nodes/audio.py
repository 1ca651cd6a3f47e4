"""Audio Encode: a ComfyUI AUDIO speech track -> per-video-frame wav2vec2 features for the sampler."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from echotorrent_core.media import loudness_gain
from echotorrent_core.media import to_mono_resampled
from echotorrent_core.pipeline import encode_audio_features

from .memory import load_to_device
from .types import AudioFeatures, AudioFeaturesType, EchoTorrentModel, ModelType

TARGET_LOUDNESS_LUFS = -23.0


def check_comfy_audio(audio: dict) -> tuple[torch.Tensor, int]:
    """The waveform `[1, C, S]` and sample rate of a ComfyUI AUDIO; raises ValueError for a batch or no samples."""
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if waveform.ndim != 3 or waveform.shape[0] != 1:
        raise ValueError(
            f"expected one speech track (AUDIO waveform [1, channels, samples]), got shape {tuple(waveform.shape)}; "
            "split a batch of audio before encoding"
        )
    if waveform.shape[1] == 0 or waveform.shape[2] == 0:
        raise ValueError(f"the AUDIO input is empty (waveform shape {tuple(waveform.shape)}); connect a speech track")
    return waveform, rate


class AudioEncode(io.ComfyNode):
    """Mixes to mono, optionally normalises loudness, resamples and runs the model's wav2vec2 encoder."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentAudioEncode",
            display_name="EchoTorrent Audio Encode",
            category="EchoTorrent/audio",
            description="Encodes speech into one wav2vec2 feature row per video frame. The video lasts as many "
                        "frames as the audio covers at the chosen fps (rounded down).",
            inputs=[
                ModelType.Input("model", tooltip="From Load EchoTorrent; its audio encoder is used."),
                io.Audio.Input("audio", tooltip="The speech track: any sample rate, any number of channels, batch 1."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=0.01,
                               tooltip="Video frame rate the features are computed for (EchoTorrent models: 25)."),
                io.Boolean.Input("normalize_loudness", default=True,
                                 tooltip="Scale the speech to -23 LUFS before encoding (as in training); the "
                                         "audio passed on for the video is left untouched."),
            ],
            outputs=[
                AudioFeaturesType.Output("audio_features", display_name="audio_features",
                                         tooltip="Features, fps and the original audio, for the sampler."),
                io.Int.Output("frame_count", display_name="frame_count", tooltip="Video frames the audio covers."),
            ],
        )

    @classmethod
    def execute(cls, model: EchoTorrentModel, audio: dict, fps: float, normalize_loudness: bool) -> io.NodeOutput:
        waveform, rate = check_comfy_audio(audio)
        encoder_rate = model.audio_encoder.cfg.sample_rate
        mono = to_mono_resampled(waveform, rate, encoder_rate)
        gain = loudness_gain(mono[None], encoder_rate, TARGET_LOUDNESS_LUFS) if normalize_loudness else None
        load_to_device(model, "audio_encoder")  # the encoder hears `gain * mono`, never formed as a second track
        features = encode_audio_features(model, mono, fps, 1.0 if gain is None else gain).float().cpu()
        del mono
        payload = AudioFeatures(features, float(fps), audio, int(features.shape[0]))
        return io.NodeOutput(payload, payload.num_frames)

