"""A damaged stage-cache entry is a miss named in one line and computed again, never used and
never a traceback: a 0-byte or garbled teacher state, garbled outputs, and a well-formed outputs
file that is not the one written (zeros where the teacher's outputs were). The run then gives the
clean run's numbers, bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from xbench.cli import main
from xbench.store import ResultStore

#: the smoke tier cut to a few steps a stage: what is tested is the cache, not the training
RUN = ["run", "--method", "kd", "--task", "recognition", "--tier", "smoke", "--set", "budget.teacher_steps=4",
       "--set", "budget.student_steps=4", "--set", "budget.eval_every=2"]


def _zero_byte(entry: Path) -> Path:
    (entry / "teacher.pt").write_bytes(b"")
    return entry


def _garbled(entry: Path) -> Path:
    path = entry / "teacher.pt"
    path.write_bytes(os.urandom(path.stat().st_size))
    return entry


def _garbled_outputs(entry: Path) -> Path:
    (path,) = entry.glob("outputs-train-*.pt")
    path.write_bytes(b"not a torch file")
    return path


def _other_outputs(entry: Path) -> Path:
    (path,) = entry.glob("outputs-train-*.pt")
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(path, weights_only=True).items()}, path)
    return path


@pytest.mark.parametrize("damage", [_zero_byte, _garbled, _garbled_outputs, _other_outputs],
                         ids=["0-byte state", "garbled state", "garbled outputs", "other outputs"])
def test_a_damaged_entry_is_named_once_and_computed_again_to_the_same_numbers(capsys, damage):
    assert main([*RUN, "--quiet"]) == 0
    (entry,) = (Path(os.environ["XBENCH_HOME"]) / "cache" / "teachers").iterdir()
    capsys.readouterr()
    named = damage(entry)
    assert main(RUN) == 0
    lines = [line.strip() for line in capsys.readouterr().err.splitlines() if "corrupt" in line]
    redo = "retraining" if named == entry else "recomputing"
    what = "entry" if named == entry else "outputs"
    assert lines == [(f"teacher cache: corrupt {what} {named} (checksum mismatch: its content changed after it was "
                     f"written); {redo}")]
    first, again = ResultStore().records()
    assert repr(again.metrics) == repr(first.metrics)
    sources = [(s.stage, s.source) for s in again.budget.stages]
    assert sources[:2] == [("teacher", "computed" if named == entry else "cache"), ("teacher-inference", "computed")]
