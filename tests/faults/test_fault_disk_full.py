"""A full disk, injected at the write (``OSError(ENOSPC)``, or torch.save's own "file write
failed") or met for real (a file-size limit: the write stops short, as on a disk that fills
within it): one line naming the file, exit 2, nothing stored, nothing already stored lost, no
temporary file left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


#: argv[2:] run with every file it writes capped at argv[1] bytes: a write past the cap fails
#: (EFBIG), and a torch.save stops short within its file, as on a disk that fills under it
CAPPED = ("import resource, sys\nn = int(sys.argv[1])\nresource.setrlimit(resource.RLIMIT_FSIZE, (n, n))\n"
          "from xbench.cli import main\nsys.exit(main(sys.argv[2:]))\n")

#: torch.save of 1 MB through atomic_write, under the cap
SAVE = ("import resource, sys, torch\nfrom pathlib import Path\nfrom xbench.atomic import atomic_write\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "try:\n    atomic_write(Path(sys.argv[1]), lambda tmp: torch.save(torch.zeros(250_000), tmp))\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n")


def test_a_torch_file_cut_short_is_a_write_error_naming_it(tmp_path):
    out = subprocess.run([sys.executable, "-P", "-c", SAVE, str(tmp_path / "big.pt")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    # torch names no errno: its "unexpected pos ..." (the file cut short) is a write that failed
    assert out == (f"WriteError cannot write {tmp_path / 'big.pt'}: the write failed (is the disk full?); nothing "
                   "was replaced (free some space and run again)\n"), out
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("cap", [8 * 1024, 32 * 1024])
def test_a_disk_that_fills_under_a_run_is_one_line_naming_the_file(capsys, cap):
    """Where the cap bites first depends on sizes (8 kB: the database, at the lease; 32 kB: a
    stage checkpoint): each is one line naming its file, and what was stored before is kept."""
    home = Path(os.environ["XBENCH_HOME"])
    assert main(SMOKE) == 0  # the data generated and one record stored, under no limit
    (kept,) = ResultStore().records()
    out = subprocess.run([sys.executable, "-P", "-c", CAPPED, str(cap), *SMOKE, "--seed", "1"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("xbench: error: cannot write ") and f"{home}/" in out.stderr, out.stderr
    assert [r.id for r in ResultStore().records()] == [kept.id] and _temporaries(home) == []
