from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One tiny synth dataset for the whole session (generated once, ~1 s)."""
    return tmp_path_factory.mktemp("xbench-data")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, data_root):
    """Every test gets its own XBENCH_HOME and the shared data dir; no plugin is disabled."""
    monkeypatch.setenv("XBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XBENCH_DATA", str(data_root))
    monkeypatch.delenv("XBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("XBENCH_TRACEBACK", raising=False)
    # no test depends on the machine's speed: the wall-clock safety net is off unless a test
    # is about it
    monkeypatch.setenv("XBENCH_CLOCK_LIMIT", "off")


@pytest.fixture(scope="session")
def registry():
    from xbench.registry import build_registry

    return build_registry()


def make_plugin(root: Path, name: str, source: str, version: str = "0.1") -> Path:
    """A distribution on a sys.path entry: the module plus a hand-written dist-info with an
    ``xbench`` entry point, which importlib.metadata discovers exactly like an installed one."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[xbench]\n{name} = {name}\n")
    return root


@pytest.fixture
def add_plugin(monkeypatch, tmp_path):
    """Install a throw-away plugin for this test: add_plugin('name', 'source')."""

    def add(name: str, source: str) -> None:
        root = make_plugin(tmp_path / "site", name, source)
        monkeypatch.syspath_prepend(str(root))
        sys.modules.pop(name, None)

    return add


def run_cmd(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False)


def install_and_test(src: Path, tmp_path: Path, data_root: Path) -> tuple[dict[str, str], str]:
    """Install the distribution in ``src`` as pip installs any (into a folder of its own, so the
    rest of the test session does not see it) and run its tests in a fresh process; returns the
    environment that sees it and the tests' last output line."""
    site = tmp_path / "site"
    out = run_cmd([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                   "--target", str(site), str(src)], dict(os.environ), tmp_path)
    assert out.returncode == 0, out.stderr
    env = dict(os.environ, PYTHONPATH=str(site), XBENCH_DATA=str(data_root), XBENCH_HOME=str(tmp_path / "home"))
    out = run_cmd([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], env, src)
    assert out.returncode == 0, out.stdout[-3000:]
    return env, out.stdout.splitlines()[-1]
