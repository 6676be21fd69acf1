"""The papers' datasets from their official annotation files, in each dataset's exact layout with
real encoded video (MPEG-4 part 2 in AVI, as UCF101 and HMDB51 ship): splits, the group-keeping
val, UCF51's classes, bad files named, and student and kd on every task each fits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xbench.cli import main
from xbench.data import encoded
from xbench.data.official import (
    HMDB51Options,
    KineticsOptions,
    UCF101Options,
    class_list,
    open_hmdb51,
    open_kinetics400,
    open_kinetics_sound,
    open_ucf51,
    open_ucf101,
)
from xbench.errors import DataError
from xbench.store import ResultStore

SMALL = {"short_side": 32, "crop": 32, "frames": 4}
MICRO = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("teacher_steps", 2), ("eval_every", 2),
                                              ("batch_size", 4))]
#: UCF101's classInd lists the 51 UCF51 classes and three more (one of them without audio)
UCF_CLASSES = sorted([*class_list("ucf51"), "Basketball", "PlayingGuitar", "YoYo"])
FILMED = ["ApplyEyeMakeup", "Archery", "Bowling", "YoYo"]


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    encoded.ucf101_tree(root, UCF_CLASSES, FILMED, groups=5, mute=("YoYo",))
    return root


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> Path:
    """Two Kinetics-Sound classes and one more, as the crawler lays them out; one clip gone."""
    root = tmp_path_factory.mktemp("kinetics")
    encoded.kinetics_tree(root, ["abseiling", "playing bagpipes", "tapping pen"], per_class=4, crawler=True)
    return root


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hmdb")
    encoded.hmdb51_tree(root, ["brush_hair", "cartwheel", "catch"], videos=8)
    return root


def _split(ds, split: str) -> list[tuple[str, int]]:
    return [(Path(v.files["rgb"]).name, v.segments[0].label) for v in ds.videos(split)]


def test_ucf51_is_the_51_classes_with_audio_from_ccl():
    names = class_list("ucf51")
    assert len(names) == 51 and names == sorted(names)
    assert names[:4] == ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling"]
    assert names[-3:] == ["UnevenBars", "WallPushups", "WritingOnBoard"] and "YoYo" not in names


def test_ucf101_splits_keep_groups_and_ucf51_renumbers(ucf, tmp_path):
    ds = open_ucf101(UCF101Options(root=str(ucf), val_fraction=0.25, **SMALL), tmp_path)
    assert ds.num_classes == 54 and ds.class_names[5:8] == ["BandMarching", "Basketball", "BasketballDunk"]
    test = _split(ds, "test")
    assert test == [("v_ApplyEyeMakeup_g01_c01.avi", 0), ("v_Archery_g01_c01.avi", 2),
                    ("v_Bowling_g01_c01.avi", 11), ("v_YoYo_g01_c01.avi", 53)]
    groups = {s: {n.split("_")[-2] for n, _ in _split(ds, s)} for s in ("train", "val", "test")}
    assert groups == {"train": {"g02", "g04", "g05"}, "val": {"g03"}, "test": {"g01"}}  # seeded, whole groups
    two = open_ucf101(UCF101Options(root=str(ucf), split=2, **SMALL), tmp_path)
    assert {n.split("_")[-2] for n, _ in _split(two, "test")} == {"g02"}
    ucf51 = open_ucf51(UCF101Options(root=str(ucf), val_fraction=0.25, **SMALL), tmp_path)
    assert ucf51.num_classes == 51 and ucf51.class_names == class_list("ucf51")
    assert _split(ucf51, "test") == [("v_ApplyEyeMakeup_g01_c01.avi", 0), ("v_Archery_g01_c01.avi", 2),
                                     ("v_Bowling_g01_c01.avi", 10)]  # renumbered: Basketball is out


def test_hmdb51_reads_1_train_2_test_and_leaves_0_out(hmdb, tmp_path):
    ds = open_hmdb51(HMDB51Options(root=str(hmdb), val_fraction=0.25, **SMALL), tmp_path)
    assert ds.class_names == ["brush_hair", "cartwheel", "catch"]
    assert _split(ds, "test") == [(f"Movie_0_{c}_f_cm_np1_fr_med_{i}.avi", k)
                                  for k, c in enumerate(ds.class_names) for i in (0, 1)]
    titles = {s: {n.split("_")[1] for n, _ in _split(ds, s)} for s in ("train", "val", "test")}
    # val takes whole source videos (one title's clips, in every class it was cut for)
    assert titles == {"train": {"2"}, "val": {"3"}, "test": {"0"}}  # title 1 is marked 0: unused
    assert sorted(n for s in ("train", "val") for n, _ in _split(ds, s)) == sorted(
        f"Movie_{t}_{c}_f_cm_np1_fr_med_{i}.avi" for t in (2, 3) for c in ds.class_names for i in (0, 1))


def test_kinetics_sound_is_look_listen_and_learns_list_in_kinetics_400_names():
    names = class_list("kinetics-sound")
    assert len(names) == 31 and names == sorted(names)
    assert {"blowing out candles", "dribbling basketball", "mowing lawn", "stomping grapes"} <= set(names)
    assert not {"typing", "fingerpicking", "patting", "blowing out"} & set(names)


def test_kinetics_reads_the_csvs_skips_gone_videos_and_scores_val(kinetics, tmp_path, caplog, monkeypatch):
    caplog.set_level("INFO", "xbench.data")
    # the CLI's reporter may have stopped the logger's propagation in an earlier test
    monkeypatch.setattr(logging.getLogger("xbench.data"), "handlers", [caplog.handler])
    ds = open_kinetics400(KineticsOptions(root=str(kinetics), val_fraction=0.25, **SMALL), tmp_path)
    assert ds.class_names == ["abseiling", "playing bagpipes", "tapping pen"]
    sizes = {s: len(ds.videos(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 9, "val": 3, "test": 6}  # 12 train clips (one more listed is gone), val.csv 6
    assert "kinetics: 2 listed clips have no video file" in caplog.text  # one per split's first class
    assert all(v.files["rgb"].startswith("val/") for v in ds.videos("test"))
    yids = {s: {Path(v.files["rgb"]).stem[:11] for v in ds.videos(s)} for s in ("train", "val")}
    assert not yids["train"] & yids["val"]
    sound = open_kinetics_sound(KineticsOptions(root=str(kinetics), val_fraction=0.25, **SMALL), tmp_path)
    assert sound.num_classes == 31 and sorted({v.segments[0].label for v in sound.videos("test")}) == [
        class_list("kinetics-sound").index("playing bagpipes"), class_list("kinetics-sound").index("tapping pen")]
    with pytest.raises(DataError, match=r"train.csv:\d+: missing video file tr00004x0"):
        open_kinetics400(KineticsOptions(root=str(kinetics), missing_videos="error", **SMALL), tmp_path)


@pytest.mark.parametrize("dataset", ["ucf51", "hmdb51", "kinetics-sound"])
@pytest.mark.parametrize("task", ["recognition", "retrieval", "audio-tagging"])
def test_student_and_kd_run_on_each_task_the_adapter_fits(ucf, hmdb, kinetics, dataset, task):
    root = {"ucf51": ucf, "hmdb51": hmdb, "kinetics-sound": kinetics}[dataset]
    for method in ("student", "kd"):
        assert main(["run", "--method", method, "--task", task, "--dataset", dataset, "--budget", "smoke", "--quiet",
                     f"--set=dataset.root={root}", "--set=dataset.val_fraction=0.25",
                     *(f"--set=dataset.{k}={v}" for k, v in SMALL.items()), *MICRO]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.dataset, r.task, r.status) for r in records] == [
        ("kd", dataset, task, "complete"), ("student", dataset, task, "complete")]
    assert records[0].teacher["trained_on"] == "the student's train split (teacher protocol 'train')"


def test_ucf101_skips_the_classes_without_audio_where_asked(ucf, capsys):
    argv = ["run", "--method", "kd", "--task", "recognition", "--dataset", "ucf101", "--budget", "smoke", "--quiet",
            f"--set=dataset.root={ucf}", *(f"--set=dataset.{k}={v}" for k, v in SMALL.items()), *MICRO]
    assert main(argv) == 2
    assert "v_YoYo_g0" in capsys.readouterr().err
    assert main([*argv, "--set=task.missing_audio=skip"]) == 0


def test_bad_official_files_are_named(ucf, tmp_path):
    bad = tmp_path / "ucf"
    lists = bad / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text((ucf / "ucfTrainTestlist" / "classInd.txt").read_text())
    (bad / "UCF-101").symlink_to(ucf / "UCF-101")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    cases = {
        "Archery/v_Archery_g02_c01.avi 4\n": "trainlist01.txt:1: label 4 is not Archery's id 3 in classInd.txt",
        "Nope/v_Nope_g02_c01.avi 1\n": "trainlist01.txt:1: unknown class 'Nope' (not in classInd.txt)",
        "Archery/v_Archery_g09_c01.avi 3\n": "trainlist01.txt:1: missing video file",
        "Archery/v_Archery_g02_c01.avi 3\nArchery/v_Archery_g02_c01.avi 3\n":
            "trainlist01.txt:2: Archery/v_Archery_g02_c01.avi is listed twice in split 'train'",
    }
    for text, message in cases.items():
        (lists / "trainlist01.txt").write_text(text)
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_ucf101(UCF101Options(root=str(bad), **SMALL), tmp_path)
    with pytest.raises(ValueError, match="split 4: the official splits are 1, 2 and 3"):
        UCF101Options(root=str(bad), split=4)


def test_each_official_split_has_its_own_data_fingerprint(ucf, registry):
    # the data hash enters every config hash: split 2 reads other list files than split 1, also
    # when one process plans both (a sweep)
    spec = registry.get("datasets", "ucf101")
    one, two = (spec.fingerprint(UCF101Options(root=str(ucf), split=k, **SMALL)) for k in (1, 2))
    assert one != two and spec.fingerprint(UCF101Options(root=str(ucf), split=1, frames=8)) == one


def test_list_datasets_verbose_shows_files_tasks_and_protocol(capsys):
    assert main(["list", "datasets", "-v"]) == 0
    cards = {c.split(" ", 1)[0]: c for c in capsys.readouterr().out.strip().split("\n\n")}
    assert sorted(cards) == ["folder", "hmdb51", "kinetics-400", "kinetics-sound", "list", "synth", "ucf101", "ucf51"]
    assert cards["hmdb51"].splitlines() == [
        "hmdb51 (core)",
        "  HMDB51 from its official split files: --set dataset.root=PATH",
        ("  layout:   ROOT/hmdb51/<class>/<video>.avi; ROOT/testTrainMulti_7030_splits/<class>_test_split<N>.txt "
        "(hmdb51_org.rar and test_train_splits.rar, unpacked)"),
        "  tasks:    audio-tagging, recognition, retrieval",
        ("  protocol: official split 1-3 (dataset.split): 1 train, 2 test, 0 unused; val carved from train by whole "
        "source videos (the title before _<class>_ in the name); top-1 on the test videos (XKD's linear and "
        "fine-tuned evaluations)"),
    ]
    assert cards["synth"].splitlines()[2:4] == [
        "  layout:   generated; no files", "  tasks:    anticipation, audio-tagging, detection, recognition, retrieval"]
