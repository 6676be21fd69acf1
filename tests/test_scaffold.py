"""xbench new-plugin: the generated distribution installs and passes its own tests as written,
and its method runs and gets a leaderboard row."""

from __future__ import annotations

import sys

import pytest
from conftest import install_and_test, run_cmd

from xbench.cli import main


def test_a_new_plugin_installs_passes_its_tests_and_gets_a_leaderboard_row(tmp_path, capsys, data_root):
    assert main(["new-plugin", "demo-kd", "--dir", str(tmp_path)]) == 0
    folder = tmp_path / "xbench-demo-kd"
    assert capsys.readouterr().out.splitlines()[0] == (
        f"wrote {folder}/: pyproject.toml, xbench_demo_kd/__init__.py, tests/test_xbench_demo_kd.py, README.md")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "tests/test_xbench_demo_kd.py", "xbench_demo_kd/__init__.py"]
    env, last = install_and_test(folder, tmp_path, data_root)
    assert last.startswith("2 passed")
    # its method runs through the harness and its row is in the leaderboard
    out = run_cmd([sys.executable, "-m", "xbench.cli", "run", "--method", "demo-kd", "--task", "recognition",
                "--budget", "smoke", "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    out = run_cmd([sys.executable, "-m", "xbench.cli", "leaderboard", "--task", "recognition"], env, tmp_path)
    lines = out.stdout.splitlines()
    assert lines[0] == "### recognition, tier smoke: test top1 of the val-selected model"
    assert lines[4].split("|")[1].strip() == "demo-kd" and lines[5] == ""
    out = run_cmd([sys.executable, "-m", "xbench.cli", "plugins"], env, tmp_path)
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
