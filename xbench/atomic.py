"""Files written whole or not at all: a crash, a kill or a full disk leaves the old file (or
none), never a torn one that a later run would read."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer uses: the pid alone repeats across
    machines sharing one folder and across a process's own threads."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``; it is flushed to disk, renamed over
    ``path`` and the rename itself flushed (the folder's entry), so after a power cut ``path`` is
    the old file or the new one. On any failure the temporary file is removed and the error
    raised."""
    tmp = temp_name(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def sync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where the system cannot open
    a folder (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder: the rename is still atomic
        pass
    finally:
        os.close(fd)
