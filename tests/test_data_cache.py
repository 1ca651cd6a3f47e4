"""Preprocessing cache: round trip against the encoders, reuse, invalidation on encoder change, resume after an
interruption, the Dataset contract, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clip_fixtures import write_clip, write_index
from safetensors.torch import save_file

from echotorrent_core import cli
from echotorrent_core.config import get_preset
from echotorrent_core.data.cache import CacheSettings, build_cache
from echotorrent_core.data.cache_dataset import CachedWindows
from echotorrent_core.data.cache_index import read_index
from echotorrent_core.data.clips import ClipSettings, ClipWindows, open_clip
from echotorrent_core.data.face_boxes import make_face_detector
from echotorrent_core.data.fingerprint import encoder_fingerprint
from echotorrent_core.media import normalize_loudness
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.models.wav2vec import AudioEncoder

TINY = get_preset("tiny")
CLIPS = ClipSettings(size=32, window_frames=9, window_stride=8, detector="mediapipe")
SETTINGS = CacheSettings(clips=CLIPS, windows_per_shard=4)
WINDOWS_PER_CLIP = 6


def _encoders(seed: int = 0) -> tuple[WanVAE, AudioEncoder]:
    torch.manual_seed(seed)
    return WanVAE(TINY.vae).eval(), AudioEncoder(TINY.wav2vec).eval()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache_clips")
    write_clip(folder / "a.mp4", size=(96, 96))
    write_clip(folder / "b.mov", fps=30, size=(128, 96), rate=44100, channels=2)
    (folder / "broken.mp4").write_bytes(b"not a video" * 100)
    return folder


@pytest.fixture(scope="module")
def built(clip_dir: Path, tmp_path_factory) -> tuple[Path, object]:
    cache = tmp_path_factory.mktemp("cache")
    vae, audio = _encoders()
    return cache, build_cache(clip_dir, cache, vae, audio, SETTINGS, progress=False)


def _items(cache: Path) -> list[dict]:
    dataset = CachedWindows(cache)
    return [dataset[i] for i in range(len(dataset))]


def test_cache_holds_what_the_encoders_compute_for_every_window(clip_dir: Path, built) -> None:
    cache, report = built
    assert report.encoded == 2 * WINDOWS_PER_CLIP and report.reused == 0
    assert set(report.clips.skipped) == {"broken"} and "corrupt" in report.clips.skipped["broken"]
    dataset = CachedWindows(cache)
    assert len(dataset) == 2 * WINDOWS_PER_CLIP
    vae, audio_encoder = _encoders()
    clips = ClipWindows(clip_dir, CLIPS)
    features = {}
    with torch.no_grad():
        for i, window in enumerate(clips):
            item, info = dataset[i], dataset.info(i)
            assert (info["clip"], info["window"], info["start"]) == (window.entry.id, window.index, window.start)
            latents = vae.encode(window.video()[None])[0]
            assert item["latents"].shape == (16, 3, 4, 4) and torch.equal(item["latents"], latents)
            assert torch.equal(item["reference_latent"], latents[:, :1])
            assert torch.equal(item["reference_pixels"], window.video()[:, 0])
            assert torch.equal(item["audio"], window.audio)
            if window.entry.id not in features:
                track = open_clip(window.entry, CLIPS, make_face_detector("mediapipe"))
                features[window.entry.id] = audio_encoder.encode(normalize_loudness(track.audio, 16000, -23.0),
                                                                 fps=25.0, num_frames=track.frames)
            rows = features[window.entry.id][window.start : window.start + 9]
            assert item["audio_features"].shape == (9, 2, 32) and torch.equal(item["audio_features"], rows)
            assert item["params"] == {} and "pixels" not in item
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".safetensors"}  # no pickle, no leftovers
    assert len([p for p in files if p.suffix == ".safetensors"]) == 4  # 6 windows per clip, 4 per shard


def test_a_second_build_reuses_everything_and_a_decoder_change_keeps_the_cache(clip_dir: Path, built) -> None:
    cache, _ = built
    before = {p: p.stat().st_mtime_ns for p in [*cache.rglob("*.safetensors"), *cache.rglob("*.json")]}
    items = _items(cache)
    vae, audio = _encoders()
    with torch.no_grad():
        vae.decoder.conv1.weight.add_(0.5)  # the decoder is not part of what the cache holds
    report = build_cache(clip_dir, cache, vae, audio, SETTINGS, progress=False)
    assert (report.encoded, report.reused, report.rebuilt) == (0, 2 * WINDOWS_PER_CLIP, False)
    assert report.clips.skipped == {"broken": read_index(cache)["clips"]["broken"]["reason"]}
    # nothing is rewritten, the index included (what derives from its mtime, e.g. ODE pairs, stays valid)
    assert {p: p.stat().st_mtime_ns for p in [*cache.rglob("*.safetensors"), *cache.rglob("*.json")]} == before
    for old, new in zip(items, _items(cache)):
        assert all(torch.equal(old[k], new[k]) for k in ("latents", "audio_features", "audio", "reference_pixels"))


def test_changed_encoder_weights_or_settings_rebuild_the_cache(clip_dir: Path, tmp_path: Path) -> None:
    vae, audio = _encoders()
    build_cache(clip_dir, tmp_path, vae, audio, SETTINGS, progress=False)
    old_latents = _items(tmp_path)[0]["latents"]
    old_files = set(tmp_path.rglob("*.safetensors"))
    fingerprint = encoder_fingerprint(vae, audio, SETTINGS.to_dict())
    with torch.no_grad():
        vae.encoder.conv1.weight.mul_(1.1)
    assert encoder_fingerprint(vae, audio, SETTINGS.to_dict()) != fingerprint
    with pytest.raises(ValueError, match="other encoders"):
        CachedWindows(tmp_path, expected_fingerprint=encoder_fingerprint(vae, audio, SETTINGS.to_dict()))
    report = build_cache(clip_dir, tmp_path, vae, audio, SETTINGS, progress=False)
    assert report.rebuilt and report.encoded == 2 * WINDOWS_PER_CLIP and report.reused == 0
    new_latents = _items(tmp_path)[0]["latents"]
    with torch.no_grad():
        assert (new_latents - old_latents).abs().max() > 1e-3
    assert set(tmp_path.rglob("*.safetensors")) == old_files  # same shard names, new contents, nothing left over
    with torch.no_grad():
        audio.model.encoder.transformer.layers[0].attention.k_proj.weight.add_(0.01)
    assert encoder_fingerprint(vae, audio, SETTINGS.to_dict()) != encoder_fingerprint(*_encoders(), SETTINGS.to_dict())
    other = CacheSettings(clips=ClipSettings(size=32, window_frames=9, window_stride=4, detector="mediapipe"))
    assert encoder_fingerprint(vae, audio, other.to_dict()) != encoder_fingerprint(vae, audio, SETTINGS.to_dict())


def test_an_interrupted_build_resumes_to_the_same_cache(clip_dir: Path, built, tmp_path: Path) -> None:
    reference, _ = built
    vae, audio = _encoders()
    calls = []

    def interrupt_at_eleventh_window() -> None:
        calls.append(1)
        if len(calls) == 11:  # clip b: its first shard (4 windows) is written, the 5th window is not
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(clip_dir, tmp_path, vae, audio, SETTINGS, progress=False,
                    check_interrupt=interrupt_at_eleventh_window)
    index = read_index(tmp_path)
    assert not index["complete"] and len(index["shards"]) == 3
    with pytest.raises(ValueError, match="not finished"):
        CachedWindows(tmp_path)
    assert len(CachedWindows(tmp_path, allow_incomplete=True)) == 10
    (tmp_path / "shards" / ".000007.safetensors.crash.tmp").write_bytes(b"half a shard")  # a crash mid-write
    (tmp_path / "shards" / "000003.safetensors").write_bytes(b"written, never listed")
    report = build_cache(clip_dir, tmp_path, vae, audio, SETTINGS, progress=False)
    assert (report.encoded, report.reused) == (2, 10)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [f"{i:06d}.safetensors" for i in range(4)]
    resumed, whole = _items(tmp_path), _items(reference)
    assert len(resumed) == len(whole) == 12
    for a, b in zip(resumed, whole):
        assert all(torch.equal(a[k], b[k]) for k in ("latents", "audio_features", "audio", "reference_pixels"))


def test_pixels_ground_truth_and_half_precision_storage(tmp_path: Path) -> None:
    (tmp_path / "clips" / "clips").mkdir(parents=True)
    (tmp_path / "clips" / "params").mkdir()
    write_clip(tmp_path / "clips" / "clips" / "s.mp4", size=(96, 96))
    save_file({"mouth_open": torch.linspace(0, 1, 50), "identity": torch.arange(4.0)},
              str(tmp_path / "clips" / "params" / "s.safetensors"))
    write_index(tmp_path / "clips", [{"id": "s", "video": "clips/s.mp4", "params": "params/s.safetensors",
                                      "split": "heldout", "domain": "calm", "frames": 50}])
    vae, audio = _encoders()
    settings = CacheSettings(clips=CLIPS, storage_dtype="bfloat16", keep_pixels=True)
    build_cache(tmp_path / "clips", tmp_path / "cache", vae, audio, settings, progress=False)
    assert len(CachedWindows(tmp_path / "cache", split="train")) == 0
    dataset = CachedWindows(tmp_path / "cache", split="heldout")
    assert len(dataset) == WINDOWS_PER_CLIP and dataset.info(2)["domain"] == "calm"
    item = dataset[2]
    assert item["latents"].dtype == torch.float32 and item["pixels"].shape == (3, 9, 32, 32)
    assert torch.equal(item["pixels"][:, 0], item["reference_pixels"])
    with torch.no_grad():
        full = vae.encode(item["pixels"][None])[0]
    assert (item["latents"] - full).abs().max() <= 0.01 * full.abs().max()  # bfloat16 storage: about 3 digits
    assert torch.allclose(item["params"]["mouth_open"], torch.linspace(0, 1, 50)[16:25])
    assert torch.equal(item["params"]["identity"], torch.arange(4.0))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["latents"].shape == (3, 16, 3, 4, 4) and batch["params"]["mouth_open"].shape == (3, 9)


def test_cli_builds_and_describes_a_cache(clip_dir: Path, tmp_path: Path, capsys) -> None:
    from echotorrent_core.random_bundle import write_random_bundle

    bundle = write_random_bundle(tmp_path / "bundle", "tiny")
    args = ["cache", "build", "--clips", str(clip_dir), "--out", str(tmp_path / "cache"), "--model", str(bundle),
            "--size", "32", "--frames", "9", "--stride", "16", "--detector", "mediapipe", "--device", "cpu"]
    assert cli.main(args) == 0
    assert "6 windows encoded" in capsys.readouterr().out
    assert len(CachedWindows(tmp_path / "cache")) == 6  # 50 frames, windows at 0, 16, 32 per clip
    assert cli.main(["cache", "info", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "6 windows from 2 clips" in out and "skipped broken" in out
    assert cli.main(["cache", "build", "--clips", str(clip_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--model" in capsys.readouterr().err
