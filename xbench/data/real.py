"""Your own videos with no code: the ``folder`` and ``list`` datasets.

``folder``: one sub-folder per class (torchvision's ImageFolder, mmaction2's class-per-folder
layout), optionally under ``train/``, ``val/`` and ``test/`` folders::

    ROOT/<class>/<video>.mp4                 (splits made by a seeded, group-keeping split)
    ROOT/train/<class>/<video>.mp4 ...       (splits as given; a missing val carved from train)

``list``: a CSV or JSONL annotation file, one clip per row, paths relative to ``root``::

    path,label,split,start,end,group,text,actions
    videos/a.mp4,pour,train,0.0,4.5,actor03,"pour the milk",
    videos/b.mp4,cut,test,,,actor07,,"cut 0.5 2.0;pour 1.5 3.0"

``label`` is a class name or a 0-based id (of ``classes``, a file with one class name per line,
when given); ``split``, ``start``/``end`` (seconds), ``group`` (clips of one group, e.g. one actor
or recording, never on both sides of a split), ``text`` (a sentence per clip) and ``actions``
(``label start end`` in seconds, ``;``-separated: per-frame labels for detection) are optional.

Both read real video through :mod:`xbench.data.video` (decord, PyAV where decord cannot), keep
each clip's frames once, resized, in the decode cache, and hand the tasks a lazy ``Clips`` column
(:mod:`xbench.data.clips`): a split is never held whole in memory. The files are described by a
manifest (``xbench data prepare``); a run refuses files that no longer match it.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from xbench.data import decoded, io, manifest, video
from xbench.data.clips import Clips, FrameFile
from xbench.data.io import Segment, VideoRecord
from xbench.errors import DataError, MissingAudio
from xbench.settings import settings

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class ClipOptions:
    """Options every real-video dataset shares: where the files are, how frames are sampled and
    sized, how missing splits and the teacher's data are made."""

    #: the dataset's folder (required)
    root: str | None = None
    #: frame sampling (``xbench.data.video``): "segments" (TSN), "dense" (clips at a stride),
    #: "fps" (every frame at a target rate)
    sampling: Literal["segments", "dense", "fps"] = "segments"
    #: frames per clip the student sees
    frames: int = 8
    #: "dense": keep every stride-th source frame
    stride: int = 2
    #: "fps": the rate frames are kept at
    fps: float = 4.0
    #: frames are resized to this short side before they are cached (aspect ratio kept) ...
    short_side: int = 128
    #: ... and cropped to crop x crop (centre at evaluation, random at training)
    crop: int = 112
    #: the audio's sample rate (resampled, mono) and the seconds of it each clip gets
    audio_rate: int = 16000
    audio_seconds: float = 4.0
    #: the log-mel spectrogram audio models read: mel bands x time frames (PANNs' CNN14 was
    #: trained on 64 bands: its checkpoint needs mel_bands=64)
    mel_bands: int = 32
    mel_frames: int = 32
    #: how models read the audio: the log-mel spectrogram, or the waveform (wav2vec2, HuBERT)
    audio_input: Literal["log-mel", "waveform"] = "log-mel"
    #: splits the files do not give: val (and test) carved from train, whole groups at a time
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    #: a regular expression whose first group (else its match) in a file's path names its group
    #: (UCF101: "_(g\\d+)_"); none: each video is its own group
    group_pattern: str | None = None
    #: the teacher's data: "train" (the student's train split, as the papers train it),
    #: "holdout:F" (a seeded, group-keeping fraction F of train kept for the teacher only) or
    #: "crossfit:K" (train cut into K seeded, group-keeping folds; K teachers, each trained on the
    #: other folds, give the soft targets of the fold it never saw)
    teacher: str = "train"
    #: fraction of train clips whose labels the student may use (the rest: distillation only)
    label_fraction: float = 1.0
    #: the ``flow`` modality flow teachers read (Dai et al.): a folder written by
    #: ``xbench data flow ROOT --out FOLDER`` (each video's ``.npy`` at its path relative to root;
    #: under root, the data's hash does not depend on where the data lies); none: no flow
    flow_dir: str | None = field(default=None, metadata={"omit_default": True})

    def __post_init__(self) -> None:
        if min(self.frames, self.stride, self.short_side, self.crop, self.audio_rate, self.mel_bands,
               self.mel_frames) < 1 or self.fps <= 0:
            raise ValueError("frames, stride, short_side, crop, audio_rate, mel_bands, mel_frames and fps must be "
                             "positive")
        if self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} is larger than short_side {self.short_side}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum below 1")
        if not 0.0 <= self.label_fraction <= 1.0 or self.audio_seconds <= 0:
            raise ValueError("label_fraction must be in [0, 1] and audio_seconds positive")
        teacher_protocol(self.teacher)  # raises on a bad protocol
        if self.group_pattern is not None:
            try:
                re.compile(self.group_pattern)
            except re.error as exc:
                raise ValueError(f"group_pattern {self.group_pattern!r}: {exc}") from exc

    def decode_params(self) -> dict[str, Any]:
        """What the cached frames depend on (with the video files' hashes: the decode cache key)."""
        kept = {"segments": self.frames, "dense": f"every {self.stride}", "fps": f"{self.fps}/s"}[self.sampling]
        return {**video.reader_versions(), "sampling": self.sampling, "frames": kept,
                "size": f"short side {self.short_side}", "dtype": "uint8"}


def teacher_protocol(protocol: str) -> tuple[str, float | int | None]:
    """("train", None), ("holdout", F) or ("crossfit", K); ValueError otherwise."""
    if protocol == "train":
        return "train", None
    kind, _, value = protocol.partition(":")
    if kind == "holdout":
        try:
            f = float(value)
        except ValueError:
            f = -1.0
        if 0.0 < f < 1.0:
            return kind, f
    if kind == "crossfit" and value.isdigit() and int(value) >= 2:
        return kind, int(value)
    raise ValueError(f"teacher {protocol!r}: expected 'train', 'holdout:F' with F in (0, 1) or 'crossfit:K' "
                     "with K >= 2")


@dataclass(frozen=True)
class FolderOptions(ClipOptions):
    """Options of the ``folder`` dataset."""


@dataclass(frozen=True)
class ListOptions(ClipOptions):
    """Options of the ``list`` dataset."""

    #: the CSV or JSONL file of clips (relative to root, or absolute)
    annotations: str | None = None
    #: a file with one class name per line (line N is class N); none: the labels' sorted names
    classes: str | None = None


@dataclass(frozen=True)
class Entry:
    """One clip as the annotations give it, before splits are made."""

    path: str
    label: int
    split: str | None
    start: float | None = None
    end: float | None = None
    group: str = ""
    text: str = ""
    #: (label, start s, end s) actions inside the clip: per-frame labels; a fourth item is the
    #: action's own sentence (Tasty's steps), else its class's where the adapter names one
    actions: tuple[tuple, ...] = ()
    where: str = ""
    #: tells apart entries of one file and window (EGTEA Gaze+: a video's train and its test actions)
    part: str = ""
    #: the video's length in the annotation's own units, where ``actions`` are in those units
    #: (Toyota Smarthome's frame counts) and not seconds: scaled to the video's duration
    span: float | None = None

    @property
    def id(self) -> str:
        window = "" if self.start is None and self.end is None else f"@{self.start}-{self.end}"
        window += f"#{self.part}" if self.part else ""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.path + window)[-80:]
        return f"{slug}-{hashlib.sha256((self.path + window).encode()).hexdigest()[:8]}"


def read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"missing annotation file {path}")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"annotation file {path} is not UTF-8 (line {line}, byte {exc.start})") from exc


def scan_folder(root: Path, pattern: str | None) -> tuple[list[str], list[Entry]]:
    """Class names and clips of a class-per-folder tree (split folders if it has them)."""
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    tops = [(root / s, s) for s in split_dirs] if split_dirs else [(root, None)]
    names = sorted({d.name for top, _ in tops for d in top.iterdir() if d.is_dir() and not d.name.startswith(".")})
    if not names:
        raise DataError(f"dataset root {root} has no class folders (expected ROOT/<class>/<video>)")
    index = {n: i for i, n in enumerate(names)}
    entries = []
    for top, split in tops:
        for cls in sorted(d for d in top.iterdir() if d.is_dir() and d.name in index):
            for f in sorted(cls.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    rel = f.relative_to(root).as_posix()
                    entries.append(Entry(rel, index[cls.name], split, group=group_of(rel, pattern), where=rel))
    if not entries:
        raise DataError(f"dataset root {root} has no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return names, entries


def group_of(rel: str, pattern: str | None) -> str:
    if pattern is None:
        return rel
    m = re.search(pattern, rel)
    return (m.group(1) if m.groups() else m.group(0)) if m else rel


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) of a CSV or JSONL annotation file."""
    text = read_text(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: bad JSON: {exc.msg}") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object per line")
                rows.append((f"{path}:{n}", row))
        return rows
    reader = csv.DictReader(_io.StringIO(text))
    if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
        raise DataError(f"{path}: the header must name 'path' and 'label' columns (has: {reader.fieldnames})")
    return [(f"{path}:{n + 2}", row) for n, row in enumerate(reader)]


def scan_list(root: Path, annotations: Path, classes: Path | None, pattern: str | None) -> tuple[list[str], list[Entry]]:
    """Class names and clips of a list file, each row checked."""
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    rows = _rows(annotations)
    names = [ln.strip() for ln in read_text(classes).splitlines() if ln.strip()] if classes else None
    if names is None:
        labels = {str(r.get("label", "")).strip() for _, r in rows}
        labels |= {a.split()[0] for _, r in rows for a in str(r.get("actions") or "").split(";") if a.strip()}
        names = sorted(labels, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {n: i for i, n in enumerate(names)}
    entries, seen = [], {}
    for where, row in rows:
        e = _entry(where, row, index, names, pattern)
        key = (e.split, e.path, e.start, e.end)
        if key in seen:
            raise DataError(f"{where}: clip {e.path} is listed twice in split '{e.split}' (also {seen[key]})")
        seen[key] = where
        entries.append(e)
    if not entries:
        raise DataError(f"{annotations}: no clips listed")
    return names, entries


def _label(value: Any, index: dict[str, int], names: list[str], where: str) -> int:
    s = str(value).strip()
    if s in index:
        return index[s]
    if s.isdigit() and int(s) < len(names):
        return int(s)
    raise DataError(f"{where}: unknown class {s!r} (classes: {len(names)}, e.g. {', '.join(names[:5])})")


def _seconds(value: Any, where: str, what: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise DataError(f"{where}: {what} {value!r} is not a number of seconds") from exc


def _entry(where: str, row: dict[str, Any], index: dict[str, int], names: list[str], pattern: str | None) -> Entry:
    path = str(row.get("path") or "").strip()
    if not path:
        raise DataError(f"{where}: no path")
    split = str(row.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r} (expected {', '.join(SPLITS)})")
    start, end = _seconds(row.get("start"), where, "start"), _seconds(row.get("end"), where, "end")
    if start is not None and end is not None and end <= start:
        raise DataError(f"{where}: end {end} is not after start {start}")
    group = str(row.get("group") or "").strip() or group_of(path, pattern)
    return Entry(path, _label(row.get("label"), index, names, where), split, start, end, group,
                 str(row.get("text") or ""), parse_actions(row.get("actions"), index, names, where), where)


def parse_actions(text: Any, index: dict[str, int], names: list[str], where: str) -> tuple[tuple[int, float, float], ...]:
    """``label start end;...`` (seconds; a label as ``index`` names it, or a 0-based id) -> actions."""
    actions = []
    for part in str(text or "").split(";"):
        if part.strip():
            bits = part.split()
            if len(bits) != 3:
                raise DataError(f"{where}: action {part.strip()!r} is not 'label start end'")
            a, b = _seconds(bits[1], where, "action start"), _seconds(bits[2], where, "action end")
            actions.append((_label(bits[0], index, names, where), a, b))
    return tuple(actions)


def make_splits(entries: list[Entry], opts: ClipOptions) -> dict[str, list[Entry]]:
    """The splits: as given; the missing ones carved from the rest by whole groups, seeded.
    Carving keeps groups whole, so one group (actor, recording) is never on both sides."""
    given = {s: [e for e in entries if e.split == s] for s in SPLITS}
    pool = [e for e in entries if e.split is None] + given["train"]
    out = {"train": pool}
    for split, fraction in (("test", opts.test_fraction), ("val", opts.val_fraction)):
        if given[split]:
            out[split] = given[split]
        else:
            share = fraction / (1.0 - (opts.test_fraction if split == "val" and not given["test"] else 0.0))
            out[split], out["train"] = carve(out["train"], share, f"{opts.split_seed}:{split}")
    kind, value = teacher_protocol(opts.teacher)
    if kind == "holdout":
        out["teacher"], out["train"] = carve(out["train"], float(value), f"{opts.split_seed}:teacher")
    for split in ("train", "val", "test"):
        if not out[split]:
            raise DataError(f"split '{split}' has no clips ({len(entries)} listed; give more, or set "
                            "dataset.val_fraction / dataset.test_fraction)")
    out = {s: sorted(v, key=lambda e: (e.path, e.start or 0.0)) for s, v in out.items()}
    if kind == "crossfit":  # train in fold order: fold k's examples are the k-th block of train's
        folds = fold_groups(out["train"], int(value), f"{opts.split_seed}:crossfit")
        out["train"] = [e for fold in folds for e in fold]
        for k, fold in enumerate(folds):
            out[f"fold:{k}"] = fold
            out[f"teacher:{k}"] = [e for j, other in enumerate(folds) if j != k for e in other]
    if kind != "holdout":
        out["teacher"] = out["train"]
    return out


def fold_groups(entries: list[Entry], k: int, seed: str) -> list[list[Entry]]:
    """``entries`` cut into ``k`` folds of whole groups (in a seeded order, each group to the
    fold with the fewest clips so far), each in its input order."""
    groups = sorted({e.group for e in entries})
    if len(groups) < k:
        raise DataError(f"teacher protocol crossfit:{k} needs at least {k} groups in train; it has {len(groups)}")
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    sizes = {g: 0 for g in groups}
    for e in entries:
        sizes[e.group] += 1
    fold_of: dict[str, int] = {}
    load = [0] * k
    for i in rng.permutation(len(groups)):
        j = min(range(k), key=lambda f: (load[f], f))
        fold_of[groups[i]] = j
        load[j] += sizes[groups[i]]
    return [[e for e in entries if fold_of[e.group] == j] for j in range(k)]


def carve(entries: list[Entry], fraction: float, seed: str) -> tuple[list[Entry], list[Entry]]:
    """(carved, rest): whole groups, in a seeded order, until ``fraction`` of the clips."""
    groups = sorted({e.group for e in entries})
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    order = [groups[i] for i in rng.permutation(len(groups))]
    want, taken, n = round(fraction * len(entries)), set(), 0
    sizes = {g: 0 for g in groups}
    for e in entries:
        sizes[e.group] += 1
    for g in order:
        if n >= want or len(taken) == len(groups) - 1:
            break
        taken.add(g)
        n += sizes[g]
    return [e for e in entries if e.group in taken], [e for e in entries if e.group not in taken]


@dataclass(frozen=True)
class Anticipation:
    """An untrimmed dataset's anticipation protocol: each annotated action is anticipated from the
    ``observe`` seconds of video that end ``horizon`` seconds (tau_a) before it starts."""

    horizon: float
    observe: float
    #: the classes the protocol's many-shot metrics average over (None: those with enough train
    #: examples, the task's threshold)
    many_shot: tuple[int, ...] | None = None


class ClipDataset:
    """A real-video dataset: clips from files under ``root``, decoded once, read on demand."""

    #: what an adapter can give (its registration's); an instance gives flow only where prepared
    #: flow is given (``flow_dir``)
    modalities = ("rgb", "audio", "text", "flow")
    splits = ("train", "val", "test", "teacher")
    #: set by adapters of untrimmed datasets with an anticipation protocol (EPIC-KITCHENS, EGTEA)
    anticipation: Anticipation | None = None
    #: a localisation protocol scoring each video at this many equally spaced times (Charades: 25)
    points: int | None = None

    def __init__(self, name: str, opts: ClipOptions, home: Path, names: list[str], entries: list[Entry],
                 extras: tuple[Path, ...] = (), log=None, sentences: list[str] | None = None,
                 parts: list[tuple[int, int]] | None = None) -> None:
        self.name, self.opts, self.root = name, opts, Path(opts.root).expanduser()
        self.num_classes, self.class_names = len(names), names
        #: per class, the sentence its actions carry ("take pan") and its (verb, noun), where the
        #: annotations give them
        self._sentences, self._parts = sentences, parts
        self.audio_rate = opts.audio_rate
        self.mel_bands, self.mel_frames, self.audio_input = opts.mel_bands, opts.mel_frames, opts.audio_input
        self.audio_samples = round(opts.audio_seconds * opts.audio_rate)
        #: frames per clip the student sees (where a task does not set its own)
        self.clip_frames = opts.frames
        self._log = log or logging.getLogger("xbench.data").info
        #: processes decoding a cold cache: a machine setting (XBENCH_DECODE_WORKERS), not an option,
        #: since no result depends on it
        self.workers = settings().decode_workers
        videos = sorted({e.path for e in entries})
        # .wav sidecars are read instead of the container's audio: their content is data too
        extras = (*extras, *(self.root / w for w in map(_sidecar_rel, videos) if (self.root / w).is_file()))
        #: the prepared flow's folder (``flow_dir``): its files are data, hashed with the videos
        self._flow = Path(opts.flow_dir).expanduser() if opts.flow_dir else None
        self.modalities = ClipDataset.modalities if self._flow else ("rgb", "audio", "text")
        if self._flow is not None:
            flows = [self._flow / Path(v).with_suffix(".npy") for v in videos]
            missing = [f for f in flows if not f.is_file()]
            if missing:
                raise DataError(f"dataset '{name}': no flow file for {len(missing)} of {len(flows)} videos (first: "
                                f"{missing[0]}); prepare them with 'xbench data flow {self.root} --out {self._flow}'")
            extras = (*extras, *flows)
        self.manifest = manifest.Manifest.open(name, self.root, videos, extras, home, log=self._log)
        problems = self.manifest.problems()
        if problems:  # only while preparing (a run stops at the first): prepare lists them and goes on
            entries = [e for e in entries if e.path not in problems]
        self._entries = make_splits(entries, opts)
        #: K under the "crossfit:K" teacher protocol (splits "fold:k" and "teacher:k"), else 0
        self.teacher_folds = sum(s.startswith("fold:") for s in self._entries)
        self._records: dict[str, list[VideoRecord]] = {}
        self._entry_of: dict[str, Entry] = {}
        # keyed by the decode settings; entries by clip and content (``entry``): a relabelled list
        # or an edited video keeps every other clip's frames
        self._cache = decoded.DecodeCache(home, "by content", opts.decode_params(), log=self._log)

    # -- the Dataset contract ---------------------------------------------------------------
    def videos(self, split: str) -> list[VideoRecord]:
        if split not in self._entries:
            raise DataError(f"dataset '{self.name}' has no split '{split}'")
        if split not in self._records:
            self._records[split] = [self._record(e, split) for e in self._entries[split]]
        return self._records[split]

    def read(self, video: VideoRecord, modality: str) -> np.ndarray:
        """rgb: the clip's cached frames, centre-cropped; audio: ``audio_seconds`` of it."""
        if modality == "rgb":
            f = self.frame_file(video)
            frames = f.read(np.arange(f.shape[0]))
            y, x = (f.shape[1] - self.opts.crop) // 2, (f.shape[2] - self.opts.crop) // 2
            return frames[:, y: y + self.opts.crop, x: x + self.opts.crop]
        if modality == "audio":
            return self.audio(video)
        if modality == "flow":
            return self.flow(video)
        raise DataError(f"dataset '{self.name}' has no modality '{modality}'")

    def manifest_hash(self) -> str:
        return self.manifest.hash

    def has_audio(self, video: VideoRecord) -> bool:
        """Whether the clip's file has an audio track or a ``.wav`` beside it."""
        path = self._entry_of[video.id].path
        return self.manifest.probe(path).has_audio or _sidecar_rel(path) in self.manifest.files

    # -- clips read on demand ---------------------------------------------------------------
    def clips(self, videos: list[VideoRecord], spans: list[tuple[int, int, int]], frames: int, train: bool,
              seed: int, frame_map: list[np.ndarray] | None = None) -> Clips:
        """The lazy ``rgb`` column of examples cut from ``videos`` (span: video, first, end frame;
        ``frame_map``: the exact frames of each example instead, in their layout, -1 padding)."""
        self.decode(videos)
        files = [self._cache.frame_file(self.entry(v)) for v in videos]
        temporal = "window" if self.opts.sampling == "dense" else "uniform"
        return Clips(files, spans, frames, self.opts.crop, temporal, train, seed, frame_map)

    def decode(self, videos: list[VideoRecord]) -> int:
        """Fill the decode cache for ``videos`` (in worker processes where there are many); how
        many were decoded now."""
        todo = [v for v in videos if not self._cache.has(self.entry(v))]
        if todo:
            jobs = [(self.root / v.files["rgb"], self.manifest.probe(v.files["rgb"]), self._indices(self._entry_of[v.id]))
                    for v in todo]
            self._cache.fill([self.entry(v) for v in todo], jobs, self.opts.short_side, self.workers)
        return len(todo)

    @property
    def cache_dir(self) -> Path:
        return self._cache.dir

    def frame_file(self, video: VideoRecord) -> FrameFile:
        if not self._cache.has(self.entry(video)):  # its whole split at once, in parallel
            self.decode(self.videos(video.split))
        return self._cache.frame_file(self.entry(video))

    def entry(self, video: VideoRecord) -> str:
        """The clip's decode-cache entry: its id and its file's content, so an edited video is
        decoded again alone and an unchanged one is reused whatever else changed."""
        return f"{video.id}-{self.manifest.files[video.files['rgb']]['sha256'][:12]}"

    def audio(self, video: VideoRecord) -> np.ndarray:
        """``audio_seconds`` of the clip's audio around its middle (zero-padded), at audio_rate."""
        e = self._entry_of[video.id]
        start, end = self._window(e)
        mid, half = (start + end) / 2, self.opts.audio_seconds / 2
        a = max(0.0, mid - half)
        samples = video_audio(self.root / e.path, self.audio_rate, a, a + self.opts.audio_seconds)
        return samples if len(samples) == self.audio_samples else np.pad(
            samples[: self.audio_samples], (0, max(0, self.audio_samples - len(samples))))

    def flow(self, rec: VideoRecord) -> np.ndarray:
        """The clip's prepared optical flow at its kept frames, (N, 2, crop / p, crop / p) float16
        for flow pooled by p: each kept source frame's field (to the next source frame), resized
        as the frames are (short side, centre crop) with its vectors scaled alike, so they stay in
        pixels of the frame the student sees."""
        if self._flow is None:
            raise DataError(f"dataset '{self.name}' has no flow: set dataset.flow_dir=FOLDER, prepared with "
                            f"'xbench data flow {self.root} --out FOLDER'")
        e = self._entry_of[rec.id]
        path = self._flow / Path(e.path).with_suffix(".npy")
        fields = io.read_array(path)
        probe = self.manifest.probe(e.path)
        idx = self._indices(e)
        if fields.ndim != 4 or fields.shape[1] != 2 or probe.height % fields.shape[2] or len(fields) <= idx.max():
            raise DataError(f"flow file {path} has shape {fields.shape}; its video needs at least ({idx.max() + 1}, 2, "
                            f"{probe.height} / pool, {probe.width} / pool): prepared from another video?")
        pool = probe.height // fields.shape[2]
        height, width = video.resized_shape(probe.height, probe.width, self.opts.short_side)
        x = torch.from_numpy(fields[idx].astype(np.float32))
        x = F.interpolate(x, size=(height // pool, width // pool), mode="bilinear", antialias=True,
                          align_corners=False) * (height / probe.height)
        side = self.opts.crop // pool
        y0, x0 = (x.shape[2] - side) // 2, (x.shape[3] - side) // 2
        return x[:, :, y0: y0 + side, x0: x0 + side].numpy().astype(np.float16)

    # -- building records -------------------------------------------------------------------
    def _indices(self, e: Entry) -> np.ndarray:
        """The source frames the sampling keeps of the clip (what its cache entry holds)."""
        o = self.opts
        return video.frame_indices(self.manifest.probe(e.path), o.sampling, o.frames, o.stride, o.fps, e.start, e.end)

    def _window(self, e: Entry) -> tuple[float, float]:
        """The clip's [start, end) in seconds (the whole video where the list gives none)."""
        return e.start or 0.0, e.end if e.end is not None else self.manifest.probe(e.path).duration

    def _record(self, e: Entry, split: str) -> VideoRecord:
        o = self.opts
        n = len(self._indices(e))
        if o.sampling == "dense" and n < o.frames:
            raise DataError(f"video {self.root / e.path} is shorter than a clip: {n} frames at stride {o.stride}, "
                            f"a clip is {o.frames}")
        start, end = self._window(e)
        rate = n / max(end - start, 1e-6)  # frames kept per second
        segments = (Segment(0, n, e.label, e.label, 0, e.text),)
        overlaps: tuple[Segment, ...] = ()
        if e.actions:
            acts = []
            scale = self.manifest.probe(e.path).duration / e.span if e.span else 1.0
            for lab, a, b, *text in e.actions:  # at least one kept frame each, however short the action
                a, b = a * scale, b * scale
                first = min(n - 1, max(0, round((a - start) * rate)))
                acts.append(Segment(first, min(n, max(first + 1, round((b - start) * rate))), lab,
                                    *(self._parts[lab] if self._parts else (lab, 0)),
                                    text[0] if text else self._sentences[lab] if self._sentences else ""))
            segments, overlaps = _layers(acts)
        rec = VideoRecord(id=e.id, split=split, procedure=0, num_frames=n, fps=rate,
                          files={"rgb": e.path, "audio": e.path}, segments=segments, overlaps=overlaps)
        self._entry_of[e.id] = e
        return rec


def _sidecar_rel(rel: str) -> str:
    return video.sidecar_name(Path(rel)).as_posix()


def _layers(actions: list[Segment]) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Actions as steps (in order, not overlapping) and overlaps (those that overlap a step)."""
    steps: list[Segment] = []
    over: list[Segment] = []
    for a in sorted(actions, key=lambda s: (s.start, s.end)):
        (over if steps and a.start < steps[-1].end else steps).append(a)
    return tuple(steps), tuple(over)


def video_audio(path: Path, rate: int, start: float, end: float) -> np.ndarray:
    """The audio window, one line naming the file where there is none."""
    try:
        return video.read_audio(path, rate, start, end)
    except MissingAudio as exc:  # the hint names the task option that skips such videos
        raise MissingAudio(f"{exc}; --set task.missing_audio=skip leaves such videos out of every run") from exc


def dataset_root(opts: ClipOptions, name: str) -> Path:
    """The dataset's root folder, one line naming what is wrong where it is not given or not a folder."""
    if not opts.root:
        raise DataError(f"dataset '{name}' needs its root: --set dataset.root=PATH")
    root = Path(opts.root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    return root


def existing(root: Path, entries: list[Entry]) -> list[Entry]:
    """``entries``, each of whose video files must exist (the first missing one named, with its line)."""
    for e in entries:
        if not (root / e.path).is_file():
            raise DataError(f"{e.where}: missing video file {root / e.path}")
    return entries


def open_folder(opts: FolderOptions, home: Path | None) -> ClipDataset:
    names, entries = scan_folder(dataset_root(opts, "folder"), opts.group_pattern)
    return ClipDataset("folder", opts, home or io.data_home(), names, entries)


def open_list(opts: ListOptions, home: Path | None) -> ClipDataset:
    if not opts.root or not opts.annotations:
        raise DataError("dataset 'list' needs its root and its list: --set dataset.root=PATH "
                        "--set dataset.annotations=FILE")
    root = Path(opts.root).expanduser()
    ann = _resolve(root, opts.annotations)
    classes = _resolve(root, opts.classes) if opts.classes else None
    names, entries = scan_list(root, ann, classes, opts.group_pattern)
    return ClipDataset("list", opts, home or io.data_home(), names, existing(root, entries),
                       (ann, *([classes] if classes else [])))


def prepare(factory: Callable[[Any, Path], ClipDataset], opts: ClipOptions, home: Path, jobs: int = 1,
            progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``xbench data prepare``: describe every new or changed file (resuming), then decode every
    clip of every split into the decode cache; problem files are listed, not fatal."""
    started = time.monotonic()
    with manifest.mode(manifest.Mode(jobs=jobs, progress=progress)) as m:
        ds = factory(opts, home)
        ds.workers = jobs
    described = time.monotonic() - started
    videos = list({v.id: v for split in ds.splits for v in ds.videos(split)}.values())
    decoded_now = ds.decode(videos)
    files = [ds.cache_dir / f"{ds.entry(v)}.u8" for v in videos]
    return {"files": len(ds.manifest.files), "videos": len(ds.manifest.videos), "clips": len(videos),
            "problems": m.problems, "described_s": described, "decoded": decoded_now,
            "cached": len(videos) - decoded_now, "seconds": time.monotonic() - started, "cache": str(ds.cache_dir),
            "cache_bytes": sum(f.stat().st_size for f in files),
            "video_bytes": sum(e["size"] for rel, e in ds.manifest.files.items() if rel in set(ds.manifest.videos))}


def check(factory: Callable[[Any, Path], ClipDataset], opts: ClipOptions, home: Path,
          verify: bool = False) -> tuple[list[str], dict[str, str]]:
    """``xbench data check``: what changed since the manifest (files new, changed, removed;
    content too with ``verify``) and the problem files."""
    with manifest.mode(manifest.Mode(check=True, verify=verify)) as m:
        try:
            factory(opts, home)
        except manifest.Checked:
            pass
    return m.report, m.problems


_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint(factory: Callable[[Any, Path | None], ClipDataset],
                picks: tuple[str, ...] = ("annotations", "classes")) -> Callable[[Any], str]:
    """The manifest hash of the files a dataset's options read (preparing the manifest on first
    use), remembered per process: a sweep plans many runs on the same files. ``picks``: the
    options besides the root that choose which files are read (not splits or decoding)."""

    def of(opts: ClipOptions) -> str:
        key = (factory.__name__, str(io.data_home()), opts.root, *(getattr(opts, k, None) for k in picks))
        if key not in _FINGERPRINTS:
            _FINGERPRINTS[key] = factory(opts, None).manifest_hash()
        return _FINGERPRINTS[key]

    return of


#: the sample's decode settings: small frames, so the conformance checks stay cheap
SAMPLE_OPTIONS = {"short_side": 32, "crop": 32, "frames": 4}


def sample_tree(folder: Path, write: Callable[[Path], Any]) -> Path:
    """``folder/videos``, written once by ``write(path)`` (into a temporary folder first, so an
    interrupted write is never taken for a sample)."""
    root = folder / "videos"
    if not (folder / "complete").is_file():
        tmp = folder / f".videos.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        shutil.rmtree(root, ignore_errors=True)
        tmp.replace(root)
        (folder / "complete").write_text("")
    return root


def _sample_tree(folder: Path) -> Path:
    """A tree of real encoded clips (3 classes x 4, mixed codecs, sizes and frame rates, audio in
    the container)."""
    from xbench.data.encoded import folder_tree

    return sample_tree(folder, lambda tmp: folder_tree(tmp, classes=3, per_class=4, frames=12,
                                                       formats=("mp4", "avi", "webm")))


def sample_folder(folder: Path) -> dict[str, Any]:
    """``folder``'s sample: a class-per-folder tree; its splits made by the seeded split."""
    return {"root": str(_sample_tree(folder)), "val_fraction": 0.25, "test_fraction": 0.25, **SAMPLE_OPTIONS}


def sample_list(folder: Path) -> dict[str, Any]:
    """``list``'s sample: the same tree listed in a CSV with splits and groups."""
    root = _sample_tree(folder)
    lines = ["path,label,split,group"]
    for f in sorted(root.rglob("*.*")):
        rel = f.relative_to(root).as_posix()
        k = int(f.stem.rsplit("_", 1)[1])
        lines.append(f"{rel},{f.parent.name},{('train', 'train', 'val', 'test')[k % 4]},g{k}")
    text = "\n".join(lines) + "\n"
    listed = folder / "clips.csv"
    if not listed.is_file() or listed.read_text() != text:
        listed.write_text(text)
    return {"root": str(root), "annotations": str(folder / "clips.csv"), **SAMPLE_OPTIONS}


def _resolve(root: Path, name: str) -> Path:
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p

