"""xbench sweep on an existing engine: the same suite through local processes, Ray tasks (a local
Ray instance) and Slurm jobs (submitit's local executor) gives the same records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUITE = "name: engines\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student, kd]\n"


def _sweep(tmp_path: Path, executor: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    home = tmp_path / executor
    suite = tmp_path / "engines.yaml"
    suite.write_text(SUITE)
    env = dict(os.environ, XBENCH_HOME=str(home), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    out = subprocess.run([sys.executable, "-m", "xbench.cli", "sweep", str(suite), "--executor", executor, *extra],
                         capture_output=True, text=True, env=env, timeout=900, check=False)
    return out, home


def _records(home: Path) -> dict[tuple[str, int], str]:
    out = {}
    for path in home.glob("runs/*/result.json"):
        r = json.loads(path.read_text())
        out[(r["config_hash"], r["seed"])] = json.dumps([r["metrics"], r["selection"]], sort_keys=True)
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out, home = _sweep(tmp_path_factory.mktemp("local"), "local", "--jobs", "2")
    assert out.returncode == 0, out.stderr
    return home


@pytest.mark.parametrize("executor", [["ray"], ["slurm", "--slurm-cluster", "local", "--jobs", "2"]],
                         ids=["ray", "slurm"])
def test_an_engine_gives_the_local_records_and_only_the_driver_writes_the_store(tmp_path, local, executor):
    out, home = _sweep(tmp_path, *executor)
    assert out.returncode == 0, out.stderr
    want = _records(local)
    assert len(want) == 2 and _records(home) == want  # same configs, seeds, metrics and selection
    lines = out.stderr.splitlines()
    assert lines[-1].startswith("sweep 'engines': 2 runs finished, 0 incomplete, 0 failed, 0 already stored, in ")
    # the workers handed their records over: none is left in the hand-over folder
    assert list((home / "sweeps" / "engines" / "records").iterdir()) == []


def test_records_handed_over_to_a_sweep_that_died_are_stored_by_the_next(tmp_path, local):
    from xbench.store import ResultStore
    from xbench.sweep import Suite, adopt_handed

    path = min(local.glob("runs/*/result.json"))  # a record as a worker hands it over
    handed = tmp_path / "home" / "sweeps" / "engines" / "records"
    handed.mkdir(parents=True)
    (handed / "abc_s0.json").write_text(path.read_text())
    store = ResultStore(tmp_path / "home")
    suite = Suite(name="engines", tier="smoke", seeds=[0])
    assert adopt_handed(store, suite) == 1
    assert [r.id for r in store.records()] == [json.loads(path.read_text())["id"]]
    assert list(handed.iterdir()) == []
    assert adopt_handed(store, suite) == 0


def test_an_engine_that_is_not_installed_is_named(tmp_path, monkeypatch):
    from xbench.errors import ConfigError
    from xbench.executors import ExecutorOptions, executor

    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails as when not installed
    with pytest.raises(ConfigError, match=r"^--executor slurm needs the package submitit "
                                          r"\(pip install 'xbench\[slurm\]'\)$"):
        executor(ExecutorOptions(name="slurm"), tmp_path)


CLAIMER = """
import sys, time, torch
from pathlib import Path
from xbench.cache import ModelCache
root, role = Path(sys.argv[1]), sys.argv[2]
cache = ModelCache(root, "k", "teachers", "teacher", log=lambda m: print(m, flush=True))
model = torch.nn.Linear(2, 2)
hit = cache.claim(model)
if hit is None:
    (root / f"claimed-{role}").touch()
    while role == "first" and not (root / "go").exists():
        time.sleep(0.02)
    torch.nn.init.constant_(model.weight, 7.0)
    cache.save(model, set(), {"by": role})
else:
    print("read", hit["by"], float(model.weight[0, 0]), flush=True)
"""


def test_two_workers_never_compute_one_cache_entry_at_once(tmp_path):
    """A worker that misses an entry another is computing waits on the entry's lock and reads
    what the other stored, instead of computing it too."""
    start = [sys.executable, "-c", CLAIMER, str(tmp_path)]
    first = subprocess.Popen([*start, "first"], stdout=subprocess.PIPE, text=True)
    while not (tmp_path / "claimed-first").exists():
        assert first.poll() is None
        time.sleep(0.02)
    second = subprocess.Popen([*start, "second"], stdout=subprocess.PIPE, text=True)
    waiting = second.stdout.readline()  # it says so before it blocks
    (tmp_path / "go").touch()
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert waiting == "teacher cache: another run is computing entry k; waiting for it\n"
    assert second.stdout.read() == "read first 7.0\n"
    assert not (tmp_path / "claimed-second").exists()
