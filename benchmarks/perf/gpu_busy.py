"""A run on a GPU: the fraction of it the GPU is busy, each stage's throughput and peak memory.

Runs one seed of a method on a task (default the ``gpu`` tier) on CUDA and prints:

- the GPU's busy fraction over the run's wall time: NVML's utilisation (the share of each sample
  period in which a kernel ran), polled every 20 ms from a thread and averaged; with
  ``--profiler``, the union of the kernels' and copies' intervals under ``torch.profiler`` (exact,
  but slow to collect on a long run). 1.0 means the GPU never waited for the host (data, Python,
  syncs, evaluation on the host);
- per stage: steps, samples, seconds, the steady steps' samples/s (the warm-up steps, which count
  FLOPs and compile, and the evaluations left out), the warm-up's seconds, peak memory;
- where the run's wall time went (``xbench.context.Clock``'s parts).

A short warm-up run first (``--warmup-steps`` per stage) generates and decodes the data and lets
cuDNN and the compiler's caches fill, so the measured run is a run of a warm machine. Options are
``xbench run``'s: ``--student``, ``--set SECTION.KEY=VALUE`` (``--set student.compile=true``
compiles the student). Needs a CUDA device; elsewhere it says so and exits 2.

    python benchmarks/perf/gpu_busy.py --method kd --task recognition --student r2plus1d-18 \\
        --set dataset.resolution=112 --set dataset.frames=16 [--set student.compile=true] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch
from typing_extensions import Self


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


class NvmlSampler:
    """NVML's GPU utilisation polled from a thread while the run goes on."""

    def __init__(self, index: int, period: float = 0.02) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle, self.period = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), period
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(self.period)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def busy(self) -> float:
        return sum(self.samples) / max(len(self.samples), 1) / 100


def run_config(args: argparse.Namespace, warmup: int | None):
    from xbench.config import RunConfig, parse_set

    sets = parse_set(args.sets)
    if warmup is not None:  # every stage a few steps: data, decode cache, kernels and caches warm
        sets["budget_options"] = {**sets.get("budget_options", {}), **{
            k: warmup for k in ("student_steps", "teacher_steps", "pretrain_steps", "probe_steps",
                                "finetune_steps", "eval_every")}}
    return RunConfig(method=args.method, task=args.task, budget=args.tier, student=args.student, **sets)


def measure(args: argparse.Namespace, device: torch.device) -> dict:
    from xbench.config import load_tiers
    from xbench.context import Clock
    from xbench.registry import build_registry
    from xbench.run import execute, plan

    reg, tiers = build_registry(), load_tiers()
    execute(plan(reg, run_config(args, args.warmup_steps), tiers), args.seed + 1000, device=device)
    p, clock = plan(reg, run_config(args, None), tiers), Clock()
    torch.cuda.reset_peak_memory_stats(device)
    if args.profiler:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            rec = execute(p, args.seed, device=device, clock=clock)
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = busy_time([(e.time_range.start / 1e6, e.time_range.end / 1e6) for e in events]) / wall
    else:
        with NvmlSampler(device.index or 0) as sampler:
            t0 = time.perf_counter()
            rec = execute(p, args.seed, device=device, clock=clock, log=lambda s: print(s, flush=True))
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        busy = sampler.busy()
    return {"method": args.method, "task": args.task, "tier": args.tier, "student": p.student.name,
            "sets": args.sets, "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "wall_s": wall, "busy": busy, "busy_by": "profiler" if args.profiler else "nvml",
            "metrics": dict(rec.metrics), "stages": [st.as_dict() for st in rec.budget.stages],
            "parts": clock.parts}


def report(out: dict) -> None:
    from xbench.budget import StageSpend

    print(f"{out['method']} on {out['task']}, tier {out['tier']}, student {out['student']} "
          f"{' '.join(out['sets'])} on {out['gpu']} (torch {out['torch']}): run {out['wall_s']:.1f} s, "
          f"GPU busy {out['busy']:.3f} of it ({out['busy_by']})")
    for s in out["stages"]:
        st = StageSpend.from_dict(s)
        rate = st.throughput()
        print(f"  {st.stage}: {st.steps} steps, {st.samples} samples in {st.seconds:.1f} s "
              f"(warm-up {st.warmup_steps or 0} steps {st.warmup_seconds or 0:.1f} s, evaluations {st.eval_seconds or 0:.1f} s); "
              + (f"{rate:.0f} samples/s steady; " if rate else "")
              + f"peak {st.peak_memory_mb:.0f} MiB ({st.memory_kind}); {st.source}")
    print("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in out["parts"].items()))
    print("  metrics: " + ", ".join(f"{k} {v:.2f}" for k, v in out["metrics"].items()
                                    if isinstance(v, (int, float))))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="kd")
    ap.add_argument("--task", default="recognition")
    ap.add_argument("--tier", default="gpu")
    ap.add_argument("--student")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--profiler", action="store_true", help="kernel intervals instead of NVML's samples")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 2
    from xbench.alloc import configure

    configure()
    out = measure(args, torch.device("cuda"))
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
