"""SynthTalk speech: every voice engine runs (a missing tool fails naming it), espeak-ng's phoneme events drive
the visemes, pocketsphinx alignment is reproducible, singing has exact phones."""

import numpy as np

from echotorrent_core.data.synthtalk.align import force_align
from echotorrent_core.data.synthtalk.espeak import espeak_synthesize
from echotorrent_core.data.synthtalk.phones import BILABIALS, PHONE_ID, espeak_to_arpabet
from echotorrent_core.data.synthtalk.recordings import librivox_speech, librivox_transcripts
from echotorrent_core.data.synthtalk.singing import SINGERS, sing
from echotorrent_core.data.synthtalk.speech import SAMPLE_RATE
from echotorrent_core.data.synthtalk.visemes import phone_per_frame, viseme_tracks
from echotorrent_core.data.synthtalk.voices import VOICES, synthesize

OPEN_VOWELS = {"AA", "AE", "AW", "AY"}


def _covers(speech) -> None:
    assert speech.audio.dtype == np.float32 and np.abs(speech.audio).max() > 0.05
    assert speech.phones[0].start == 0.0 and abs(speech.phones[-1].end - speech.seconds) < 1e-6
    for before, after in zip(speech.phones, speech.phones[1:]):
        assert abs(before.end - after.start) < 1e-9 and after.end > after.start


def test_espeak_phoneme_events_time_the_phones_and_drive_the_visemes():
    text = "papa bob bought a map and a palm by the barn, mom had a cab"
    speech = synthesize(VOICES["espeak-us-m3"], text, rate=0.8)
    _covers(speech)
    _, rate, events = espeak_synthesize(text, "en-us+m3", rate=int(165 * 0.8), pitch=50)
    expected = [(espeak_to_arpabet(n), t) for n, t in events if espeak_to_arpabet(n) not in (None, "SIL")]
    spoken = [(p.phone, p.start) for p in speech.phones if p.phone != "SIL"]
    assert [p for p, _ in spoken] == [p for p, _ in expected]  # the same phones, at espeak's own start times
    assert np.allclose([t for _, t in spoken], [t for _, t in expected], atol=1e-9)
    frames = int(speech.seconds * 25)
    tracks = viseme_tracks(speech.phones, frames, 25)
    ids = phone_per_frame(speech.phones, frames, 25)
    opening = tracks["mouth_open"]
    open_frames = np.isin(ids, [PHONE_ID[p] for p in OPEN_VOWELS])
    closed_frames = np.isin(ids, [PHONE_ID[p] for p in BILABIALS])
    assert open_frames.sum() >= 5 and closed_frames.sum() >= 5
    assert opening[open_frames].mean() > opening[closed_frames].mean() + 0.3
    rounded = np.isin(ids, [PHONE_ID["UW"], PHONE_ID["W"], PHONE_ID["OW"]])
    spread = np.isin(ids, [PHONE_ID["IY"], PHONE_ID["EY"], PHONE_ID["AE"]])
    if rounded.any() and spread.any():
        assert tracks["mouth_round"][rounded].mean() > tracks["mouth_round"][spread].mean()


def test_every_voice_speaks_with_aligned_phones_reproducibly():
    text = "my brother bought a blue map"
    for voice in VOICES.values():
        speech = synthesize(voice, text)
        _covers(speech)
        phones = [p.phone for p in speech.phones if p.phone != "SIL"]
        assert {"M", "B", "AE", "P"} <= set(phones), (voice.name, phones)
        again = synthesize(voice, text)
        assert np.array_equal(speech.audio, again.audio), voice.name
        assert speech.phones == again.phones, voice.name


def test_forced_alignment_finds_a_map_in_real_speech():
    transcripts = librivox_transcripts()
    assert len(transcripts) == 5
    speech = librivox_speech("sense_and_sensibility_01_austen_64kb-0880")  # "he was not an ill disposed young man"
    _covers(speech)
    phones = [p.phone for p in speech.phones if p.phone != "SIL"]
    assert phones[:2] == ["HH", "IY"] and phones[-3:] == ["M", "AE", "N"]
    again = force_align(speech.audio, speech.text)
    assert again == speech.phones


def test_singing_holds_vowels_on_a_melody():
    speech = sing(SINGERS["formant-alto"], np.random.default_rng(1), 5.0)
    _covers(speech)
    vowels = [p for p in speech.phones if p.phone not in ("SIL", "M", "N", "L", "B", "D")]
    assert np.mean([p.end - p.start for p in vowels]) > 0.4
    spectrum = np.abs(np.fft.rfft(speech.audio[: SAMPLE_RATE * 2]))
    freqs = np.fft.rfftfreq(SAMPLE_RATE * 2, 1 / SAMPLE_RATE)
    assert 150 < freqs[np.argmax(spectrum[freqs < 1000])] < 1000  # voiced, pitched sound
    assert np.array_equal(speech.audio, sing(SINGERS["formant-alto"], np.random.default_rng(1), 5.0).audio)
