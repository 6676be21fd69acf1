"""The manifest of a real dataset's files: what ``xbench data prepare`` writes and every run checks.

For each file (the videos, and the annotation files a list names): size, mtime, sha256 and, for a
video, its probe (frames, fps, size, audio, reader) or the problem that makes it unreadable. It
lives under ``XBENCH_DATA/datasets/<name>-<root hash>/manifest.json``, never in the dataset's
folder (which may be read-only). A run checks size, mtime and ctime of every file against it (a
fast pass) and refuses videos that changed, naming the first difference (an edited annotation
file is small: it is hashed again and the manifest updated). A file whose size and mtime are
kept but whose ctime moved (written, then its mtime put back) is hashed: the same content only
refreshes its entry, other content is refused. ``xbench data check --verify`` and ``xbench run
--verify-data`` hash every file. Preparing writes a partial manifest as it goes and resumes from
it: a killed ``prepare`` redoes only the files it had not reached.

``hash`` (every file's content, annotations included) is the dataset's manifest hash, recorded
in every run and part of its config hash and teacher-cache key. The decode cache keys each clip
by its file's sha256 instead, so relabelling a list or editing one video keeps every other clip's
decoded frames.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xbench.data import io, video
from xbench.errors import DataError

VERSION = 1


@dataclass
class Mode:
    """How ``Manifest.open`` behaves under ``xbench data prepare`` (describe every file that is
    new or changed, with ``jobs`` processes) or ``xbench data check`` (report differences)."""

    check: bool = False
    verify: bool = False
    jobs: int = 1
    progress: Callable[[int, int], None] | None = None
    report: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


class Checked(Exception):  # a signal, not an error: the check has its report
    """Raised by ``Manifest.open`` in check mode once the report is made."""


_MODE: ContextVar[Mode | None] = ContextVar("manifest_mode", default=None)


@contextmanager
def mode(m: Mode) -> Iterator[Mode]:
    token = _MODE.set(m)
    try:
        yield m
    finally:
        _MODE.reset(token)


#: files between two writes of the partial manifest (what a killed prepare keeps)
SAVE_EVERY = 25


def location(home: Path, name: str, root: Path) -> Path:
    """Where the manifest of ``root`` as dataset ``name`` lives."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return home / "datasets" / f"{name}-{key}"


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # an annotation file outside the root
        return str(path.resolve())


def _describe(args: tuple[str, str, bool]) -> tuple[str, dict[str, Any]]:
    """One file's entry: stat, sha256 and probe (run in worker processes)."""
    rel, full, is_video = args
    path = Path(full)
    st = path.stat()
    out: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                           "sha256": io.sha256_file(path)}
    if is_video:
        try:
            out["probe"] = asdict(video.probe(path))
        except DataError as exc:
            out["problem"] = str(exc)
    return rel, out


class Manifest:
    """The files of one dataset root, described and checked."""

    def __init__(self, dir: Path, root: Path, files: dict[str, dict[str, Any]], videos: list[str]) -> None:
        self.dir, self.root, self.files, self.videos = dir, root, files, videos

    def _digest(self, names) -> str:
        return hashlib.sha256(json.dumps([[n, self.files[n]["sha256"]] for n in sorted(names)]).encode()).hexdigest()[:16]

    @functools.cached_property
    def hash(self) -> str:
        """Every file's content (videos, sidecars, annotation files)."""
        return self._digest(self.files)

    @property
    def path(self) -> Path:
        return self.dir / "manifest.json"

    def probe(self, rel: str) -> video.Probe:
        entry = self.files[rel]
        if "problem" in entry:
            raise DataError(entry["problem"])
        return video.Probe(**entry["probe"])

    def problems(self) -> dict[str, str]:
        return {rel: e["problem"] for rel, e in sorted(self.files.items()) if "problem" in e}

    # -- opening and preparing -------------------------------------------------------------
    @classmethod
    def open(cls, name: str, root: Path, videos: list[str], extras: tuple[Path, ...], home: Path,
             log: Callable[[str], None] = lambda m: None) -> Manifest:
        """The manifest of these files: read and checked (size and mtime), or prepared now if
        there is none. Files not described yet (a new list, videos added to the folder) and
        edited annotation files are described now and added; a video that changed since it was
        described is an error naming it, as is a video that cannot be read."""
        dir = location(home, name, root)
        wanted = {v: root / v for v in videos} | {_rel(root, p): p for p in extras}
        stored = _load(dir / "manifest.json")
        mode = _MODE.get()
        if mode is not None and mode.check:  # ``xbench data check``: report, change nothing
            m = cls(dir, root, (stored or {}).get("files", {}), sorted(set(videos)))
            mode.report = m.differences(wanted, verify=mode.verify) if stored else ["no manifest yet"]
            mode.problems = {rel: e for rel, e in m.problems().items() if rel in wanted}
            raise Checked  # nothing past the manifest: the dataset is not opened
        if stored is None or mode is not None:
            if stored is None:
                log(f"{name}: no manifest for {root}; preparing it ({len(wanted)} files)")
            jobs, progress = (mode.jobs, mode.progress) if mode else (1, None)
            m = cls.prepare(name, root, videos, extras, home, jobs=jobs, log=log, progress=progress)
            if mode is not None:
                mode.problems = m.problems()
                return m  # ``xbench data prepare`` lists the problem files instead of stopping
            return cls._checked(m, name, root)
        files = dict(stored["files"])
        verify, refreshed = io.verify_all(), 0
        for rel in sorted(set(videos) & set(files)):
            state = _stat_state(wanted[rel], files[rel])
            if state == "ctime" or (verify and state == "same"):  # only the content can tell
                if io.sha256_file(wanted[rel]) == files[rel]["sha256"]:
                    if state == "ctime":
                        files[rel] = {**files[rel], "ctime_ns": wanted[rel].stat().st_ctime_ns}
                        refreshed += 1
                    continue
            elif state == "same":
                continue
            diff = cls(dir, root, files, []).differences({rel: wanted[rel]}, verify=state in ("ctime", "same"),
                                                         first=True)
            raise DataError(f"dataset '{name}' at {root} does not match its manifest: {diff[0]}; "
                            f"prepare it again: xbench data prepare {name} --root {root}")
        video_set = set(videos)
        todo = [(rel, str(p), rel in video_set) for rel, p in sorted(wanted.items())
                if rel not in files or (rel not in video_set and (
                    _stat_state(p, files[rel]) != "same"
                    or (verify and io.sha256_file(p) != files[rel]["sha256"])))]
        if todo:  # annotation files are small and new videos are only probed: no refusal
            log(f"{name}: describing {len(todo)} new or edited files in the manifest of {root}")
            files.update(dict(map(_describe, todo)))
        if todo or refreshed:
            _write(dir / "manifest.json", name, root, files)
        return cls._checked(cls(dir, root, {r: files[r] for r in wanted}, sorted(video_set)), name, root)

    @classmethod
    def _checked(cls, m: Manifest, name: str, root: Path) -> Manifest:
        bad = [(rel, m.files[rel]["problem"]) for rel in m.videos if "problem" in m.files[rel]]
        if bad:
            more = f" (and {len(bad) - 1} more: xbench data check {name} --root {root})" if len(bad) > 1 else ""
            raise DataError(bad[0][1] + more)
        return m

    @classmethod
    def prepare(cls, name: str, root: Path, videos: list[str], extras: tuple[Path, ...], home: Path,
                jobs: int = 1, log: Callable[[str], None] = lambda m: None,
                progress: Callable[[int, int], None] | None = None) -> Manifest:
        """Describe every file (resuming a partial manifest), write the manifest atomically."""
        dir = location(home, name, root)
        wanted = {v: (root / v, True) for v in videos} | {_rel(root, p): (p, False) for p in extras}
        for rel, (path, _) in wanted.items():
            if not path.is_file():
                raise DataError(f"missing file {path}")
        partial = dir / "manifest.partial.json"
        done: dict[str, dict[str, Any]] = {}
        previous = (_load(dir / "manifest.json") or {}).get("files") or {}
        for prev in ({"files": previous}, _load(partial)):
            for rel, e in (prev or {}).get("files", {}).items():
                if rel in wanted and (e := _unchanged(wanted[rel][0], e)) is not None:
                    done[rel] = e
        todo = [(rel, str(p), v) for rel, (p, v) in sorted(wanted.items()) if rel not in done]
        if done and todo:
            log(f"{name}: resuming: {len(done)} files already described, {len(todo)} to go")
        total, last = len(wanted), time.monotonic()
        results = io.process_map(_describe, todo, jobs, chunksize=4)
        for n, (rel, entry) in enumerate(results, 1):
            done[rel] = entry
            if progress:
                progress(len(done), total)
            if n % SAVE_EVERY == 0 or time.monotonic() - last > 5:
                _write(partial, name, root, done)
                last = time.monotonic()
        # files described before and not asked for now (another list of the same root) are kept
        kept = {rel: e for rel, e in previous.items()
                if rel not in wanted and _full(root, rel).is_file()}  # files gone are forgotten
        _write(dir / "manifest.json", name, root, {**kept, **done})
        partial.unlink(missing_ok=True)
        return cls(dir, root, done, sorted(set(videos)))

    def differences(self, wanted: dict[str, Path], verify: bool, first: bool = False) -> list[str]:
        """What changed: files added, removed, or changed (size or mtime; content with ``verify``)."""
        out = []
        for rel, path in sorted(wanted.items()):
            e = self.files.get(rel)
            if e is None:
                out.append(f"{rel} is new (not in the manifest)")
            elif not path.is_file():
                out.append(f"{rel} is missing")
            elif (state := _stat_state(path, e)) == "size":
                out.append(f"{rel} changed (size {e['size']} -> {path.stat().st_size} bytes)")
            elif state == "mtime":
                if not verify or io.sha256_file(path) != e["sha256"]:  # verified: only touched is no change
                    out.append(f"{rel} changed (same size, modified since{', other content' if verify else ''})")
            elif (state == "ctime" or verify) and io.sha256_file(path) != e["sha256"]:
                # written with its mtime put back: only the content can tell
                out.append(f"{rel} changed content (sha256 differs; size and mtime kept)")
            if first and out:
                return out
        # described before, not asked for now and gone (a file another list names is not removed)
        out += [f"{rel} was removed" for rel in sorted(set(self.files) - set(wanted)) if not _full(self.root, rel).is_file()]
        return out


def _full(root: Path, rel: str) -> Path:
    """A manifest key as a path (relative to the root, or absolute for files outside it)."""
    return Path(rel) if Path(rel).is_absolute() else root / rel


def _stat_state(path: Path, e: dict[str, Any]) -> str:
    """How a file's stat compares with its entry: ``same``, or the first of ``missing``,
    ``size``, ``mtime``, ``ctime`` that differs. Only a ``ctime`` difference needs the content
    to decide (an entry written before ctimes were kept compares as ``ctime`` once)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if st.st_size != e.get("size"):
        return "size"
    if st.st_mtime_ns != e.get("mtime_ns"):
        return "mtime"
    return "same" if st.st_ctime_ns == e.get("ctime_ns") else "ctime"


def _unchanged(path: Path, e: dict[str, Any]) -> dict[str, Any] | None:
    """The entry, still true of the file (its ctime refreshed where only that moved), or None."""
    state = _stat_state(path, e)
    if state == "same":
        return e
    if state == "ctime" and io.sha256_file(path) == e["sha256"]:
        return {**e, "ctime_ns": path.stat().st_ctime_ns}
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none yet, or a damaged one: described again
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def _write(path: Path, name: str, root: Path, files: dict[str, dict[str, Any]]) -> None:
    io.write_json(path, {"version": VERSION, "dataset": name, "root": str(root), "files": files})
