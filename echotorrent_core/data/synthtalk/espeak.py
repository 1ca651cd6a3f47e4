"""espeak-ng speech with its own phoneme timing, through libespeak-ng's C API (ctypes).

`espeak_synthesize(text, voice, rate, pitch, pitch_range) -> (samples int16 [S] at `ESPEAK_RATE` Hz,
[(mnemonic, start_seconds)])`: the synthesiser reports a PHONEME event at the audio position where each phoneme
starts (`espeakINITIALIZE_PHONEME_EVENTS`); a phoneme ends where the next one starts. SSML input is accepted
(`ssml=True`) for prosody markup. The library keeps global state, so calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
EVENT_LIST_TERMINATED, EVENT_END, EVENT_MSG_TERMINATED, EVENT_PHONEME = 0, 5, 6, 7
POS_CHARACTER = 1
CHARS_UTF8, SSML = 1, 0x10
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
LIBRARY_NAMES = ("espeak-ng", "libespeak-ng.so.1")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_LOCK = threading.Lock()
_STATE: dict = {}


class EspeakUnavailable(RuntimeError):
    """libespeak-ng could not be loaded or initialised."""


def _library() -> tuple[ctypes.CDLL, int]:
    if "lib" in _STATE:
        return _STATE["lib"], _STATE["rate"]
    path = next((p for p in (ctypes.util.find_library(n) for n in LIBRARY_NAMES[:1]) if p), LIBRARY_NAMES[1])
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:
        raise EspeakUnavailable(f"espeak-ng is missing: could not load {path} (Debian package espeak-ng)") from error
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise EspeakUnavailable(f"espeak_Initialize failed ({rate}): espeak-ng-data missing?")
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    _STATE.update(lib=lib, rate=rate, samples=[], events=[])

    def on_audio(wav, count, events) -> int:
        if count > 0:
            _STATE["samples"].append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == EVENT_PHONEME:
                name = event.id.string.decode("ascii", errors="replace")
                _STATE["events"].append((name, event.sample))
            index += 1
        return 0

    _STATE["callback"] = _CALLBACK(on_audio)  # kept alive: the library calls it later
    lib.espeak_SetSynthCallback(_STATE["callback"])
    return lib, rate


def espeak_sample_rate() -> int:
    """The rate (Hz) of espeak-ng's output."""
    return _library()[1]


def espeak_synthesize(
    text: str, voice: str = "en-us", rate: int = 165, pitch: int = 50, pitch_range: int = 50, ssml: bool = False
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Speak `text`; returns (int16 samples `[S]` at `espeak_sample_rate()`, [(phoneme mnemonic, start seconds)]).

    `voice` is an espeak-ng voice name with an optional variant (`en-us+m3`); `rate` in words per minute,
    `pitch` and `pitch_range` in 0..100. Raises `EspeakUnavailable` / `ValueError` for a missing library or voice.
    """
    with _LOCK:
        lib, sample_rate = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        for parameter, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
            lib.espeak_SetParameter(parameter, int(value), 0)
        _STATE["samples"], _STATE["events"] = [], []
        data = text.encode("utf-8") + b"\0"
        flags = CHARS_UTF8 | (SSML if ssml else 0)
        status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, flags, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        samples = np.concatenate(_STATE["samples"]) if _STATE["samples"] else np.zeros(0, np.int16)
        events = [(name, position / sample_rate) for name, position in _STATE["events"]]
    return samples, events
