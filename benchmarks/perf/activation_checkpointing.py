"""What ``student.activation_checkpointing=true`` saves and costs on a transformers and a timm
network: the memory a training step adds on top of the built model, and the step's time.

Each (model, checkpointing) pair runs in a fresh process (alternating off / on, ``--rounds`` times)
that builds the student, then takes ``--steps`` training steps (AdamW, cross-entropy) on random
uint8 clips of 16 x 112 px: the memory figure is the process's peak RSS minus its RSS once the model
and the optimizer state exist (on CUDA: peak allocated minus allocated), the time the median
step after the first.

    python benchmarks/perf/activation_checkpointing.py [--models videomae-s,tsn-resnet18] [--batch 4]
        [--steps 3] [--rounds 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def child(name: str, ac: bool, batch: int, steps: int, device: str) -> dict:
    import torch
    import torch.nn.functional as F

    from xbench.registry import build_registry
    from xbench.specs import ModelContext
    from xbench.train import place, set_execution

    dev = torch.device(device)
    torch.manual_seed(0)
    spec = build_registry().get("students", name)
    model = place(spec.factory(ModelContext(num_classes=20, shapes={"rgb": (16, 3, 112, 112)})), dev)
    set_execution(model, name, None, ac).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (batch, 16, 3, 112, 112), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 20, (batch,), device=dev)
    for q in model.parameters():  # the optimizer's state exists before the baseline is read
        opt.state[q] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(q), "exp_avg_sq": torch.zeros_like(q)}
    base = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = F.cross_entropy(model({"rgb": x})["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        added = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        added = rss_mib() - base
    return {"added_mib": added, "step_s": statistics.median(times[1:] or times)}


def rss_mib() -> float:
    """Peak RSS of this process so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="videomae-s,tsn-resnet18")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "AC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1", args.batch, args.steps, args.device)))
        return 0
    for name in args.models.split(","):
        got: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(args.rounds):
            for ac in ((False, True) if r % 2 == 0 else (True, False)):
                out = subprocess.run([sys.executable, __file__, "--child", name, str(int(ac)), "--batch", str(args.batch),
                                      "--steps", str(args.steps), "--device", args.device],
                                     check=True, capture_output=True, text=True).stdout
                got[ac].append(json.loads(out.strip().splitlines()[-1]))
        mem = {ac: statistics.median(g["added_mib"] for g in got[ac]) for ac in got}
        step = {ac: statistics.median(g["step_s"] for g in got[ac]) for ac in got}
        print(f"{name}, 16 x 112 px, batch {args.batch} on {args.device}: a training step adds {mem[False]:.0f} MiB "
              f"without checkpointing, {mem[True]:.0f} MiB with it ({mem[True] / mem[False]:.2f}x); step "
              f"{step[False]:.2f} s vs {step[True]:.2f} s ({step[True] / step[False]:.2f}x), medians of "
              f"{args.rounds} processes each", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
