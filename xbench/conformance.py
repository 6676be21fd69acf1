"""Conformance checks of dataset and task plugins (the kit's part for data; ``xbench.testing`` runs
them for ``xbench check --plugin NAME`` and a plugin's own tests).

A dataset must satisfy :class:`xbench.contracts.Dataset`: the members present, the splits it needs,
frames of one size and dtype, labels within its classes, disjoint splits, and a manifest hash that
notices a changed file (or a dataset that repairs the file). A task must satisfy
:class:`xbench.contracts.Task` and cut examples and score them on its default dataset."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xbench.contracts import Dataset, Task, missing_members, teacher_is_train
from xbench.errors import DataError

Step = tuple[str, Callable[[], Any]]

#: what the checks read: enough videos per split to see sizes differ, few enough to stay quick
VIDEOS_PER_SPLIT = 4


def small_options(options: type, extra: dict[str, Any] | None = None) -> Any:
    """The options a check builds a dataset with: its defaults, ``size: tiny`` where it has a size."""
    names = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
    values = {k: v for k, v in {"size": "tiny", **(extra or {})}.items() if k in names}
    return options(**values)


def dataset_options(spec: Any, data_root: Path) -> Any:
    """The options a check opens dataset ``spec`` with: its sample's (files written under
    ``data_root/samples/NAME``) where it has one, else its small defaults."""
    extra = spec.sample(data_root / "samples" / spec.name) if spec.sample else None
    return small_options(spec.options, extra)


def dataset_steps(reg: Any, name: str, data_root: Path) -> list[Step]:
    """A dataset plugin: builds, satisfies the contract, frames of one size and dtype, labels in
    range, disjoint splits, a manifest hash that is stable and follows its files."""
    import numpy as np

    spec = reg.get("datasets", name)
    what = f"dataset '{name}'"
    st: dict[str, Any] = {}

    def open_it() -> Any:
        return spec.factory(dataset_options(spec, Path(data_root)), Path(data_root))

    def builds():
        st["ds"] = open_it()

    def contract():
        missing = missing_members(st["ds"], Dataset)
        assert not missing, f"{what} lacks {', '.join(missing)} (see xbench.contracts.Dataset)"
        lacking = [s for s in ("train", "val", "test") if s not in st["ds"].splits]
        assert not lacking, f"{what} has no split {', '.join(lacking)} (splits: {', '.join(st['ds'].splits)})"
        if "audio" in spec.modalities:
            assert getattr(st["ds"], "audio_rate", None), f"{what} provides audio but no audio_rate"

    def videos():
        ds = st["ds"]
        st["videos"] = {s: ds.videos(s) for s in ds.splits}
        for split, vids in st["videos"].items():
            assert vids, f"{what}: split '{split}' has no videos"
        for vid in (v for vids in st["videos"].values() for v in vids):
            bad = [seg.label for seg in vid.segments if not 0 <= seg.label < ds.num_classes]
            assert not bad, f"{what}: video '{vid.id}' has label {bad[0]}, outside 0..{ds.num_classes - 1}"
            assert vid.segments, f"{what}: video '{vid.id}' has no annotated step"
            assert all(0 <= s.start < s.end <= vid.num_frames for s in vid.segments), \
                f"{what}: video '{vid.id}' has a step outside its {vid.num_frames} frames"

    def frames():
        sizes: dict[tuple, str] = {}
        for vids in st["videos"].values():
            for vid in vids[:VIDEOS_PER_SPLIT]:
                rgb = st["ds"].read(vid, "rgb")
                assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 4 \
                    and rgb.shape[-1] == 3, (f"{what}: rgb of '{vid.id}' is {getattr(rgb, 'dtype', type(rgb))} "
                                             f"{getattr(rgb, 'shape', '')}, not uint8 (frames, height, width, 3)")
                sizes.setdefault(rgb.shape[1:], vid.id)
        assert len(sizes) == 1, (f"{what}: frames of different sizes: " + ", ".join(
            f"{h}x{w} ('{vid}')" for (h, w, _), vid in sizes.items()) + "; resize them to one size in read()")

    def disjoint():
        seen: dict[str, str] = {}
        splits = dict(st["videos"])
        if teacher_is_train(st["ds"]):
            del splits["teacher"]  # the teacher trains on the student's train split (a protocol)
        for split, vids in splits.items():
            for vid in vids:
                for key in (vid.id, *vid.files.values()):
                    other = seen.setdefault(key, split)
                    assert other == split, f"{what}: '{key}' is in split '{other}' and in split '{split}'"

    def manifest():
        ds = st["ds"]
        h = ds.manifest_hash()
        assert isinstance(h, str) and h, f"{what}: manifest_hash() returned {h!r}"
        assert open_it().manifest_hash() == h, f"{what}: manifest_hash() differs between two opens"
        root = Path(getattr(ds, "root", data_root))
        media = {root / f for vids in st["videos"].values() for v in vids for f in v.files.values()}
        changed = [next(iter(sorted(media)))] + _annotation_files(root, media)[:3]
        for path in changed:
            assert _notices_change(path, open_it, h), (f"{what}: manifest_hash() did not change when "
                                                       f"{path.relative_to(root)} changed")

    steps = [("builds", builds), ("satisfies the Dataset contract", contract),
             ("annotations within its classes", videos)]
    if "rgb" in spec.modalities:
        steps.append(("frames of one size and dtype", frames))
    return steps + [("splits disjoint", disjoint), ("manifest hash follows its files", manifest)]


def _annotation_files(root: Path, media: set[Path]) -> list[Path]:
    """Files under ``root`` that no video lists (annotations, manifests), not hidden ones (memos)."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and path not in media and not any(p.startswith(".") for p in rel.parts):
            out.append(path)
    return out


def _notices_change(path: Path, open_it: Callable[[], Any], before: str) -> bool:
    """Change one byte of ``path``, open the dataset again, put the file back: noticed when the
    manifest hash differs, the dataset repaired the file (a generated dataset does) or refused it
    with an error naming it (a dataset of the user's files does)."""
    data = path.read_bytes()
    stat = path.stat()
    flipped = bytes([data[-1] ^ 1]) if data else b"\0"
    path.write_bytes(data[:-1] + flipped)
    try:
        try:
            after = open_it().manifest_hash()
        except DataError as exc:  # a dataset of the user's files refuses changed files: noticed
            return path.name in str(exc)
        repaired = path.read_bytes() == data
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return after != before or repaired


def task_steps(reg: Any, name: str, data_root: Path) -> list[Step]:
    """A task plugin: builds, satisfies the contract, cuts examples of its default dataset with
    the student's modalities, its targets, ``index`` and ``label_mask``, and scores the task's
    randomly initialised student on them with every metric it names."""
    import torch

    from xbench.specs import ModelContext
    from xbench.train import derive_seed, predict

    spec = reg.get("tasks", name)
    what = f"task '{name}'"
    st: dict[str, Any] = {}

    def builds():
        from xbench.testing import _tiny

        st["ds"], st["task"] = _tiny(reg, spec.default_dataset, str(data_root), name)

    def contract():
        missing = missing_members(st["task"], Task)
        assert not missing, f"{what} lacks {', '.join(missing)} (see xbench.contracts.Task)"
        assert spec.main_metric in st["task"].metrics, f"{what}: main metric '{spec.main_metric}' is not among its metrics"

    def examples():
        ex = st["task"].examples(st["ds"], "val", spec.student_modalities)
        n = len(ex)
        need = [*spec.student_modalities, *spec.targets, "index", "label_mask"]
        lacking = [k for k in need if k not in ex.tensors]
        assert not lacking, f"{what}: examples lack {', '.join(lacking)}"
        assert all(len(ex.tensors[k]) == n for k in need), f"{what}: examples of unequal length"
        assert torch.equal(ex.tensors["index"], torch.arange(n)), f"{what}: index is not 0..{n - 1}"
        st["ex"] = ex

    def evaluates():
        student = reg.get("students", spec.student)
        ex = st["ex"]
        shapes = {m: tuple(ex.tensors[m].shape[1:]) for m in spec.student_modalities}
        torch.manual_seed(derive_seed(0, "conformance"))
        model = student.factory(ModelContext(st["ds"].num_classes, shapes, dict(getattr(st["task"], "extras", {}))))
        taps = getattr(st["task"], "eval_taps", ("logits",))
        outputs = predict(model, ex, spec.student_modalities, torch.device("cpu"), taps)
        kwargs = {}
        if getattr(st["task"], "gallery_split", None):
            kwargs["gallery"] = (outputs, ex)
        metrics = st["task"].evaluate(outputs, ex, True, **kwargs)
        lacking = [m for m in st["task"].metrics if m not in metrics]
        assert not lacking, f"{what}: evaluate() returned no {', '.join(lacking)}"
        value = metrics[spec.main_metric]
        assert isinstance(value, float) and math.isfinite(value), f"{what}: {spec.main_metric} is {value!r}"

    return [("builds", builds), ("satisfies the Task contract", contract), ("cuts examples", examples),
            ("scores its student", evaluates)]
