"""glibc's default allocator against xbench's steady configuration (xbench/alloc.py), on the
training step of the recognition student (batch 32 of 8x32x32 clips).

An allocator setting holds for a whole process, so each measurement is its own process; the two
settings alternate (default, steady, default, ...) so machine noise hits both alike. Prints each
process's median step time, and for each setting the median over processes and the spread (the
slowest process / the fastest), then the ratio default / steady of the medians.

    python benchmarks/perf/allocator.py [--processes 6] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def child(steps: int) -> None:
    from xbench import alloc

    alloc.configure()  # what `xbench run` does first; XBENCH_ALLOCATOR=default turns it off
    import torch
    import torch.nn.functional as F

    from xbench.models import FrameCNNStudent
    from xbench.specs import ModelContext

    torch.manual_seed(0)
    model = FrameCNNStudent(ModelContext(num_classes=20, shapes={}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (256, 8, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 20, (256,), generator=g)
    times = []
    for step in range(steps + 5):  # 5 warm-up steps, dropped
        idx = torch.randint(0, 256, (32,), generator=g)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model({"rgb": data[idx]})["logits"], labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 5:
            times.append(time.perf_counter() - t0)
    print(statistics.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=6, help="processes per setting")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.steps)
        return
    results: dict[str, list[float]] = {"default": [], "steady": []}
    for i in range(args.processes):
        for setting in ("default", "steady"):
            env = dict(os.environ, XBENCH_ALLOCATOR=setting)
            out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)], env=env,
                                 capture_output=True, text=True, check=True)
            results[setting].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"process {i} {setting:>7}: {results[setting][-1] * 1e3:.1f} ms/step", flush=True)
    for setting, values in results.items():
        print(f"{setting:>7}: median {statistics.median(values) * 1e3:.1f} ms/step over {len(values)} processes, "
              f"spread slowest/fastest {max(values) / min(values):.2f}x")
    print(f"ratio default / steady (medians): {statistics.median(results['default']) / statistics.median(results['steady']):.2f}x")


if __name__ == "__main__":
    main()
