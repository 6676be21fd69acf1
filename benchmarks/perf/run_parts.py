"""Where a whole ``xbench run`` process's wall time goes, and the same run at another commit.

Each measurement is one ``xbench run`` process (the way a sweep runs it: one thread, its own
process), timed from outside; the current tree's runs also report their parts (``Clock``: startup,
imports, data, teacher, models, setup, train, evaluate, test, record), read from the run's
log.txt. With ``--before REF`` the same run at commit REF (a temporary git worktree) alternates
with the current tree's (ABBA), so machine noise hits both alike, and the ratio of the median wall
times is printed. The teacher is trained once per tree before the timed rounds (a sweep pays it
once per seed, shared by every method).

    python benchmarks/perf/run_parts.py --method student --task recognition [--before 6e8a6bd] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tree_env(tree: Path, home: Path) -> dict[str, str]:
    """The environment of a run of the xbench at ``tree`` (its core and plugins first on the path)."""
    paths = [str(tree)] + [str(p) for p in sorted((tree / "plugins").iterdir()) if p.is_dir()]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), XBENCH_HOME=str(home),
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def one_run(tree: Path, home: Path, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """The wall time of one run process, and its parts where it reports them."""
    cmd = [sys.executable, "-m", "xbench.cli", "run", "--method", args.method, "--task", args.task,
           "--tier", args.tier, "--seed", "0", "--quiet"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=tree, env=tree_env(tree, home), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"run_parts: {' '.join(cmd)} in {tree} failed:\n{out.stderr[-2000:]}")
    newest = max((home / "runs").glob("*/log.txt"), key=lambda p: p.stat().st_mtime)
    line = next((x for x in newest.read_text().splitlines() if x.startswith("time: ")), "")
    parts = {name: float(sec) for name, sec in re.findall(r"(\w+) ([\d.]+) s", line)}
    return wall, parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="student")
    ap.add_argument("--task", default="recognition")
    ap.add_argument("--tier", default="cpu")
    ap.add_argument("--rounds", type=int, default=2, help="timed runs per tree")
    ap.add_argument("--before", metavar="REF", help="also time the run at this commit, alternating")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        if args.before:
            trees["before"] = Path(tmp) / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(trees["before"]),
                            args.before], check=True)
        try:
            homes = {k: Path(tmp) / f"home-{k}" for k in trees}
            for k, tree in trees.items():  # the teacher once, and the data generated, before timing
                one_run(tree, homes[k], args)
            walls: dict[str, list[float]] = {k: [] for k in trees}
            parts: list[dict[str, float]] = []
            order = list(trees)
            for r in range(args.rounds):
                for k in (order if r % 2 == 0 else order[::-1]):
                    wall, p = one_run(trees[k], homes[k], args)
                    walls[k].append(wall)
                    if k == "now":
                        parts.append(p)
                    print(f"round {r}: {k} {wall:.1f} s", file=sys.stderr)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                               check=False)
    report(args, walls, parts)


def report(args: argparse.Namespace, walls: dict[str, list[float]], parts: list[dict[str, float]]) -> None:
    wall = statistics.median(walls["now"])
    print(f"{args.method} on {args.task}, tier {args.tier}: wall {wall:.1f} s (median of {len(walls['now'])}; "
          f"{min(walls['now']):.1f} to {max(walls['now']):.1f})")
    print("| part | seconds (median) | share of the wall time |\n|---|---|---|")
    names = list(dict.fromkeys(k for p in parts for k in p))
    for name in names:
        sec = statistics.median(p.get(name, 0.0) for p in parts)
        print(f"| {name} | {sec:.1f} | {100 * sec / wall:.0f}% |")
    measured = statistics.median(sum(p.values()) for p in parts)
    print(f"| (exit and what no part covers) | {wall - measured:.1f} | {100 * (wall - measured) / wall:.0f}% |")
    if "before" in walls:
        before = statistics.median(walls["before"])
        print(f"before ({args.before}): wall {before:.1f} s (median of {len(walls['before'])}; "
              f"{min(walls['before']):.1f} to {max(walls['before']):.1f}); now / before = {wall / before:.3f}")


if __name__ == "__main__":
    main()
