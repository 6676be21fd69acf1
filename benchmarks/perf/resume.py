"""A run killed with SIGKILL partway through its student stage, run again: does it resume to the
uninterrupted run's numbers, and how much time does resuming save? Also what checkpoints cost.

For ``--method`` on ``--task`` at ``--tier`` (default: kd, recognition, cpu), each in a fresh
XBENCH_HOME (the teacher cache empty, as for the first run of a comparison), one after another:

- ``whole``: ``xbench run``, uninterrupted, checkpoints on (the default);
- ``off``: the same with ``XBENCH_CHECKPOINT=off`` (what checkpointing costs: whole / off);
- ``killed``: the same command, SIGKILL once the student stage's checkpoint at or past
  ``--at`` (default 0.6) of its steps is written; then ``resumed``: the same command again;
- ``restart``: then the same command with ``--restart`` in that home: what starting over after
  the kill costs (the teacher the killed run cached is read from the cache, as it would be).

It prints the wall time of each, the test metrics of ``whole`` and ``resumed`` side by side with
whether they are identical, and the time saved: resumed against restart. The rounds alternate
the order of ``whole`` and ``off``.

    python benchmarks/perf/resume.py [--method kd] [--task recognition] [--tier cpu] [--at 0.6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def command(args) -> list[str]:
    return [sys.executable, "-m", "xbench.cli", "run", "--method", args.method, "--task", args.task,
            "--tier", args.tier, "--quiet"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def killed(cmd: list[str], env: dict[str, str], home: Path, at_step: int) -> tuple[float, int]:
    """Start ``cmd``; SIGKILL it once a student-stage checkpoint at or past ``at_step`` exists.
    Returns the seconds it ran and the step of the checkpoint it left."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = 0
    while proc.poll() is None:
        for path in home.glob("checkpoints/*/student.pt"):  # written atomically: never torn
            step = torch.load(path, weights_only=True)["step"]
        if step >= at_step:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    if step < at_step:
        raise SystemExit("the run ended before it was killed")
    return time.perf_counter() - t0, step


def record(home: Path) -> dict:
    path = min(home.glob("runs/*/result.json"), key=lambda p: p.stat().st_mtime)  # the first stored
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="kd")
    ap.add_argument("--task", default="recognition")
    ap.add_argument("--tier", default="cpu")
    ap.add_argument("--at", type=float, default=0.6, help="the share of the student steps to kill at")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from xbench.config import load_tiers

    steps = load_tiers()[args.tier].student_steps
    at_step = max(1, round(args.at * steps))
    base = dict(os.environ, XBENCH_CLOCK_LIMIT="off")  # the figures are times: no run is cut short
    base.setdefault("XBENCH_DATA", tempfile.mkdtemp(prefix="xbench-data-"))
    cmd = command(args)
    with tempfile.TemporaryDirectory(prefix="xbench-bench-") as tmp:  # warm-up: data generated
        timed(cmd, dict(base, XBENCH_HOME=tmp))
    walls: dict[str, list[float]] = {"whole": [], "off": [], "killed": [], "resumed": [], "restart": []}
    same = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="xbench-bench-") as tmp:
            homes = {k: Path(tmp) / k for k in ("whole", "off", "killed")}
            for kind in (["whole", "off"] if r % 2 == 0 else ["off", "whole"]):
                env = dict(base, XBENCH_HOME=str(homes[kind]), **({"XBENCH_CHECKPOINT": "off"} if kind == "off" else {}))
                walls[kind].append(timed(cmd, env))
            env = dict(base, XBENCH_HOME=str(homes["killed"]))
            seconds, step = killed(cmd, env, homes["killed"], at_step)
            walls["killed"].append(seconds)
            walls["resumed"].append(timed(cmd, env))
            walls["restart"].append(timed([*cmd, "--restart"], env))
            whole, resumed = record(homes["whole"]), record(homes["killed"])
            stage = next(s for s in resumed["budget"]["stages"] if s["stage"] == "student")
            same.append(json.dumps(whole["metrics"], sort_keys=True) == json.dumps(resumed["metrics"], sort_keys=True)
                        and whole["selection"] == resumed["selection"])
            print(f"round {r + 1}: killed at student step {step} of {steps}, resumed at {stage.get('resumed_at')}; "
                  f"metrics identical: {same[-1]}")
            for k in whole["metrics"]:
                print(f"  {k:>22}  whole {whole['metrics'][k]!r:>22}  resumed {resumed['metrics'][k]!r:>22}")
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\n{args.method} on {args.task}, tier {args.tier}, {args.rounds} rounds (medians):")
    for k, v in med.items():
        print(f"  {k:>8}: {v:7.2f} s")
    print(f"checkpoints' cost (whole / off): {med['whole'] / med['off']:.3f}")
    print(f"time after the kill: resumed {med['resumed']:.2f} s vs starting over {med['restart']:.2f} s "
          f"(ratio {med['resumed'] / med['restart']:.3f}); metrics identical in {sum(same)} of {len(same)} rounds")


if __name__ == "__main__":
    main()
