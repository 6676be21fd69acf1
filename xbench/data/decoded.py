"""Decode once: a uint8 cache of decoded video frames, memory-mapped by the loaders.

Decoding H.264 costs about as much CPU as a training step of a small student (DESIGN §8), and
every run of every method decodes the same clips. The first run decodes each video with decord
and writes its frames raw; later runs map the file. Layout::

    <data home>/decoded/<key>/<video id>.u8     frames, uint8, C order
    <data home>/decoded/<key>/<video id>.json   shape and CRC-32 of the frames
    <data home>/decoded/<key>/key.json          what the key hashes

The key hashes the dataset's manifest (the exact files) and the decode parameters (reader and
its version, frames kept, size), so regenerated data or other decode settings get a new cache
and an old one is never read. An entry whose size or checksum does not match its header is
named in the log and rebuilt. ``XBENCH_DECODE_CACHE=0`` turns it off; ``xbench data cache
--info|--clear`` shows and removes caches. Any dataset whose reader decodes whole videos uses it
the same way (real datasets' adapters included).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xbench.data.clips import FrameFile
from xbench.data.io import process_map
from xbench.errors import DataError
from xbench.settings import settings

#: clips from which a cold cache is decoded in worker processes
PARALLEL_FROM = 32


def enabled() -> bool:
    return settings().decode_cache


def decode_params() -> dict[str, Any]:
    """How frames are decoded now: part of every cache key."""
    try:
        from xbench.data.io import load_decord

        decord = load_decord()
        version = getattr(decord, "__version__", "?")
    except ImportError:
        version = None
    return {"reader": "decord", "version": version, "frames": "all", "size": "native", "dtype": "uint8"}


class DecodeCache:
    def __init__(self, home: Path, manifest: str, params: dict[str, Any] | None = None,
                 log: Callable[[str], None] = lambda msg: None) -> None:
        self.params = {"manifest": manifest, **(params or decode_params())}
        self.key = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = home / "decoded" / self.key
        self._log = log

    def frames(self, video_id: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The video's frames: mapped from the cache, or decoded now and stored."""
        data, head = self.dir / f"{video_id}.u8", self.dir / f"{video_id}.json"
        if data.is_file() and head.is_file():
            problem = None
            try:
                meta = json.loads(head.read_text())
                shape = tuple(meta["shape"])
                expected = int(np.prod(shape))
                if data.stat().st_size != expected:
                    problem = f"{data.stat().st_size} bytes, header says {expected}"
                else:
                    frames = _map(data, shape)
                    if zlib.crc32(frames) != meta["crc32"]:
                        problem = "checksum mismatch"
                    else:
                        return frames
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                problem = f"unreadable header ({exc})"
            self._log(f"decode cache: corrupt entry {data} ({problem}); decoding again")
        frames = np.ascontiguousarray(decode(), dtype=np.uint8)
        self._store(video_id, frames)
        return frames

    def _store(self, video_id: str, frames: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.is_file():
            _atomic_write(key_file, json.dumps(self.params, indent=1, sort_keys=True).encode())
        # data first, header last: a header names only complete data; parallel workers that
        # decode the same video write the same bytes, and each rename is atomic
        _atomic_write(self.dir / f"{video_id}.u8", frames.tobytes())
        _atomic_write(self.dir / f"{video_id}.json",
                      json.dumps({"shape": list(frames.shape), "crc32": zlib.crc32(frames)}).encode())


    # -- clips read on demand (real datasets) -----------------------------------------------
    def has(self, video_id: str) -> bool:
        """Whether a complete entry is stored (header present, size as the header says)."""
        try:
            shape = json.loads((self.dir / f"{video_id}.json").read_text())["shape"]
            return (self.dir / f"{video_id}.u8").stat().st_size == int(np.prod(shape))
        except (OSError, ValueError, KeyError):
            return False

    def frame_file(self, video_id: str) -> FrameFile:
        """The entry as a file read on demand, its checksum verified by a streamed read (no
        mapping: the process's memory does not grow with the split)."""
        data, head = self.dir / f"{video_id}.u8", self.dir / f"{video_id}.json"
        meta = json.loads(head.read_text())
        crc = 0
        with open(data, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                crc = zlib.crc32(chunk, crc)
        if crc != meta["crc32"]:
            raise DataError(f"decode cache entry {data} is corrupt (checksum mismatch); "
                            "remove it with 'xbench data cache --clear'")
        return FrameFile(data, tuple(meta["shape"]))

    def fill(self, video_ids: list[str], jobs: list[tuple[Path, Any, np.ndarray]], short_side: int,
             workers: int = 0) -> None:
        """Decode and store the entries (``jobs``: path, probe, source frame indices), in worker
        processes when there are several: the parent only waits, and no split is held in memory."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.is_file():
            _atomic_write(key_file, json.dumps(self.params, indent=1, sort_keys=True).encode())
        work = [(str(self.dir), vid, str(path), probe, idx, short_side)
                for vid, (path, probe, idx) in zip(video_ids, jobs)]
        # a spawned worker's imports cost more than a few small clips: those are decoded here
        procs = min(workers or min(4, os.cpu_count() or 1), len(work)) if len(work) >= PARALLEL_FROM else 1
        self._log(f"decode cache: decoding {len(work)} clips into {self.dir}"
                  + (f" ({procs} processes)" if procs > 1 else ""))
        list(process_map(_decode_entry, work, procs, chunksize=max(1, len(work) // (8 * procs))))


def _decode_entry(job: tuple) -> None:
    """One clip decoded, resized and stored (data first, header last)."""
    from xbench.data import video

    directory, vid, path, probe, idx, short_side = job
    frames = video.read_frames(Path(path), probe, idx, short_side)
    d = Path(directory)
    _atomic_write(d / f"{vid}.u8", frames.tobytes())
    _atomic_write(d / f"{vid}.json", json.dumps({"shape": list(frames.shape), "crc32": zlib.crc32(frames)}).encode())


def _map(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The file as a read-only uint8 array on a shared mapping (np.memmap does the same with
    several times the Python overhead, paid for every video of every run)."""
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(buf, dtype=np.uint8).reshape(shape)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def info(home: Path) -> list[dict[str, Any]]:
    """Every cache under ``home/decoded``: key, what it hashes, entries and bytes."""
    out = []
    root = home / "decoded"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir():
            continue
        try:
            params = json.loads((d / "key.json").read_text())
        except (OSError, json.JSONDecodeError):
            params = {}
        entries = list(d.glob("*.u8"))
        out.append({"key": d.name, "params": params, "entries": len(entries),
                    "bytes": sum(p.stat().st_size for p in entries), "path": str(d)})
    return out


def clear(home: Path) -> int:
    """Remove every decode cache; returns how many were removed."""
    caches = info(home)
    for c in caches:
        shutil.rmtree(c["path"])
    return len(caches)
