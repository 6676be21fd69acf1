"""What each distillation loss adds to a training step of the task's student, side by side in one
process: time per step and memory, as ratios to the ``student`` method (CE alone).

Every method trains the same student (same init) on the same batch of the task's real examples
(tiny synth, batch of the tier) through the harness's own step function, heads and optimizer;
the teacher's outputs are computed once beforehand, as the teacher cache serves them in a run.
Rounds interleave the methods (student, kd, fitnet, dkd, ..., student, kd, ...) so machine noise
hits all alike; the time ratio is the median over rounds of method / student.

Memory: the bytes autograd keeps for backward during the step's forward (activations; each
storage counted once) plus the state of the method's heads (parameters, gradients and the two
AdamW moments) and buffers (CRD's memory banks), against the same for the student alone. On CUDA
the peak allocated memory of a step is printed too.

    python benchmarks/perf/kd_losses.py [--task recognition] [--rounds 5] [--steps 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from xbench.config import RunConfig, load_tiers
from xbench.engine import plan
from xbench.engine.heads import build_heads as _build_heads
from xbench.engine.heads import step_fn as _step_fn
from xbench.registry import build_registry
from xbench.specs import ModelContext
from xbench.testing import _tiny
from xbench.train import build_optimizer

METHODS = ("student", "kd", "fitnet", "dkd", "at", "nst", "sp", "cc", "rkd", "pkt", "vid", "crd",
           "mmd", "coral", "cosine")


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Bench:
    """One method's training step, built as the harness builds it."""

    def __init__(self, reg, method: str, task: str, batch: dict, examples: int, ctx: ModelContext,
                 device: torch.device) -> None:
        tiers = load_tiers()
        p = plan(reg, RunConfig(method=method, task=task), tiers)
        st = reg.get("students", p.task.student)
        torch.manual_seed(0)  # the same student init for every method
        self.student = st.factory(ctx).to(device).train()
        s_inputs = p.task.student_modalities + st.train_inputs
        with torch.no_grad():
            s_probe = self.student({m: batch[m] for m in s_inputs})
        t_out = {}
        if p.teacher is not None and p.uses_teacher_in_loss:
            torch.manual_seed(1)
            teacher = p.teacher.factory(ctx).to(device).eval()
            with torch.no_grad():
                t_out = teacher({m: batch[m] for m in p.teacher.modalities})
        self.heads = _build_heads(p, p.terms, s_probe, t_out, device, examples)
        self.step_fn = _step_fn(p.terms, self.heads, self.student, s_inputs, None, lambda b: t_out, method)
        groups = [(list(self.student.parameters()), 1.0)] + [(list(h.parameters()), 1.0) for h in self.heads.values()]
        self.opt = build_optimizer(groups, p.tier)
        self.batch = batch

    def step(self) -> None:
        loss = sum(self.step_fn(self.batch).values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def memory(self) -> tuple[int, int]:
        """(bytes saved for backward by one forward, bytes of head state and buffers)."""
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = sum(self.step_fn(self.batch).values())
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        params = [q for h in self.heads.values() for q in h.parameters()]
        buffers = [b for h in self.heads.values() for b in h.buffers()]
        return sum(storages.values()), 4 * _bytes(params) + _bytes(buffers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="recognition")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    args = ap.parse_args()
    device = torch.device(args.device)
    reg = build_registry()
    spec = reg.get("tasks", args.task)
    tier = load_tiers()["cpu"]
    root = Path(tempfile.gettempdir()) / "xbench-bench-data"
    ds, task = _tiny(reg, spec.default_dataset, str(root), args.task)
    mods = tuple(dict.fromkeys(spec.student_modalities + reg.get("teachers", reg.default_teacher(spec)).modalities))
    train = task.examples(ds, "train", mods)
    idx = torch.arange(tier.batch_size) % len(train)  # the tier's batch (tiny data repeats)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in train.take(idx).items()}
    shapes = {k: tuple(v.shape[1:]) for k, v in train.tensors.items() if isinstance(v, torch.Tensor)}
    ctx = ModelContext(num_classes=ds.num_classes, shapes=shapes, extras=dict(getattr(task, "extras", {})))
    benches = {m: Bench(reg, m, args.task, batch, len(train), ctx, device) for m in args.methods}
    if "student" not in benches:
        benches = {"student": Bench(reg, "student", args.task, batch, len(train), ctx, device), **benches}

    times: dict[str, list[float]] = {m: [] for m in benches}
    for r in range(args.rounds + 1):  # round 0 warms every path up and is dropped
        for m, b in benches.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                b.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:
                times[m].append((time.perf_counter() - t0) / args.steps)
    saved0, _ = benches["student"].memory()
    state0 = 4 * _bytes(benches["student"].student.parameters())
    print(f"task {args.task}, batch {tier.batch_size}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
    print(f"{'method':8} {'ms/step':>8} {'time x':>7} {'+MB':>7} {'memory x':>9}" +
          (f" {'cuda peak MB':>12}" if device.type == "cuda" else ""))
    for m, b in benches.items():
        ratio = statistics.median(x / s for x, s in zip(times[m], times["student"]))
        saved, state = b.memory()
        added = saved - saved0 + state
        line = (f"{m:8} {statistics.median(times[m]) * 1e3:8.2f} {ratio:7.3f} {added / 2**20:7.2f} "
                f"{(saved0 + state0 + added) / (saved0 + state0):9.3f}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            b.step()
            torch.cuda.synchronize()
            line += f" {torch.cuda.max_memory_allocated() / 2**20:12.1f}"
        print(line)


if __name__ == "__main__":
    main()
