"""A full disk, injected at the write (``OSError(ENOSPC)``, or torch.save's own "file write
failed"): one line naming the file, exit 2, nothing stored, nothing already stored lost, no
temporary file left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from xbench.cli import main
from xbench.store import ResultStore

#: the smoke tier cut to a few steps a stage: what is tested is the writing, not the training
SMOKE = ["run", "--method", "kd", "--task", "recognition", "--tier", "smoke", "--quiet",
         "--set", "budget.teacher_steps=4", "--set", "budget.student_steps=4", "--set", "budget.eval_every=2"]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("xbench: error:")]
    assert "Traceback" not in err and len(lines) == 1 and err.endswith(lines[0] + "\n"), err
    return lines[0]


def _temporaries(home: Path) -> list[Path]:
    return [p for p in home.rglob("*.tmp")]


def test_a_full_disk_at_the_record_names_result_json_and_keeps_what_was_stored(monkeypatch, capsys):
    home = Path(os.environ["XBENCH_HOME"])
    assert main(SMOKE) == 0
    (kept,) = ResultStore().records()
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".result.json."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main([*SMOKE, "--seed", "1"]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"xbench: error: cannot write {home / 'runs'}/")
    assert line.endswith("/result.json: No space left on device; nothing was replaced (free some space and run "
                         "again)")
    monkeypatch.setattr(Path, "write_text", real)
    store = ResultStore()
    assert [r.id for r in store.records()] == [kept.id]  # the row rolled back with the file
    assert sorted(p.parent.name for p in (home / "runs").glob("*/result.json")) == [kept.id]
    assert _temporaries(home) == []
    assert "not in the database" not in capsys.readouterr().err  # nothing for the reconcile to find


def test_a_full_disk_at_the_teacher_cache_names_the_file_not_a_plugin(monkeypatch, capsys):
    home = Path(os.environ["XBENCH_HOME"])
    real = torch.save

    def full(obj, f, *args, **kwargs):
        if Path(f).name.startswith(".teacher.pt.") and "cache" in Path(f).parts:  # not the stage checkpoint
            # what torch says when the disk fills under it
            raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    assert main(SMOKE) == 2
    line = _one_error(capsys)
    assert line.startswith(f"xbench: error: cannot write {home / 'cache'}/")
    assert line.endswith("/teacher.pt: the write failed (is the disk full?); nothing was replaced (free some space "
                         "and run again)")
    assert "plugin" not in line
    monkeypatch.setattr(torch, "save", real)
    assert ResultStore().records() == [] and _temporaries(home) == []
    assert not list((home / "cache").rglob("teacher.pt"))  # no entry half made
    assert main(SMOKE) == 0  # room again: the run goes through
    assert len(ResultStore().records()) == 1
