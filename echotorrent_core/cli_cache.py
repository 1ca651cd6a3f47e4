"""`echotorrent cache build | info`: the preprocessing cache of training windows (VAE latents + audio features)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

EXIT_INTERRUPTED = 130


def add_parser(commands: argparse._SubParsersAction) -> str:
    parser = commands.add_parser("cache", help="preprocessing cache of training windows from a clip folder")
    actions = parser.add_subparsers(dest="cache_command", required=True)
    build = actions.add_parser(
        "build", help="build or resume the cache: face-centred windows -> VAE latents + audio features (safetensors)")
    build.add_argument("--clips", required=True,
                       help="clip folder: index.json (echotorrent-clips/1) or any folder of mp4/mov/mkv clips")
    build.add_argument("--out", required=True, help="cache folder (created; an existing cache is resumed or, "
                                                   "when the encoders or settings changed, rebuilt)")
    build.add_argument("--model", default=None, help="model bundle folder (its vae / audio_encoder files)")
    build.add_argument("--vae", default=None, help="VAE checkpoint (overrides the bundle's)")
    build.add_argument("--audio-encoder", default=None, help="wav2vec2 checkpoint (overrides the bundle's)")
    build.add_argument("--size", type=int, default=256, help="square crop side in pixels (multiple of 16)")
    build.add_argument("--frames", type=int, default=33, help="frames per window, 1 + 4k (at 25 fps)")
    build.add_argument("--stride", type=int, default=33, help="frames between window starts")
    build.add_argument("--crop-scale", type=float, default=1.8, help="crop side / detected face side")
    build.add_argument("--detector", choices=("auto", "mediapipe", "haar"), default="auto")
    build.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                       help="storage dtype of latents and audio features")
    build.add_argument("--keep-pixels", action="store_true", help="also store the window's frames (uint8)")
    build.add_argument("--windows-per-shard", type=int, default=16)
    build.add_argument("--no-loudness-normalization", action="store_true",
                       help="encode the speech as recorded (default: -23 LUFS, as at inference)")
    build.add_argument("--device", default=None, help="device of the encoders (default: cuda when available)")
    info = actions.add_parser("info", help="print a cache's windows, clips and skipped clips")
    info.add_argument("cache", help="cache folder")
    return "cache"


def run(args: argparse.Namespace) -> int:
    if args.cache_command == "info":
        return _info(Path(args.cache))
    return _build(args)


def _encoder_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    from .pipeline import BUNDLE_FILES

    folder = Path(args.model) if args.model else None
    paths = []
    for name, explicit in (("vae", args.vae), ("audio_encoder", args.audio_encoder)):
        if explicit is None and folder is None:
            raise ValueError("pass --model BUNDLE (or both --vae and --audio-encoder)")
        path = Path(explicit) if explicit else folder / BUNDLE_FILES[name]
        if not path.is_file():
            raise FileNotFoundError(f"{name.replace('_', ' ')} checkpoint not found: {path}")
        paths.append(path)
    return paths[0], paths[1]


def _build(args: argparse.Namespace) -> int:
    import torch

    from .checkpoints.loaders import load_audio_encoder, load_vae
    from .data.cache import CacheSettings, build_cache
    from .data.clips import ClipSettings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = CacheSettings(
        clips=ClipSettings(size=args.size, window_frames=args.frames, window_stride=args.stride,
                           crop_scale=args.crop_scale, detector=args.detector),
        storage_dtype=args.dtype, keep_pixels=args.keep_pixels, windows_per_shard=args.windows_per_shard,
        loudness_lufs=None if args.no_loudness_normalization else -23.0,
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    vae_path, audio_path = _encoder_paths(args)
    vae, vae_report = load_vae(vae_path, dtype=torch.float32, device=device)
    encoder, encoder_report = load_audio_encoder(audio_path, device=device)
    for report in (vae_report, encoder_report):
        print(f"loaded {report.describe()}", file=sys.stderr)
    try:
        result = build_cache(args.clips, args.out, vae.eval(), encoder.eval(), settings)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} keeps every finished shard; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.summary())
    return 0


def _info(cache: Path) -> int:
    from .data.cache_index import read_index

    index = read_index(cache)
    if index is None:
        raise FileNotFoundError(f"no preprocessing cache at {cache} (index.json missing)")
    windows = sum(len(shard["windows"]) for shard in index["shards"])
    clips = index["clips"]
    done = [c for c, state in clips.items() if state["status"] == "done"]
    print(f"{cache}: {windows} windows from {len(done)} clips in {len(index['shards'])} shards, "
          f"{'complete' if index['complete'] else 'unfinished (run build again to resume)'}")
    print(f"fingerprint {index['fingerprint'][:16]}  settings {json.dumps(index['settings']['clips'])}")
    for clip, state in clips.items():
        if state["status"] == "skipped":
            print(f"  skipped {clip}: {state['reason']}")
    return 0
