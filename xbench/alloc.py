"""A steady memory allocator for the runs xbench starts (DESIGN §8).

With glibc's defaults, every training step of a small video model gets fresh pages from the
kernel for its large activations (the mmap threshold adapts upward only after frees, and the heap
top is trimmed back eagerly), and the same step swings up to 1.8x between processes. Raising the
mmap threshold and the trim threshold keeps freed blocks in the heap for the next step. xbench
sets them with ``mallopt`` when a run starts (before torch allocates its tensors), unless:

- ``XBENCH_ALLOCATOR=default``: the opt-out, glibc's own behaviour;
- jemalloc or tcmalloc is preloaded (``LD_PRELOAD``): they are steady already, left alone;
- ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` are set: the user's values stand;
- the C library is not glibc (macOS, musl): nothing to set.

The run record's ``env.allocator`` says which.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

from xbench.settings import settings

#: glibc's mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): blocks below it are
#: served from the heap and reused
MMAP_THRESHOLD = 32 * 2**20
#: keep up to 1 GiB of freed memory at the heap top instead of returning it each step
TRIM_THRESHOLD = 2**30

_state: dict[str, Any] | None = None


def configure() -> dict[str, Any]:
    """Set the steady configuration once per process; returns what was done (for the record)."""
    global _state
    if _state is not None:
        return _state
    preload = os.environ.get("LD_PRELOAD", "")
    user = {k: os.environ[k] for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ}
    if settings().allocator == "default":
        _state = {"allocator": "default", "why": "XBENCH_ALLOCATOR=default"}
    elif "jemalloc" in preload or "tcmalloc" in preload:
        _state = {"allocator": "preloaded", "LD_PRELOAD": preload}
    elif user:
        _state = {"allocator": "glibc", "source": "environment", **user}
    else:
        _state = _mallopt()
    return _state


def _mallopt() -> dict[str, Any]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return {"allocator": "default", "why": "no glibc mallopt"}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both or the record says the default stands
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return {"allocator": "default", "why": "mallopt refused the thresholds"}
    return {"allocator": "glibc-steady", "source": "mallopt", "mmap_threshold": MMAP_THRESHOLD,
            "trim_threshold": TRIM_THRESHOLD}


def state() -> dict[str, Any]:
    """What :func:`configure` did in this process (``not configured`` if it was not called)."""
    return _state if _state is not None else {"allocator": "default", "why": "not configured"}
