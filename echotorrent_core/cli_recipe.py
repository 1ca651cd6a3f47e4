"""`echotorrent recipe default-model --out RUN [--quick] [--jobs N] [--threads T]`: train, evaluate and package the default
model from an empty folder (resumable: rerun the same command to continue; see recipes/default_model.py)."""

from __future__ import annotations

import argparse
import sys

EXIT_INTERRUPTED = 130


def add_parser(commands: argparse._SubParsersAction) -> str:
    parser = commands.add_parser("recipe", help="reproducible multi-stage recipes (the default model)")
    recipes = parser.add_subparsers(dest="recipe", required=True)
    default = recipes.add_parser("default-model", help="SynthTalk data -> audio encoder, VAE, teacher, student -> "
                                                       "evaluation -> bundle with manifest (resumable)")
    default.add_argument("--out", required=True, help="run folder (created; rerun with the same folder to resume)")
    default.add_argument("--quick", action="store_true", help="the same recipe at CI size (a few minutes)")
    default.add_argument("--jobs", type=int, default=2,
                         help="parallel processes for data rendering and the independent stages (default 2)")
    default.add_argument("--threads", type=int, default=None,
                         help="torch threads per training process (default: $OMP_NUM_THREADS, else CPUs / parallel "
                              "stages); use 1 on a machine shared with other work")
    default.add_argument("--eval-clips", type=int, default=None, help="evaluate on the first N held-out clips only")
    return "recipe"


def run(args: argparse.Namespace) -> int:
    from .recipes.default_model import run_default_model
    from .recipes.runner import RecipeInterrupted

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    command = ["echotorrent", *sys.argv[1:]] if sys.argv[1:2] == ["recipe"] else None
    try:
        bundle = run_default_model(args.out, args.quick, args.jobs, args.eval_clips, command, args.threads)
    except (KeyboardInterrupt, RecipeInterrupted) as error:
        print(f"interrupted ({error}): rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {bundle} (manifest {bundle / 'manifest.json'})")
    return 0
