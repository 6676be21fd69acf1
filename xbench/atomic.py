"""Files written whole or not at all: a crash, a kill or a full disk leaves the old file (or
none), never a torn one that a later run would read."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from xbench.errors import WriteError

#: what a write meets when the disk is the problem, not the program
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
#: what torch.save's PyTorchStreamWriter raises when the file cannot be written whole
_TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")


def write_error(exc: BaseException, path: Path | str | None = None) -> WriteError | None:
    """The one-line error for a write that failed for want of room (or a read-only folder),
    naming the file; None for any other failure. torch.save names no errno: a write that fails
    outright is "file write failed", a short one (the disk filled within it) "unexpected pos"."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        why = os.strerror(exc.errno)
    elif isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILED):
        why = "the write failed (is the disk full?)"
    else:
        return None
    where = path if path is not None else exc.filename if isinstance(exc, OSError) and exc.filename else "a file"
    return WriteError(f"cannot write {where}: {why}; nothing was replaced (free some space and run again)")


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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if (err := write_error(exc, path)) is not None:
            raise err from exc
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
