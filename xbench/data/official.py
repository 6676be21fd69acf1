"""The papers' datasets read from the annotation files they are distributed with, each with its
paper's protocol, on top of the real-video path of :mod:`xbench.data.real` (decoding, decode
cache, manifest, splits, teacher protocol).

UCF101 (Soomro et al. 2012), as distributed (``UCF101.rar`` and
``UCF101TrainTestSplits-RecognitionTask.zip``)::

    ROOT/UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi
    ROOT/ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" (1-based id, class)
    ROOT/ucfTrainTestlist/trainlist0N.txt       "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist0N.txt        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

Three official splits (``split`` 1-3) keep groups g01-g25 apart; val is carved from train by
whole groups (``_g<GG>_``), so one group's clips (same actor and background) are never on both
sides. UCF51 is the same files restricted to the 51 classes with an audio track (the list in
``classes/ucf51.txt``, with its source), the protocol of Chen et al. (CCL, CVPR 2021) that Xia
et al. (MNF+CSC) follow: split 1, labels renumbered 0-50 in classInd order.

HMDB51 (Kuehne et al. 2011), as distributed (``hmdb51_org.rar``, one rar per class, and
``test_train_splits.rar``)::

    ROOT/hmdb51/<class>/<video>.avi
    ROOT/testTrainMulti_7030_splits/<class>_test_split<N>.txt   "<video>.avi 1" (1 train, 2 test, 0 unused)

Classes are the split files' class names, sorted; videos marked 0 are in neither split. Clips
cut from one source video share its title (the file name before ``_<class>_``): val is carved
from train by whole titles.

Kinetics-400 (Kay et al. 2017), from its annotation CSVs ``label,youtube_id,time_start,time_end,split``
(``is_cc`` may follow), with the videos as the CVDF mirror or the ActivityNet crawler leave them::

    ROOT/annotations/{train,val,test}.csv
    ROOT/**/<youtube_id>_<start:06d>_<end:06d>.mp4     (k400/train/..., or <split>/<label>/...;
                                                        replacement_for_corrupted_k400/ wins)

Videos taken down from YouTube are missing from every copy (5-10%): a listed clip without its
file is left out and counted (``missing_videos=error`` stops instead). The papers report on val:
it is the test split here, and val is carved from train by whole YouTube videos. Kinetics-Sound
is the same files restricted to the 31 classes of Arandjelovic & Zisserman's list that Kinetics-400
has (``classes/kinetics-sound.txt`` says which were renamed or dropped).
"""

from __future__ import annotations

import csv
import io as _io
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from xbench.data import io
from xbench.data.real import (
    SAMPLE_OPTIONS,
    ClipDataset,
    ClipOptions,
    Entry,
    dataset_root,
    existing,
    group_of,
    read_text,
    sample_tree,
)
from xbench.errors import DataError


def class_list(name: str) -> list[str]:
    """A class list shipped with xbench (``classes/<name>.txt``; its # lines say where it comes
    from)."""
    text = resources.files("xbench.data").joinpath("classes", f"{name}.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@dataclass(frozen=True)
class SplitOptions(ClipOptions):
    """Options of a dataset with three official train/test splits: val is carved from train."""

    #: the official train/test split: 1, 2 or 3
    split: int = 1
    #: val: this fraction of train, whole groups at a time; test is the official list's
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in (1, 2, 3):
            raise ValueError(f"split {self.split}: the official splits are 1, 2 and 3")


@dataclass(frozen=True)
class UCF101Options(SplitOptions):
    """Options of ``ucf101`` and ``ucf51``."""

    #: the videos' folder under root (the archive unpacks to UCF-101/)
    videos: str = "UCF-101"
    #: the split files' folder under root (the zip unpacks to ucfTrainTestlist/)
    lists: str = "ucfTrainTestlist"
    #: a clip's group (same actor and background): val keeps whole groups
    group_pattern: str | None = r"_(g\d+)_"


@dataclass(frozen=True)
class HMDB51Options(SplitOptions):
    """Options of ``hmdb51``."""

    #: the videos' folder under root (one folder per class)
    videos: str = "hmdb51"
    #: the split files' folder under root
    lists: str = "testTrainMulti_7030_splits"


@dataclass(frozen=True)
class KineticsOptions(ClipOptions):
    """Options of ``kinetics-400`` and ``kinetics-sound``."""

    #: the annotation CSVs' folder under root (train.csv, val.csv, test.csv)
    annotations: str = "annotations"
    #: the split scored as test: "val" (what the papers report on), or "test" (then val is val.csv)
    test_split: Literal["val", "test"] = "val"
    #: a listed clip whose video is missing (taken down from YouTube): "skip" it (counted) or "error"
    missing_videos: Literal["skip", "error"] = "skip"
    #: val: this fraction of train, whole YouTube videos at a time (test_split "val")
    val_fraction: float = 0.05
    #: clips are 10 s: the audio window covers them
    audio_seconds: float = 10.0


def _lines(path: Path) -> list[tuple[str, list[str]]]:
    """(where, fields) of each non-empty line of a whitespace-separated split file."""
    return [(f"{path}:{n}", line.split()) for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]


def scan_ucf101(root: Path, opts: UCF101Options, keep: list[str] | None) -> tuple[list[str], list[Entry], list[Path]]:
    """Class names and clips of one official UCF101 split (``keep``: only these classes,
    renumbered in classInd order), and the annotation files read."""
    lists = root / opts.lists
    ind = lists / "classInd.txt"
    official: dict[str, int] = {}
    for where, f in _lines(ind):
        if len(f) != 2 or not f[0].isdigit():
            raise DataError(f"{where}: expected '<id> <class>'")
        official[f[1]] = int(f[0])
    names = [c for c in sorted(official, key=official.get) if keep is None or c in keep]
    if keep is not None and len(names) != len(keep):
        missing = sorted(set(keep) - set(names))
        raise DataError(f"{ind} lacks {len(missing)} of the classes kept, e.g. {missing[0]}")
    index = {c: i for i, c in enumerate(names)}
    files = [ind, lists / f"trainlist0{opts.split}.txt", lists / f"testlist0{opts.split}.txt"]
    entries: list[Entry] = []
    for split, path in (("train", files[1]), ("test", files[2])):
        seen: dict[str, str] = {}
        for where, f in _lines(path):
            cls = f[0].split("/")[0]
            if cls not in official:
                raise DataError(f"{where}: unknown class {cls!r} (not in {ind.name})")
            if len(f) > 1 and f[1] != str(official[cls]):
                raise DataError(f"{where}: label {f[1]} is not {cls}'s id {official[cls]} in {ind.name}")
            if f[0] in seen:
                raise DataError(f"{where}: {f[0]} is listed twice in split '{split}' (also {seen[f[0]]})")
            seen[f[0]] = where
            if cls in index:
                rel = f"{opts.videos}/{f[0]}"
                entries.append(Entry(rel, index[cls], split, group=group_of(rel, opts.group_pattern), where=where))
    return names, existing(root, entries), files


def scan_hmdb51(root: Path, opts: HMDB51Options, keep: list[str] | None = None) -> tuple[list[str], list[Entry], list[Path]]:
    """Class names and clips of one official HMDB51 split (``keep``: only these classes), and the
    annotation files read."""
    lists = root / opts.lists
    suffix = f"_test_split{opts.split}.txt"
    files = sorted(f for f in lists.glob(f"*{suffix}") if keep is None or f.name[: -len(suffix)] in keep) \
        if lists.is_dir() else []
    if not files:
        raise DataError(f"no HMDB51 split files {lists}/<class>{suffix}")
    names = [f.name[: -len(suffix)] for f in files]
    entries: list[Entry] = []
    for label, path in enumerate(files):
        for where, f in _lines(path):
            if len(f) != 2 or f[1] not in ("0", "1", "2"):
                raise DataError(f"{where}: expected '<video> <0|1|2>' (0 unused, 1 train, 2 test)")
            if f[1] != "0":
                rel = f"{opts.videos}/{names[label]}/{f[0]}"
                # clips cut from one source video share its title, the name before _<class>_
                title = f[0].split(f"_{names[label]}_")[0]
                entries.append(Entry(rel, label, "train" if f[1] == "1" else "test", group=title, where=where))
    return names, existing(root, entries), files


def _kinetics_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    reader = csv.DictReader(_io.StringIO(read_text(path)))
    need = {"youtube_id", "time_start", "time_end"}
    if not reader.fieldnames or not need <= set(reader.fieldnames):
        raise DataError(f"{path}: expected the columns label,youtube_id,time_start,time_end,split (has: "
                        f"{reader.fieldnames})")
    return [(f"{path}:{n + 2}", row) for n, row in enumerate(reader)]


def _video_index(root: Path) -> dict[str, str]:
    """Each clip's file by its stem (<youtube_id>_<start>_<end>), a replacement for a corrupted
    video winning over the original."""
    found: dict[str, str] = {}
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() in (".mp4", ".mkv", ".webm") and f.is_file():
            rel = f.relative_to(root).as_posix()
            if f.stem not in found or "replacement" in rel:
                found[f.stem] = rel
    return found


def scan_kinetics(root: Path, opts: KineticsOptions, keep: list[str] | None) -> tuple[list[str], list[Entry], list[Path]]:
    """Class names and clips of Kinetics-400's CSVs (``keep``: only these classes, renumbered in
    their order), the annotation files read; clips without a file skipped (counted) or refused."""
    ann = root / opts.annotations
    parts = [("train", ann / "train.csv")] + (
        [("test", ann / "val.csv")] if opts.test_split == "val" else [("val", ann / "val.csv"), ("test", ann / "test.csv")])
    rows = {split: _kinetics_rows(path) for split, path in parts}
    names = sorted({r.get("label", "") for _, r in rows["train"]}) if keep is None else keep
    index = {c: i for i, c in enumerate(names)}
    videos, entries, missing = _video_index(root), [], 0
    for split, _ in parts:
        seen: dict[str, str] = {}
        for where, r in rows[split]:
            label = (r.get("label") or "").strip()
            if keep is not None and label not in index:
                continue
            if label not in index:
                raise DataError(f"{where}: unknown class {label!r} (not a label of train.csv)" if label else
                                f"{where}: no label (set dataset.test_split=val: test labels were not released at first)")
            try:
                stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            except ValueError as exc:
                raise DataError(f"{where}: time_start/time_end are not seconds") from exc
            if stem in seen:
                raise DataError(f"{where}: clip {stem} is listed twice in split '{split}' (also {seen[stem]})")
            seen[stem] = where
            if stem not in videos:
                if opts.missing_videos == "error":
                    raise DataError(f"{where}: missing video file {stem}.mp4 under {root}")
                missing += 1
                continue
            entries.append(Entry(videos[stem], index[label], split, group=r["youtube_id"], where=where))
    if missing:  # the norm for Kinetics: every copy lacks some videos taken down from YouTube
        logging.getLogger("xbench.data").info(f"kinetics: {missing} listed clips have no video file under {root}; "
                                              "left out (dataset.missing_videos=error stops instead)")
    if not entries:
        raise DataError(f"no Kinetics video file under {root} matches {ann}/*.csv (<youtube_id>_<start>_<end>.mp4)")
    return names, entries, [path for _, path in parts]


def opener(name: str, scan: Any, classes: str | None = None) -> Any:
    """The ``DatasetSpec.factory`` of an adapter: its official files scanned (only the classes of
    the shipped list ``classes``, when given, renumbered in its order)."""

    def open_dataset(opts: ClipOptions, home: Path | None) -> ClipDataset:
        root = dataset_root(opts, name)
        names, entries, files = scan(root, opts, class_list(classes) if classes else None)
        return ClipDataset(name, opts, home or io.data_home(), names, entries, tuple(files))

    open_dataset.__name__ = f"open_{name}"  # the fingerprint memo tells datasets apart by it
    return open_dataset


open_ucf101 = opener("ucf101", scan_ucf101)
open_ucf51 = opener("ucf51", scan_ucf101, "ucf51")
open_hmdb51 = opener("hmdb51", scan_hmdb51)
open_kinetics400 = opener("kinetics-400", scan_kinetics)
open_kinetics_sound = opener("kinetics-sound", scan_kinetics, "kinetics-sound")


def sample_ucf101(folder: Path) -> dict[str, Any]:
    """A UCF101 tree: classInd naming the 51 UCF51 classes and two more, four of them filmed (four
    groups each, one tested per split)."""
    from xbench.data.encoded import ucf101_tree

    classes = sorted([*class_list("ucf51"), "PlayingGuitar", "YoYo"])
    filmed = ["ApplyEyeMakeup", "Archery", "Bowling", "YoYo"]
    root = sample_tree(folder, lambda tmp: ucf101_tree(tmp, classes, filmed))
    return {"root": str(root), "val_fraction": 0.34, **SAMPLE_OPTIONS}


def sample_hmdb51(folder: Path) -> dict[str, Any]:
    """An HMDB51 tree: three classes of eight clips from four source titles, three split files each."""
    from xbench.data.encoded import hmdb51_tree

    root = sample_tree(folder, lambda tmp: hmdb51_tree(tmp, ["brush_hair", "cartwheel", "catch"], videos=8))
    return {"root": str(root), "val_fraction": 0.34, **SAMPLE_OPTIONS}


def sample_kinetics(folder: Path) -> dict[str, Any]:
    """A Kinetics tree (CVDF's layout): three Kinetics-Sound classes, one listed clip gone."""
    from xbench.data.encoded import kinetics_tree

    classes = ["playing bagpipes", "playing drums", "tapping pen"]
    root = sample_tree(folder, lambda tmp: kinetics_tree(tmp, classes, per_class=4))
    return {"root": str(root), "val_fraction": 0.25, **SAMPLE_OPTIONS}


_UCF_LAYOUT = ("ROOT/UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi; ROOT/ucfTrainTestlist/classInd.txt, "
               "trainlist0N.txt, testlist0N.txt (UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip, unpacked)")

_K400_LAYOUT = ("ROOT/annotations/{train,val,test}.csv (label,youtube_id,time_start,time_end,split); "
                "ROOT/**/<youtube_id>_<start:06d>_<end:06d>.mp4 (the CVDF mirror's k400/ unpacked, or the "
                "ActivityNet crawler's <split>/<label>/)")

#: the options that choose which of an adapter's files are read (its fingerprint's key): an
#: official split reads other list files
PICKS = ("split", "lists", "videos", "annotations", "test_split", "missing_videos")

#: the adapters, as ``DatasetSpec`` fields (the core registers them)
SPECS: list[dict[str, Any]] = [
    {"name": "ucf101", "description": "UCF101 from its official split files: --set dataset.root=PATH",
     "factory": open_ucf101, "options": UCF101Options, "sample": sample_ucf101, "layout": _UCF_LAYOUT,
     "protocol": "official split 1-3 (dataset.split); val carved from train by whole groups gGG; top-1 on the "
                 "test list (XKD's linear and fine-tuned evaluations)"},
    {"name": "ucf51", "description": "UCF101's 51 classes with audio (Chen et al., CCL): --set dataset.root=PATH",
     "factory": open_ucf51, "options": UCF101Options, "sample": sample_ucf101, "layout": _UCF_LAYOUT,
     "protocol": "MNF+CSC's and CCL's: the 51 classes with an audio track of split 1, renumbered in classInd "
                 "order; top-1 and retrieval on the test list (4,892 train / 1,944 test videos in full); CCL "
                 "selects on the test list, xbench on a val carved from train by whole groups gGG"},
    {"name": "hmdb51", "description": "HMDB51 from its official split files: --set dataset.root=PATH",
     "factory": open_hmdb51, "options": HMDB51Options, "sample": sample_hmdb51,
     "layout": "ROOT/hmdb51/<class>/<video>.avi; ROOT/testTrainMulti_7030_splits/<class>_test_split<N>.txt "
               "(hmdb51_org.rar and test_train_splits.rar, unpacked)",
     "protocol": "official split 1-3 (dataset.split): 1 train, 2 test, 0 unused; val carved from train by "
                 "whole source videos (the title before _<class>_ in the name); top-1 on the test videos (XKD's linear and fine-tuned evaluations)"},
    {"name": "kinetics-400", "description": "Kinetics-400 from its annotation CSVs: --set dataset.root=PATH",
     "factory": open_kinetics400, "options": KineticsOptions, "sample": sample_kinetics, "layout": _K400_LAYOUT,
     "protocol": "train.csv trains, val.csv is scored (as the papers report; dataset.test_split=test scores "
                 "test.csv); val carved from train by whole YouTube videos; clips whose video is gone are left "
                 "out and counted (XKD's linear and fine-tuned evaluations)"},
    {"name": "kinetics-sound", "description": "Kinetics-Sound: Kinetics-400's 31 classes of Arandjelovic & "
                                              "Zisserman's list: --set dataset.root=PATH",
     "factory": open_kinetics_sound, "options": KineticsOptions, "sample": sample_kinetics,
     "layout": _K400_LAYOUT,
     "protocol": "Kinetics-400's, restricted to the 31 classes of Look, Listen and Learn's 34 that Kinetics-400 "
                 "has (4 renamed, 3 absent), renumbered in sorted order (XKD's Kinetics-Sound column)"},
]
