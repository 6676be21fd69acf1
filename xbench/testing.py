"""Conformance checks for registered specs, used by xbench's own tests over every registered
spec and usable by third-party plugin tests. Each check raises AssertionError with a message
naming the spec; none needs a GPU or a download."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from xbench.config import RunConfig, Tier, load_tiers, replace_options
from xbench.registry import Registry
from xbench.specs import ModelContext
from xbench.train import derive_seed

#: a budget small enough for a conformance run: two steps of each stage
MICRO = {"student_steps": 2, "teacher_steps": 2, "pretrain_steps": 2, "probe_steps": 2, "finetune_steps": 2,
         "eval_every": 2, "batch_size": 4}


def _tiny(reg: Registry, dataset: str, data_root: str, task: str):
    spec = reg.get("datasets", dataset)
    t = reg.get("tasks", task)
    names = {f.name for f in dataclasses.fields(spec.options)}
    # the data the task runs on: tiny, with the task's own dataset defaults (e.g. overlaps)
    values = {k: v for k, v in {"size": "tiny", **t.dataset_defaults}.items() if k in names}
    ds = spec.factory(spec.options(**values), Path(data_root))
    return ds, t.factory(t.options())


def tiny_examples(reg: Registry, task: str, modalities: tuple[str, ...], data_root: Path, n: int = 4):
    """``n`` examples of the task's first dataset at size tiny, with the given modalities."""
    t = reg.get("tasks", task)
    ds, task_obj = _tiny(reg, t.datasets[0], str(data_root), task)
    ex = task_obj.examples(ds, "val", modalities)
    return ds, task_obj, ex.take(torch.arange(n))


def _ctx(ds, task_obj, batch: dict[str, Any]) -> ModelContext:
    return ModelContext(num_classes=ds.num_classes,
                        shapes={k: tuple(v.shape[1:]) for k, v in batch.items() if isinstance(v, torch.Tensor)},
                        extras=dict(getattr(task_obj, "extras", {})))


def check_model(reg: Registry, kind: str, name: str, data_root: Path, task: str = "recognition") -> None:
    """Build a student or teacher, forward on its modalities only (plus its teacher-forcing
    targets), check taps, shapes, a finite backward, and that the same seed builds the same model."""
    spec = reg.get(kind, name)
    ds, task_obj, batch = tiny_examples(reg, task, spec.modalities, data_root)
    inputs = {m: batch[m] for m in spec.modalities + getattr(spec, "train_inputs", ())}
    outs = []
    for _ in range(2):
        torch.manual_seed(derive_seed(0, "conformance"))
        model = spec.factory(_ctx(ds, task_obj, inputs))
        model.train()
        out = model(inputs)
        # "generated" is an evaluation-only tap (sentence decoding); the rest appear in training
        missing = [t for t in spec.taps if t not in out and t != "generated"]
        assert not missing, f"{kind[:-1]} '{name}': forward returned no tap(s) {missing}"
        # (4, C), or (4, positions, C) for dense tasks (per-snippet detection scores)
        shape = tuple(out["logits"].shape)
        assert shape[0] == 4 and shape[-1] == ds.num_classes and len(shape) in (2, 3), \
            f"{kind[:-1]} '{name}': logits shape {shape}, expected (4, {ds.num_classes}) or (4, N, {ds.num_classes})"
        # every floating tap contributes, so every head a tap depends on gets a gradient
        loss = sum(v.float().mean() for v in out.values() if v.is_floating_point())
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None for g in grads), f"{kind[:-1]} '{name}': no gradient reached it"
        assert all(torch.isfinite(g).all() for g in grads if g is not None), \
            f"{kind[:-1]} '{name}': non-finite gradients"
        model.eval()
        with torch.no_grad():
            outs.append(model({m: inputs[m] for m in spec.modalities})["logits"])
    assert torch.equal(outs[0], outs[1]), f"{kind[:-1]} '{name}': not deterministic for a fixed seed"


def check_loss(reg: Registry, name: str) -> None:
    """Build a loss with its default options; a finite scalar and finite gradients."""
    spec = reg.get("losses", name)
    torch.manual_seed(0)
    # the same width on both sides: logit losses need it, feature losses size their heads by it
    loss = spec.factory(spec.options(), {"student": 8, "teacher": 8, "examples": 16})
    args: list = list(spec.example()) if spec.example is not None else []
    if args:
        s = args[0].detach().requires_grad_(True)
        value = loss(s, *args[1:], **_keywords(spec, s))
    elif spec.reads == "target":
        s = torch.randn(4, 8, requires_grad=True)
        value = loss(s, torch.tensor([0, 1, 2, 3]), torch.tensor([True, True, False, True]))
    else:
        s = torch.randn(4, 8, requires_grad=True)
        value = loss(s, torch.randn(4, 8), **_keywords(spec, s))
    assert value.ndim == 0, f"loss '{name}': returned shape {tuple(value.shape)}, expected a scalar"
    assert math.isfinite(float(value.detach())), f"loss '{name}': not finite"
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all(), f"loss '{name}': bad gradient"
    if spec.positions:
        seqs = args[:2]
        if not seqs or seqs[0].ndim < 3:  # (B, T, C) sequences of the same width
            g = torch.Generator().manual_seed(0)
            seqs = [torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)]
        _check_positions(name, loss, *seqs, **_keywords(spec, seqs[0]))


def _keywords(spec, student: torch.Tensor) -> dict[str, torch.Tensor]:
    """The keyword arguments the harness passes a loss besides its taps: a target (class indices
    for (B, C) logits, multi-hot labels for (B, T, C) sequences, one per time step), the label
    mask (one example unlabelled) and example indices within a train split of 16."""
    b, g = student.shape[0], torch.Generator().manual_seed(2)
    kw: dict[str, torch.Tensor] = {}
    if spec.target:
        if student.ndim == 2:
            kw["target"] = torch.arange(b) % student.shape[-1]
        else:
            kw["target"] = (torch.rand(student.shape, generator=g) > 0.5).float()
        kw["label_mask"] = torch.arange(b) != b - 1
    if spec.index:
        kw["index"] = torch.arange(b)
    return kw


def _check_positions(name: str, loss, student: torch.Tensor, teacher: torch.Tensor, **kw) -> None:
    """A loss that takes ``positions`` ignores what is at padded time steps: the same value
    whatever the student and teacher hold there, and no gradient into it."""
    positions = torch.ones(student.shape[:2], dtype=torch.bool)
    positions[0, -2:] = False  # a sequence shorter than the batch's
    s = student.detach().clone().requires_grad_(True)
    state = {k: v.clone() for k, v in loss.state_dict().items()}  # a memory bank moves per call
    torch.manual_seed(0)  # the same draws (CRD's negatives) for both calls
    value = loss(s, teacher, positions, **kw)
    value.backward()
    g = torch.Generator().manual_seed(1)
    s2, t2 = student.detach().clone(), teacher.detach().clone()
    s2[0, -2:] = torch.randn(s2[0, -2:].shape, generator=g) * 10
    t2[0, -2:] = torch.randn(t2[0, -2:].shape, generator=g) * 10
    loss.load_state_dict(state)
    torch.manual_seed(0)
    other = loss(s2, t2, positions, **kw)
    assert math.isfinite(float(value.detach())), f"loss '{name}': not finite with positions"
    assert torch.allclose(value.detach(), other.detach(), rtol=1e-5, atol=1e-6), \
        f"loss '{name}': depends on padded positions ({float(value):.6f} vs {float(other):.6f})"
    assert not s.grad[0, -2:].any(), f"loss '{name}': gradient into padded positions"


def micro_tier(tier: Tier) -> Tier:
    return replace_options(tier, MICRO, "conformance tier")


def check_method(reg: Registry, name: str, task: str, data_root: Path) -> dict[str, Any]:
    """Run the method end to end on tiny data for two steps per stage. Checks: budget obeyed,
    val selection recorded, test metrics finite, no privileged modality at evaluation, and the
    frozen teacher unchanged (the harness raises if it changed)."""
    from xbench.run import execute, plan

    tiers = load_tiers()
    tiers = {"micro": replace_options(micro_tier(tiers["smoke"]), {"name": "micro"}, "micro")}
    p = plan(reg, RunConfig(method=name, task=task, budget="micro"), tiers)
    rec = execute(p, 0, device=torch.device("cpu"), data_root=data_root)
    spec, t = reg.get("methods", name), reg.get("tasks", task)
    for stage in rec["budget"]["stages"]:
        if stage["stage"] == "teacher-inference":  # one pass over the train split, no steps
            assert stage["steps"] == 0, f"method '{name}': teacher inference took optimizer steps"
            continue
        limit = MICRO[f"{stage['stage']}_steps"]
        assert stage["steps"] <= limit, f"method '{name}': {stage['stage']} ran {stage['steps']} steps"
        assert stage["samples"] <= limit * MICRO["batch_size"], f"method '{name}': too many samples"
    if spec.labels or rec["selection"].get("stage") == "finetune":
        assert rec["selection"]["split"] == "val", f"method '{name}': selection not on val"
    else:  # self-supervised without fine-tuning: no labels, so nothing may have been selected
        assert rec["selection"]["split"] is None, f"method '{name}': selected on labels"
    # a metric may be undefined on tiny data (NaN: no many-shot class), never infinite or missing
    assert all(isinstance(v, float) and not math.isinf(v) for v in rec["metrics"].values()), \
        f"method '{name}': bad metric values {rec['metrics']}"
    if spec.evaluates == "student":
        assert math.isfinite(rec["metrics"][t.main_metric]), f"method '{name}': main metric not finite"
    if spec.evaluates == "student":
        assert tuple(rec["eval_modalities"]) == t.student_modalities, \
            f"method '{name}': student evaluated with {rec['eval_modalities']}"
    return rec
