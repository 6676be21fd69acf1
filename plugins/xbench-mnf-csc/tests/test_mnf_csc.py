"""MNF+CSC's objective: the MNF side never reaches the student."""

from __future__ import annotations

import torch
from xbench_mnf_csc import MNFCSCObjective, MNFCSCOptions

from xbench.config import RunConfig, load_tiers
from xbench.engine import plan
from xbench.engine.heads import objective_groups as _objective_groups
from xbench.specs import ModelContext, ObjectiveContext


def _mnf(d_teacher=6):
    ctx = ObjectiveContext(model=ModelContext(num_classes=3, shapes={}), student=torch.nn.Linear(1, 1),
                           student_modalities=("rgb",),
                           student_shapes={"feature": (8,), "spatial": (2, 8, 2, 2)},
                           teacher_shapes={"feature": (d_teacher,)})
    torch.manual_seed(0)
    return MNFCSCObjective(MNFCSCOptions(), ctx)


def test_mnf_side_never_reaches_the_student_csc_does():
    obj = _mnf()
    feature = torch.randn(4, 8, requires_grad=True)
    spatial = torch.randn(4, 2, 8, 2, 2, requires_grad=True)
    batch = {"label": torch.tensor([0, 1, 0, 2]), "label_mask": torch.ones(4, dtype=torch.bool)}
    terms = obj(batch, {"feature": feature, "spatial": spatial}, {"feature": torch.randn(4, 6)})
    assert sorted(terms) == ["csc", "l1", "mnf_ce", "triplet"]
    (terms["mnf_ce"] + terms["triplet"] + terms["l1"]).backward(retain_graph=True)
    assert feature.grad is None and spatial.grad is None  # L_a: MNF modules only
    assert obj.mnf.select[0].weight.grad.abs().sum() > 0 and obj.mnf.adapt[0].weight.grad is not None
    terms["csc"].backward()
    assert feature.grad.abs().sum() > 0 and spatial.grad.abs().sum() > 0


def test_mnf_modules_train_at_a_fifth_of_the_lr(xbench_registry):
    p = plan(xbench_registry, RunConfig(method="mnf-csc", task="recognition", budget="smoke"), load_tiers())
    obj = _mnf()
    student = torch.nn.Linear(2, 2)
    groups = [(len(params), mult) for params, mult in _objective_groups(p, obj, student, "m") if params]
    assert groups == [(len(list(obj.mnf.parameters())), 0.2)]
