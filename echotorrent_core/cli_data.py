"""`echotorrent data ...`: make training data. `echotorrent data synthtalk --out DIR --clips N --size S --domain D
[--seed K --seconds X --split train|heldout]` writes SynthTalk clips in the clip-folder format;
`echotorrent data validate --data DIR` measures them with mediapipe's face mesh."""

from __future__ import annotations

import argparse
import sys

EXIT_INTERRUPTED = 130


def add_parser(commands: argparse._SubParsersAction) -> str:
    from .data.synthtalk.domains import DOMAINS

    parser = commands.add_parser("data", help="make training data (SynthTalk)")
    actions = parser.add_subparsers(dest="data_action", required=True)
    synth = actions.add_parser("synthtalk", help="procedural talking portraits: mp4 + per-frame ground truth")
    synth.add_argument("--out", required=True, help="output folder (index.json, clips/, params/); reruns resume")
    synth.add_argument("--clips", type=int, required=True, help="number of clips")
    synth.add_argument("--size", type=int, default=128, help="frame side in pixels (even, 64..256)")
    synth.add_argument("--domain", choices=sorted(DOMAINS), default="calm")
    synth.add_argument("--seed", type=int, default=0, help="clip k uses seed SEED + k")
    synth.add_argument("--seconds", type=float, default=None, help="clip length (default: the domain's range)")
    synth.add_argument("--split", choices=("train", "heldout"), default="train")
    check = actions.add_parser("validate", help="mediapipe face mesh on a SynthTalk folder: detection, lip-gap r")
    check.add_argument("--data", required=True, help="SynthTalk clip folder")
    check.add_argument("--split", choices=("train", "heldout", "all"), default="heldout")
    check.add_argument("--json", default=None, help="also write the per-clip results here")
    return "data"


def run(args: argparse.Namespace) -> int:
    if args.data_action == "validate":
        return _validate(args)
    from .data.synthtalk.writer import write_dataset

    try:
        index = write_dataset(args.out, args.clips, args.size, args.domain, args.seed, args.split, args.seconds)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} keeps the finished clips; rerun the same command to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {index}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.synthtalk.validate import agreement_table, results_json, validate_folder

    results = validate_folder(args.data, None if args.split == "all" else args.split)
    if not results:
        raise ValueError(f"no {args.split} clips in {args.data}")
    print(agreement_table(results))
    if args.json:
        Path(args.json).write_text(results_json(results))
    return 0
