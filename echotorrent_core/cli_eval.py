"""`echotorrent eval`: metrics of a model (generate the held-out clips, then evaluate) or of a folder of videos;
`eval controls` (ground truth vs broken videos, the metric check); `eval train-sync-expert` (the sync expert)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "eval"


def add_parser(commands: argparse._SubParsersAction) -> str:
    parser = commands.add_parser(NAME, help="lip sync, identity, detail and stability metrics of a model or videos",
                                 description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="model bundle folder: generate every held-out clip of --data, then evaluate")
    source.add_argument("--videos", help="folder of videos to evaluate (named <clip id>.mp4 to compare with --data)")
    parser.add_argument("--data", help="ground-truth clip folder (index.json clip format, or plain videos)")
    parser.add_argument("--out", default="eval_out", help="folder for generated videos and the JSON report")
    parser.add_argument("--json", default=None, help="JSON report path (default: OUT/metrics.json)")
    parser.add_argument("--expert", default=None, help="sync-expert weights (default: the shipped ones)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per chunk (--model)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (--model)")
    parser.add_argument("--device", default="cpu", help="generation device (--model)")
    actions = parser.add_subparsers(dest="eval_action", required=False)

    controls = actions.add_parser("controls", help="held-out ground truth vs shifted / shuffled audio, frozen mouth, "
                                                   "blur, colour drift and identity swap")
    controls.add_argument("--data", required=True, help="clip folder; its held-out clips are used (all clips of a "
                                                        "folder without held-out ones)")
    controls.add_argument("--clips", type=int, default=None, help="use only the first N held-out clips")
    controls.add_argument("--expert", default=None, help="sync-expert weights (default: the shipped ones)")
    controls.add_argument("--json", default=None, help="write the rows and the summary here")

    train = actions.add_parser("train-sync-expert", help="train the sync expert on a clip folder's train split")
    train.add_argument("--data", required=True, help="clip folder with train (and heldout) clips")
    train.add_argument("--out", required=True, help="weights file (.safetensors); the manifest goes beside it")
    train.add_argument("--steps", type=int, default=800)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--width", type=int, default=16, help="channels of the first conv layers (cost ~ width^2)")
    train.add_argument("--cache", default=None, help="measurement cache folder (default: DATA/.metrics_cache)")
    return NAME


def _expert(path: str | None):
    from .metrics.sync_expert import SHIPPED_WEIGHTS, load_sync_expert

    chosen = Path(path) if path else SHIPPED_WEIGHTS
    if not chosen.is_file():
        raise FileNotFoundError(f"no sync-expert weights at {chosen}; train them with "
                                "`echotorrent eval train-sync-expert --data DIR --out FILE` or pass --expert")
    return load_sync_expert(chosen)


def _train(args: argparse.Namespace) -> int:
    from .metrics.sync_expert import SyncExpertConfig
    from .metrics.sync_expert_recipe import train_and_save
    from .metrics.train_sync import SyncTrainingConfig

    command = " ".join(["echotorrent", *sys.argv[1:]])
    manifest = train_and_save(args.data, args.out, SyncTrainingConfig(steps=args.steps, seed=args.seed), args.cache,
                              command, SyncExpertConfig(width=args.width))
    print(f"wrote {args.out} ({manifest['weights']['bytes']} bytes) in {manifest['wall_seconds']} s; "
          f"held-out: {manifest['heldout']}")
    return 0


def _controls(args: argparse.Namespace) -> int:
    from .data.clip_folder import scan_clip_folder
    from .metrics.controls import control_rows, summarise_controls
    from .metrics.report import format_table, write_json
    from .metrics.run_eval import load_truth

    entries = scan_clip_folder(args.data)
    heldout = ([e for e in entries if e.split != "train"] or entries)[: args.clips]
    rows = control_rows([load_truth(e) for e in heldout], _expert(args.expert))
    summary = summarise_controls(rows)
    print(format_table([{"control": name, **values} for name, values in summary.items()], "control"))
    for name in ("ground_truth", "shifted_5"):
        if name in summary:
            print(f"{name}: sync-expert offset within +-1 frame of the truth in "
                  f"{summary[name]['sync_offset_accuracy']:.0%} of clips, landmark offset in "
                  f"{summary[name]['landmark_offset_accuracy']:.0%}")
    if args.json:
        write_json(args.json, {"rows": rows, "summary": summary})
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .metrics.report import format_table, write_json
    from .metrics.run_eval import evaluate_videos, generate_heldout

    if not (args.model or args.videos):
        raise ValueError("pass --model BUNDLE --data DIR (generate, then evaluate) or --videos DIR [--data DIR]")
    if args.model and not args.data:
        raise ValueError("--model needs --data: the clip folder whose held-out clips are generated and compared")
    expert = _expert(args.expert)
    videos = generate_heldout(args.model, args.data, args.out, args.steps, args.seed, args.device) \
        if args.model else args.videos
    payload = evaluate_videos(videos, expert, args.data)
    print(format_table(payload["clips"] + [{"clip": "mean", **payload["summary"]}], "clip"))
    if payload["frechet_mouth"] is not None:
        print(f"Frechet distance of mouth features to the ground truth (FVD stand-in): {payload['frechet_mouth']:.4f}")
    report = write_json(args.json or Path(args.out) / "metrics.json", payload)
    print(f"wrote {report}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.eval_action == "train-sync-expert":
            return _train(args)
        if args.eval_action == "controls":
            return _controls(args)
        return _evaluate(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
