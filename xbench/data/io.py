"""Readers and writers for the file formats datasets are stored in. Real datasets and ``synth``
go through the same readers; every failure is a :class:`DataError` naming the file."""

from __future__ import annotations

import hashlib
import json
import os
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xbench.errors import DataError
from xbench.settings import settings


@dataclass(frozen=True)
class Segment:
    """One annotated step of a video, in frames [start, end)."""

    start: int
    end: int
    label: int
    verb: int
    noun: int
    sentence: str
    #: whether the audio of this step carries the action (False: irrelevant sound)
    audio_relevant: bool = True


@dataclass(frozen=True)
class VideoRecord:
    """A video with its files (relative to the dataset root) and its annotated steps."""

    id: str
    split: str
    procedure: int
    num_frames: int
    fps: float
    files: dict[str, str]
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    #: actions that overlap the steps (a second actor), for dense multi-label detection; they are
    #: not steps of the procedure
    overlaps: tuple[Segment, ...] = field(default_factory=tuple)


def data_home() -> Path:
    """Where datasets are generated, manifests kept and decoded frames cached (XBENCH_DATA)."""
    data = settings().data
    if data is not None:
        return data
    import platformdirs

    return Path(platformdirs.user_cache_dir("xbench")) / "data"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: ``xbench run --verify-data`` and ``xbench data check``: hash every file's content, whatever
#: its stat says (the memo trusts a file whose stat is unchanged)
_VERIFY: ContextVar[bool] = ContextVar("verify_data", default=False)


@contextmanager
def verifying(on: bool = True) -> Iterator[None]:
    """Within it, datasets opened hash every file against their manifest."""
    token = _VERIFY.set(on)
    try:
        yield
    finally:
        _VERIFY.reset(token)


def verify_all() -> bool:
    return _VERIFY.get()


def stamp(st: os.stat_result) -> list[int]:
    """What says a file may have changed: size, mtime and ctime in ns, inode. ctime because a
    write that puts the mtime back (``touch -r``, ``os.utime``, a copy tool keeping times) still
    moves it: no user call sets ctime, so only the content hash can vouch for such a file."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class FileHashes:
    """sha256 of the files under ``root``, remembered by their stat (size, mtime and ctime in ns,
    inode) in ``root/<state>``, as git's index and DVC's state do: opening a dataset re-hashes
    only the files that changed since they were last verified, not all of them (hashing every
    file of the synthetic dataset was 0.4 s of every run). Any write to a file changes its stat
    (ctime even when the mtime is put back), so a corrupted or replaced file is still hashed and
    caught; under :func:`verifying` every file is hashed. The state is only a memo: a missing or
    unreadable one means hashing everything once."""

    def __init__(self, root: Path, state: str = ".hashes.json") -> None:
        self.root, self.path = root, root / state
        try:
            self.known: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.dirty = False
        self.hashed = 0  # files whose content was read (not vouched for by the memo)

    def sha256(self, rel: str) -> str:
        """The file's digest; FileNotFoundError where it is missing."""
        now = stamp(os.stat(os.path.join(self.root, rel)))  # not pathlib: thousands of files per open
        hit = self.known.get(rel)
        if hit is not None and hit[:-1] == now and not _VERIFY.get():
            return hit[-1]
        digest = sha256_file(self.root / rel)
        self.hashed += 1
        if hit != [*now, digest]:
            self.known[rel] = [*now, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        """Write the memo if it changed (atomically: parallel runs each write a whole one)."""
        if not self.dirty or not self.root.is_dir():
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.known, separators=(",", ":")))
            tmp.replace(self.path)
        except OSError:  # a read-only dataset folder: verification simply stays uncached
            tmp.unlink(missing_ok=True)
        self.dirty = False


def _tmp(path: Path, suffix: str) -> Path:
    """A writer's own temporary name beside ``path``: two processes writing the same file (two
    sweep workers generating one dataset) never rename each other's half-written file."""
    return path.with_name(f"{path.stem}.{os.getpid()}.tmp{suffix}")


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 18) -> None:
    """Write uint8 RGB frames (N, H, W, 3) as H.264 yuv444p (keeps colour at small sizes).
    One encoder thread and explicit timestamps so the same frames give byte-identical files
    (without them libx264 picked different frame types from run to run), and no SIMD: on frames
    this small its assembly paths made encodes depend on what was encoded before in the process."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path, ".mp4")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1",
                          "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:asm=0"}
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)  # atomic: a killed writer never leaves a half file under the real name


def process_map(fn: Callable[[Any], Any], items: list, workers: int, chunksize: int = 1) -> Iterator[Any]:
    """``fn`` over ``items`` in order, in ``workers`` spawned processes (in this one for one worker
    or one item). Spawned, not forked: a fork of a process whose decoder and torch threads are
    running deadlocked (workers waiting forever on a lock held at the fork)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(fn, items, chunksize=chunksize)


def load_decord() -> Any:
    """decord, imported after PyAV. Both bundle FFmpeg and libvpx and the first loaded provides
    the shared symbols: with decord's first, PyAV could no longer open its VP9 encoder (EINVAL)."""
    import av  # noqa: F401
    import decord

    return decord


def read_mp4(path: Path) -> np.ndarray:
    """All frames of a video as uint8 (N, H, W, 3), decoded with decord."""
    decord = load_decord()

    if not path.is_file():
        raise DataError(f"missing video file {path}")
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        return reader.get_batch(list(range(len(reader)))).asnumpy()
    except Exception as exc:  # decord raises its own DECORDError, or RuntimeError
        raise DataError(f"corrupt video file {path}: {str(exc).splitlines()[0][:200]}") from exc


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    tmp = _tmp(path, ".wav")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM -> float32 in [-1, 1] and the sample rate."""
    if not path.is_file():
        raise DataError(f"missing audio file {path}")
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise DataError(f"unsupported audio file {path}: expected mono 16-bit PCM")
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise DataError(f"corrupt audio file {path}: {exc}") from exc
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32767.0, rate


def write_array(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path, ".npy")
    np.save(tmp, array)
    tmp.replace(path)


def read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing array file {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"corrupt array file {path}: {exc}") from exc


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path, ".json")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"missing annotation file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"corrupt annotation file {path}: {exc}") from exc


def load_annotations(path: Path) -> list[VideoRecord]:
    """Read the canonical annotation format (JSON: {"videos": [...]}) into records. Adapters for
    other formats (EPIC-style CSV, ActivityNet JSON) convert to these records."""
    raw = read_json(path)
    try:
        return [
            VideoRecord(
                id=v["id"], split=v["split"], procedure=v["procedure"],
                num_frames=v["num_frames"], fps=v["fps"], files=dict(v["files"]),
                segments=tuple(Segment(**s) for s in v["segments"]),
                overlaps=tuple(Segment(**s) for s in v.get("overlaps", ())),
            )
            for v in raw["videos"]
        ]
    except (KeyError, TypeError) as exc:
        raise DataError(f"corrupt annotation file {path}: missing or bad field {exc}") from exc
