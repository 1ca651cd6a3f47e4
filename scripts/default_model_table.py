"""Print the default model's teacher / student comparison (issue 9) as one markdown table.

    .venv/bin/python scripts/default_model_table.py RUN_OR_BUNDLE_OR_MANIFEST [--out TABLE.md]

Reads the metrics the recipe wrote (`bundle/manifest.json`: `metrics` and `metrics_teacher`; else
`eval/metrics.json` and `eval/teacher_metrics.json`); see `echotorrent_core/recipes/comparison_table.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echotorrent_core.recipes.comparison_table import comparison_table, load_metrics  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="recipe run folder, bundle folder or manifest.json")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    table = comparison_table(*load_metrics(args.path))
    print(table, end="")
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
