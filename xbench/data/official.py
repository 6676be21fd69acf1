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

EPIC-KITCHENS-55 (Damen et al. 2018) with the anticipation splits of RULSTM (Furnari & Farinella,
ICCV 2019; fpv-iplab/rulstm, folder ``RULSTM/data/ek55``), the protocol Ghosh et al. follow::

    ROOT/ek55/training.csv, validation.csv     "id, video, start_frame, end_frame, verb, noun, action"
                                               (no header; frames at 30 fps, as RULSTM counts them)
    ROOT/ek55/actions.csv                      "id,action,verb,noun" (2,513 actions, "take_pan")
    ROOT/ek55/EPIC_many_shot_{verbs,nouns}.csv "verb_class,verb" / "noun_class,noun"
    ROOT/**/<video>.MP4                        (EPIC_KITCHENS_2018/videos/train/P01/P01_01.MP4)

training.csv trains, validation.csv is scored (RULSTM's validation split, by whole videos: the
test annotations were never released); val is carved from train by whole videos. Each action is
anticipated from the video that ends tau_a = 1 s before it starts (``horizon``; ``observe``
seconds of it: RULSTM's encoder sees 3.5 s to 1 s before the action, 2.5 s). Many-shot actions are
RULSTM's: those whose verb or noun is in the many-shot lists; the protocol's metric is the
many-shot class-mean recall@5 over those present in the scored split.

EGTEA Gaze+ (Li et al. 2018) from its ``action_annotation`` files and full videos::

    ROOT/action_annotation/action_idx.txt           "Open_fridge 2" (name, 1-based id; 106 actions)
    ROOT/action_annotation/{train,test}_splitN.txt  "<video>-<start ms>-<end ms>-F<first>-F<last> <action> <verb> <noun>"
    ROOT/**/<video>.mp4                              (the full recordings, e.g. OP01-R01-PastaSalad.mp4)

A clip's name gives its video and its times (milliseconds); ids are 1-based. Three official
splits; train and test actions interleave within one video, so each video gives a train and a test
entry holding that split's actions, and a test action's history holds test actions only, as Ghosh
et al.'s histories do. Anticipation at tau_a = 0.5 s from 10 s of video (AVT's EGTEA setting); the
protocol's metric is class-mean top-1 recall. The full videos' folder name could not be confirmed
from public material (the clips are ``cropped_clips/<video>/<clip>.mp4``, which hold the action
only and cannot be anticipated from): any folder under root is searched for ``<video>.mp4``.

Charades (Sigurdsson et al. 2016), as distributed (``Charades.zip``, ``Charades_v1_480.zip``)::

    ROOT/Charades/Charades_v1_{train,test}.csv   id,subject,...,actions,length ("c092 11.90 21.20;c147 0.00 12.60")
    ROOT/Charades/Charades_v1_classes.txt        "c000 Holding some clothes" (157 classes)
    ROOT/Charades_v1_480/<id>.mp4

Train trains, test is scored (the localisation challenge's split); val is carved from train by
whole subjects. Every frame is labelled with the actions under it; the protocol's metric is
Charades_v1_localize's per-frame mAP at 25 equally spaced times per video (``point_map``: the
prediction and the labels of the kept frame at time j / 25 of the video's length).

Tasty Videos (Sener & Yao, ICCV 2019; v2: Sener, Saraf & Yao, TPAMI 2023), in the layout their
released loader reads (a folder per recipe and the split lists)::

    ROOT/<recipe>/recipe.xml          <steps_updated><steps_updated>Add the onion.</steps_updated>...
    ROOT/<recipe>/csvalignment.dat    "start,end" per step, in steps of 5 extracted frames; "-1,-1": not filmed
    ROOT/<recipe>/<video>.mp4         (the recipe folder's one video file)
    ROOT/TRAIN_4022.txt, TEST_4022.txt  recipe names (v2; dataset.train_list / test_list for others)

Each recipe is one procedure: its filmed steps in order, each with its sentence; the anticipation
task generates the next step's sentence from the observed ones (BLEU-4, the protocol's metric,
which the task selects on anyway). Tasty has no action classes: a step's class is xbench's choice,
its first word (the imperative verb: "add", "stir"), so class-level losses and metrics have
something to read. Unconfirmed from public material: the name of the video file in a recipe
folder (any one video file is taken) and the extraction rate behind csvalignment.dat's units
(``alignment_fps``: 30 fps / 5 = 6 units per second by default; the authors' loader maps unit f to
extracted frame 5f - 1 without saying the rate). The zero-shot split of v1 (2,511 recipes) ships
with other list names: pass them as ``train_list`` and ``test_list``.

Toyota Smarthome Untrimmed (Dai et al. 2022), with the annotation JSON files of the authors'
pipeline (dairui01/Toyota_Smarthome, ``pipline/data``)::

    ROOT/smarthome_CS_51.json, smarthome_CV_51.json   {"P11T15C01": {"subset": "testing", "duration": 22760,
                                                        "actions": [[27, 77, 987], ...]}, ...}
    ROOT/Action_list                                  "27<TAB>Use_laptop" (optional: class names)
    ROOT/**/<video>.mp4

``split`` CS (cross-subject) or CV (cross-view) picks the file; "training" trains, "testing" is
scored, val is carved from train by whole subjects (P<NN>). The actions' times are in the units of
the video's ``duration`` (frame counts; the authors' own loader scales them to the video's length,
and so does xbench, so no frame rate is assumed). The metric is per-frame mAP over every frame, the
detection task's own. The authors say the CSV annotations released with the videos are the
reference and may differ slightly from these JSON files; the CSV layout could not be confirmed
from public material, so the JSON files of their pipeline are what is read.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from xbench.data import io
from xbench.data.real import (
    SAMPLE_OPTIONS,
    VIDEO_EXTENSIONS,
    Anticipation,
    ClipDataset,
    ClipOptions,
    Entry,
    dataset_root,
    existing,
    group_of,
    parse_actions,
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


@dataclass(frozen=True)
class UntrimmedOptions(ClipOptions):
    """Options of the untrimmed datasets: frames kept at a fixed rate over the whole video."""

    #: every frame at ``fps`` (RULSTM samples 4 per second): per-frame labels, observation windows
    #: and protocol points are read from them
    sampling: Literal["segments", "dense", "fps"] = "fps"
    fps: float = 4.0


@dataclass(frozen=True)
class KitchenOptions(UntrimmedOptions):
    """Options of the untrimmed kitchen datasets, whose actions are anticipated tau_a ahead."""

    #: tau_a: seconds between the end of the observed video and the start of the action
    horizon: float = 1.0
    #: seconds of video observed before that
    observe: float = 2.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon < 0 or self.observe <= 0:
            raise ValueError("horizon must be >= 0 and observe positive (seconds)")


@dataclass(frozen=True)
class EPIC55Options(KitchenOptions):
    """Options of ``epic-kitchens-55``."""

    #: RULSTM's csv folder under root (its RULSTM/data/ek55)
    annotations: str = "ek55"
    #: the frame rate RULSTM's csv count frames at (it converted every video to 30 fps)
    annotation_fps: float = 30.0


@dataclass(frozen=True)
class EGTEAOptions(KitchenOptions, SplitOptions):
    """Options of ``egtea-gaze``."""

    #: the annotation folder under root (action_annotation.zip unpacked)
    lists: str = "action_annotation"
    #: AVT's EGTEA setting, which Ghosh et al. use: 0.5 s ahead, 10 s observed
    horizon: float = 0.5
    observe: float = 10.0


@dataclass(frozen=True)
class CharadesOptions(UntrimmedOptions):
    """Options of ``charades``."""

    #: the annotation folder under root (Charades.zip unpacked) and the videos' folder
    annotations: str = "Charades"
    videos: str = "Charades_v1_480"


@dataclass(frozen=True)
class TastyOptions(UntrimmedOptions):
    """Options of ``tasty``."""

    #: the split lists under root (one recipe folder name per line)
    train_list: str = "TRAIN_4022.txt"
    test_list: str = "TEST_4022.txt"
    #: csvalignment.dat's units per second (5 extracted frames each, at 30 fps: unconfirmed)
    alignment_fps: float = 6.0


@dataclass(frozen=True)
class TSUOptions(UntrimmedOptions):
    """Options of ``toyota-smarthome``."""

    #: CS (cross-subject) or CV (cross-view): smarthome_<split>_51.json
    split: Literal["CS", "CV"] = "CS"


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


def _video_index(root: Path, extensions: tuple[str, ...] = (".mp4", ".mkv", ".webm")) -> dict[str, str]:
    """Each video file by its stem (Kinetics: <youtube_id>_<start>_<end>), a replacement for a
    corrupted video winning over the original."""
    found: dict[str, str] = {}
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() in extensions and f.is_file():
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


def _csv(path: Path, columns: int, what: str) -> list[tuple[str, list[str]]]:
    """(where, fields) of each non-empty row of a CSV file with ``columns`` columns (``what``)."""
    rows = []
    for n, row in enumerate(csv.reader(_io.StringIO(read_text(path))), 1):
        if "".join(row).strip():
            if len(row) != columns:
                raise DataError(f"{path}:{n}: expected {columns} columns ({what}), found {len(row)}")
            rows.append((f"{path}:{n}", [c.strip() for c in row]))
    return rows


def _ints(where: str, fields: list[str], what: str) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError as exc:
        raise DataError(f"{where}: {what} must be whole numbers (found {' '.join(fields)})") from exc


def _video_entries(root: Path, actions: dict[tuple[str, str], tuple[str, list]], extensions: tuple[str, ...]) -> list[Entry]:
    """One entry per (video, split) holding that split's actions, each video found by its stem
    under root (the first line listing a missing one named). A video with actions in both splits
    gives two entries, told apart by ``part``."""
    videos, entries = _video_index(root, extensions), []
    split_of: dict[str, set[str]] = {}
    for video, split in actions:
        split_of.setdefault(video, set()).add(split)
    for (video, split), (where, acts) in sorted(actions.items()):
        if video not in videos:
            raise DataError(f"{where}: missing video file {video}{extensions[0]} under {root}")
        acts = sorted(acts, key=lambda a: (a[1], a[2]))
        entries.append(Entry(videos[video], acts[0][0], split, group=video, actions=tuple(acts), where=where,
                             part=split if len(split_of[video]) > 1 else ""))
    return entries


def _column(path: Path, name: str) -> set[int]:
    reader = csv.DictReader(_io.StringIO(read_text(path)))
    if not reader.fieldnames or name not in reader.fieldnames:
        raise DataError(f"{path}: expected a '{name}' column (has: {reader.fieldnames})")
    return {_ints(f"{path}:{n + 2}", [row[name]], name)[0] for n, row in enumerate(reader)}


def scan_epic55(root: Path, opts: EPIC55Options, keep: list[str] | None = None) -> tuple:
    """Actions, videos and many-shot classes of RULSTM's EPIC-KITCHENS-55 csv files."""
    ann = root / opts.annotations
    table = _csv(ann / "actions.csv", 4, "id,action,verb,noun")
    if not table or table[0][1][0] != "id":
        raise DataError(f"{ann / 'actions.csv'}: expected the header id,action,verb,noun")
    names: list[str] = []
    parts: list[tuple[int, int]] = []
    for where, (ident, name, verb, noun) in table[1:]:
        i, v, n = _ints(where, [ident, verb, noun], "id, verb and noun")
        if i != len(names):
            raise DataError(f"{where}: action id {i} is not {len(names)} (ids run 0, 1, 2, ... in order)")
        names.append(name.replace("_", " "))
        parts.append((v, n))
    many_verbs, many_nouns = _column(ann / "EPIC_many_shot_verbs.csv", "verb_class"), \
        _column(ann / "EPIC_many_shot_nouns.csv", "noun_class")
    files = [ann / f for f in ("actions.csv", "EPIC_many_shot_verbs.csv", "EPIC_many_shot_nouns.csv",
                               "training.csv", "validation.csv")]
    actions: dict[tuple[str, str], tuple[str, list]] = {}
    for split, path in (("train", files[3]), ("test", files[4])):
        for where, f in _csv(path, 7, "id, video, start_frame, end_frame, verb, noun, action"):
            first, last, verb, noun, action = _ints(where, f[2:], "frames and ids")
            if not 0 <= action < len(names):
                raise DataError(f"{where}: action {action} is not in actions.csv ({len(names)} actions)")
            if parts[action] != (verb, noun):
                raise DataError(f"{where}: verb {verb} and noun {noun} are not action {action}'s "
                                f"{parts[action]} in actions.csv")
            if last < first:
                raise DataError(f"{where}: end frame {last} is before start frame {first}")
            fps = opts.annotation_fps
            actions.setdefault((f[1], split), (where, []))[1].append((action, first / fps, (last + 1) / fps))
    # RULSTM's many-shot actions: those whose verb or whose noun is many-shot
    many = tuple(a for a, (v, n) in enumerate(parts) if v in many_verbs or n in many_nouns)
    return names, _video_entries(root, actions, (".MP4", *VIDEO_EXTENSIONS)), files, {
        "sentences": names, "parts": parts, "anticipation": Anticipation(opts.horizon, opts.observe, many)}


#: an EGTEA Gaze+ clip name: <video>-<start ms>-<end ms>-F<first frame>-F<last frame>
_EGTEA_CLIP = re.compile(r"^(?P<video>.+)-(?P<start>\d+)-(?P<end>\d+)-F(?P<first>\d+)-F(?P<last>\d+)$")


def scan_egtea(root: Path, opts: EGTEAOptions, keep: list[str] | None = None) -> tuple:
    """Actions and videos of one official EGTEA Gaze+ split."""
    lists = root / opts.lists
    index = lists / "action_idx.txt"
    ids: dict[int, str] = {}
    for where, f in _lines(index):
        if len(f) < 2 or not f[-1].isdigit():
            raise DataError(f"{where}: expected '<action name> <id>'")
        ids[int(f[-1])] = " ".join(f[:-1]).replace("_", " ")
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise DataError(f"{index}: action ids must run 1 to {len(ids)}")
    names = [ids[i] for i in range(1, len(ids) + 1)]
    parts: list[tuple[int, int]] = [(0, 0)] * len(names)
    files = [index, lists / f"train_split{opts.split}.txt", lists / f"test_split{opts.split}.txt"]
    actions: dict[tuple[str, str], tuple[str, list]] = {}
    for split, path in (("train", files[1]), ("test", files[2])):
        for where, f in _lines(path):
            m = _EGTEA_CLIP.match(f[0]) if len(f) >= 4 else None
            if m is None:
                raise DataError(f"{where}: expected '<video>-<start ms>-<end ms>-F<first>-F<last> <action> <verb> <noun>'")
            action, verb, noun = _ints(where, f[1:4], "action, verb and noun ids")
            if not 1 <= action <= len(names):
                raise DataError(f"{where}: action {action} is not in {index.name} (1 to {len(names)})")
            parts[action - 1] = (verb - 1, noun - 1)
            start, end = int(m["start"]) / 1000, int(m["end"]) / 1000
            if end <= start:
                raise DataError(f"{where}: the clip ends at {end} s, not after its start {start} s")
            actions.setdefault((m["video"], split), (where, []))[1].append((action - 1, start, end))
    return names, _video_entries(root, actions, (".mp4",)), files, {
        "sentences": names, "parts": parts, "anticipation": Anticipation(opts.horizon, opts.observe)}


def scan_charades(root: Path, opts: CharadesOptions, keep: list[str] | None = None) -> tuple:
    """Classes and videos of Charades' CSV files, each video with its actions."""
    ann = root / opts.annotations
    index = ann / "Charades_v1_classes.txt"
    codes: dict[str, int] = {}
    names: list[str] = []
    for where, f in _lines(index):
        if len(f) < 2 or not re.fullmatch(r"c\d{3}", f[0]):
            raise DataError(f"{where}: expected 'cNNN <class name>'")
        codes[f[0]] = len(names)
        names.append(" ".join(f[1:]))
    files = [index, ann / "Charades_v1_train.csv", ann / "Charades_v1_test.csv"]
    entries: list[Entry] = []
    for split, path in (("train", files[1]), ("test", files[2])):
        reader = csv.DictReader(_io.StringIO(read_text(path)))
        if not reader.fieldnames or not {"id", "subject", "actions", "length"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns id,subject,...,actions,length (has: {reader.fieldnames})")
        for n, row in enumerate(reader):
            where = f"{path}:{n + 2}"
            actions = parse_actions(row["actions"], codes, names, where)  # "cNNN start end;..."
            entries.append(Entry(f"{opts.videos}/{row['id']}.mp4", actions[0][0] if actions else 0, split,
                                 group=row["subject"], actions=actions, where=where))
    return names, existing(root, entries), files, {"points": 25}


def _tasty_steps(path: Path) -> list[str]:
    from xml.etree import ElementTree

    try:
        tree = ElementTree.fromstring(read_text(path))
    except ElementTree.ParseError as exc:
        raise DataError(f"{path}: bad XML: {exc}") from exc
    outer = tree.find("steps_updated")
    steps = [(e.text or "").strip() for e in outer.findall("steps_updated")] if outer is not None else []
    if not steps:
        raise DataError(f"{path}: no <steps_updated><steps_updated>step</steps_updated>... sentences")
    return steps


def scan_tasty(root: Path, opts: TastyOptions, keep: list[str] | None = None) -> tuple:
    """Recipes of Tasty Videos' split lists: each a procedure of its filmed steps with their
    sentences; a step's class is its first word."""
    files = [root / opts.train_list, root / opts.test_list]
    recipes: list[tuple[str, str, list[tuple[str, float, float]]]] = []
    for split, path in (("train", files[0]), ("test", files[1])):
        for where, f in _lines(path):
            folder = root / f[0]
            steps, spans = _tasty_steps(folder / "recipe.xml"), _lines(folder / "csvalignment.dat")
            if len(spans) != len(steps):
                raise DataError(f"{folder / 'csvalignment.dat'}: {len(spans)} lines for {len(steps)} steps in recipe.xml")
            filmed = []
            for (at, bounds), sentence in zip(spans, steps):
                first, last = _ints(at, bounds[0].split(","), "start,end")
                if (first, last) != (-1, -1):  # -1,-1: the step is not in the video
                    filmed.append((sentence, first / opts.alignment_fps, (last + 1) / opts.alignment_fps))
            videos = sorted(v for v in folder.iterdir() if v.suffix.lower() in VIDEO_EXTENSIONS) if folder.is_dir() else []
            if not videos:
                raise DataError(f"{where}: recipe {f[0]} has no video file in {folder}")
            if filmed:
                recipes.append((split, videos[0].relative_to(root).as_posix(), filmed))
            files += [folder / "recipe.xml", folder / "csvalignment.dat"]
    # the class of a step: its first word, the imperative verb, where train has it ("-" else)
    names = sorted({_verb(s) for split, _, steps in recipes if split == "train" for s, _, _ in steps} | {"-"})
    index = {n: i for i, n in enumerate(names)}
    entries = [Entry(rel, 0, split, group=rel.split("/")[0], where=rel,
                     actions=tuple((index.get(_verb(s), index["-"]), a, b, s) for s, a, b in steps))
               for split, rel, steps in recipes]
    return names, entries, files


def _verb(sentence: str) -> str:
    return (re.findall(r"[a-z]+", sentence.lower()) or ["-"])[0]


def scan_tsu(root: Path, opts: TSUOptions, keep: list[str] | None = None) -> tuple:
    """Classes and videos of one Toyota Smarthome Untrimmed protocol (cross-subject or cross-view)."""
    path = root / f"smarthome_{opts.split}_51.json"
    try:
        table = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: bad JSON: {exc.msg} (line {exc.lineno})") from exc
    names = [str(i) for i in range(51)]
    files = [path]
    if (root / "Action_list").is_file():
        files.append(root / "Action_list")
        for where, f in _lines(root / "Action_list"):
            if len(f) != 2 or not f[0].isdigit() or int(f[0]) >= 51:
                raise DataError(f"{where}: expected '<id 0-50><TAB><class name>'")
            names[int(f[0])] = f[1].replace("_", " ")
    videos, entries = _video_index(root, (".mp4",)), []
    subsets = {"training": "train", "testing": "test"}
    for video, info in sorted(table.items()):
        where = f"{path}: video {video}"
        if not isinstance(info, dict) or info.get("subset") not in subsets or not isinstance(info.get("actions"), list):
            raise DataError(f"{where}: expected {{'subset': 'training'|'testing', 'duration': N, 'actions': "
                            "[[class, start, end], ...]}")
        try:
            span = float(info["duration"])
            actions = tuple((int(c), float(a), float(b)) for c, a, b in info["actions"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: duration and [class, start, end] must be numbers") from exc
        if span <= 0 or any(not 0 <= c < 51 for c, _, _ in actions):
            raise DataError(f"{where}: duration must be positive and classes 0-50")
        if video not in videos:
            raise DataError(f"{where}: missing video file {video}.mp4 under {root}")
        entries.append(Entry(videos[video], actions[0][0] if actions else 0, subsets[info["subset"]],
                             group=video[:3], actions=actions, where=where, span=span))
    return names, entries, files


def opener(name: str, scan: Any, classes: str | None = None) -> Any:
    """The ``DatasetSpec.factory`` of an adapter: its official files scanned (only the classes of
    the shipped list ``classes``, when given, renumbered in its order)."""

    def open_dataset(opts: ClipOptions, home: Path | None) -> ClipDataset:
        root = dataset_root(opts, name)
        names, entries, files, *more = scan(root, opts, class_list(classes) if classes else None)
        extra = more[0] if more else {}  # untrimmed datasets: class sentences, verb/noun, anticipation
        ds = ClipDataset(name, opts, home or io.data_home(), names, entries, tuple(files),
                         sentences=extra.get("sentences"), parts=extra.get("parts"))
        ds.anticipation, ds.points = extra.get("anticipation"), extra.get("points")
        return ds

    open_dataset.__name__ = f"open_{name}"  # the fingerprint memo tells datasets apart by it
    return open_dataset


open_ucf101 = opener("ucf101", scan_ucf101)
open_ucf51 = opener("ucf51", scan_ucf101, "ucf51")
open_hmdb51 = opener("hmdb51", scan_hmdb51)
open_kinetics400 = opener("kinetics-400", scan_kinetics)
open_kinetics_sound = opener("kinetics-sound", scan_kinetics, "kinetics-sound")
open_epic55 = opener("epic-kitchens-55", scan_epic55)
open_egtea = opener("egtea-gaze", scan_egtea)
open_charades = opener("charades", scan_charades)
open_tsu = opener("toyota-smarthome", scan_tsu)
open_tasty = opener("tasty", scan_tasty)


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

def _sampler(write: str, val_fraction: float, doc: str) -> Any:
    """The ``sample`` of an adapter whose tree ``xbench.data.encoded.<write>`` writes."""

    def sample(folder: Path) -> dict[str, Any]:
        from xbench.data import encoded

        return {"root": str(sample_tree(folder, getattr(encoded, write))), "val_fraction": val_fraction,
                **SAMPLE_OPTIONS}

    sample.__doc__ = doc
    return sample


sample_epic55 = _sampler("epic55_tree", 0.25, "An EPIC-KITCHENS-55 tree: six videos of four actions, two validation.")
sample_egtea = _sampler("egtea_tree", 0.25, "An EGTEA Gaze+ tree: four full videos of eight actions, every fourth tested.")
sample_charades = _sampler("charades_tree", 0.2, "A Charades tree: nine videos of four actions and an overlapping one.")
sample_tasty = _sampler("tasty_tree", 0.25, "A Tasty Videos tree: eight recipes of five filmed steps, two tested.")
sample_tsu = _sampler("tsu_tree", 0.2, "A Toyota Smarthome Untrimmed tree: four subjects filmed by two cameras.")


#: the options that choose which of an adapter's files are read (its fingerprint's key): an
#: official split reads other list files
PICKS = ("split", "lists", "videos", "annotations", "test_split", "missing_videos", "train_list", "test_list")

#: what an untrimmed kitchen dataset annotates: timed actions in order, each with its name as a
#: sentence and its verb and noun. Not "untrimmed" (every frame labelled): the time between
#: actions is unannotated, not background
_KITCHEN = ("steps", "procedures", "sentences", "verb-noun")

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
    {"name": "epic-kitchens-55", "description": "EPIC-KITCHENS-55 with RULSTM's anticipation splits: "
                                                "--set dataset.root=PATH",
     "factory": open_epic55, "options": EPIC55Options, "sample": sample_epic55, "annotations": _KITCHEN,
     "layout": "ROOT/ek55/{training,validation,actions}.csv and EPIC_many_shot_{verbs,nouns}.csv (RULSTM/data/ek55 "
               "of fpv-iplab/rulstm); ROOT/**/<video>.MP4 (EPIC_KITCHENS_2018/videos/train/P01/P01_01.MP4)",
     "protocol": "Ghosh et al.'s and RULSTM's: training.csv trains, validation.csv is scored (whole videos); val "
                 "carved from train by whole videos; each action anticipated from the 2.5 s of video ending "
                 "tau_a = 1 s before it (dataset.horizon, dataset.observe); anticipation selects on and reports "
                 "many-shot class-mean recall@5 (actions whose verb or noun is many-shot), with top-1/top-5",
     "main_metrics": {"anticipation": "many_shot_cm_recall5"}},
    {"name": "egtea-gaze", "description": "EGTEA Gaze+ from its action_annotation split files: --set dataset.root=PATH",
     "factory": open_egtea, "options": EGTEAOptions, "sample": sample_egtea, "annotations": _KITCHEN,
     "layout": "ROOT/action_annotation/action_idx.txt, {train,test}_split{1,2,3}.txt (action_annotation.zip); "
               "ROOT/**/<video>.mp4 (the full recordings, e.g. OP01-R01-PastaSalad.mp4)",
     "protocol": "Ghosh et al.'s (AVT's EGTEA setting): official split 1-3 (dataset.split), train and test actions "
                 "interleaved within videos; val carved from train by whole videos; each action anticipated from "
                 "the 10 s of video ending tau_a = 0.5 s before it; anticipation selects on and reports class-mean "
                 "top-1 recall",
     "main_metrics": {"anticipation": "cm_recall1"}},
    {"name": "charades", "description": "Charades from its official CSV files: --set dataset.root=PATH",
     "factory": open_charades, "options": CharadesOptions, "sample": sample_charades,
     "annotations": ("steps", "untrimmed"),
     "layout": "ROOT/Charades/Charades_v1_{train,test}.csv (actions 'cNNN start end;...'), Charades_v1_classes.txt "
               "(Charades.zip); ROOT/Charades_v1_480/<id>.mp4 (Charades_v1_480.zip)",
     "protocol": "Charades_v1_localize's: train trains, test is scored; val carved from train by whole subjects; "
                 "detection selects on and reports per-frame mAP at 25 equally spaced times per video (point_map)",
     "main_metrics": {"detection": "point_map"}},
    {"name": "tasty", "description": "Tasty Videos from its recipe folders and split lists: --set dataset.root=PATH",
     "factory": open_tasty, "options": TastyOptions, "sample": sample_tasty,
     "annotations": ("steps", "procedures", "sentences"),
     "layout": "ROOT/<recipe>/recipe.xml (steps_updated sentences), csvalignment.dat ('start,end' per step), "
               "<video>.mp4; ROOT/TRAIN_4022.txt, TEST_4022.txt (dataset.train_list, dataset.test_list)",
     "protocol": "CCD's and Sener & Yao's: each recipe a procedure of its filmed steps; anticipation generates the "
                 "next step's sentence from the observed steps, BLEU-4 (the task's main metric); the split lists "
                 "as given (v2's, or v1's zero-shot lists); val carved from train by whole recipes; a step's class "
                 "is its first word (xbench's choice: Tasty has no classes)"},
    {"name": "toyota-smarthome", "description": "Toyota Smarthome Untrimmed from its annotation JSON: "
                                                "--set dataset.root=PATH",
     "factory": open_tsu, "options": TSUOptions, "sample": sample_tsu, "annotations": ("steps", "untrimmed"),
     "layout": "ROOT/smarthome_{CS,CV}_51.json and Action_list (pipline/data of dairui01/Toyota_Smarthome); "
               "ROOT/**/<video>.mp4",
     "protocol": "Dai et al.'s TSU-CS and TSU-CV (dataset.split=CS|CV): training trains, testing is scored; val "
                 "carved from train by whole subjects; action times scaled from the annotation's duration to the "
                 "video's; detection's per-frame mAP over every frame"},
]
