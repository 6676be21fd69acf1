"""Training through xbench's data path against training from clips already in memory.

The data path of a run: open the dataset, build the train split's examples (decoding every clip,
or mapping them from the decode-once cache), then train. The reference trains the same student
for the same steps on the same tensors already in memory, under the allocator every xbench run
gets. Rounds interleave the two in one process, which goes first alternating (ABBA); the cache
is warm after round 0, as for every run after the first. Prints the throughput ratio reference
time / data-path time (goal >= 0.95), with and without the cache.

    python benchmarks/perf/data_path.py [--size small] [--steps 60] [--rounds 3] [--cache both|on|off]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from xbench.data.io import data_home
from xbench.data.synth import SynthDataset, SynthOptions
from xbench.models import FrameCNNStudent
from xbench.registry import build_registry
from xbench.specs import ModelContext
from xbench.train import batch_indices


def train(rgb: torch.Tensor, labels: torch.Tensor, steps: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = FrameCNNStudent(ModelContext(num_classes=20, shapes={}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = batch_indices(len(rgb), 32, seed)
    for _ in range(steps):
        idx = next(order)
        loss = F.cross_entropy(model({"rgb": rgb[idx]})["logits"], labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", choices=("both", "on", "off"), default="both")
    args = ap.parse_args()
    from xbench.alloc import configure

    configure()  # the allocator every xbench run gets, for both alike
    reg = build_registry()
    spec = reg.get("tasks", "recognition")
    task = spec.factory(spec.options())

    def examples():
        ds = SynthDataset(SynthOptions(size=args.size), data_home(), log=lambda m: None)
        return task.examples(ds, "train", ("rgb",))

    in_ram = examples()  # also fills the decode cache
    rgb, labels = in_ram.tensors["rgb"], in_ram.tensors["label"]
    print(f"{len(rgb)} train clips of {tuple(rgb.shape[1:])}, {args.steps} steps of 32, "
          f"{torch.get_num_threads()} threads")
    for cache in {"both": ("1", "0"), "on": ("1",), "off": ("0",)}[args.cache]:
        os.environ["XBENCH_DECODE_CACHE"] = cache
        ref, path, prep = [], [], []
        for r in range(args.rounds + 1):  # round 0 warms up and is dropped
            # ABBA: which goes first alternates (the second inherits the first one's heap)
            for first in ((True, False) if r % 2 else (False, True)):
                if first:
                    t0 = time.perf_counter()
                    train(rgb, labels, args.steps, r)
                    if r:
                        ref.append(time.perf_counter() - t0)
                else:
                    t1 = time.perf_counter()
                    ex = examples()
                    t2 = time.perf_counter()
                    train(ex.tensors["rgb"], ex.tensors["label"], args.steps, r)
                    del ex
                    if r:
                        path.append(time.perf_counter() - t1)
                        prep.append(t2 - t1)
        ratios = sorted(a / b for a, b in zip(ref, path))
        print(f"decode cache {'on ' if cache == '1' else 'off'}: in memory {statistics.median(ref):.2f} s, "
              f"data path {statistics.median(path):.2f} s (of which examples {statistics.median(prep):.2f} s); "
              f"throughput ratio {statistics.median(ratios):.3f} (rounds {ratios[0]:.3f} to {ratios[-1]:.3f})")
    os.environ.pop("XBENCH_DECODE_CACHE")


if __name__ == "__main__":
    main()
