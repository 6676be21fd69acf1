"""A record in a store's runs/ without its database row (what a crash between the two left
before the store wrote both in one transaction, or a folder copied in by hand) is not a run:
``leaderboard --records`` leaves it out and says so."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from xbench.cli import main

SMOKE = ["run", "--method", "kd", "--task", "recognition", "--tier", "smoke", "--quiet",
         "--set", "budget.teacher_steps=4", "--set", "budget.student_steps=4", "--set", "budget.eval_every=2"]


def test_an_orphan_record_is_left_out_of_the_leaderboard_and_named(capsys):
    runs = Path(os.environ["XBENCH_HOME"]) / "runs"
    assert main(SMOKE) == 0
    board = ["leaderboard", "--records", str(runs), "--task", "recognition", "--budget", "smoke"]
    capsys.readouterr()
    assert main(board) == 0
    clean = capsys.readouterr()
    (run,) = runs.iterdir()
    shutil.copytree(run, runs / "orphan-1")
    assert main(board) == 0
    out = capsys.readouterr()
    assert out.out == clean.out  # the orphan counted no seed
    assert out.err == (f"xbench: warning: 1 record(s) in {runs} are not in its store's database (e.g. orphan-1): "
                       "left out; 'xbench runs --rebuild' imports them once they verify\n" + clean.err)
