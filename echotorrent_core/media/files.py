"""Checks on media file paths before they are opened."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MediaError


def require_media_file(path: str | os.PathLike[str], kind: str) -> Path:
    """Return `path` as a `Path` after checking that it names an existing, non-empty regular file.

    `kind` ("image", "audio", "video") names the file in the error messages. A missing path raises
    `FileNotFoundError`; a directory or a 0-byte file raises `MediaError`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the {kind} file as a str or PathLike path, got {type(path).__name__}")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(f"{kind} file not found: {resolved}")
    if not resolved.is_file():
        raise MediaError(f"expected a regular {kind} file, but {resolved} is a directory or special file")
    if resolved.stat().st_size == 0:
        raise MediaError(f"{kind} file is empty (0 bytes): {resolved}")
    return resolved
