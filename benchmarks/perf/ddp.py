"""One run over 2 processes (``xbench run --nproc 2``, gloo on CPU) against the same run in one
process: the same global batch, seed and tier. Does it train the same run, and what does a step
cost?

For each ``--case`` (default: kd on recognition, ccd on anticipation; cpu tier), each in a fresh
XBENCH_HOME with the caches off (every stage computed), one process then two, alternating the
order between rounds:

- the test metrics side by side and their differences;
- each stage's loss at its first evaluation, side by side;
- each stage's steady samples/s (warm-up and evaluations out, from the records) and the step-time
  ratio 2 processes / 1 process: on a machine of C cores one process gets C threads, each of the
  two C/2 (as torchrun shares them out).

    python benchmarks/perf/ddp.py [--cases kd/recognition ccd/anticipation] [--tier cpu] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(method: str, task: str, tier: str, nproc: int, home: Path) -> tuple[dict, float]:
    env = dict(os.environ, XBENCH_HOME=str(home), XBENCH_TEACHER_CACHE="off", XBENCH_PRETRAIN_CACHE="off",
               XBENCH_CHECKPOINT="off")
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "xbench.cli", "run", "--method", method, "--task", task, "--tier", tier, "--quiet",
           "--nproc", str(nproc)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    (path,) = home.glob("runs/*/result.json")
    return json.loads(path.read_text()), wall


def throughput(stage: dict) -> float | None:
    steady = stage["seconds"] - (stage.get("eval_seconds") or 0.0) - (stage.get("warmup_seconds") or 0.0)
    warm = stage.get("warmup_steps") or 0
    if stage["steps"] <= warm or steady <= 0:
        return None
    return stage["samples"] * (stage["steps"] - warm) / stage["steps"] / steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["kd/recognition", "ccd/anticipation"])
    ap.add_argument("--tier", default="cpu")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for case in args.cases:
        method, task = case.split("/")
        recs: dict[int, list[dict]] = {1: [], 2: []}
        walls: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.rounds):
            for nproc in ((1, 2) if r % 2 == 0 else (2, 1)):
                with tempfile.TemporaryDirectory() as home:
                    rec, wall = run(method, task, args.tier, nproc, Path(home))
                recs[nproc].append(rec)
                walls[nproc].append(wall)
        one, two = recs[1][-1], recs[2][-1]
        print(f"\n== {case}, tier {args.tier}: wall {statistics.median(walls[1]):.1f} s (1 process) vs "
              f"{statistics.median(walls[2]):.1f} s (2 processes)")
        print(f"{'metric':<22}{'1 process':>14}{'2 processes':>14}{'difference':>12}")
        for k, v in one["metrics"].items():
            w = two["metrics"].get(k)
            print(f"{k:<22}{v:>14.4f}{w:>14.4f}{w - v:>12.4f}")
        print(f"{'stage':<20}{'first loss (1)':>16}{'first loss (2)':>16}{'samples/s (1)':>15}{'samples/s (2)':>15}"
              f"{'step time 2/1':>15}")
        for a, b in zip(one["budget"]["stages"], two["budget"]["stages"]):
            la = sum(a["curve"][0]["terms"].values()) if a["curve"] else float("nan")
            lb = sum(b["curve"][0]["terms"].values()) if b["curve"] else float("nan")
            ta = [throughput(s) for rec in recs[1] for s in rec["budget"]["stages"] if s["stage"] == a["stage"]]
            tb = [throughput(s) for rec in recs[2] for s in rec["budget"]["stages"] if s["stage"] == b["stage"]]
            ta, tb = [t for t in ta if t], [t for t in tb if t]
            if ta and tb:
                fa, fb = statistics.median(ta), statistics.median(tb)
                print(f"{a['stage']:<20}{la:>16.6f}{lb:>16.6f}{fa:>15.1f}{fb:>15.1f}{fa / fb:>15.3f}")
            else:
                print(f"{a['stage']:<20}{la:>16.6f}{lb:>16.6f}{'-':>15}{'-':>15}{'-':>15}")


if __name__ == "__main__":
    main()
