"""Frame strips of what a bundle does with a drawn held-out portrait and with a real photograph (issue 9, item 5).

    .venv/bin/python scripts/report_default_model.py [--model BUNDLE] [--out DIR] [--frames 8]

For each input (`example_inputs/portrait.png`, a held-out SynthTalk identity; `example_inputs/photo.png`, the astronaut
photograph) the bundle streams `example_inputs/speech.wav` at its own size and stream settings, and one PNG is written:
the input as the model sees it (scaled and cropped to the output size), then `--frames` frames evenly spaced over
the video, each labelled with its time. Default: the shipped model into docs/images/; a bundle with random weights
or from the quick recipe is refused there (it would misrepresent the default model): pass `--out /tmp/...`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echotorrent_core.cli import DEFAULT_BUNDLE  # noqa: E402
from echotorrent_core.media import load_image  # noqa: E402
from echotorrent_core.media.video_reader import read_video_frames  # noqa: E402
from echotorrent_core.pipeline import bundle_defaults, bundle_paths, generate_to_file, load_bundle  # noqa: E402
from echotorrent_core.streaming import StreamSettings  # noqa: E402

EXAMPLES = ROOT / "example_inputs"
DOCS_IMAGES = ROOT / "docs" / "images"
INPUTS = {"drawn": EXAMPLES / "portrait.png", "photo": EXAMPLES / "photo.png"}
STREAM_FIELDS = ("chunk_frames", "window_frames", "sink_frames", "steps", "shift", "solver", "rope_layout")
LABEL_HEIGHT = 14


def is_stand_in(folder: Path) -> bool:
    """True for random-weight bundles and quick-recipe bundles (never shown as the default model)."""
    defaults = bundle_defaults(folder)
    manifest = folder / "manifest.json"
    name = json.loads(manifest.read_text()).get("name", "") if manifest.is_file() else ""
    return bool(defaults.get("random_weights")) or "quick" in name or not manifest.is_file()


def strip(reference: np.ndarray, frames: np.ndarray, times: list[float]) -> Image.Image:
    """`reference` `[H, W, 3]` then `frames` `[N, H, W, 3]` side by side, each with a label row above it."""
    height, width = reference.shape[:2]
    tiles = [("input", reference), *((f"{t:.2f} s", frame) for t, frame in zip(times, frames))]
    canvas = Image.new("RGB", (width * len(tiles), height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, pixels) in enumerate(tiles):
        canvas.paste(Image.fromarray(pixels), (index * width, LABEL_HEIGHT))
        draw.text((index * width + 3, 1), label, fill="black")
    return canvas


def render_strips(model: Path, out: Path, count: int) -> list[Path]:
    """One strip per input of `INPUTS`, written as `out/default-model-<name>.png`."""
    paths, defaults = bundle_paths(model), bundle_defaults(model)
    bundle = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"])
    settings = StreamSettings(fps=float(defaults.get("fps", 25.0)),
                              **{k: defaults[k] for k in STREAM_FIELDS if k in defaults})
    height, width = int(defaults.get("height", 128)), int(defaults.get("width", 128))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in INPUTS.items():
        with tempfile.TemporaryDirectory() as scratch:
            video = generate_to_file(bundle, image, EXAMPLES / "speech.wav", Path(scratch) / "v.mp4", height,
                                     width, settings).path
            frames, fps, _, _ = read_video_frames(video)
        picks = np.linspace(0, frames.shape[0] - 1, count).round().astype(int)
        reference = ((load_image(image, height, width).permute(1, 2, 0) + 1) * 127.5).clamp(0, 255)
        target = out / f"default-model-{name}.png"
        strip(reference.to(torch.uint8).numpy(), frames[picks].numpy(), [p / fps for p in picks]).save(target)
        written.append(target)
        print(f"wrote {target}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_BUNDLE), help="bundle folder (default: the shipped model)")
    parser.add_argument("--out", default=None, help=f"folder for the PNGs (default {DOCS_IMAGES})")
    parser.add_argument("--frames", type=int, default=8, help="video frames per strip")
    args = parser.parse_args(argv)
    model = Path(args.model)
    if not model.is_dir():
        raise SystemExit(f"no bundle at {model}: the default model is not shipped yet; pass --model and --out")
    out = Path(args.out) if args.out else DOCS_IMAGES
    if out.resolve() == DOCS_IMAGES.resolve() and is_stand_in(model):
        raise SystemExit(f"{model} has random weights or comes from the quick recipe: its strips would misrepresent "
                         "the default model in docs/images; pass --out to write them elsewhere")
    render_strips(model, out, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
