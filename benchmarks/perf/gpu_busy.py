"""The fraction of a `gpu`-tier run during which the GPU is busy.

Runs one seed of a method on a task at the ``gpu`` tier on CUDA under ``torch.profiler`` (CUDA
activity: the kernels and copies the device executed, with their start and end times), and
prints the union of the device's busy intervals over the run's wall time: 1.0 means the GPU
never waited for the host (data, Python, syncs, evaluation on the host). Needs a CUDA device;
elsewhere it says so and exits 2. Not yet run: no GPU has been lent to this project's sessions.

    python benchmarks/perf/gpu_busy.py [--method kd] [--task recognition] [--tier gpu]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (overlapping kernels on several streams
    count once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="kd")
    ap.add_argument("--task", default="recognition")
    ap.add_argument("--tier", default="gpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from xbench.alloc import configure
    from xbench.config import RunConfig, load_tiers
    from xbench.registry import build_registry
    from xbench.run import execute, plan

    configure()
    p = plan(build_registry(), RunConfig(method=args.method, task=args.task, budget=args.tier),
             load_tiers())
    device = torch.device("cuda")
    execute(p, args.seed + 1000, device=device)  # warm-up: data generated and decoded, kernels tuned
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        rec = execute(p, args.seed, device=device)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = [(e.time_range.start / 1e6, e.time_range.end / 1e6) for e in events]
    busy = busy_time(spans)
    st = rec.budget.stage("student")
    print(f"{args.method} on {args.task}, tier {args.tier}, {torch.cuda.get_device_name()}: "
          f"run {wall:.1f} s, GPU busy {busy:.1f} s = {busy / wall:.3f} of the run "
          f"({len(events)} kernels and copies)")
    if st:
        print(f"student stage: {st.steps} steps in {st.seconds:.1f} s, "
              f"peak {st.peak_memory_mb:.0f} MB ({st.memory_kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
