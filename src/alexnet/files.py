"""Files a later step reads are written whole or not at all: into a temporary file beside the target (the same
directory, so the same filesystem), flushed to the disk, then renamed over it (os.replace is atomic on POSIX). And
whether a folder can be written at all, asked before the work that would end in writing there."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """`text` into `path` atomically: a reader sees the old file or the new one, never a part of either."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_bytes(path: Path, data: bytes) -> None:
    """`data` into `path` atomically, as write_text (a figure, say)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable(folder: Path) -> str | None:
    """Why nothing can be written into `folder` (or made there: its nearest existing parent decides), or None.
    access() answers for root too where the file system is mounted read-only, which is what it then says."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    return f"{existing} is not writable"
