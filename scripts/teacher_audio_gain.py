"""Does a trained teacher use the speech? Its held-out flow MSE with and without the audio, at fixed timesteps.

    .venv/bin/python scripts/teacher_audio_gain.py RUN/configs/teacher.toml RUN/teacher/export/teacher.safetensors \
        --run RUN [--set KEY=VALUE ...]

Builds the `teacher` stage exactly as the recipe does (the config, the recipe's `--set` overrides, paths relative to
`--run`) with `stage.init` = the teacher file, and prints `TeacherStage.evaluate`: `flow_mse_tT` and `audio_gain_tT`
(MSE with the null audio / MSE with the audio; 1.0 means the audio changes nothing).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from echotorrent_core.recipes.default_model import STAGE_SETS
from echotorrent_core.training.config import load_config
from echotorrent_core.training.stages.teacher import TeacherStage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("teacher")
    parser.add_argument("--run", required=True, help="the recipe folder the config's relative paths start from")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    config, teacher = Path(args.config).resolve(), Path(args.teacher).resolve()
    os.chdir(args.run)
    train = load_config(config, TeacherStage.Config, [*STAGE_SETS["teacher"], f"stage.init={teacher}", *args.set])
    stage = TeacherStage(train.stage, train.trainer, torch.device("cpu"))
    stage.model.eval()
    for name, value in stage.evaluate(0).items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
