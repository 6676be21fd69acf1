"""The example external plugin (examples/xbench-dist) installs from its folder as any
distribution does, passes its own tests and runs end to end with its leaderboard row."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from conftest import install_and_test, run_cmd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "xbench-dist"


def test_the_example_plugin_installs_passes_its_tests_and_runs_end_to_end(tmp_path, data_root):
    src = tmp_path / "xbench-dist"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env, last = install_and_test(src, tmp_path, data_root)
    assert last.startswith("6 passed")
    out = run_cmd([sys.executable, "-m", "xbench.cli", "plugins"], env, tmp_path)
    assert [line.split()[:4] for line in out.stdout.splitlines() if line.startswith("dist ")] == [
        ["dist", "xbench-dist", "0.1.0", "losses:"]]
    for method in ("student", "dist"):
        out = run_cmd([sys.executable, "-m", "xbench.cli", "run", "--method", method, "--task", "recognition",
                    "--budget", "smoke", "--seed", "0", "1", "--quiet"], env, tmp_path)
        assert out.returncode == 0, out.stderr
    out = run_cmd([sys.executable, "-m", "xbench.cli", "leaderboard", "--task", "recognition", "--paper"], env, tmp_path)
    lines = out.stdout.splitlines()
    header = [c.strip() for c in lines[2].split("|")[1:-1]]
    dist = dict(zip(header, (c.strip() for c in lines[4].split("|")[1:-1])))
    assert dist["method"] == "dist" and dist["n"] == "2"
    assert dist["paper"] == "72.07 vs 69.76 (+3.3%), ImageNet (R34 -&gt; R18) top-1"  # markdown-escaped
    assert dist["paper gain %"] == "+3.3"
