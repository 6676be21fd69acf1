"""The field's networks through the harness: xbench's student step on a library backbone vs a
hand-written torchvision / transformers loop on the same batches, side by side in one process; and
what each distillation loss adds to a step on that backbone.

Both loops train the same architecture at 16 frames of 112 px with batch 2 on the same uint8
batches, with the same optimizer and schedule: the hand loop is torchvision's ``r2plus1d_18`` (or
transformers' ``VideoMAEForVideoClassification``, ViT-S) called on normalised float clips with
``F.cross_entropy``; the harness loop is ``xbench.train.fit`` on the registered student
(``r2plus1d-18``, ``videomae-s``), which normalises uint8 frames itself and returns its taps. Rounds
interleave the two and alternate which goes first (ABBA). The ratio printed is hand time / harness
time per step in the steady state: from the end of the first step to the end of the last (the
harness counts FLOPs once, on its first step of a stage: on a transformer's many small ops that step
costs a few tenths of a second more, printed apart). 1.0 means the harness costs nothing; the goal
is >= 0.98.

Then, per loss (kd, fitnet and the 12 generic ones), a harness step of CE + the loss against a
frozen teacher's cached taps (96-wide feature, 8 tokens, 20 logits: what the synth audio teacher
gives), as a ratio to the CE-only step on the same backbone.

    python benchmarks/perf/backbones.py [--rounds 3] [--steps 3] [--loss-steps 3] [--models A,B] [--loss-models A,B]
        [--device cuda --batch 64] [--compile]

On CUDA both loops run under bf16 autocast with channels-last convolution weights (what the harness
does on a GPU), and each step's time is taken after a synchronisation. ``--compile`` adds a third
contender: xbench's step with the student compiled (``student.compile=true``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from xbench.budget import BudgetMeter
from xbench.config import load_tiers, replace_options
from xbench.context import RunContext
from xbench.registry import build_registry
from xbench.specs import ModelContext
from xbench.tasks import Examples
from xbench.train import (
    StepSpec,
    batch_indices,
    build_optimizer,
    build_schedule,
    derive_seed,
    fit,
    place,
    set_execution,
)

CLASSES, FRAMES, SIDE = 20, 16, 112
#: where both loops run (--device): on CUDA both use bf16 autocast and channels-last weights
DEVICE = torch.device("cpu")
MEAN = {"r2plus1d-18": (0.43216, 0.394666, 0.37645), "videomae-s": (0.485, 0.456, 0.406)}
STD = {"r2plus1d-18": (0.22803, 0.22145, 0.216989), "videomae-s": (0.229, 0.224, 0.225)}
LOSSES = ("kd", "fitnet", "dkd", "at", "nst", "sp", "cc", "rkd", "pkt", "vid", "crd", "mmd", "coral", "cosine")


def make_data(n: int) -> Examples:
    g = torch.Generator().manual_seed(0)
    return Examples({"rgb": torch.randint(0, 256, (n, FRAMES, 3, SIDE, SIDE), dtype=torch.uint8, generator=g),
                     "label": torch.randint(0, CLASSES, (n,), generator=g),
                     "label_mask": torch.ones(n, dtype=torch.bool), "index": torch.arange(n),
                     # a frozen teacher's cached taps (the harness looks them up by example)
                     "t_logits": torch.randn(n, CLASSES, generator=g), "t_feature": torch.randn(n, 96, generator=g),
                     "t_tokens": torch.randn(n, 8, 96, generator=g)})


def hand_model(name: str) -> torch.nn.Module:
    if name == "r2plus1d-18":
        from torchvision.models.video import r2plus1d_18

        return r2plus1d_18(weights=None, num_classes=CLASSES)
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    return VideoMAEForVideoClassification(VideoMAEConfig(
        image_size=SIDE, num_frames=FRAMES, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
        intermediate_size=1536, use_mean_pooling=True, num_labels=CLASSES))


def hand_loop(name: str, model: torch.nn.Module, data: Examples, tier, steps: int, seed: int) -> list[float]:
    opt = build_optimizer([(list(model.parameters()), 1.0)], tier)
    sched = build_schedule(opt, tier, steps)
    order = batch_indices(len(data), tier.batch_size, derive_seed(seed, "data", "student"))
    mean = torch.tensor(MEAN[name], device=DEVICE).view(1, 1, 3, 1, 1)
    std = torch.tensor(STD[name], device=DEVICE).view(1, 1, 3, 1, 1)
    model.train()
    marks = []
    cuda = DEVICE.type == "cuda"
    for _ in range(steps):
        idx = next(order)
        x = data.tensors["rgb"][idx].to(DEVICE, non_blocking=True)
        x = (x.float() / 255.0 - mean) / std  # (B, T, 3, H, W)
        y = data.tensors["label"][idx].to(DEVICE, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            if name == "r2plus1d-18":
                logits = model(x.transpose(1, 2))
            else:
                logits = model(pixel_values=x).logits
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        mark(marks)
    return marks


def mark(marks: list[float]) -> None:
    if DEVICE.type == "cuda":  # the step's kernels done before its time is taken
        torch.cuda.synchronize()
    marks.append(time.perf_counter())


def harness_loop(model: torch.nn.Module, data: Examples, tier, steps: int, seed: int, head=None,
                 term: tuple[str, str] | None = None) -> list[float]:
    def step_fn(batch):
        out = model({"rgb": batch["rgb"]})
        terms = {"ce": F.cross_entropy(out["logits"], batch["label"])}
        if head is not None:
            s_tap, t_tap = term
            terms["kd"] = head(out[s_tap], batch[f"t_{t_tap}"], **_keywords(head, batch))
        return terms

    modules = {"student": model, **({"head": head} if head is not None else {})}
    params = [p for m in modules.values() for p in m.parameters()]
    keys = ("rgb", "label", "label_mask", "index", "t_logits", "t_feature", "t_tokens")
    marks: list[float] = []
    fit(StepSpec(stage="student", modules=modules, groups=[(params, 1.0)], step_fn=step_fn, data=data, keys=keys,
                 max_steps=steps, evaluate=lambda: {"top1": 0.0}, main_metric="top1",
                 after_step=lambda progress: mark(marks)),
        RunContext(None, seed, DEVICE, BudgetMeter(1e9), tier=tier))
    return marks


def steady(marks: list[float]) -> float:
    """Seconds per step after the first (the steps' own cost, without a stage's one-off work)."""
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def _keywords(head, batch):
    spec = getattr(head, "_spec", None)
    if spec is None:
        return {}
    return {**({"target": batch["label"], "label_mask": batch["label_mask"]} if spec.target else {}),
            **({"index": batch["index"]} if spec.index else {})}


def student(reg, name: str, compiled: bool = False) -> torch.nn.Module:
    model = place(reg.get("students", name).factory(ModelContext(num_classes=CLASSES,
                                                                 shapes={"rgb": (FRAMES, 3, SIDE, SIDE)})), DEVICE)
    return set_execution(model, name, "default" if compiled else None, False)


def versus_hand(reg, name: str, data: Examples, tier, steps: int, rounds: int, compiled: bool) -> None:
    hand, ours, comp, first, first_c = [], [], [], [], []
    for r in range(rounds + 1):  # round 0 warms both up and is dropped
        pair = [("hand", hand), ("harness", ours)] + ([("compiled", comp)] if compiled else [])
        for who, out in (pair if r % 2 else pair[::-1]):
            torch.manual_seed(r)
            t0 = time.perf_counter()
            if who == "hand":
                marks = hand_loop(name, place(hand_model(name), DEVICE), data, tier, steps, seed=r)
            else:
                marks = harness_loop(student(reg, name, who == "compiled"), data, tier, steps, seed=r)
                # the first step's extra: FLOP counting (and the compilation)
                if who == "harness":
                    first.append(marks[0] - t0 - steady(marks))
                else:
                    first_c.append(marks[1] - t0 - 2 * steady(marks[1:]))
            if r:
                out.append(steady(marks[1:] if who == "compiled" else marks))  # it compiles in step 2
    ratios = sorted(h / o for h, o in zip(hand, ours))
    print(f"{name}, 16 x 112 px, batch {tier.batch_size} on {DEVICE.type}, steady state: hand "
          f"{statistics.median(hand) * 1e3:.0f} ms/step, xbench {statistics.median(ours) * 1e3:.0f} ms/step; "
          f"hand/xbench: median of rounds {statistics.median(ratios):.3f} (rounds {ratios[0]:.3f} to "
          f"{ratios[-1]:.3f}); the stage's first step costs {statistics.median(first[1:] or first) * 1e3:.0f} ms more "
          "(FLOP counting, once per stage)", flush=True)
    if compiled:
        speed = sorted(o / c for o, c in zip(ours, comp))
        print(f"{name} with student.compile=true: {statistics.median(comp) * 1e3:.0f} ms/step; xbench eager/compiled: "
              f"median {statistics.median(speed):.3f} (rounds {speed[0]:.3f} to {speed[-1]:.3f}); its first two steps "
              f"{statistics.median(first_c[1:] or first_c):.1f} s (FLOP counting, then compiling; round 0, a cold "
              f"compile: {first_c[0]:.1f} s)", flush=True)


def loss_costs(reg, name: str, data: Examples, tier, steps: int) -> None:
    """Each loss's step against the CE-only step, ABA: CE, the loss, CE again (the mean of both)."""
    probe = student(reg, name)
    with torch.no_grad():
        taps = probe({"rgb": data.tensors["rgb"][:2]})
    parts = []
    for loss in LOSSES:
        spec = reg.get("losses", loss)
        s_tap = spec.student_tap
        t_tap = "tokens" if s_tap == "tokens" else spec.teacher_tap
        dims = {"student": taps[s_tap].shape[-1], "teacher": data.tensors[f"t_{t_tap}"].shape[-1],
                "examples": len(data)}
        if s_tap == "logits":
            dims["teacher"] = CLASSES
        times = []
        for with_loss in (False, True, False):  # steady-state steps: ABA around the loss's
            torch.manual_seed(0)
            model = student(reg, name)
            head = spec.factory(spec.options(), dims) if with_loss else None
            if head is not None:
                head._spec = spec
            times.append(steady(harness_loop(model, data, tier, steps, seed=0, head=head, term=(s_tap, t_tap))))
        parts.append(f"{loss} {times[1] / ((times[0] + times[2]) / 2):.3f}")
    print(f"{name}: a step with CE + the loss / CE alone (student tap -> teacher tap): " + ", ".join(parts),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--loss-steps", type=int, default=3)
    ap.add_argument("--models", default="r2plus1d-18,videomae-s")
    ap.add_argument("--loss-models", default="r2plus1d-18,videomae-s")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--compile", action="store_true", help="also xbench's step with student.compile=true")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    from xbench.alloc import configure

    configure()  # the allocator every xbench run gets, for both loops alike
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    reg = build_registry()
    tier = replace_options(load_tiers()["cpu"], {"eval_every": 10 ** 6, "batch_size": args.batch}, "bench")
    data = make_data(max(16, 2 * args.batch))
    for name in filter(None, args.models.split(",")):
        versus_hand(reg, name, data, tier, args.steps, args.rounds, args.compile)
    for name in filter(None, args.loss_models.split(",")):
        loss_costs(reg, name, data, tier, args.loss_steps)


if __name__ == "__main__":
    main()
