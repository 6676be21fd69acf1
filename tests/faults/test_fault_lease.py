"""A cell (config, seed) is claimed in the store by the process that runs it: a second run or
sweep never runs a live cell at once, and a dead holder's lease is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from xbench.cli import main
from xbench.store import ResultStore
from xbench.sweep import load_suite, plan_sweep

#: a process that claims one cell of the store and holds it until killed
HOLDER = ("import sys, time\nfrom xbench.store import ResultStore\n"
          "assert ResultStore().claim(sys.argv[1], int(sys.argv[2])) is None\nprint('held', flush=True)\n"
          "time.sleep(600)\n")


def _hold(config_hash: str, seed: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-P", "-c", HOLDER, config_hash, str(seed)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_live_cell_is_refused_and_a_dead_holders_lease_taken_over(registry, tmp_path, capsys):
    path = tmp_path / "lease.yaml"
    path.write_text(yaml.safe_dump({"name": "lease", "tier": "smoke", "seeds": [0, 1], "tasks": ["recognition"],
                                    "methods": ["student"]}))
    runs = plan_sweep(load_suite(path), registry, ResultStore()).runs
    busy = next(r for r in runs if r.seed == 1)
    holder = _hold(busy.config_hash, 1)
    try:
        # a plain run of the held cell: one line, exit 4, nothing stored
        assert main(["run", "--method", "student", "--task", "recognition", "--tier", "smoke", "--seed", "1",
                     "--quiet"]) == 4
        err = capsys.readouterr().err
        assert err.startswith(f"xbench: error: seed 1 of this config ({busy.config_hash}) is running already (pid "
                              f"{holder.pid} on ") and err.count("\n") == 1
        assert err.endswith("a rerun never runs one cell twice at once; wait for it, or stop it\n")
        # a sweep leaves the held cell to its holder and runs the other
        assert main(["sweep", str(path), "--jobs", "1"]) == 1
        err = capsys.readouterr().err
        assert f"recognition student seed 1: RUNNING ELSEWHERE (pid {holder.pid} on " in err
        assert "sweep 'lease': 1 runs finished, 0 incomplete, 0 failed, 1 running elsewhere (a rerun stores what " \
               "they leave), 0 already stored, in " in err
        assert [r.seed for r in ResultStore().records()] == [0]
    finally:
        _kill(holder)  # its lease outlives it in the store: stale now
    assert main(["sweep", str(path), "--jobs", "1", "--quiet"]) == 0
    records = ResultStore().records()
    assert sorted(r.seed for r in records) == [0, 1]  # each cell once
    assert ResultStore().holder(busy.config_hash, 1) is None  # released with the run
    assert len(list(Path(os.environ["XBENCH_HOME"], "runs").glob("*/result.json"))) == 2


def test_an_engines_workers_cells_are_leased_by_the_driver(registry, tmp_path, capsys):
    """A Slurm (or Ray) worker hands its record over and has no store: the sweep claims each cell
    for it, so a live cell is left to its holder there too, and releases it once stored."""
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump({"name": "engine", "tier": "smoke", "seeds": [0, 1], "tasks": ["recognition"],
                                    "methods": ["student"]}))
    runs = plan_sweep(load_suite(path), registry, ResultStore()).runs
    busy, free = (next(r for r in runs if r.seed == s) for s in (1, 0))
    holder = _hold(busy.config_hash, 1)
    try:
        assert main(["sweep", str(path), "--executor", "slurm", "--slurm-cluster", "local", "--jobs", "2"]) == 1
        err = capsys.readouterr().err
        assert f"recognition student seed 1: RUNNING ELSEWHERE (pid {holder.pid} on " in err
        assert [r.seed for r in ResultStore().records()] == [0]
        assert ResultStore().holder(free.config_hash, 0) is None  # the driver let go of the stored cell
        assert ResultStore().holder(busy.config_hash, 1).startswith(f"pid {holder.pid} on ")
    finally:
        _kill(holder)
