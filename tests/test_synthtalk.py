"""SynthTalk: determinism, rendered mouth vs its parameters, coarticulation, identities, held-out rule, domains."""

from dataclasses import replace

import numpy as np
import pytest

from echotorrent_core.data.synthtalk import (
    HELDOUT_IDENTITY_START, PHONE_ID, ClipSpec, is_heldout_identity, make_identity, plan_clip, render_clip,
)
from echotorrent_core.data.synthtalk.clip import choose_voice, frame_states
from echotorrent_core.data.synthtalk.domains import DOMAINS
from echotorrent_core.data.synthtalk.face import CAVITY_COLOUR, TEETH_COLOUR, TONGUE_COLOUR, FaceRenderer
from echotorrent_core.data.synthtalk.identity import identity_vector
from echotorrent_core.data.synthtalk.phones import BILABIALS, VOWELS
from echotorrent_core.data.synthtalk.voices import VOICES

INNER_COLOURS = np.array([CAVITY_COLOUR, TONGUE_COLOUR, TEETH_COLOUR], np.float32)


def _short(seed: int, **kwargs) -> ClipSpec:
    settings = dict(domain="calm", size=64, seconds=1.2, voice="espeak-us-m3")
    settings.update(kwargs)
    return ClipSpec(seed=seed, **settings)


def test_same_seed_same_clip_different_seed_different_clip():
    first, again, other = render_clip(_short(7)), render_clip(_short(7)), render_clip(_short(8))
    assert np.array_equal(first.frames, again.frames)
    assert np.array_equal(first.audio, again.audio)
    assert first.params.keys() == again.params.keys()
    for name in first.params:
        assert first.params[name].equal(again.params[name]), name
    assert first.metadata == again.metadata
    assert not np.array_equal(first.frames, other.frames)
    assert first.metadata["text"] != other.metadata["text"]
    assert first.frames.shape == (30, 64, 64, 3) and first.frames.dtype == np.uint8
    assert first.audio.shape == (30 * 640,) and first.audio.dtype == np.float32
    assert first.params["pose"].shape == (30, 3) and first.params["phone"].shape == (30,)


@pytest.mark.parametrize("seed", [2, 3])
def test_rendered_inner_mouth_area_follows_mouth_open(seed):
    """Pixels of the inner-mouth colours (cavity, tongue, teeth) under neutral light, against `mouth_open`."""
    spec = ClipSpec(seed=seed, domain="expressive", size=128, seconds=3.0, voice="espeak-us-f2")
    _, tracks, metadata = plan_clip(spec)
    renderer = FaceRenderer(make_identity(metadata["identity_id"]), 128)
    areas = []
    for state in frame_states(tracks):
        frame = renderer.render(replace(state, light=(1.0, 0.0, 0.0))).astype(np.float32)
        distance = np.linalg.norm(frame[:, :, None, :] - INNER_COLOURS[None, None], axis=-1).min(axis=-1)
        areas.append(int((distance < 15).sum()))
    opening = tracks["mouth_open"]
    assert opening.max() > 0.6 and opening.min() < 0.1
    assert np.corrcoef(areas, opening)[0, 1] > 0.9


def test_mouth_tracks_have_no_jumps_and_close_on_bilabials():
    speech, tracks, _ = plan_clip(_short(3, seconds=4.0, size=64))
    opening = tracks["mouth_open"]
    for name in ("mouth_open", "mouth_width", "mouth_round", "teeth"):
        assert np.abs(np.diff(tracks[name])).max() < 0.3, name
    assert 0.0 <= opening.min() and opening.max() <= 1.0
    closures = [p for p in speech.phones if p.phone in BILABIALS and p.end - p.start >= 0.06]
    assert closures, "the sentence should hold a bilabial"
    for p in closures:
        inside = opening[int(p.start * 25): int(np.ceil(p.end * 25))]
        assert inside.min() < 0.25, (p, inside)


def test_identities_are_fixed_by_id_and_differ():
    assert make_identity(5) == make_identity(5)
    vectors = np.stack([identity_vector(make_identity(i)) for i in range(20)])
    assert np.isfinite(vectors).all()
    assert len({tuple(v) for v in vectors}) == 20
    a, b = FaceRenderer(make_identity(1), 64), FaceRenderer(make_identity(2), 64)
    _, tracks, _ = plan_clip(_short(0))
    state = frame_states(tracks)[0]
    assert np.abs(a.render(state).astype(int) - b.render(state).astype(int)).mean() > 10


def test_heldout_rule_identities_and_voices():
    for seed in range(12):
        train = plan_clip(ClipSpec(seed=seed, domain="singing", size=64, seconds=0.4, split="train"))[2]
        held = plan_clip(ClipSpec(seed=seed, domain="singing", size=64, seconds=0.4, split="heldout"))[2]
        assert not is_heldout_identity(train["identity_id"]) and train["identity_id"] < HELDOUT_IDENTITY_START
        assert is_heldout_identity(held["identity_id"])
    for domain in DOMAINS.values():
        assert not set(domain.train_voices) & set(domain.heldout_voices)
        rng = np.random.default_rng(0)
        chosen = {choose_voice(ClipSpec(seed=0, domain=domain.name), rng) for _ in range(200)}
        assert chosen <= set(domain.train_voices)
        held = {choose_voice(ClipSpec(seed=0, domain=domain.name, split="heldout"), rng) for _ in range(200)}
        assert held & set(domain.heldout_voices)
    assert any(v.heldout for v in VOICES.values())
    with pytest.raises(ValueError, match="does not belong"):
        plan_clip(ClipSpec(seed=0, split="train", identity=HELDOUT_IDENTITY_START + 1))
    with pytest.raises(ValueError, match="not a training voice"):
        plan_clip(ClipSpec(seed=0, split="train", voice="flite-awb"))


def test_domains_have_distinct_styles():
    calm = plan_clip(ClipSpec(seed=1, domain="calm", size=64, seconds=6.0, voice="espeak-us-m3"))
    lively = plan_clip(ClipSpec(seed=1, domain="expressive", size=64, seconds=6.0, voice="espeak-us-m3"))
    song = plan_clip(ClipSpec(seed=1, domain="singing", size=64, seconds=6.0))
    assert lively[1]["pose"].std(0).sum() > 2 * calm[1]["pose"].std(0).sum()
    assert lively[1]["smile"].mean() > calm[1]["smile"].mean()

    def vowel_length(speech):
        return np.mean([p.end - p.start for p in speech.phones if p.phone in VOWELS])

    assert vowel_length(song[0]) > 3 * vowel_length(calm[0])
    assert song[2]["voice"].startswith("formant-")


def test_any_size_and_long_clip_length():
    for size in (64, 96, 256):
        clip = render_clip(_short(4, size=size, seconds=0.2))
        assert clip.frames.shape == (5, size, size, 3)
    speech, tracks, _ = plan_clip(ClipSpec(seed=0, domain="long", size=64, voice="espeak-us-m3"))
    assert tracks["mouth_open"].shape[0] >= 60 * 25 and speech.seconds >= 60
    assert len({p.phone for p in speech.phones}) > 20
    with pytest.raises(ValueError, match="size"):
        render_clip(_short(0, size=300))
    with pytest.raises(ValueError, match="domain"):
        plan_clip(_short(0, domain="opera"))
    assert set(PHONE_ID) >= VOWELS | BILABIALS
