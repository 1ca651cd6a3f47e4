"""espeak-ng speech with its own phoneme timing, through libespeak-ng's C API (ctypes).

`espeak_synthesize(text, voice, rate, pitch, pitch_range) -> (int16 samples [S] at the returned rate,
[(mnemonic, start_seconds)])`: the synthesiser reports a PHONEME event at the audio sample where each phoneme
starts (`espeakINITIALIZE_PHONEME_EVENTS`); a phoneme ends where the next one starts. SSML input is accepted
(`ssml=True`) for prosody markup.

libespeak-ng carries state from one utterance to the next inside a process (the same text spoken twice differs by
a few samples), so each utterance is synthesised by this file run as a script in a fresh interpreter
(`python -I espeak.py REQUEST_JSON`, ~30 ms): the same request always gives the same samples.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
POS_CHARACTER = 1
CHARS_UTF8, SSML = 1, 0x10
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
LIBRARY = "libespeak-ng.so.1"
WORKER_TIMEOUT_S = 120


class EspeakUnavailable(RuntimeError):
    """libespeak-ng could not be loaded or initialised, or has no such voice."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _synthesize_here(request: dict) -> tuple[int, list[tuple[str, int]], bytes]:
    """In this process: (sample rate, [(mnemonic, start sample)], int16 little-endian samples)."""
    path = ctypes.util.find_library("espeak-ng") or LIBRARY
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:
        raise EspeakUnavailable(f"espeak-ng is missing: could not load {path} (Debian package espeak-ng)") from error
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise EspeakUnavailable(f"espeak_Initialize failed ({rate}): espeak-ng-data missing?")
    audio: list[bytes] = []
    events: list[tuple[str, int]] = []

    def on_audio(wav, count, event_list) -> int:
        if count > 0:
            audio.append(ctypes.string_at(wav, count * 2))
        index = 0
        while event_list[index].type != EVENT_LIST_TERMINATED:
            if event_list[index].type == EVENT_PHONEME:
                events.append((event_list[index].id.string.decode("ascii", "replace"), event_list[index].sample))
            index += 1
        return 0

    callback = _CALLBACK(on_audio)
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    if lib.espeak_SetVoiceByName(request["voice"].encode()) != 0:
        raise EspeakUnavailable(f"espeak-ng has no voice {request['voice']!r} (see `espeak-ng --voices`)")
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    for parameter, key in ((PARAM_RATE, "rate"), (PARAM_PITCH, "pitch"), (PARAM_RANGE, "pitch_range")):
        lib.espeak_SetParameter(parameter, int(request[key]), 0)
    data = request["text"].encode("utf-8") + b"\0"
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    flags = CHARS_UTF8 | (SSML if request["ssml"] else 0)
    status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, flags, None, None)
    if status != 0:
        raise EspeakUnavailable(f"espeak_Synth failed with status {status}")
    return rate, events, b"".join(audio)


def espeak_synthesize(text: str, voice: str = "en-us", rate: int = 165, pitch: int = 50, pitch_range: int = 50,
                      ssml: bool = False):
    """Speak `text`; returns (int16 numpy samples `[S]`, sample rate, [(phoneme mnemonic, start seconds)]).

    `voice` is an espeak-ng voice with an optional variant (`en-us+m3`); `rate` in words per minute, `pitch` and
    `pitch_range` in 0..100. Raises `EspeakUnavailable` naming the missing library or voice.
    """
    import numpy as np

    request = {"text": text, "voice": voice, "rate": rate, "pitch": pitch, "pitch_range": pitch_range,
               "ssml": ssml}
    result = subprocess.run([sys.executable, "-I", __file__, json.dumps(request)], capture_output=True,
                            timeout=WORKER_TIMEOUT_S)
    header, _, payload = result.stdout.partition(b"\n")
    if result.returncode != 0 or not header:
        raise EspeakUnavailable(f"espeak-ng synthesis failed: {result.stderr.decode()[-400:]}")
    info = json.loads(header)
    samples = np.frombuffer(payload, dtype="<i2").astype(np.int16)
    if samples.shape[0] != info["samples"]:
        raise EspeakUnavailable(f"espeak-ng worker returned {samples.shape[0]} of {info['samples']} samples")
    return samples, info["rate"], [(name, sample / info["rate"]) for name, sample in info["events"]]


if __name__ == "__main__":
    sample_rate, phoneme_events, pcm = _synthesize_here(json.loads(sys.argv[1]))
    sys.stdout.buffer.write(json.dumps({"rate": sample_rate, "events": phoneme_events,
                                        "samples": len(pcm) // 2}).encode() + b"\n" + pcm)
