"""xbench sweep: the grid, skipping stored runs, resuming after an interruption, parallel workers
on one store, and bad suites."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xbench.cli import main
from xbench.errors import ConfigError
from xbench.store import ResultStore
from xbench.sweep import load_suite, plan_sweep

SUITE = """
name: t
tier: smoke
seeds: [0, 1]
tasks: [recognition, anticipation]
methods: [student, kd, ccd]
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_grid_leaves_out_what_does_not_fit(tmp_path, registry, capsys):
    path = write(tmp_path, SUITE)
    sp = plan_sweep(load_suite(path), registry, ResultStore())
    assert [(r.task, r.label, r.seed) for r in sp.runs] == [
        ("recognition", "student", 0), ("recognition", "student", 1), ("recognition", "kd", 0),
        ("recognition", "kd", 1), ("anticipation", "student", 0), ("anticipation", "student", 1),
        ("anticipation", "kd", 0), ("anticipation", "kd", 1), ("anticipation", "ccd", 0),
        ("anticipation", "ccd", 1)]
    assert [(t, m) for t, m, _ in sp.unfit] == [("recognition", "ccd")]
    # runs sharing a trained teacher: same task and seed
    kd0, ccd0 = (next(r for r in sp.runs if (r.task, r.label, r.seed) == ("anticipation", m, 0)) for m in ("kd", "ccd"))
    assert kd0.teacher_group == ccd0.teacher_group and kd0.teacher_group is not None
    assert sp.runs[0].teacher_group is None
    # runs starting from one pretrained encoder: every anticipation method of a seed, teacher or not
    pre = {(r.task, r.label, r.seed): r.pretrain_group for r in sp.runs}
    assert pre[("anticipation", "student", 0)] == pre[("anticipation", "kd", 0)] == pre[("anticipation", "ccd", 0)]
    assert None != pre[("anticipation", "kd", 0)] != pre[("anticipation", "kd", 1)]
    assert {pre[k] for k in pre if k[0] == "recognition"} == {None}

    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "suite 't': tier smoke, 5 cells x 2 seeds = 10 runs; 0 already stored, 10 to run",
        "left out (the method does not fit the task): ccd on recognition"]


def test_tasks_that_train_the_teacher_alike_are_one_teacher_group(tmp_path, registry):
    path = write(tmp_path, SUITE.replace("[recognition, anticipation]", "[recognition, retrieval, anticipation]")
                 .replace("[student, kd, ccd]", "[kd]"))
    groups = {(r.task, r.seed): r.teacher_group for r in plan_sweep(load_suite(path), registry, ResultStore()).runs}
    # recognition and retrieval share the trained teacher (so their runs wait for one cache)
    assert groups[("recognition", 0)] == groups[("retrieval", 0)]
    assert len({groups[("recognition", 0)], groups[("recognition", 1)], groups[("anticipation", 0)]}) == 3


def test_all_methods_with_options_and_exclusions(tmp_path, registry):
    path = write(tmp_path, """
name: all
tier: smoke
seeds: [3]
tasks: [recognition]
methods:
  - all
  - {method: kd, method_options: {T: 2.0}}
exclude: [combo, teacher]
""")
    sp = plan_sweep(load_suite(path), registry, ResultStore())
    expected = [m for m in registry.names("methods") if m not in ("combo", "teacher")
                and "recognition" in (registry.get("methods", m).tasks or ("recognition",))]
    assert "argb" not in expected and "xkd" in expected
    assert [r.label for r in sp.runs] == expected + ["kd [method_options={'T': 2.0}]"]
    assert {r.seed for r in sp.runs} == {3}


@pytest.mark.parametrize("text, error", [
    ("name: x\ntier: smoke\nseeds: [0]\nmethods: [kdd]\n", "unknown method 'kdd'; did you mean 'kd'?"),
    ("name: x\ntier: smok\nseeds: [0]\nmethods: [kd]\n", "unknown budget tier 'smok'; did you mean 'smoke'?"),
    ("name: x\ntier: smoke\nseeds: [0]\nmethods: [kd]\ncolour: red\n", "unknown key 'colour'"),
    ("name: x\ntier: smoke\nseeds: []\nmethods: [kd]\n", "seeds must be a non-empty list"),
    ("name: x\ntier: smoke\nseeds: [0]\nmethods: all\nexclude: [kdd]\n", "unknown method 'kdd'"),
    ("name: x\ntier: smoke\nseeds: [0]\nmethods:\n  - {method: ccd, tasks: [recognition]}\n",
     "method 'ccd' does not support task 'recognition'"),
    ("name: x\ntier: smoke\nseeds: [0]\nmethods: [kd, {method: kd}]\n", "are the same configuration"),
    ("name: x\ntier: smoke\nseeds: [0\n", "bad YAML"),
])
def test_bad_suites_fail_in_one_line_before_anything_runs(tmp_path, capsys, text, error):
    path = write(tmp_path, text)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xbench: error: ") and error in err and err.count("\n") == 1
    assert not (ResultStore().home / "sweeps").exists()


def _sweep(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xbench.cli", "sweep", str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def test_an_interrupted_sweep_resumes_without_repeating_finished_runs(tmp_path, capsys):
    path = write(tmp_path, """
name: resume
tier: smoke
seeds: [0, 1, 2]
tasks: [recognition]
methods: [kd, fitnet]
""")
    store = ResultStore()
    proc = _sweep(path, "--jobs", "1")
    deadline = time.time() + 300
    while len(store.records()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the third run
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    first = {r.id: r for r in store.records()}
    assert len(first) in (2, 3)  # the third may have finished before the signal arrived
    assert err.splitlines()[-1] == (f"xbench: sweep interrupted; {len(first)} of 6 runs are stored, and "
                                    f"'xbench sweep {path}' resumes from there")
    # the unfinished run left no record and the store is readable
    proc = _sweep(path, "--jobs", "2")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert lines[0] == f"suite 'resume': tier smoke, 2 cells x 3 seeds = 6 runs; {len(first)} already stored, " \
                       f"{6 - len(first)} to run"
    assert lines[-1].startswith(f"sweep 'resume': {6 - len(first)} runs finished, 0 incomplete, 0 failed, "
                                f"{len(first)} already stored, in ")
    after = store.records()
    # nothing finished was run again: the first records are there, unchanged, and every
    # (config, seed) is stored once
    assert {r.id: r for r in after if r.id in first} == first
    assert sorted((r.method, r.seed) for r in after) == [(m, s) for m in ("fitnet", "kd") for s in range(3)]
    # parallel workers: the teacher of a seed was trained once (kd and fitnet share it), the
    # other run of the seed took it from the cache
    sources = sorted((r.seed, r.budget.stages[0].source) for r in after)
    assert sources == [(s, src) for s in range(3) for src in ("cache", "computed")]
    history = [json.loads(line) for line in (store.home / "sweeps" / "resume" / "history.jsonl").read_text().splitlines()]
    assert [(h["interrupted"], h["already_stored"], h["finished"]) for h in history] == [
        (True, 0, len(first)), (False, len(first), 6 - len(first))]
    # a third sweep has nothing to do; it publishes the suite's records and every format
    pub = tmp_path / "pub"
    # --unpinned: CI machines may resolve another torch than the publishing environment's
    assert main(["sweep", str(path), "--publish", str(pub), "--unpinned"]) == 2  # 3 seeds a row
    assert capsys.readouterr().err.splitlines()[-1] == (
        "xbench: error: --publish: a published row needs at least 10 seeds (fewer cannot reach significance after "
        "Holm's correction; --min-seeds N to publish fewer): recognition (smoke): fitnet (3), kd (3)")
    assert not pub.exists()
    assert main(["sweep", str(path), "--publish", str(pub), "--unpinned", "--min-seeds", "3"]) == 0
    assert sorted(p.name for p in pub.iterdir()) == [".xbench-leaderboard", "README.md", "index.html", "leaderboard.csv", "leaderboard.json",
                                                     "leaderboard.tex", "meta.json", "plots", "records"]
    assert sorted(p.stem for p in (pub / "records").iterdir()) == sorted(r.id for r in after)
    assert "tier `smoke`: 6 runs of 6 in 2 cells." in (pub / "README.md").read_text()
    meta = json.loads((pub / "meta.json").read_text())
    assert meta["missing"] == [] and meta["environment"].startswith(("pinned (publish-constraints.txt: torch==",
                                                                     "NOT the pinned one (torch "))
    assert f"Environment: {meta['environment']}." in (pub / "README.md").read_text()


def test_a_sweep_in_the_background_stops_on_sigterm_with_its_workers(tmp_path):
    """Started with SIGINT ignored (nohup, &), a sweep stops on SIGTERM, and so do its workers:
    none is left running and the unfinished run stored nothing."""
    path = write(tmp_path, "name: bg\ntier: smoke\nseeds: [0, 1]\ntasks: [recognition]\nmethods: [student]\n")
    # what a shell does to a background job: SIGINT ignored, kept across exec
    proc = subprocess.Popen(["sh", "-c", f'trap "" INT; exec "{sys.executable}" -m xbench.cli sweep "{path}" --jobs 2'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = ResultStore().home / "sweeps" / "bg" / "logs"
    deadline = time.time() + 120
    while not (logs.is_dir() and len(list(logs.iterdir())) == 2) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the workers are past their start
    proc.send_signal(signal.SIGTERM)
    # promptly: workers that ignored the stop would be killed only after 30 s
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    stored = len(ResultStore().records())
    assert err.splitlines()[-1] == (f"xbench: sweep interrupted; {stored} of 2 runs are stored, and "
                                    f"'xbench sweep {path}' resumes from there")
    left = subprocess.run(["pgrep", "-f", "sweeps/bg/configs"], capture_output=True, text=True, check=False)
    assert left.stdout == ""


def test_a_killed_sweep_takes_its_workers_with_it_and_its_rerun_resumes_their_runs(tmp_path, monkeypatch):
    """kill -9 of a sweep: its worker gets SIGTERM from the kernel (it would otherwise run on beside
    the rerun's), keeps its checkpoints, and the rerun goes on from them instead of step 0."""
    monkeypatch.setenv("XBENCH_CHECKPOINT_EVERY", "5")
    path = write(tmp_path, "name: killed\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n")
    home = ResultStore().home
    proc = _sweep(path, "--jobs", "1")
    deadline = time.time() + 300
    while not list(home.glob("checkpoints/*/student.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:  # the worker stops on the signal its parent's death sent
        left = subprocess.run(["pgrep", "-f", "sweeps/killed/configs"], capture_output=True, text=True, check=False)
        if not left.stdout:
            break
        time.sleep(0.2)
    assert left.stdout == ""
    assert ResultStore().records() == [] and list(home.glob("checkpoints/*/student.pt"))
    proc = _sweep(path, "--jobs", "1")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    [rec] = ResultStore().records()
    resumed = rec.budget.stage("student").resumed_at
    assert resumed is not None and resumed % 5 == 0 and 0 < resumed < 30
    (log,) = (home / "sweeps" / "killed" / "logs").iterdir()  # the worker's output, both sittings
    assert log.read_text().startswith("xbench: interrupted; nothing of the unfinished run was stored\n")
    run_log = (home / "runs" / rec.id / "log.txt").read_text().splitlines()
    assert f"student: resumed at step {resumed} of 30 from its checkpoint" in run_log
    assert not list(home.glob("checkpoints/*/*"))  # removed once the record was stored


def test_a_failing_run_is_reported_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, """
name: failing
tier: smoke
seeds: [0]
tasks: [recognition]
methods: [student, kd]
""")
    # a run that dies (an out-of-memory kill, a crash in a plugin) is one failed run, not a dead sweep
    monkeypatch.setenv("XBENCH_DATA", str(tmp_path / "no-data-here"))
    (tmp_path / "no-data-here").write_text("not a folder")
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-3] == "sweep 'failing': 0 runs finished, 0 incomplete, 2 failed, 0 already stored, in " + err[-3].split(" in ")[-1]
    assert err[-2].startswith("  failed: recognition student seed 0 (log: ") and err[-2].endswith("_s0.log)")
    log = Path(err[-2].split("(log: ")[1][:-1])
    assert "xbench: error:" in log.read_text()
    assert ResultStore().records() == []


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", ".hidden", "x" * 101, "na\x1bme"])
def test_a_suite_name_is_a_slug_never_a_path(tmp_path, name):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": name, "tier": "smoke", "seeds": [0]}))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert str(err.value) == (f"{path}: name {name!r} is not a slug (letters, digits, '.', '_', '-'; starting with "
                              "a letter or digit; at most 100 characters)")
    unnamed = tmp_path / "my suite (v2).yaml"
    unnamed.write_text(yaml.safe_dump({"tier": "smoke", "seeds": [0]}))
    assert load_suite(unnamed).name == "my-suite-v2"
