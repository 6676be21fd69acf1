"""The papers' datasets from their official annotation files, in each dataset's exact layout with
real encoded video (MPEG-4 part 2 in AVI, as UCF101 and HMDB51 ship): splits, the group-keeping
val, UCF51's classes, bad files named, and student and kd on every task each fits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.cli import main
from xbench.data import encoded
from xbench.data.examples import Examples
from xbench.data.official import (
    CharadesOptions,
    EGTEAOptions,
    EPIC55Options,
    HMDB51Options,
    KineticsOptions,
    TastyOptions,
    TSUOptions,
    UCF101Options,
    class_list,
    open_charades,
    open_egtea,
    open_epic55,
    open_hmdb51,
    open_kinetics400,
    open_kinetics_sound,
    open_tasty,
    open_tsu,
    open_ucf51,
    open_ucf101,
)
from xbench.errors import DataError
from xbench.store import ResultStore
from xbench.tasks import AnticipationOptions, AnticipationTask, point_map

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


def _tree(write):
    """A module fixture: the tree ``write`` makes (in the dataset's exact layout)."""

    @pytest.fixture(scope="module")
    def tree(tmp_path_factory) -> Path:
        root = tmp_path_factory.mktemp(write.__name__)
        write(root)
        return root

    return tree


#: six videos at 59.94 fps (RULSTM counts frames at 30): P03_01 and P03_02 are validation
epic = _tree(encoded.epic55_tree)
egtea = _tree(encoded.egtea_tree)
charades = _tree(encoded.charades_tree)
tsu = _tree(encoded.tsu_tree)
tasty = _tree(encoded.tasty_tree)


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


def test_epic55_reads_rulstm_csvs_at_30_fps_and_its_many_shot_actions(epic, tmp_path):
    ds = open_epic55(EPIC55Options(root=str(epic), val_fraction=0.25, **SMALL), tmp_path)
    assert ds.class_names == ["take pan", "put fridge", "open cupboard", "wash plate"]
    # many-shot: verb take (0) or put (1), or noun cupboard (8); wash plate is neither
    assert ds.anticipation.many_shot == (0, 1, 2) and (ds.anticipation.horizon, ds.anticipation.observe) == (1.0, 2.5)
    videos = {s: [Path(v.files["rgb"]).stem for v in ds.videos(s)] for s in ("train", "val", "test")}
    assert videos == {"train": ["P01_01", "P02_01", "P02_02"], "val": ["P01_02"], "test": ["P03_01", "P03_02"]}
    (first, *_), fps = ds.videos("test"), 37 / (540 / (60000 / 1001))  # 37 frames kept of 9.009 s
    assert first.num_frames == 37 and first.fps == pytest.approx(fps)
    # action k starts at frame 45k of RULSTM's 30 fps, 1.5k s, kept frame round(1.5k * 4.107)
    assert [(s.start, s.label, s.verb, s.noun, s.sentence) for s in first.segments[:3]] == [
        (0, 0, 0, 1, "take pan"), (6, 1, 1, 10, "put fridge"), (12, 2, 2, 8, "open cupboard")]


def test_anticipation_observes_the_video_ending_tau_a_before_each_action(epic, tmp_path):
    ds = open_epic55(EPIC55Options(root=str(epic), val_fraction=0.25, **SMALL), tmp_path)
    task = AnticipationTask(AnticipationOptions(frames=4))
    ex = task.examples(ds, "test", ("rgb", "text"))
    # each video's first action starts at 0 s, within tau_a = 1 s: not anticipated (5 of 6 are)
    assert ex.tensors["label"].tolist() == [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    clips = ex.tensors["rgb"]
    assert clips.shape == (10, 3, 4, 3, 32, 32)
    # action 1 starts at kept frame 6: observed to frame 6 - round(1 s * 4.107) = 2 (exclusive),
    # from max(0, 2 - round(2.5 s * 4.107)) = 0, in 3 stretches of 4 frames
    assert clips.spans[:3] == [(0, 0, 2), (0, 0, 8), (0, 4, 14)]
    assert clips.frame_map[0].tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]]
    # the names of the actions begun before the observation ends (privileged history), the
    # action under each stretch, the next action's name
    assert ex.tensors["text"][:3] == [("", "", "take pan"), ("", "take pan", "put fridge"),
                                      ("take pan", "put fridge", "open cupboard")]
    assert ex.tensors["past_labels"].tolist()[:3] == [[0, 0, 0], [0, 0, 1], [1, 1, 2]]
    assert ex.meta["sentences"][:2] == ["put fridge", "open cupboard"]


def test_egtea_interleaves_train_and_test_actions_within_a_video(egtea, tmp_path):
    ds = open_egtea(EGTEAOptions(root=str(egtea), val_fraction=0.25, **SMALL), tmp_path)
    assert ds.class_names == ["Take pan", "Put fridge", "Open cupboard", "Wash plate"]
    test = ds.videos("test")
    # split 1 tests actions 1 and 5 of each video; the video's train actions are another entry
    assert [(v.files["rgb"], [(s.start, s.label) for s in v.segments]) for v in test[:2]] == [
        ("videos/P01-R01-PastaSalad.mp4", [(6, 1), (30, 1)]), ("videos/P02-R02-PastaSalad.mp4", [(6, 2), (30, 2)])]
    train_ids = {v.id for v in ds.videos("train")}
    assert test[0].id not in train_ids and test[0].id.replace("_test-", "_train-").split("-")[0] in {
        i.split("-")[0] for i in train_ids}
    ex = AnticipationTask(AnticipationOptions(frames=4)).examples(ds, "test", ("rgb", "text"))
    # a test action's history holds the video's test actions only (Ghosh et al.'s gappy histories);
    # tau_a = 0.5 s from 10 s of video
    assert ex.tensors["label"].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    assert ex.tensors["text"][:2] == [("", "", ""), ("", "", "Put fridge")]
    assert ex.tensors["rgb"].spans[:2] == [(0, 0, 4), (0, 0, 28)]
    two = open_egtea(EGTEAOptions(root=str(egtea), split=2, val_fraction=0.25, **SMALL), tmp_path)
    assert [[s.label for s in v.segments] for v in two.videos("test")][:2] == [[2, 2], [3, 3]]


def test_anticipation_protocol_metrics_against_hand_computation():
    task = AnticipationTask(AnticipationOptions())
    task.protocol = type("P", (), {"many_shot": (0, 1, 2, 5)})()  # EPIC's many-shot classes
    task.train_counts = None
    y = [0, 0, 1, 5, 6, 6]
    rankings = [[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 0, 1, 2], [2, 1, 0, 3, 4, 5, 6, 7],
                [0, 1, 2, 3, 4, 6, 5, 7], [6, 0, 1, 2, 3, 4, 5, 7], [0, 6, 1, 2, 3, 4, 5, 7]]
    scores = torch.zeros(6, 8)
    for i, order in enumerate(rankings):
        scores[i, order] = torch.arange(8, 0, -1, dtype=torch.float)
    out = task.evaluate({"logits": scores}, Examples({"label": torch.tensor(y)}))
    # top-1 hits: examples 0 and 4; top-5 hits: 0, 2, 4, 5. Per class top-1 recall 0: 1/2, 1: 0,
    # 5: 0, 6: 1/2; top-5 recall 0: 1/2, 1: 1, 5: 0, 6: 1; many-shot present: 0, 1, 5 (RULSTM's
    # topk_recall over the listed classes present)
    assert out == pytest.approx({"top1": 100 * 2 / 6, "top5": 100 * 4 / 6, "cm_recall1": 25.0, "cm_recall5": 62.5,
                                 "many_shot_cm_recall5": 50.0})


def test_charades_labels_every_frame_with_the_actions_under_it(charades, tmp_path):
    ds = open_charades(CharadesOptions(root=str(charades), val_fraction=0.2, **SMALL), tmp_path)
    assert ds.class_names == [f"Action number {c}" for c in range(4)] and ds.points == 25
    # subjects of two videos each: val takes a whole subject
    subjects = {s: [Path(v.files["rgb"]).stem for v in ds.videos(s)] for s in ("train", "val", "test")}
    assert subjects == {"train": ["00CH0X", "01CH7X", "04CH8X", "05CH5X"], "val": ["02CH4X", "03CH1X"],
                        "test": ["06CH2X", "07CH9X", "08CH6X"]}
    first = ds.videos("train")[0]  # 4 s at 4 kept frames per second; "c001 0.00 2.00" overlaps
    assert [(s.start, s.end, s.label) for s in first.segments] == [(0, 4, 0), (4, 8, 1), (8, 12, 2), (12, 16, 3)]
    assert [(s.start, s.end, s.label) for s in first.overlaps] == [(0, 8, 1)]
    from xbench.tasks import DetectionOptions, DetectionTask

    ex = DetectionTask(DetectionOptions()).examples(ds, "test", ("rgb",))
    # time j / 25 of a 16-frame video is kept frame floor(16 j / 25)
    assert ex.tensors["points"][0].tolist() == [16 * j // 25 for j in range(25)]


def test_tsu_scales_frame_times_to_the_video_and_splits_by_subject_or_camera(tsu, tmp_path):
    cs = open_tsu(TSUOptions(root=str(tsu), val_fraction=0.2, **SMALL), tmp_path)
    assert cs.class_names[:4] == ["Enter", "Walk", "Make coffee", "Get water"] and len(cs.class_names) == 51
    stems = lambda ds, s: [Path(v.files["rgb"]).stem for v in ds.videos(s)]
    assert stems(cs, "test") == ["P04T01C01", "P04T01C02"] and stems(cs, "val") == ["P02T01C01", "P02T01C02"]
    cv = open_tsu(TSUOptions(root=str(tsu), split="CV", val_fraction=0.2, **SMALL), tmp_path)
    assert stems(cv, "test") == [f"P0{p}T01C02" for p in range(1, 5)]
    # 1.5 s actions at 20 fps are 30 frames of a 120-frame duration: 6 kept frames at 4 per second
    video = cs.videos("test")[0]
    assert (video.num_frames, [(s.start, s.end, s.label) for s in video.segments]) == (
        24, [(0, 6, 2), (6, 12, 3), (12, 18, 0), (18, 24, 1)])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "smarthome_CS_51.json").write_text('{"P01T01C01": {"subset": "training", "duration": 10, '
                                              '"actions": [[60, 0, 5]]}}')
    with pytest.raises(DataError, match=r"smarthome_CS_51.json: video P01T01C01: duration must be positive and "
                                        r"classes 0-50"):
        open_tsu(TSUOptions(root=str(bad), **SMALL), tmp_path)


def test_tasty_recipes_are_procedures_of_their_filmed_steps(tasty, tmp_path):
    ds = open_tasty(TastyOptions(root=str(tasty), val_fraction=0.25, **SMALL), tmp_path)
    # Tasty has no classes: a step's class is its first word
    assert ds.class_names == ["-", "add", "bake", "pour", "stir"]
    recipes = {s: [Path(v.files["rgb"]).stem for v in ds.videos(s)] for s in ("train", "val", "test")}
    assert recipes["test"] == ["recipe_06_cake", "recipe_07_cake"] and len(recipes["train"]) == 4
    # "Enjoy!" (-1,-1) is not filmed; step k spans units round(7.2 k) to round(7.2 (k + 1)) - 1 of 5
    # frames at 30 fps (1/6 s), kept at 4 frames per second
    first = ds.videos("test")[0]
    assert [(s.start, s.end, s.label, s.sentence) for s in first.segments] == [
        (0, 5, 3, "Pour the batter into the pan."), (5, 9, 2, "Bake until golden brown."),
        (9, 15, 1, "Add the flour to the bowl."), (15, 19, 4, "Stir the batter until smooth."),
        (19, 24, 3, "Pour the batter into the pan.")]
    ex = AnticipationTask(AnticipationOptions(frames=4)).examples(ds, "test", ("rgb", "text"))
    # three observed steps, the fourth and fifth anticipated in each recipe; frames read on demand
    assert ex.meta["sentences"] == ["stir the batter until smooth", "pour the batter into the pan",
                                    "pour the batter into the pan", "bake until golden brown"]
    assert ex.tensors["label"].tolist() == [4, 3, 3, 2]
    assert ex.tensors["text"][0] == ("Pour the batter into the pan.", "Bake until golden brown.",
                                     "Add the flour to the bowl.")
    assert ex.tensors["rgb"].shape == (4, 3, 4, 3, 32, 32) and ex.tensors["rgb"].frame_map[0].tolist() == [
        [0, 1, 3, 4], [5, 6, 7, 8], [9, 11, 12, 14]]
    bad = tmp_path / "bad"
    (bad / "recipe_00_cake").mkdir(parents=True)
    (bad / "TRAIN_4022.txt").write_text("recipe_00_cake\n")
    (bad / "TEST_4022.txt").write_text("")
    (bad / "recipe_00_cake" / "recipe.xml").write_text((tasty / "recipe_00_cake" / "recipe.xml").read_text())
    (bad / "recipe_00_cake" / "csvalignment.dat").write_text("0,5\n")
    with pytest.raises(DataError, match=r"recipe_00_cake/csvalignment.dat: 1 lines for 6 steps in recipe.xml"):
        open_tasty(TastyOptions(root=str(bad), **SMALL), tmp_path)


def test_point_map_against_hand_computation():
    labels = np.array([[[1, 0], [0, 0], [1, 1], [0, 1]], [[0, 0], [1, 0], [0, 0], [0, 1]]], dtype=np.float32)
    scores = np.array([[[0.9, 0.1], [0.0, 0.0], [0.2, 0.8], [0.0, 0.0]],
                       [[0.0, 0.0], [0.5, 0.3], [0.0, 0.0], [0.6, 0.7]]], dtype=np.float32)
    # class 0 at the points: 0.9 (+), 0.6 (-), 0.5 (+), 0.2 (+): precisions 1, 2/3, 3/4 at the positives;
    # class 1: 0.8 (+), 0.7 (+), 0.3, 0.1: AP 1
    value = point_map(scores, labels, np.array([[0, 2], [1, 3]]))
    assert value == pytest.approx(100 * ((1 + 2 / 3 + 3 / 4) / 3 + 1) / 2)


@pytest.mark.parametrize("dataset", ["charades", "toyota-smarthome"])
def test_student_and_kd_run_detection_on_the_untrimmed_adapters(charades, tsu, dataset):
    root = {"charades": charades, "toyota-smarthome": tsu}[dataset]
    base = ["run", "--task", "detection", "--dataset", dataset, "--budget", "smoke", "--quiet",
            f"--set=dataset.root={root}", "--set=dataset.val_fraction=0.2",
            *(f"--set=dataset.{k}={v}" for k, v in SMALL.items()), *MICRO]
    # real video has no optical flow: kd distils a teacher on the student's own input
    assert main([*base, "--method", "student"]) == 0 and main([*base, "--method", "kd", "--teacher", "rgb-tcn"]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.status, r.main_metric) for r in records] == [
        ("kd", "complete", {"charades": "point_map", "toyota-smarthome": "frame_map"}[dataset]),
        ("student", "complete", {"charades": "point_map", "toyota-smarthome": "frame_map"}[dataset])]
    assert records[0].teacher["name"] == "rgb-tcn"


@pytest.mark.parametrize("dataset,task", [(d, t) for d in ("ucf51", "hmdb51", "kinetics-sound")
                                          for t in ("recognition", "retrieval", "audio-tagging")]
                         + [(d, t) for d in ("epic-kitchens-55", "egtea-gaze")
                            for t in ("anticipation", "recognition", "retrieval", "audio-tagging")]
                         + [(d, t) for d in ("charades", "toyota-smarthome")
                            for t in ("recognition", "retrieval", "audio-tagging")]
                         + [("tasty", t) for t in ("anticipation", "recognition", "retrieval", "audio-tagging")])
def test_student_and_kd_run_on_each_task_the_adapter_fits(ucf, hmdb, kinetics, epic, egtea, charades, tsu, tasty,
                                                          dataset, task):
    root = {"ucf51": ucf, "hmdb51": hmdb, "kinetics-sound": kinetics, "epic-kitchens-55": epic,
            "egtea-gaze": egtea, "charades": charades, "toyota-smarthome": tsu, "tasty": tasty}[dataset]
    for method in ("student", "kd"):
        assert main(["run", "--method", method, "--task", task, "--dataset", dataset, "--budget", "smoke", "--quiet",
                     f"--set=dataset.root={root}", "--set=dataset.val_fraction=0.25",
                     *(f"--set=dataset.{k}={v}" for k, v in SMALL.items()), *MICRO,
                     "--set=budget.pretrain_steps=2", "--set=task.meteor=false"][: None if task == "anticipation" else -2]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.dataset, r.task, r.status) for r in records] == [
        ("kd", dataset, task, "complete"), ("student", dataset, task, "complete")]
    assert records[0].teacher["trained_on"] == "the student's train split (teacher protocol 'train')"
    if dataset == "epic-kitchens-55" and task == "anticipation":  # the protocol's metric selects
        assert {r.main_metric for r in records} == {"many_shot_cm_recall5"}


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
    assert sorted(cards) == ["charades", "egtea-gaze", "epic-kitchens-55", "folder", "hmdb51", "kinetics-400",
                             "kinetics-sound", "list", "synth", "tasty", "toyota-smarthome", "ucf101", "ucf51"]
    assert cards["charades"].splitlines()[3] == "  tasks:    audio-tagging, detection, recognition, retrieval"
    assert cards["epic-kitchens-55"].splitlines() == [
        "epic-kitchens-55 (core)",
        "  EPIC-KITCHENS-55 with RULSTM's anticipation splits: --set dataset.root=PATH",
        ("  layout:   ROOT/ek55/{training,validation,actions}.csv and EPIC_many_shot_{verbs,nouns}.csv (RULSTM/data/"
         "ek55 of fpv-iplab/rulstm); ROOT/**/<video>.MP4 (EPIC_KITCHENS_2018/videos/train/P01/P01_01.MP4)"),
        "  tasks:    anticipation, audio-tagging, recognition, retrieval",
        ("  protocol: Ghosh et al.'s and RULSTM's: training.csv trains, validation.csv is scored (whole videos); val "
         "carved from train by whole videos; each action anticipated from the 2.5 s of video ending tau_a = 1 s "
         "before it (dataset.horizon, dataset.observe); anticipation selects on and reports many-shot class-mean "
         "recall@5 (actions whose verb or noun is many-shot), with top-1/top-5"),
    ]
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
