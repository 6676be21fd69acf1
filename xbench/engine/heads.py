"""The method's trainable parts besides the student: one head per loss term, the objective's
parameter groups, and the step function that turns a batch into named, weighted loss terms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xbench.engine.plan import Plan, Term
from xbench.engine.state import call
from xbench.errors import PluginError
from xbench.train import place


def build_heads(p: Plan, terms: list[Term], s_taps: dict[str, torch.Tensor], t_taps: dict[str, torch.Tensor],
                device: torch.device, examples: int) -> dict[str, nn.Module]:
    """Each term's loss module, built for the widths of the taps it reads (and the number of
    training examples, for memory banks)."""
    heads = {}
    for key, term, spec, opts in terms:
        dims = {"student": s_taps[term.student].shape[-1], "examples": examples}
        if spec.reads == "teacher":
            dims["teacher"] = t_taps[term.teacher].shape[-1]
        heads[key] = place(call(p.owner("losses", spec.name), f"loss '{spec.name}'", spec.factory, opts, dims),
                           device)
    return heads


def objective_groups(p: Plan, objective: nn.Module, student: nn.Module,
                     culprit: str) -> list[tuple[list[nn.Parameter], float]]:
    """The objective's own trainable parameters, one group per child module with the method's
    lr multiplier for that child's name; parameters of the student it holds are left out (they
    are the student's group, at the tier's lr)."""
    seen = {id(q) for q in student.parameters()}
    mults = dict(p.method.lr_multipliers)
    loss_names = {t.loss for _, t, _, _ in p.terms}
    children = dict(objective.named_children())
    unknown = [n for n in mults if n not in children and n not in loss_names]
    if unknown:
        raise PluginError(f"{culprit} sets an lr multiplier for '{unknown[0]}', which is none of its "
                          f"losses and no module of its objective ({', '.join(children) or 'none'})")
    groups = []
    for name, module in [("", objective), *children.items()]:
        params = module.parameters(recurse=bool(name))
        own = [q for q in params if q.requires_grad and id(q) not in seen]
        seen.update(id(q) for q in own)
        groups.append((own, mults.get(name, 1.0)))
    return groups


def step_fn(terms: list[Term], heads: dict[str, nn.Module], student: nn.Module, s_inputs: tuple[str, ...],
            objective: nn.Module | None, teacher_out: Callable, method: str, steps: int) -> Callable:
    """batch -> named weighted loss terms: each (student tap, teacher tap or target) term, then the
    objective's terms. The student runs once on the batch, unless nothing reads its outputs. The
    function is called once per optimizer step of a stage of ``steps`` steps: a term with a
    ``warmup`` is weighted by its ramp at that step."""
    need_student = bool(terms) or getattr(objective, "uses_student_output", True)
    ramp_steps = {key: max(1, round(term.warmup * steps)) for key, term, _, _ in terms if term.warmup}
    done = [0]  # optimizer steps taken: the ramp's clock (counted here, not read from a clock)
    # keyword -> batch key of what each teacher-reading loss reads besides its taps, decided once
    keywords = {key: {**({"target": term.target, "label_mask": "label_mask"} if spec.target else {}),
                      **({"index": "index"} if spec.index else {})}
                for key, term, spec, _ in terms}

    def step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s_out = student({m: batch[m] for m in s_inputs}) if need_student else None
        t_out = teacher_out(batch)
        done[0] += 1
        out = {}
        for key, term, spec, _ in terms:
            if spec.reads == "teacher":
                args = (batch.get("positions"),) if spec.positions else ()
                kw = {name: batch[k] for name, k in keywords[key].items()}
                value = heads[key](s_out[term.student], t_out[term.teacher], *args, **kw)
            elif term.target.startswith("student:"):
                value = heads[key](s_out[term.student], s_out[term.target[8:]], batch.get("label_mask"))
            else:
                value = heads[key](s_out[term.student], batch[term.target], batch["label_mask"])
            ramp = min(1.0, done[0] / ramp_steps[key]) if key in ramp_steps else 1.0
            out[key] = term.weight * ramp * value
        if objective is not None:
            for name, value in objective(batch, s_out, t_out).items():
                out[f"{method}:{name}"] = value
        return out

    return step


def count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def count_own(module: nn.Module | None, student: nn.Module | None) -> int:
    """Trainable parameters of an objective, without the student's it may hold a reference to."""
    if module is None:
        return 0
    own = {id(q) for q in student.parameters()} if student is not None else set()
    seen = {id(q): q for q in module.parameters() if q.requires_grad and id(q) not in own}
    return sum(q.numel() for q in seen.values())
