"""xbench new-plugin: the generated distribution installs and passes its own tests as written,
and its method runs and gets a leaderboard row."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xbench.cli import main


def _run(cmd: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False)


def test_a_new_plugin_installs_passes_its_tests_and_gets_a_leaderboard_row(tmp_path, capsys, data_root):
    assert main(["new-plugin", "demo-kd", "--dir", str(tmp_path)]) == 0
    folder = tmp_path / "xbench-demo-kd"
    assert capsys.readouterr().out.splitlines()[0] == (
        f"wrote {folder}/: pyproject.toml, xbench_demo_kd/__init__.py, tests/test_xbench_demo_kd.py, README.md")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "tests/test_xbench_demo_kd.py", "xbench_demo_kd/__init__.py"]
    # installed as pip installs any distribution (into a folder of its own, so the rest of this
    # test session does not see it), then its tests run in a fresh process
    site = tmp_path / "site"
    out = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                "--target", str(site), str(folder)], dict(os.environ), tmp_path)
    assert out.returncode == 0, out.stderr
    env = dict(os.environ, PYTHONPATH=str(site), XBENCH_DATA=str(data_root), XBENCH_HOME=str(tmp_path / "home"))
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], env, folder)
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.splitlines()[-1].startswith("2 passed")
    # its method runs through the harness and its row is in the leaderboard
    out = _run([sys.executable, "-m", "xbench.cli", "run", "--method", "demo-kd", "--task", "recognition",
                "--budget", "smoke", "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    out = _run([sys.executable, "-m", "xbench.cli", "leaderboard", "--task", "recognition"], env, tmp_path)
    lines = out.stdout.splitlines()
    assert lines[0] == "### recognition, tier smoke: test top1 of the val-selected model"
    assert lines[4].split("|")[1].strip() == "demo-kd" and lines[5] == ""
    out = _run([sys.executable, "-m", "xbench.cli", "plugins"], env, tmp_path)
    assert [line.split()[:3] for line in out.stdout.splitlines() if line.startswith("demo-kd")] == [
        ["demo-kd", "xbench-demo-kd", "0.1.0"]]


@pytest.mark.parametrize("name, error", [
    ("My_KD", "plugin name 'My_KD': use lowercase letters, digits and dashes (e.g. 'my-kd'), starting with a letter"),
    ("kd", "plugin name 'kd': a method of that name exists (plugin 'baselines'); choose another"),
    ("cosine-demo2", None),
])
def test_bad_plugin_names_are_refused_before_anything_is_written(tmp_path, capsys, name, error):
    code = main(["new-plugin", name, "--dir", str(tmp_path)])
    if error is None:
        assert code == 0 and (tmp_path / f"xbench-{name}" / "pyproject.toml").is_file()
        assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2  # the folder exists now
        error = f"{tmp_path / f'xbench-{name}'} exists; choose another --dir or name"
    else:
        assert code == 2 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.splitlines()[-1] == f"xbench: error: {error}"
