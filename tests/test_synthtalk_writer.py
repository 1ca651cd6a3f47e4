"""SynthTalk on disk: the CLI writes playable h264 + aac mp4s, params and the clip-folder index; reruns resume;
mediapipe's face mesh finds the drawn faces and its lip gap follows the ground-truth opening."""

import json

import av
import numpy as np
from safetensors import safe_open

from echotorrent_core.cli import main
from echotorrent_core.data.synthtalk import ClipSpec, render_clip
from echotorrent_core.data.synthtalk.validate import measure_frames
from echotorrent_core.media import read_video_frames


def test_cli_writes_the_clip_folder_format_and_resumes(tmp_path):
    out = tmp_path / "synth"
    argv = ["data", "synthtalk", "--out", str(out), "--clips", "2", "--size", "64", "--domain", "singing",
            "--seconds", "1.0", "--split", "heldout", "--seed", "5"]
    assert main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "echotorrent-clips/1" and index["fps"] == 25 and index["sample_rate"] == 16000
    assert [c["id"] for c in index["clips"]] == ["singing-heldout-000005", "singing-heldout-000006"]
    for entry in index["clips"]:
        assert set(entry) == {"id", "video", "params", "split", "domain", "identity", "voice", "frames", "seconds"}
        assert entry["split"] == "heldout" and entry["domain"] == "singing" and entry["frames"] == 25
        with av.open(str(out / entry["video"])) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert container.streams.audio[0].codec_context.name == "aac"
            assert container.streams.audio[0].rate == 16000
        frames, fps, audio, rate = read_video_frames(out / entry["video"])
        assert frames.shape == (25, 64, 64, 3) and fps == 25 and rate == 16000
        assert abs(audio.shape[1] - 16000) < 1100 and audio.abs().max() > 0.05
        with safe_open(str(out / entry["params"]), "pt") as params:
            meta = json.loads(params.metadata()["synthtalk"])
            assert params.get_tensor("mouth_open").shape == (25,)
            assert params.get_tensor("pose").shape == (25, 3)
        assert meta["voice"] == entry["voice"] and meta["fields"]["mouth_open"]
    clip = render_clip(ClipSpec(seed=5, domain="singing", size=64, seconds=1.0, split="heldout"))
    decoded = read_video_frames(out / index["clips"][0]["video"])[0].numpy().astype(int)
    assert np.abs(decoded - clip.frames.astype(int)).mean() < 4  # the mp4 holds the rendered frames
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    assert main(argv[:5] + ["3"] + argv[6:]) == 0  # one more clip; the two finished ones are skipped
    assert len(json.loads((out / "index.json").read_text())["clips"]) == 3
    assert all((out / "clips" / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    assert not [p for p in out.rglob("*") if "partial" in p.name or p.suffix == ".tmp"]


def test_face_mesh_finds_the_faces_and_follows_the_mouth():
    clip = render_clip(ClipSpec(seed=11, domain="calm", size=128, seconds=4.0, voice="espeak-us-f2"))
    detection, correlation = measure_frames(clip.frames, clip.params["mouth_open"].numpy())
    assert detection >= 0.95
    assert correlation > 0.6
