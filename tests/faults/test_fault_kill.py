"""kill -9 of a run in each of its stages and in the middle of storing its record: nothing stored
half, no orphan file, nothing stored before lost; the rerun resumes and stores the run once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xbench.cli import main
from xbench.store import ResultStore

#: the smoke tier cut to a few steps a stage: what is tested is the writing, not the training
SMOKE = ["run", "--method", "kd", "--task", "recognition", "--tier", "smoke", "--quiet",
         "--set", "budget.teacher_steps=4", "--set", "budget.student_steps=4", "--set", "budget.eval_every=2"]

#: the run, in a process that SIGKILLs itself as it renames ``target`` into place: at the first
#: checkpoint of a stage (``checkpoints/<key>/<stage>.pt``), or at ``result.json``, inside the
#: store's transaction (its row inserted, not committed)
KILLER = textwrap.dedent("""
    import os, signal, sys
    target, argv = sys.argv[1], sys.argv[2:]
    real = os.replace
    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst).endswith(target):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)
    os.replace = replace
    from xbench.cli import main
    sys.exit(main(argv))
""")


@pytest.mark.parametrize("target", ["/teacher.pt", "/student.pt", "/result.json"])
def test_kill_9_at_each_stage_and_at_the_store_write_loses_nothing(target, capsys):
    home = Path(os.environ["XBENCH_HOME"])
    assert main([*SMOKE, "--seed", "1"]) == 0  # stored before: must survive
    (before,) = ResultStore().records()
    killed = subprocess.run([sys.executable, "-P", "-c", KILLER, target, *SMOKE], capture_output=True, text=True,
                            timeout=600, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    capsys.readouterr()
    store = ResultStore()
    assert [r.id for r in store.records()] == [before.id]  # nothing half stored, nothing lost
    assert sorted(p.parent.name for p in (home / "runs").glob("*/result.json")) == [before.id]  # no orphan
    assert "warning" not in capsys.readouterr().err  # the reconcile finds nothing to say
    assert main(SMOKE) == 0  # the rerun resumes from the stage's checkpoint
    assert sorted(r.seed for r in ResultStore().records()) == [0, 1]
    assert sorted(p.parent.name for p in (home / "runs").glob("*/result.json")) == sorted(
        r.id for r in ResultStore().records())
