"""The embedded default model (`echotorrent_core/default_model/`): it is shipped, its manifest's sha256 hashes match
the files, it fits the 40 MB budget, it loads and streams 2 chunks from `example_inputs/` into an mp4 with the speech.

Which folder is tested: `cli.DEFAULT_BUNDLE` (echotorrent_core/default_model/). Until the trained model ships, the
tests are reported as expected failures (XFAIL, listed with the reason "the default model is not shipped yet" in
every `.ci/run` summary); once `manifest.json` is there they run and must pass.
`ECHOTORRENT_DEFAULT_BUNDLE=DIR` points the same tests at another bundle folder (a `echotorrent recipe
default-model --quick` bundle, `RUN/bundle`): used only to check the tests before the model ships, never set in CI.
Switching to the shipped folder = not setting the variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import wave
from pathlib import Path

import pytest
import torch

from echotorrent_core.cli import DEFAULT_BUNDLE
from echotorrent_core.media import load_audio_channels
from echotorrent_core.media.video_reader import read_video_frames
from echotorrent_core.pipeline import BUNDLE_FILES, bundle_defaults, bundle_paths, generate_to_file, load_bundle
from echotorrent_core.streaming import StreamSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "example_inputs"
BUNDLE = Path(os.environ.get("ECHOTORRENT_DEFAULT_BUNDLE") or DEFAULT_BUNDLE)
MAX_MODEL_BYTES = 40 * 1024 * 1024  # issue 9: at most 40 MB in all
STREAM_FIELDS = ("chunk_frames", "window_frames", "sink_frames", "steps", "shift", "solver", "rope_layout")
CHUNKS = 2
VAE_TEMPORAL_STRIDE = 4  # latent frame -> 4 video frames


@pytest.fixture(scope="module")
def bundle_folder() -> Path:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.xfail(f"the default model is not shipped yet: {BUNDLE} has no manifest.json (issue 9; "
                    "`echotorrent recipe default-model --out RUN` trains it, RUN/bundle is what ships)")
    return BUNDLE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_manifest_hashes_match_the_files(bundle_folder: Path):
    manifest = json.loads((bundle_folder / "manifest.json").read_text())
    listed = manifest["files"]
    assert set(BUNDLE_FILES.values()) <= set(listed), f"manifest lists {sorted(listed)}"
    for name, entry in listed.items():
        path = bundle_folder / name
        assert path.is_file(), f"{name} is in the manifest but not in {bundle_folder}"
        assert _sha256(path) == entry["sha256"], f"{name}: sha256 differs from the manifest"
        assert path.stat().st_size == entry["bytes"]
    model_bytes = sum(listed[f]["bytes"] for f in BUNDLE_FILES.values())
    assert model_bytes <= MAX_MODEL_BYTES, f"the model files take {model_bytes / 2**20:.1f} MiB, over 40 MB"
    assert manifest["stages"] and all(stage["command"] and stage["wall_seconds"] > 0 for stage in manifest["stages"])


def test_streams_two_chunks_from_the_examples(bundle_folder: Path, tmp_path: Path):
    paths, defaults = bundle_paths(bundle_folder), bundle_defaults(bundle_folder)
    settings = StreamSettings(fps=float(defaults.get("fps", 25.0)),
                              **{k: defaults[k] for k in STREAM_FIELDS if k in defaults})
    frames_wanted = CHUNKS * settings.chunk_frames * VAE_TEMPORAL_STRIDE
    audio, rate = load_audio_channels(EXAMPLES / "speech.wav")
    samples = int(frames_wanted * rate / settings.fps)
    assert audio.shape[-1] >= samples, "example_inputs/speech.wav is shorter than 2 chunks"
    speech = tmp_path / "speech.wav"
    with wave.open(str(speech), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((audio[0, :samples] * 32767).round().to(torch.int16).numpy().tobytes())
    model = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])
    height, width = int(defaults["height"]), int(defaults["width"])

    result = generate_to_file(model, EXAMPLES / "portrait.png", speech, tmp_path / "demo.mp4", height, width,
                              settings)

    assert (result.chunks, result.frames) == (CHUNKS, frames_wanted)
    assert result.passes == CHUNKS * (settings.steps + 1)  # one pass per step (no CFG) + the cache write
    frames, fps, sound, sound_rate = read_video_frames(result.path)
    assert tuple(frames.shape) == (frames_wanted, height, width, 3) and fps == settings.fps
    assert sound is not None and abs(sound.shape[-1] / sound_rate - samples / rate) < 0.05
    assert frames.float().std() > 1.0, "the video is one flat colour"
