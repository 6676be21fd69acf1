"""Achieved GFLOP/s of the recognition student's training step, as a fraction of a multiply-add
peak measured on the same machine in the same run (a large float32 matrix multiply, the best a
dense kernel gets here). FLOPs are counted with torch.utils.flop_counter, as the budget meter
counts them.

    python benchmarks/perf/flops.py [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from xbench.models import FrameCNNStudent
from xbench.specs import ModelContext


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = FrameCNNStudent(ModelContext(num_classes=20, shapes={}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randint(0, 256, (32, 8, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 20, (32,))

    def step():
        loss = F.cross_entropy(model({"rgb": x})["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    peaks, rates = [], []
    for _ in range(args.rounds):  # peak and step alternate: the same machine state for both
        peaks.append(matmul_peak())
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(flops * args.steps / (time.perf_counter() - t0) / 1e9)
    peak, rate = statistics.median(peaks), statistics.median(rates)
    print(f"{torch.get_num_threads()} threads; student step {flops / 1e9:.2f} GFLOP; achieved {rate:.1f} GFLOP/s; "
          f"matmul peak {peak:.1f} GFLOP/s; fraction {rate / peak:.3f}")


if __name__ == "__main__":
    main()
