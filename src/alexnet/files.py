"""Files a later step reads are written whole or not at all: into a temporary file beside the target (the same
directory, so the same filesystem), flushed to the disk, then renamed over it (os.replace is atomic on POSIX). A write
that fails (a full disk, a kill) leaves the previous file as it was and no partial file under the target's name. And
whether a folder can be written at all, asked before the work that would end in writing there."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file opened for writing (`mode` "w" or "wb") that replaces `path` when the block ends without an error.
    Its temporary name (`.NAME.PID.tmp`) never matches the target's pattern (e.g. *.ckpt). An OSError names `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # the rename itself reaches the disk with its directory
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    except OSError as e:
        if e.filename is None:  # a failed write() names no file: say which one it was
            e.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """`text` into `path` atomically: a reader sees the old file or the new one, never a part of either."""
    with replacing(path) as f:
        f.write(text)


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """`data` into `path` atomically (write_text's guarantee)."""
    with replacing(path, "wb") as f:
        f.write(data)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
