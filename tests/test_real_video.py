"""Real encoded video: reading (decord, PyAV where decord cannot), sampling and resizing, audio from
the container, the ``folder`` and ``list`` datasets end to end, the group-keeping split, the teacher
protocol, and each bad input as one line with exit status 2."""

from __future__ import annotations

import json
import math
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.budget import BudgetMeter
from xbench.cli import main
from xbench.config import RunConfig, load_tiers
from xbench.context import RunContext, Stage
from xbench.data import encoded, io, manifest, video
from xbench.data.clips import Clips, FrameFile
from xbench.data.real import Entry, ListOptions, carve, make_splits
from xbench.errors import DataError
from xbench.store import ResultStore
from xbench.train import predict

#: the decode settings of every run here: small frames, short clips
SMALL = ["--set", "dataset.short_side=32", "--set", "dataset.crop=32", "--set", "dataset.frames=4"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """3 classes x 4 clips: H.264+AAC mp4, MPEG-4 avi, VP9+Opus webm; 64x48 and 48x36; 25 and
    29.97 fps; audio in the container."""
    root = tmp_path_factory.mktemp("videos") / "tree"
    encoded.folder_tree(root, classes=3, per_class=4, frames=12, formats=("mp4", "avi", "webm"))
    return root


def _listing(tree: Path, tmp_path: Path, actions: bool = False) -> Path:
    lines = ["path,label,split,group,actions"]
    for f in sorted(tree.rglob("*.*")):
        k = int(f.stem.rsplit("_", 1)[1])
        split = ("train", "train", "val", "test")[k % 4]
        act = f"{f.parent.name} 0.0 0.2;{f.parent.name} 0.25 0.4" if actions else ""
        lines.append(f"{f.relative_to(tree).as_posix()},{f.parent.name},{split},g{k},{act}")
    path = tmp_path / "clips.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- reading


def test_decord_and_pyav_give_the_same_frames(tmp_path):
    path = tmp_path / "a.mp4"
    frames = encoded.clip(1, 3, 10, 48, 64, seed=0)
    encoded.write_video(path, frames, 25.0, "mp4")
    p = video.probe(path)
    assert (p.frames, p.fps, p.width, p.height, p.reader) == (10, 25.0, 64, 48, "decord")
    idx = np.array([0, 3, 3, 9])
    by_decord = video.read_frames(path, p, idx, 36)
    by_pyav = video.read_frames(path, video.Probe(**{**p.__dict__, "reader": "pyav"}), idx, 36)
    assert by_decord.shape == (4, 36, 48, 3)
    assert np.array_equal(by_decord, by_pyav)


def test_av1_falls_back_to_pyav_and_a_truncated_file_is_corrupt(tmp_path):
    path = tmp_path / "b.mp4"
    encoded.write_video(path, encoded.clip(0, 3, 8, 32, 48, seed=1), 25.0, "av1")
    p = video.probe(path)
    assert (p.frames, p.reader, p.width, p.height) == (8, "pyav", 48, 32)
    assert video.read_frames(path, p, np.arange(8), 32).shape == (8, 32, 48, 3)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=f"corrupt video file {cut}"):
        video.probe(cut)


def test_sampling_strategies():
    p = video.Probe(frames=100, fps=25.0, width=64, height=48, has_audio=False, reader="decord")
    assert video.frame_indices(p, "segments", 4, 1, 1.0).tolist() == [12, 37, 62, 87]
    assert video.frame_indices(p, "segments", 4, 1, 1.0, start=1.0, end=2.0).tolist() == [28, 34, 40, 46]
    assert video.frame_indices(p, "dense", 4, 30, 1.0).tolist() == [0, 30, 60, 90]
    assert video.frame_indices(p, "fps", 4, 1, 2.0).tolist() == [0, 12, 25, 38, 50, 62, 75, 88]
    assert video.resized_shape(720, 1280, 128) == (128, 228)
    assert video.resized_shape(272, 640, 128) == (128, 301)
    assert video.resized_shape(640, 360, 128) == (228, 128)


def test_audio_from_the_container_and_from_a_sidecar(tmp_path):
    path = tmp_path / "c.mp4"
    sound = encoded.tone(2, 1.0, 16000, seed=0)
    encoded.write_video(path, encoded.clip(2, 3, 25, 32, 32, seed=0), 25.0, "mp4", sound, 16000)
    audio = video.read_audio(path, 8000)
    assert audio.dtype == np.float32 and abs(len(audio) - 8000) <= 1024  # AAC's priming frame
    spectrum = np.abs(np.fft.rfft(audio[1024:7000]))
    assert abs(np.argmax(spectrum) * 8000 / len(audio[1024:7000]) - 600) < 10  # class 2's 600 Hz tone
    with wave.open(str(tmp_path / "c.wav"), "wb") as w:  # a sidecar is read instead
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.full(4000, 1000, dtype="<i2").tobytes())
    assert np.allclose(video.read_audio(path, 8000), 1000 / 32768, atol=1e-4)
    silent = tmp_path / "d.mp4"
    encoded.write_video(silent, encoded.clip(0, 3, 5, 32, 32, seed=0), 25.0, "mp4")
    with pytest.raises(DataError, match="no audio"):
        video.read_audio(silent, 8000)


def test_clips_crop_centre_at_evaluation_and_seeded_random_at_training(tmp_path):
    frames = np.arange(6 * 8 * 10 * 3, dtype=np.uint8).reshape(6, 8, 10, 3)
    path = tmp_path / "f.u8"
    path.write_bytes(frames.tobytes())
    f = FrameFile(path, frames.shape)
    ev = Clips([f], [(0, 0, 6)], 3, 4, "window", train=False, seed=0)
    got = ev[torch.tensor([0])][0].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, frames[1:4, 2:6, 3:7])  # centred window and crop
    a, b = (Clips([f], [(0, 0, 6)], 3, 4, "window", train=True, seed=s) for s in (0, 0))
    first = [a[torch.tensor([0])] for _ in range(4)]
    assert all(torch.equal(x, b[torch.tensor([0])]) for x in first)  # same seed, same crops
    assert len({x.numpy().tobytes() for x in first}) > 1  # a new crop each time it is read
    with torch.inference_mode():  # predictions on train (galleries, teacher outputs) read the centre
        assert torch.equal(a[torch.tensor([0])], ev[torch.tensor([0])])


# ----------------------------------------------------------------------------- splits


def test_carving_never_puts_a_group_on_both_sides():
    rng = np.random.default_rng(0)
    entries = [Entry(f"v{i}.mp4", i % 5, None, group=f"actor{rng.integers(0, 17)}") for i in range(200)]
    for seed in range(20):
        carved, rest = carve(entries, 0.3, str(seed))
        assert not {e.group for e in carved} & {e.group for e in rest}
        assert len(carved) + len(rest) == 200 and 40 <= len(carved) <= 100
    splits = make_splits(entries, ListOptions(root=".", teacher="holdout:0.25"))
    groups = {s: {e.group for e in v} for s, v in splits.items()}
    for a, mine in groups.items():
        for b, theirs in groups.items():
            assert a == b or not mine & theirs, (a, b)
    assert make_splits(entries, ListOptions(root="."))["teacher"] == make_splits(entries, ListOptions(root="."))["train"]


def test_crossfit_folds_keep_groups_and_list_train_fold_by_fold():
    rng = np.random.default_rng(1)
    entries = [Entry(f"v{i:03d}.mp4", i % 5, None, group=f"actor{rng.integers(0, 23)}") for i in range(200)]
    splits = make_splits(entries, ListOptions(root=".", teacher="crossfit:4"))
    folds = [splits[f"fold:{k}"] for k in range(4)]
    assert splits["train"] == [e for f in folds for e in f] and splits["teacher"] == splits["train"]
    assert sorted(len(f) for f in folds) == [28, 32, 34, 35]  # 129 clips of 23 groups: balanced, whole groups
    for k in range(4):
        assert splits[f"teacher:{k}"] == [e for j, f in enumerate(folds) if j != k for e in f]
        assert not {e.group for e in folds[k]} & {e.group for e in splits[f"teacher:{k}"]}
    assert make_splits(entries, ListOptions(root=".", teacher="crossfit:4")) == splits  # seeded
    for bad in ("crossfit:1", "crossfit:x", "holdout:1.5", "kfold:3"):
        with pytest.raises(ValueError, match="expected 'train', 'holdout:F' with F in \\(0, 1\\) or 'crossfit:K'"):
            ListOptions(root=".", teacher=bad)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("dataset", ["folder", "list"])
@pytest.mark.parametrize("task", ["recognition", "retrieval", "audio-tagging"])
def test_student_and_kd_run_on_real_video(tree, tmp_path, dataset, task):
    where = ["--set", f"dataset.root={tree}"]
    if dataset == "list":
        where += ["--set", f"dataset.annotations={_listing(tree, tmp_path)}"]
    for method in ("student", "kd"):
        assert main(["run", "--method", method, "--task", task, "--dataset", dataset, "--budget", "smoke",
                     "--quiet", *where, *SMALL]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.dataset, r.status) for r in records] == [(m, dataset, "complete") for m in ("kd", "student")]
    assert records[0].config["dataset_options"]["root"] == str(tree)
    assert all(0.0 <= r.metrics[r.main_metric] <= 100.0 for r in records)


def test_crossfit_scores_each_train_clip_by_the_teacher_that_never_saw_it(tree, registry, monkeypatch):
    from xbench import engine
    from xbench.engine import student as student_stage
    from xbench.engine import teacher as teacher_stage

    options = {"root": str(tree), "teacher": "crossfit:3", "short_side": 32, "crop": 32, "frames": 4}
    p = engine.plan(registry, RunConfig(method="kd", task="recognition", dataset="folder", budget="smoke",
                                        dataset_options=options), load_tiers())
    trained_on = []
    fit = teacher_stage.fit
    monkeypatch.setattr(teacher_stage, "fit", lambda spec, ctx: (trained_on.append(spec.data), fit(spec, ctx))[1])
    ctx = RunContext(p, 0, torch.device("cpu"), BudgetMeter(math.inf))
    state = engine.prepare(ctx)
    for stage in (Stage.TEACHER_PRETRAIN, Stage.TEACHER, Stage.TEACHER_INFERENCE):
        engine.STAGES[stage](ctx, state)
    ds, train = state.dataset, state.train
    # recognition: one example per video, so train's k-th block is the dataset's fold k
    fold_of = {v.id: k for k in range(3) for v in ds.videos(f"fold:{k}")}
    assert state.example_fold.tolist() == [fold_of[v.id] for v in ds.videos("train")]
    assert [t.fold for t in state.teachers] == [0, 1, 2] and len(trained_on) == 3
    teacher_split = state.load(ctx, "teacher", ("audio",))
    for slot, seen in zip(state.teachers, trained_on):
        mine = state.example_fold == slot.fold
        assert torch.equal(seen.tensors["audio"], teacher_split.tensors["audio"][~mine])  # never its own fold
        own = predict(slot.model, train.subset(torch.nonzero(mine)[:, 0]), ("audio",), ctx.device)
        assert torch.equal(state.teacher_outputs["logits"][mine], own["logits"])
    # without the teacher cache each batch is routed the same way
    batch = train.take(torch.arange(len(train)), ("audio", "index"))
    routed = student_stage._routed(state, state.example_fold, batch)
    assert torch.allclose(routed["logits"], state.teacher_outputs["logits"], atol=1e-6)
    assert state.teacher_record["trained_on"].startswith("3 teachers, each on the student's train split without")
    assert [f["fold"] for f in state.teacher_record["folds"]] == [1, 2, 3]


def test_crossfit_runs_kd_and_the_teacher_reference_end_to_end(tree, monkeypatch):
    where = ["--set", f"dataset.root={tree}", "--set", "dataset.teacher=crossfit:3"]
    assert main(_run("folder", method="kd") + where) == 0
    monkeypatch.setenv("XBENCH_TEACHER_CACHE", "0")
    assert main(_run("folder", method="kd") + where) == 0
    assert main(_run("folder", method="teacher") + where) == 0
    kd, kd_online, ref = sorted(ResultStore().records(), key=lambda r: (r.method, r.started))
    assert [s.stage for s in kd.budget.stages] == ["teacher"] * 3 + ["teacher-inference", "student"]
    assert [s.stage for s in kd_online.budget.stages] == ["teacher"] * 3 + ["student"]
    assert kd_online.metrics == kd.metrics and kd.config["dataset_options"]["teacher"] == "crossfit:3"
    assert kd_online.method_stage.teacher_forwards == kd_online.method_stage.samples
    assert [s.stage for s in ref.budget.stages] == ["teacher"] and ref.trained_steps == 30
    assert ref.teacher["trained_on"] == ("the student's train split without fold 1 of 3 "
                                         "(teacher protocol 'crossfit:3')")


def test_list_with_actions_runs_detection(tree, tmp_path):
    ann = _listing(tree, tmp_path, actions=True)
    assert main(["run", "--method", "student", "--task", "detection", "--dataset", "list", "--budget", "smoke",
                 "--quiet", "--set", f"dataset.root={tree}", "--set", f"dataset.annotations={ann}",
                 "--set", "dataset.sampling=fps", "--set", "dataset.fps=10", *SMALL[:4]]) == 0
    (record,) = ResultStore().records()
    assert 0.0 <= record.metrics["frame_map"] <= 100.0


# ----------------------------------------------------------------------------- bad input


def _fails(capsys, argv: list[str], stored: int = 0) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("xbench: error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.endswith(errors[0] + "\n")
    assert len(ResultStore().records()) == stored  # nothing stored, nothing lost
    return errors[0].removeprefix("xbench: error: ")


def _run(dataset: str, *sets: str, task: str = "recognition", method: str = "student") -> list[str]:
    out = ["run", "--method", method, "--task", task, "--dataset", dataset, "--budget", "smoke", "--quiet", *SMALL]
    for s in sets:
        out += ["--set", s]
    return out


def test_bad_inputs_are_one_line(capsys, tree, tmp_path):
    missing = tmp_path / "nowhere"
    assert _fails(capsys, _run("folder", f"dataset.root={missing}")) == f"dataset root {missing} is not a folder"
    ann = tmp_path / "l.csv"
    ann.write_text("path,label,split\nclass0/nope.mp4,class0,train\n")
    assert _fails(capsys, _run("list", f"dataset.root={tree}", f"dataset.annotations={ann}")) == \
        f"{ann}:2: missing video file {tree}/class0/nope.mp4"
    classes = tmp_path / "classes.txt"
    classes.write_text("class0\nclass1\n")
    first = next(iter(sorted(tree.rglob("*.mp4")))).relative_to(tree).as_posix()
    ann.write_text(f"path,label,split\n{first},7,train\n")
    assert _fails(capsys, _run("list", f"dataset.root={tree}", f"dataset.annotations={ann}",
                               f"dataset.classes={classes}")) == f"{ann}:2: unknown class '7' (classes: 2, e.g. class0, class1)"
    ann.write_bytes(b"path,label\n" + first.encode() + b",caf\xe9\n")
    assert _fails(capsys, _run("list", f"dataset.root={tree}", f"dataset.annotations={ann}")) == \
        f"annotation file {ann} is not UTF-8 (line 2, byte {len(first) + 15})"
    ann.write_text(f"path,label,split\n{first},class0,train\n{first},class0,train\n")
    assert _fails(capsys, _run("list", f"dataset.root={tree}", f"dataset.annotations={ann}")) == \
        f"{ann}:3: clip {first} is listed twice in split 'train' (also {ann}:2)"
    assert _fails(capsys, _run("folder", f"dataset.root={tree}", "dataset.sampling=dense", "dataset.stride=4")) \
        .endswith("is shorter than a clip: 3 frames at stride 4, a clip is 4")


def test_video_without_audio_errors_or_is_skipped(capsys, tmp_path):
    root = tmp_path / "mute"
    encoded.folder_tree(root, classes=2, per_class=4, frames=8, formats=("mp4",), splits=True)
    silent = root / "train" / "class0" / "c0_g00_000.mp4"  # a train clip: the teacher reads its audio
    encoded.write_video(silent, encoded.clip(0, 2, 8, 48, 64, seed=0), 25.0, "mp4")  # no audio track
    kd = _run("folder", f"dataset.root={root}", method="kd")
    assert _fails(capsys, kd).startswith(f"video {silent} has no audio track (and no .wav beside it)")
    assert main([a for a in kd if a != "--quiet"] + ["--set", "task.missing_audio=skip"]) == 0
    assert "train: skipped 1 of 4 videos without audio (task.missing_audio=skip)" in capsys.readouterr().err
    (record,) = ResultStore().records()
    assert record.config["task_options"]["missing_audio"] == "skip"


def test_a_changed_video_is_refused_until_prepared_again(capsys, tmp_path):
    root = tmp_path / "small"
    encoded.folder_tree(root, classes=2, per_class=4, frames=8, formats=("mp4",), audio=False)
    run = _run("folder", f"dataset.root={root}", "dataset.val_fraction=0.25", "dataset.test_fraction=0.25")
    assert main(run) == 0
    victim = root / "class1" / "c1_g01_005.mp4"
    victim.write_bytes(victim.read_bytes()[:-10])
    message = _fails(capsys, run, stored=1)
    assert message.startswith(f"dataset 'folder' at {root} does not match its manifest: class1/c1_g01_005.mp4 changed")
    assert message.endswith(f"prepare it again: xbench data prepare folder --root {root}")


def _keeping_size_and_mtime(path: Path, content: bytes) -> None:
    """Write ``content`` (of the file's length) and put the mtime back, as ``touch -r`` would."""
    st = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_video_rewritten_with_its_size_and_mtime_kept_is_hashed_and_verify_data_hashes_all(capsys, tmp_path):
    root = tmp_path / "kept"
    # frames=7: content no other test writes (the decode cache is shared and keyed by content)
    encoded.folder_tree(root, classes=2, per_class=4, frames=7, formats=("mp4",), audio=False)
    run = _run("folder", f"dataset.root={root}", "dataset.val_fraction=0.25", "dataset.test_fraction=0.25")
    assert main(run) == 0
    where = manifest.location(io.data_home(), "folder", root) / "manifest.json"
    victim, rel = root / "class1" / "c1_g01_005.mp4", "class1/c1_g01_005.mp4"
    good = victim.read_bytes()
    _keeping_size_and_mtime(victim, good)  # the same bytes: hashed once, its entry refreshed
    assert main(run) == 0
    entry = json.loads(where.read_text())["files"][rel]
    assert entry["ctime_ns"] == victim.stat().st_ctime_ns and entry["sha256"] == io.sha256_file(victim)
    _keeping_size_and_mtime(victim, bytes(255 - b for b in good))
    message = _fails(capsys, run, stored=2)
    assert message == (f"dataset 'folder' at {root} does not match its manifest: {rel} changed content (sha256 "
                       f"differs; size and mtime kept); prepare it again: xbench data prepare folder --root {root}")
    # a manifest that vouches for the new stat (restored from a backup with the data): only
    # --verify-data, which hashes every file, sees it
    data = json.loads(where.read_text())
    data["files"][rel]["ctime_ns"] = victim.stat().st_ctime_ns
    where.write_text(json.dumps(data))
    message = _fails(capsys, [*run, "--verify-data"], stored=2)
    assert message.startswith(f"dataset 'folder' at {root} does not match its manifest: {rel} changed content")
    assert main(["data", "check", "folder", "--root", str(root), *SMALL]) == 0  # the fast pass: fooled
    assert main(["data", "check", "folder", "--root", str(root), "--verify", *SMALL]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"changed: {rel} changed content (sha256 differs; size and mtime kept)",
        f"folder at {root}: 1 changed, 0 problem files"]
    assert main(["data", "check", "folder"]) == 2  # a dataset of your files: where they are is needed
    assert capsys.readouterr().err == "xbench: error: dataset 'folder' is read from your files: say where with --root\n"


def test_data_prepare_lists_problems_and_check_reports_changes(capsys, tmp_path):
    root = tmp_path / "prep"
    # frames=9: content no other test writes (the decode cache is shared and keyed by content)
    encoded.folder_tree(root, classes=2, per_class=4, frames=9, formats=("mp4",), audio=False)
    broken = root / "class1" / "broken.mp4"
    broken.write_bytes(b"\0" * 300)
    sets = ["--set", "short_side=32", "--set", "crop=32", "--set", "frames=4"]
    assert main(["data", "prepare", "folder", "--root", str(root), "--jobs", "1", "--quiet", *sets]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"problem: class1/broken.mp4: corrupt video file {broken}: ")
    assert out[1].startswith(f"folder at {root}: 9 files (9 videos), 1 problem files, described in ")
    assert "8 clips in the decode cache (8 decoded now, 0 already there)" in out[1]
    broken.unlink()
    assert main(["data", "check", "folder", "--root", str(root), *sets]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "changed: class1/broken.mp4 was removed"
    assert main(["data", "prepare", "folder", "--root", str(root), "--quiet", *sets]) == 0  # forgets it
    capsys.readouterr()
    assert main(["data", "check", "folder", "--root", str(root), *sets]) == 0
    assert capsys.readouterr().out == f"folder at {root}: 0 changed, 0 problem files (by stat; --verify " \
                                      "hashes every file)\n"
    touched, edited = root / "class0" / "c0_g00_000.mp4", root / "class0" / "c0_g01_001.mp4"
    touched.write_bytes(touched.read_bytes())  # same content, new mtime
    edited.write_bytes(edited.read_bytes()[:-5])
    assert main(["data", "check", "folder", "--root", str(root), "--verify", *sets]) == 1
    size = edited.stat().st_size
    assert capsys.readouterr().out == (f"changed: class0/c0_g01_001.mp4 changed (size {size + 5} -> {size} bytes)\n"
                                       f"folder at {root}: 1 changed, 0 problem files\n")
    assert main(["data", "prepare", "folder", "--root", str(root), "--quiet", *sets]) == 0
    assert "(1 decoded now, 7 already there)" in capsys.readouterr().out  # only the edited clip again
