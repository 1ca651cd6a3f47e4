"""Real-clip windows: odd files reported and skipped, 25 fps / 16 kHz resampling, face-centred crops, clip folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clip_fixtures import chirp_frequency, face_centre, frame_code, write_clip, write_index
from safetensors.torch import save_file

from echotorrent_core.data.clip_folder import scan_clip_folder
from echotorrent_core.data.clips import ClipSettings, ClipWindows
from echotorrent_core.data.video_resample import frames_at_rate

SETTINGS = ClipSettings(size=64, window_frames=9, window_stride=8, detector="mediapipe")
SIZES = {"fps30": (128, 96), "fps24": (160, 120), "speech": (112, 112)}


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "fps30.mp4", fps=30, size=SIZES["fps30"], rate=44100, channels=2)
    write_clip(folder / "fps24.mkv", fps=24, size=SIZES["fps24"])
    write_clip(folder / "speech.mov", size=SIZES["speech"], audio_codec="pcm_s16le", sound="speech")
    write_clip(folder / "silent.mp4", sound="silent")
    write_clip(folder / "mute.mp4", sound=None)
    write_clip(folder / "short.mp4", seconds=0.3)
    write_clip(folder / "noface.mp4", face=False)
    whole = (folder / "fps30.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "nested").mkdir()
    (folder / "nested" / "garbage.mkv").write_bytes(np.random.RandomState(0).bytes(5000))
    return folder


@pytest.fixture(scope="module")
def read_folder(odd_folder: Path):
    dataset = ClipWindows(odd_folder, SETTINGS)
    return dataset, list(dataset)


def test_odd_files_are_reported_and_skipped_without_stopping_the_run(read_folder) -> None:
    dataset, windows = read_folder
    skipped = dataset.report.skipped
    assert set(skipped) == {"silent", "mute", "short", "noface", "truncated", "nested__garbage"}
    for clip, words in [("silent", "silent"), ("mute", "no audio"), ("short", "too short"), ("noface", "no face"),
                        ("truncated", "corrupt"), ("nested__garbage", "corrupt")]:
        assert words in skipped[clip], skipped[clip]
    assert dataset.report.used == {"fps24": 6, "fps30": 6, "speech": 6}  # 2 s -> 50 frames -> 6 windows of 9 / 8
    assert "6 skipped" in dataset.report.summary()
    assert [(w.entry.id, w.index, w.start) for w in windows[:7]] == [("fps24", i, 8 * i) for i in range(6)] + [
        ("fps30", 0, 0)]


def test_windows_have_the_configured_shape_and_the_sound_under_their_frames(read_folder) -> None:
    _, windows = read_folder
    for window in windows:
        assert window.frames.shape == (9, 64, 64, 3) and window.frames.dtype == np.uint8
        assert window.audio.shape == (SETTINGS.window_samples,) == (5760,)
        assert window.video().shape == (3, 9, 64, 64) and -1 <= window.video().min() < window.video().max() <= 1
        if window.entry.id == "speech":
            continue
        # The chirp's pitch at the window's centre says where the window's sound comes from (1 frame = 8 Hz here).
        spectrum = np.abs(np.fft.rfft(window.audio.numpy() * np.hanning(len(window.audio))))
        peak = np.fft.rfftfreq(len(window.audio), 1 / 16000)[spectrum.argmax()]
        centre = (window.start + 9 / 2) / 25
        assert abs(peak - chirp_frequency(centre)) < 5, (window.entry.id, window.start, peak)


@pytest.mark.parametrize("name, source_fps", [("fps30.mp4", 30), ("fps24.mkv", 24)])
def test_video_is_resampled_to_25_fps_by_nearest_frame(odd_folder: Path, name: str, source_fps: int) -> None:
    with av.open(str(odd_folder / name)) as container:
        codes = [frame_code(frame.to_ndarray(format="rgb24")) for _, frame in frames_at_rate(container, 25.0)]
    assert len(codes) == 50
    expected = [min(round(i * source_fps / 25), 2 * source_fps - 1) for i in range(50)]
    mismatched = [(i, c, e) for i, (c, e) in enumerate(zip(codes, expected)) if c != e]
    # Ties (i * fps / 25 exactly half-way between two source frames) may go either way.
    assert all(abs(i * source_fps / 25 % 1 - 0.5) < 1e-9 for i, _, _ in mismatched), mismatched


def test_crops_are_centred_on_the_face_and_fixed_per_window(read_folder) -> None:
    _, windows = read_folder
    for window in windows:
        width, height = SIZES[window.entry.id]
        x0, y0, side = window.crop
        assert 0 <= x0 and 0 <= y0 and x0 + side <= width and y0 + side <= height
        times = (window.start + np.arange(9)) / 25
        centres = np.array([face_centre(t, width, height) for t in times]).mean(axis=0)
        offset = np.array([x0 + side / 2, y0 + side / 2]) - centres
        assert np.abs(offset).max() < 0.1 * side, (window.entry.id, window.start, offset)
        assert window.face_fraction == 1.0
    # the face (skin) fills the middle of every crop
    middle = np.stack([w.frames[:, 24:40, 24:40] for w in windows]).reshape(-1, 3).mean(axis=0)
    assert middle[0] > 150 and middle[0] > middle[2] + 20


def test_the_haar_detector_gives_about_the_same_crops(odd_folder: Path, read_folder) -> None:
    _, windows = read_folder
    single = odd_folder.parent / "single_haar"
    single.mkdir(exist_ok=True)
    shutil.copy(odd_folder / "fps30.mp4", single / "fps30.mp4")
    haar = list(ClipWindows(single, ClipSettings(size=64, window_frames=9, window_stride=8, detector="haar")))
    mediapipe = [w for w in windows if w.entry.id == "fps30"]
    assert len(haar) == len(mediapipe) == 6
    for a, b in zip(haar, mediapipe):
        assert np.abs(np.array(a.crop) - np.array(b.crop)).max() < 0.2 * b.crop[2]


def test_clip_folder_index_gives_labels_splits_and_ground_truth_per_window(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "params").mkdir()
    for clip in ("a", "b"):
        write_clip(tmp_path / "clips" / f"{clip}.mkv", size=(96, 96))
    frames = 50  # parameter rows, one per frame at the index's 25 fps
    save_file({"mouth_open": torch.arange(frames, dtype=torch.float32), "phones": torch.arange(frames) % 7,
               "identity": torch.ones(8)}, str(tmp_path / "params" / "a.safetensors"))
    write_index(tmp_path, [
        {"id": "a", "video": "clips/a.mkv", "params": "params/a.safetensors", "identity": "p1", "domain": "calm",
         "frames": frames},
        {"id": "b", "video": "clips/b.mkv", "split": "heldout"},
        {"id": "c", "video": "clips/b.mkv", "params": "params/c.safetensors"},  # a broken parameter file
    ])
    (tmp_path / "params" / "c.safetensors").write_bytes(b"\x10" * 64)
    entries = scan_clip_folder(tmp_path)
    assert [(e.id, e.split, e.identity) for e in entries] == [("a", "train", "p1"), ("b", "heldout", None),
                                                              ("c", "train", None)]
    dataset = ClipWindows(tmp_path, SETTINGS, split="train")
    train = list(dataset)
    assert {w.entry.id for w in train} == {"a"} and len(train) == 6
    assert list(dataset.report.skipped) == ["c"] and "corrupt" in dataset.report.skipped["c"]
    for window in train:
        rows = torch.arange(window.start, window.start + 9, dtype=torch.float32)
        assert torch.equal(window.params["mouth_open"], rows)
        assert torch.equal(window.params["phones"], rows.long() % 7)
        assert torch.equal(window.params["identity"], torch.ones(8))
    held = list(ClipWindows(tmp_path, SETTINGS, split="heldout"))
    assert {w.entry.id for w in held} == {"b"} and held[0].params == {}


def test_bad_settings_and_folders_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ClipSettings(window_frames=10)
    with pytest.raises(ValueError, match="multiple of 16"):
        ClipSettings(size=100)
    with pytest.raises(FileNotFoundError, match="clip folder"):
        scan_clip_folder(tmp_path / "missing")
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="echotorrent-clips/1"):
        scan_clip_folder(tmp_path)
