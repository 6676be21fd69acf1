"""Checkpoint and resume: a run interrupted in any stage and run again goes on from its last
checkpoint, and its numbers are those of an uninterrupted run, bit for bit on CPU."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xbench.config import RunConfig, load_tiers
from xbench.resume import RunCheckpoints
from xbench.run import checkpoints_for, execute, plan
from xbench.train import _Loop

CPU = torch.device("cpu")
#: what a stage's record may differ in after a resume: its clock, where it resumed and whether it
#: was taken from a cache
TIMED = ("seconds", "eval_seconds", "warmup_seconds", "peak_memory_mb", "resumed_at", "source")


def _plan(registry, method, task="recognition", **budget):
    return plan(registry, RunConfig(method=method, task=task, budget="smoke", budget_options=budget), load_tiers())


def _same(a, b) -> bool:
    """Equal, NaN included (a metric with no example to score is NaN)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _untimed(record):
    return [{k: v for k, v in dataclasses.asdict(s).items() if k not in TIMED} for s in record.budget.stages]


_REAL_STEP = _Loop.one_step


class Interrupt(BaseException):
    """A kill, as the loop sees it (not an Exception: nothing may catch it)."""


def _interrupting(monkeypatch, stage, at):
    """Make the loop raise ``Interrupt`` before step ``at`` of ``stage`` (once)."""
    real = _Loop.one_step
    fired = []

    def one_step(self, batch):
        if self.spec.stage == stage and self.step == at and not fired:
            fired.append(at)
            raise Interrupt
        return real(self, batch)

    monkeypatch.setattr(_Loop, "one_step", one_step)
    return fired


#: a short budget: checkpoints every eval_every = 8 steps and at a stage's end
SHORT = {"student_steps": 20, "teacher_steps": 20, "pretrain_steps": 10, "eval_every": 8}


@pytest.mark.parametrize(("method", "task", "stage", "at", "caches"), [
    ("kd", "recognition", "student", 13, "off"),       # between checkpoints: 5 steps are done again
    ("kd", "recognition", "teacher", 9, "off"),        # the teacher stage, its cache off
    # its own heads, the pretrain stage; the minilm teacher's sentence embeddings depend on the
    # sentences embedded with them before (padding), not only on its state: its outputs come from
    # the teacher cache, as by default
    ("ccd", "anticipation", "student", 17, "on"),
    ("xkd", "recognition", "student", 11, "off"),      # EMA teachers updated after every step
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_numbers(registry, data_root, monkeypatch, tmp_path,
                                                                   method, task, stage, at, caches):
    # caches off: every stage of the rerun is restored from its checkpoint or trained
    monkeypatch.setenv("XBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XBENCH_TEACHER_CACHE", caches)
    monkeypatch.setenv("XBENCH_PRETRAIN_CACHE", caches)
    p = _plan(registry, method, task, **SHORT)
    whole = execute(p, 0, device=CPU, data_root=data_root)
    logs: list[str] = []
    ckpts = checkpoints_for(p, 0, CPU, home=tmp_path, log=logs.append)
    fired = _interrupting(monkeypatch, stage, at)
    with pytest.raises(Interrupt):
        execute(p, 0, device=CPU, data_root=data_root, checkpoints=ckpts)
    assert fired == [at]
    monkeypatch.setattr(_Loop, "one_step", _REAL_STEP)
    ckpts = checkpoints_for(p, 0, CPU, home=tmp_path, log=logs.append)
    resumed = execute(p, 0, device=CPU, data_root=data_root, checkpoints=ckpts, log=logs.append)
    assert _same(resumed.metrics, whole.metrics)
    assert _same(dataclasses.asdict(resumed.selection), dataclasses.asdict(whole.selection))
    assert _same(_untimed(resumed), _untimed(whole))
    # where it went on from: the last checkpoint of the interrupted stage, and every stage
    # finished before it restored at its end
    where = {s.stage: s.resumed_at for s in resumed.budget.stages if s.resumed_at is not None}
    order = [s.stage for s in whole.budget.stages if s.source == "computed"]
    before = order[:order.index(stage)] if caches == "off" else []  # else from the cache
    last = at // 8 * 8
    assert where == {**{s: whole.budget.stage(s).steps for s in before if whole.budget.stage(s).steps}, stage: last}
    assert f"{stage}: resumed at step {last} of 20 from its checkpoint" in logs


def test_checkpoints_are_keyed_by_the_run_and_removed_or_discarded_on_request(registry, data_root, tmp_path):
    p = _plan(registry, "kd")
    a, b = (checkpoints_for(p, seed, CPU, home=tmp_path) for seed in (0, 1))
    assert a.bind("data") != b.bind("data")  # another seed
    assert a.bind("data") != a.bind("other data")  # changed data files
    other = _plan(registry, "kd", student_steps=31)
    assert checkpoints_for(other, 0, CPU, home=tmp_path).bind("data") != a.bind("data")
    folder = a.bind("data")
    a.save("student", {"step": 1})
    assert [f.name for f in folder.iterdir()] == ["student.pt"]
    again = checkpoints_for(p, 0, CPU, home=tmp_path, restart=True)
    lines = []
    again._log = lines.append
    assert again.bind("data") == folder and not folder.exists()
    assert lines == [f"--restart: removed the checkpoints of an interrupted run ({folder})"]


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "other-layout"])
def test_a_checkpoint_that_does_not_read_is_named_and_removed(tmp_path, damage):
    lines: list[str] = []
    ckpts = RunCheckpoints(tmp_path, {"run": 1}, log=lines.append)
    ckpts.bind("data")
    ckpts.save("student", {"step": 3, "state": torch.arange(1000.0)})
    path = ckpts.path("student")
    assert ckpts.load("student")["step"] == 3
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
    else:  # a torch file, not a checkpoint of this stage
        torch.save({"step": 3}, path)
    assert ckpts.load("student") is None
    assert not path.exists()
    assert len(lines) == 1 and lines[0].startswith(f"checkpoint {path} does not read (")
    assert lines[0].endswith("; student starts over")


def test_a_checkpoint_that_does_not_fit_the_stage_is_named_and_the_stage_starts_over(registry, data_root, tmp_path):
    p = _plan(registry, "student", **SHORT)
    whole = execute(p, 0, device=CPU, data_root=data_root)
    logs: list[str] = []
    ckpts = checkpoints_for(p, 0, CPU, home=tmp_path, log=logs.append)
    path = ckpts.bind(p.dataset.factory(p.dataset_options, data_root).manifest_hash()) / "student.pt"
    ckpts.save("student", {"max_steps": 7, "modules": {}})  # of another budget
    resumed = execute(p, 0, device=CPU, data_root=data_root, checkpoints=ckpts)
    assert resumed.metrics == whole.metrics and _untimed(resumed) == _untimed(whole)
    assert logs == [f"checkpoint {path} does not fit (another budget or other modules); student starts over"]


def test_a_killed_cli_run_resumes_and_its_checkpoints_are_removed(tmp_path, data_root):
    """kill -9 of ``xbench run`` once a checkpoint of its student stage exists; the same command
    again resumes and gives the uninterrupted run's numbers; its checkpoints are then removed."""
    env = dict(os.environ, XBENCH_HOME=str(tmp_path / "home"), XBENCH_DATA=str(data_root),
               XBENCH_CHECKPOINT_EVERY="5")
    cmd = [sys.executable, "-m", "xbench.cli", "run", "--method", "kd", "--task", "recognition", "--tier", "smoke",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "home" / "checkpoints"
    # a kill at whatever step it has reached: the numbers must not depend on where
    while proc.poll() is None and not list(ckpt_dir.glob("*/student.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = subprocess.run([*cmd, "--keep-checkpoints"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    resumed = _stored(tmp_path / "home")
    assert len(resumed) == 1
    assert list(ckpt_dir.glob("*/student.pt"))  # --keep-checkpoints kept them
    env["XBENCH_HOME"] = str(tmp_path / "whole")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    whole = _stored(tmp_path / "whole")
    assert resumed[0]["metrics"] == whole[0]["metrics"] and resumed[0]["selection"] == whole[0]["selection"]
    assert not list((tmp_path / "whole" / "checkpoints").glob("*/*"))  # removed once stored


def _stored(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(home.glob("runs/*/result.json"))]
