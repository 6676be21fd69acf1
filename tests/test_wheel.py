"""xbench as users install it: the core and every plugin built as wheels, installed non-editable into
a fresh virtual environment, and used from a folder outside the repository (the tiers and suites
come from the package, the record names no source commit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=900, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    wheels, src = root / "wheels", root / "src"
    # built from a copy, so no build/ folder is left in (or taken from) the checkout
    junk = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "tests", ".*")
    for part in ("xbench", "plugins"):
        shutil.copytree(REPO / part, src / part, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    sources = [src, *sorted((src / "plugins").iterdir())]
    out = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                *map(str, sources)], root)
    assert out.returncode == 0, out.stderr[-3000:]
    # the environment's packages (torch, ...) are shared; xbench and its plugins are the wheels'
    out = _run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], root)
    assert out.returncode == 0, out.stderr
    python = root / "venv" / "bin" / "python"
    out = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall",
                *map(str, sorted(wheels.glob("*.whl")))], root)
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "venv"


def _xbench(venv: Path, args: list[str], cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XBENCH_HOME=str(cwd / "home"), XBENCH_DATA=str(data_root))
    env.pop("PYTHONPATH", None)
    return _run([str(venv / "bin" / "xbench"), *args], cwd, env)


def test_eight_wheels_install_and_xbench_comes_from_the_venv(venv, tmp_path):
    code = "import xbench, xbench_baselines; print(xbench.__file__); print(xbench_baselines.__file__)"
    out = _run([str(venv / "bin" / "python"), "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(venv)) for line in out.stdout.splitlines()), out.stdout


def test_the_installed_wheel_lists_runs_and_checks_from_outside_the_repository(venv, tmp_path, data_root):
    listed = _xbench(venv, ["list", "methods"], tmp_path, data_root)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[2:]]
    assert names == ["argb", "at", "cc", "ccd", "combo", "coral", "cosine", "crd", "dkd", "fitnet", "kd",
                     "kd-confident", "kd-oracle", "lmkd",
                     "mmd", "mnf-csc", "noise-floor", "nst", "pkt", "rkd", "sp", "student",
                     "student+teacher-labels", "teacher", "vid", "xkd", "xkd-mae"]
    run = _xbench(venv, ["run", "--method", "kd", "--task", "recognition", "--budget", "smoke", "--quiet"],
                  tmp_path, data_root)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].startswith("kd on recognition (synth), tier smoke")
    (record,) = (tmp_path / "home" / "runs").glob("*/result.json")
    env = json.loads(record.read_text())["env"]
    assert env["git_sha"] is None  # an installed package is no source checkout
    check = _xbench(venv, ["check", "--method", "kd", "--task", "recognition"], tmp_path, data_root)
    assert check.returncode == 0, check.stdout[-3000:]
    assert check.stdout.splitlines()[-1].endswith(" passed, 0 failed")
