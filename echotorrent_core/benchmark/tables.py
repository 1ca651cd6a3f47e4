"""Plain-text tables with aligned columns."""

from __future__ import annotations

from collections.abc import Sequence

MIB = 1024 * 1024


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """`title`, then the headers and rows in right-aligned columns (floats as given by the caller)."""
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [" | ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join([title] + lines)


def seconds(value: float) -> str:
    return f"{value:.4f}"


def mebibytes(value: int) -> str:
    return f"{value / MIB:.1f}"
