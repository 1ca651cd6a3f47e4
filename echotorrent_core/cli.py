"""`echotorrent` command line: generate a streamed avatar video, create a random test bundle; further subcommands
(data, train, eval, ...) live in their own modules listed in `COMMAND_MODULES`."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

from .guidance import GuidanceMode, GuidancePolicy
from .streaming import StreamSettings

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_model"
EXIT_INTERRUPTED = 130
VAE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# Modules (relative to this package) that each define `add_parser(commands) -> str` (registers one subcommand and
# returns its name) and `run(args) -> int`. Imported when the parser is built; heavy imports belong inside `run`.
COMMAND_MODULES: tuple[str, ...] = ("cli_data", "cli_train", "cli_eval", "cli_cache", "cli_recipe")


def _add_generate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="portrait + speech -> lip-synced mp4, streamed chunk by chunk")
    parser.add_argument("--image", required=True, help="reference portrait (png/jpg/webp, any size)")
    parser.add_argument("--audio", required=True, help="speech audio (wav/flac/mp3/ogg, any rate and channels)")
    parser.add_argument("--out", required=True, help="output .mp4 path")
    parser.add_argument("--model", default=None, help=f"model bundle folder (default: {DEFAULT_BUNDLE})")
    parser.add_argument("--dit", default=None, help="DiT checkpoint (overrides the bundle's)")
    parser.add_argument("--vae", default=None, help="VAE checkpoint (overrides the bundle's)")
    parser.add_argument("--audio-encoder", default=None, help="wav2vec2 checkpoint (overrides the bundle's)")
    parser.add_argument("--audio-adapter", default=None,
                        help="MultiTalk/InfiniteTalk audio-layer file applied on the DiT (e.g. on a Wan2.1 base)")
    parser.add_argument("--text-embeds", default=None, help="safetensors with 'context' [L, 4096] (+ 'negative')")
    parser.add_argument(
        "--clip-features", default=None, metavar="FILE.safetensors",
        help="image-to-video checkpoints only (required there): the portrait's CLIP ViT-H/14 penultimate hidden "
             "states, one tensor [257, 1280] or [1, 257, 1280] (named 'clip_fea' or 'penultimate_hidden_states' "
             "when the file holds more). In ComfyUI: Load CLIP Vision (clip_vision_h.safetensors) -> CLIP Vision "
             "Encode (crop: none) gives them as output.penultimate_hidden_states; save that tensor with "
             "safetensors.torch.save_file({'clip_fea': t}, FILE). With transformers: "
             "CLIPVisionModel(...)(pixels_224, output_hidden_states=True).hidden_states[-2].",
    )
    parser.add_argument("--height", type=int, default=None, help="output height, multiple of 16 (default: bundle's)")
    parser.add_argument("--width", type=int, default=None, help="output width, multiple of 16 (default: bundle's)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: bundle's, else 4)")
    parser.add_argument("--shift", type=float, default=None, help="flow-matching timestep shift (default: bundle's, else 5)")
    parser.add_argument("--solver", choices=("few_step", "euler"), default=None, help="default: bundle's, else few_step")
    parser.add_argument("--guidance", choices=[m.value for m in GuidanceMode], default=GuidanceMode.SINGLE.value)
    parser.add_argument("--text-scale", type=float, default=5.0, help="text CFG scale (text_audio_cfg)")
    parser.add_argument("--audio-scale", type=float, default=4.0, help="audio CFG scale (audio_cfg, text_audio_cfg)")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="latent frames per chunk (x4 video frames; default: bundle's, else 3)")
    parser.add_argument("--window-frames", type=int, default=None,
                        help="latent frames kept in the rolling KV window (default: bundle's, else 6)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--loudness", type=float, default=-23.0,
                        help="LUFS the speech is normalised to before encoding (the mp4 keeps the original)")
    parser.add_argument("--no-loudness-normalization", dest="loudness", action="store_const", const=None,
                        help="encode the speech as recorded")
    parser.add_argument("--colour-match", action="store_true",
                        help="map every frame by the colour map that takes the decoded portrait to the portrait: "
                             "undoes a small VAE's colour shift (the default model: +1.4 dB PSNR, Sync-C 0.14 -> 0.12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vae-dtype", choices=("auto", *VAE_DTYPES), default="auto",
                        help="VAE weights' dtype; auto = bf16 on CUDA and on CPUs with AMX (1.9x faster decoding, "
                             "64 dB from fp32), else fp32")


def _add_init_model(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("init-model", help="write a randomly initialised model bundle (tests, benchmarks)")
    parser.add_argument("--preset", default="tiny", help="config preset (tiny, wan2.1-1.3b, ...)")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--seed", type=int, default=0)


def _resolve_checkpoints(args: argparse.Namespace) -> tuple[tuple[Path, Path, Path], dict]:
    """The three checkpoint paths and the bundle's generation defaults."""
    from .pipeline import BUNDLE_FILES, bundle_defaults, bundle_paths

    explicit = (args.dit, args.vae, args.audio_encoder)
    if all(explicit):
        return tuple(Path(p) for p in explicit), {}
    folder = Path(args.model) if args.model else DEFAULT_BUNDLE
    if not folder.is_dir():
        raise SystemExit(
            f"no model bundle at {folder}: the embedded default model is not shipped yet. Pass --model FOLDER "
            f"(holding {', '.join(BUNDLE_FILES.values())}) or --dit/--vae/--audio-encoder; "
            "`echotorrent init-model --out FOLDER` writes a random test bundle."
        )
    paths = bundle_paths(folder)
    chosen = (Path(args.dit or paths["dit"]), Path(args.vae or paths["vae"]),
              Path(args.audio_encoder or paths["audio_encoder"]))
    return chosen, bundle_defaults(folder)


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import generate_to_file, load_bundle, load_clip_features, load_text_embeddings

    (dit_path, vae_path, audio_path), defaults = _resolve_checkpoints(args)
    bundle = load_bundle(dit_path, vae_path, audio_path, device=args.device, audio_adapter=args.audio_adapter,
                         vae_dtype=VAE_DTYPES.get(args.vae_dtype))
    for report in bundle.reports:
        print(f"loaded {report.describe()}", file=sys.stderr)
    text, negative = load_text_embeddings(args.text_embeds) if args.text_embeds else (None, None)
    clip_features = None
    if args.clip_features:
        if bundle.dit.cfg.image_dim is None:
            raise ValueError("--clip-features is only for image-to-video checkpoints; this DiT has no CLIP branch")
        clip_features = load_clip_features(args.clip_features, bundle.dit.cfg.image_dim)
    chosen = lambda name, fallback: getattr(args, name) if getattr(args, name) is not None else \
        defaults.get(name, fallback)  # noqa: E731
    settings = StreamSettings(chunk_frames=chosen("chunk_frames", 3), window_frames=chosen("window_frames", 6),
                              steps=chosen("steps", 4), shift=chosen("shift", 5.0), solver=chosen("solver", "few_step"),
                              fps=args.fps, seed=args.seed, colour_match=args.colour_match)
    guidance = GuidancePolicy(mode=GuidanceMode(args.guidance), text_scale=args.text_scale,
                              audio_scale=args.audio_scale)
    height = args.height or defaults.get("height", 480)
    width = args.width or defaults.get("width", 832)
    bar = tqdm(unit="chunk", desc="streaming")

    def on_chunk(chunk, total: int) -> None:
        bar.total = total
        bar.set_postfix(frames=chunk.first_frame + chunk.frames.shape[0], s_per_chunk=f"{chunk.seconds:.2f}")
        bar.update(1)

    try:
        result = generate_to_file(bundle, args.image, args.audio, args.out, height, width, settings, guidance,
                                  text, negative, on_chunk=on_chunk, loudness_lufs=args.loudness,
                                  clip_features=clip_features)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {args.out} holds the chunks finished so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    per_chunk = result.passes / max(result.chunks, 1)
    print(f"wrote {result.path}: {result.frames} frames in {result.chunks} chunks, {result.passes} network passes "
          f"({per_chunk:g} per chunk = {per_chunk - 1:g} denoising ({result.passes_per_step:g} network passes per "
          f"step) + 1 cache write; {result.passes / max(result.frames, 1):.3g} per output frame)")
    return 0


def _init_model(args: argparse.Namespace) -> int:
    from .random_bundle import write_random_bundle

    folder = write_random_bundle(args.out, args.preset, seed=args.seed)
    print(f"wrote random '{args.preset}' bundle to {folder}")
    return 0


def _command_handlers(commands: argparse._SubParsersAction) -> dict:
    """Register every subcommand on `commands`; returns the handler of each name."""
    _add_generate(commands)
    _add_init_model(commands)
    handlers = {"generate": _generate, "init-model": _init_model}
    for name in COMMAND_MODULES:
        module = importlib.import_module(f".{name}", __package__)
        handlers[module.add_parser(commands)] = module.run
    return handlers


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The argument parser and the handler of each subcommand."""
    parser = argparse.ArgumentParser(prog="echotorrent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    return parser, _command_handlers(commands)


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
