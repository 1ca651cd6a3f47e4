"""Validated safetensors reading and atomic writing. Nothing else is ever loaded (no pickle).

A safetensors file is `u64 little-endian header length` + JSON header + raw tensor bytes. We check that framing
ourselves before handing the file to `safetensors`, so a pickle, a zip, an empty or a truncated file fails with a
message that says what the file looks like instead of a parser error.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError

_MAX_HEADER_BYTES = 100 * 1024 * 1024

_FOREIGN_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt/.pth/.ckpt checkpoint saved with torch.save)"),
    (b"\x80", "a Python pickle (PyTorch .pt/.bin checkpoint)"),
    (b"GGUF", "a GGUF file"),
    (b"\x89HDF", "an HDF5 (.h5) file"),
)


def _describe_foreign(head: bytes) -> str:
    for signature, description in _FOREIGN_SIGNATURES:
        if head.startswith(signature):
            return description
    return "not a safetensors file"


def read_header(path: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Validate the framing of a safetensors file and return (tensor entries, metadata) without loading data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected an existing .safetensors file)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); expected a .safetensors file")
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"checkpoint {path} is only {size} bytes: {_describe_foreign(head)}")
        (header_len,) = struct.unpack("<Q", head)
        if header_len <= 1 or header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"checkpoint {path} is {_describe_foreign(head)}, not safetensors; only .safetensors files are loaded"
            )
        raw_header = handle.read(header_len)
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"checkpoint {path} is {_describe_foreign(head)}, not safetensors (its header is not JSON)"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} has a malformed safetensors header (expected a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    available = size - 8 - header_len
    if data_end > available:
        raise CheckpointError(
            f"checkpoint {path} is truncated: its header describes {data_end} bytes of tensor data but only "
            f"{available} are present (an interrupted download or copy?)"
        )
    return header, metadata


def read_state_dict(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every tensor of a validated safetensors file: returns (state dict, metadata strings)."""
    _, metadata = read_header(path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors")
    return tensors, dict(metadata)


def write_state_dict(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write tensors atomically: a temporary file in the same folder, then `os.replace` onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(contiguous, tmp_name, metadata=metadata or {})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
