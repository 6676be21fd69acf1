"""The harness's training step against a hand-written PyTorch loop, side by side in one process.

Both train the same model from the same initialisation on the same in-memory batches with the same
optimizer, schedule and loss, under the allocator every xbench run gets. Rounds interleave the two
so machine noise hits both alike, and which goes first alternates (ABBA: the second in a round
inherits the first one's heap). Prints the time ratio harness / hand for the recognition student
(the real cost, with everything the harness does once per stage: FLOP counting, the final
evaluation and state copy) and, for a near-zero-compute model, the fixed per-step overhead of
the harness in microseconds of main-thread CPU time.

    python benchmarks/perf/overhead.py [--rounds 5] [--steps 60]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from xbench.budget import BudgetMeter
from xbench.config import load_tiers, replace_options
from xbench.context import RunContext
from xbench.models import FrameCNNStudent
from xbench.specs import ModelContext
from xbench.tasks import Examples
from xbench.train import StepSpec, batch_indices, build_optimizer, build_schedule, derive_seed, fit


class Tiny(nn.Module):
    """Near-zero compute: isolates the per-step cost of the loop itself."""

    def __init__(self, ctx: ModelContext) -> None:
        super().__init__()
        self.head = nn.Linear(4, ctx.num_classes)

    def forward(self, inputs):
        return {"logits": self.head(inputs["rgb"][:, 0, 0, 0, :4].float())}


def make_data(n: int) -> Examples:
    g = torch.Generator().manual_seed(0)
    return Examples({"rgb": torch.randint(0, 256, (n, 8, 3, 32, 32), dtype=torch.uint8, generator=g),
                     "label": torch.randint(0, 20, (n,), generator=g),
                     "label_mask": torch.ones(n, dtype=torch.bool)})


def hand_loop(model, data, tier, steps, seed):
    opt = build_optimizer([(list(model.parameters()), 1.0)], tier)
    sched = build_schedule(opt, tier, steps)
    order = batch_indices(len(data), tier.batch_size, derive_seed(seed, "data", "student"))
    model.train()
    for _ in range(steps):
        idx = next(order)
        x, y = data.tensors["rgb"][idx], data.tensors["label"][idx]
        loss = F.cross_entropy(model({"rgb": x})["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def harness_loop(model, data, tier, steps, seed):
    def step_fn(batch):
        return {"ce": F.cross_entropy(model({"rgb": batch["rgb"]})["logits"], batch["label"])}

    fit(StepSpec(stage="student", modules={"student": model}, groups=[(list(model.parameters()), 1.0)],
                 step_fn=step_fn, data=data, keys=("rgb", "label"), max_steps=steps,
                 evaluate=lambda: {"top1": 0.0}, main_metric="top1"),
        RunContext(None, seed, torch.device("cpu"), BudgetMeter(1e9), tier=tier))


def measure(model_cls, steps: int, rounds: int, clock=time.perf_counter) -> tuple[list[float], list[float]]:
    # one evaluation at the end only, as in a run with eval_every >= steps
    tier = replace_options(load_tiers()["cpu"], {"eval_every": steps, "batch_size": 32}, "bench")
    data = make_data(512)
    ctx = ModelContext(num_classes=20, shapes={})
    hand, harness = [], []
    for r in range(rounds + 1):  # round 0 warms both paths up and is dropped
        pair = [("hand", hand_loop, hand), ("harness", harness_loop, harness)]
        # ABBA order: whichever runs second in a round inherits the first one's heap and caches
        for name, loop, out in (pair if r % 2 else pair[::-1]):
            torch.manual_seed(r)
            model = model_cls(ctx)
            t0 = clock()
            loop(model, data, tier, steps, seed=r)
            if r:
                out.append((clock() - t0) / steps)
    return hand, harness


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    from xbench.alloc import configure

    configure()  # the allocator every xbench run gets, for both loops alike
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    hand, harness = measure(FrameCNNStudent, args.steps, args.rounds)
    ratios = sorted(h / b for h, b in zip(harness, hand))
    print(f"recognition student, batch 32: hand {statistics.median(hand) * 1e3:.2f} ms/step, "
          f"harness {statistics.median(harness) * 1e3:.2f} ms/step, ratio harness/hand: "
          f"median of rounds {statistics.median(ratios):.3f} (rounds {ratios[0]:.3f} to {ratios[-1]:.3f}), "
          f"best of rounds {min(harness) / min(hand):.3f}")
    # the loop's own cost is host CPU work on the main thread: measured as that thread's CPU
    # time with one torch thread, which preemption by other processes does not inflate (wall
    # time differences of microseconds drown in it)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    hand, harness = measure(Tiny, args.steps * 20, args.rounds, clock=time.thread_time)
    torch.set_num_threads(threads)
    extra = sorted(h - b for h, b in zip(harness, hand))
    print(f"near-zero model, main-thread CPU time: hand {statistics.median(hand) * 1e6:.1f} us/step, "
          f"harness {statistics.median(harness) * 1e6:.1f} us/step, fixed overhead "
          f"{statistics.median(extra) * 1e6:.1f} us/step (rounds {extra[0] * 1e6:.1f} to {extra[-1] * 1e6:.1f}), "
          f"ratio {statistics.median(h / b for h, b in zip(harness, hand)):.3f}")


if __name__ == "__main__":
    main()
