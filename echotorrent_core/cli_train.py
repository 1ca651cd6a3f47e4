"""`echotorrent train STAGE --config FILE`: run (or resume) a registered training stage.

Single process: `echotorrent train vae --config vae.toml --out runs/vae`. Several processes / GPUs:
`torchrun --nproc_per_node 8 -m echotorrent_core.cli train teacher --config teacher.toml` (every rank runs this
command; rank 0 prints, logs and writes). Exit status 130 when stopped by Ctrl-C / SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> str:
    parser = commands.add_parser("train", help="train a registered stage from a TOML config (also under torchrun)")
    parser.add_argument("stage", nargs="?", help="stage name (see --list)")
    parser.add_argument("--config", default=None, help="TOML file with [trainer] and [stage] tables")
    parser.add_argument("--out", default=None, help="output folder (default: [trainer] out_dir)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the folder")
    parser.add_argument("--steps", type=int, default=None, help="override [trainer] steps")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set trainer.lr=3e-5 --set stage.width=64")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a module or .py file that registers extra stages")
    parser.add_argument("--list", action="store_true", help="print the registered stage names and exit")
    return "train"


def _import_plugin(spec: str) -> None:
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--import {spec}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def run(args: argparse.Namespace) -> int:
    from .cli import EXIT_INTERRUPTED
    from .training.checkpoint import ResumeError
    from .training.config import load_config
    from .training.registry import get_stage, stage_names
    from .training.trainer import Trainer

    for spec in args.imports:
        _import_plugin(spec)
    if args.list:
        print("\n".join(stage_names()))
        return 0
    if not args.stage:
        print(f"error: name a stage; registered: {', '.join(stage_names())}", file=sys.stderr)
        return 2
    try:
        stage_cls = get_stage(args.stage)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    overrides = list(args.overrides) + ([f"trainer.steps={args.steps}"] if args.steps is not None else [])
    config = load_config(args.config, stage_cls.Config, overrides)
    try:
        trainer = Trainer(stage_cls, config, out_dir=args.out, resume=args.resume)
    except ResumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if trainer.ctx.is_main and not result.interrupted:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in result.logs.items() if k.startswith("loss/"))
        print(f"trained {args.stage} for {result.step} steps ({summary}); checkpoint {result.checkpoint}")
        for path in result.exported:
            print(f"exported {path}")
    return EXIT_INTERRUPTED if result.interrupted else 0
