"""kill -9 a small sweep at seeded random moments, rerun it each time, and count what the store
holds after each kill: records lost (stored before, gone after), duplicated (one config and seed
stored twice) and orphaned (a result.json in runs/ without its database row). All must be 0, and
the last rerun must leave the suite complete.

    python benchmarks/faults/sweep_kills.py [--kills 20] [--seed 0] [--max-delay 12]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from xbench.store import ResultStore

SUITE = {"name": "kills", "tier": "smoke", "seeds": [0, 1, 2, 3], "tasks": ["recognition"], "methods": ["student"]}


def state(home: Path) -> tuple[set[str], int, int]:
    store = ResultStore(home, reconcile=False)
    try:
        rows = list(store.db.execute("SELECT id, config_hash, seed FROM runs"))
    finally:
        store.close()
    ids = {r[0] for r in rows}
    duplicated = sum(n - 1 for n in Counter((r[1], r[2]) for r in rows).values())
    orphans = sum(p.parent.name not in ids for p in (home / "runs").glob("*/result.json"))
    return ids, duplicated, orphans


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=12.0, help="seconds after the start the kill may come")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        suite = Path(tmp) / "kills.yaml"
        suite.write_text(yaml.safe_dump(SUITE))
        env = {**os.environ, "XBENCH_HOME": str(home)}
        cmd = [sys.executable, "-P", "-m", "xbench.cli", "sweep", str(suite), "--jobs", "2", "--quiet"]
        lost = duplicated = orphaned = 0
        before: set[str] = set()
        for k in range(args.kills):
            delay = rng.uniform(0.5, args.max_delay)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)  # its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            if not home.is_dir():
                continue
            ids, dup, orph = state(home)
            lost += len(before - ids)
            duplicated, orphaned = max(duplicated, dup), max(orphaned, orph)
            print(f"kill {k + 1:2d} at {delay:5.2f} s: {len(ids)} stored, {len(before - ids)} lost, {dup} duplicated, "
                  f"{orph} orphaned", flush=True)
            before = ids
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        ids, dup, orph = state(home)
        print(f"sweep kills: {args.kills} kill -9 at seeded points (seed {args.seed}); records lost {lost}, "
              f"duplicated {max(duplicated, dup)}, orphaned {max(orphaned, orph)}; the last rerun exit "
              f"{done.returncode}, {len(ids)} of {len(SUITE['seeds'])} runs stored")


if __name__ == "__main__":
    main()
