"""The same small suite through each executor: are the records identical, and what does each take?

A suite of ``--methods`` (default student and kd) on recognition at the smoke tier with
``--seeds`` (default 0 1) is swept, each executor in a fresh XBENCH_HOME, one after another:

- ``local``: ``xbench sweep --executor local --jobs 2``;
- ``ray``: ``--executor ray`` against a local Ray instance that the sweep starts (``ray.init()``);
- ``slurm``: ``--executor slurm --slurm-cluster local --jobs 2`` (submitit's local executor: each
  job a local process, as on a cluster without Slurm's queue).

It prints each executor's wall time and whether its records (config hash, seed, metrics and
val selection) equal the local ones, record by record. An engine's start-up (Ray's services,
submitit's job folders) is part of its time: on a suite this small it dominates.

    python benchmarks/perf/executors.py [--seeds 0 1] [--methods student kd]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXECUTORS = {
    "local": ["--executor", "local", "--jobs", "2"],
    "ray": ["--executor", "ray"],
    "slurm": ["--executor", "slurm", "--slurm-cluster", "local", "--jobs", "2"],
}


def sweep(root: Path, name: str, suite: Path) -> tuple[float, dict[tuple[str, int], str]]:
    home = root / name
    env = dict(os.environ, XBENCH_HOME=str(home), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    cmd = [sys.executable, "-m", "xbench.cli", "sweep", str(suite), "--quiet", *EXECUTORS[name]]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    records = {}
    for path in home.glob("runs/*/result.json"):
        r = json.loads(path.read_text())
        records[(r["config_hash"], r["seed"])] = json.dumps([r["metrics"], r["selection"]], sort_keys=True)
    return seconds, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["student", "kd"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = root / "engines.yaml"
        suite.write_text(f"name: engines\ntier: smoke\nseeds: {args.seeds}\ntasks: [recognition]\n"
                         f"methods: [{', '.join(args.methods)}]\n")
        results = {name: sweep(root, name, suite) for name in EXECUTORS}
    want = results["local"][1]
    print(f"suite: {args.methods} x recognition x seeds {args.seeds}, smoke tier: {len(want)} runs")
    print(f"{'executor':<10}{'wall s':>10}  records")
    for name, (seconds, records) in results.items():
        same = sum(records.get(key) == value for key, value in want.items())
        verdict = "identical" if records == want else f"{same}/{len(want)} equal to local, {len(records)} stored"
        print(f"{name:<10}{seconds:>10.1f}  {verdict}")
    if any(records != want for _, records in results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
