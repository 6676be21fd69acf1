"""XKD's objective: EMA teachers, its terms, the shared backbone."""

from __future__ import annotations

import torch
from xbench_xkd import XKDObjective, XKDOptions

from xbench.models import FrameCNNStudent, MelCNNStudent
from xbench.specs import ModelContext, ObjectiveContext


def _xkd_ctx(**opts):
    shapes = {"rgb": (8, 3, 32, 32), "audio": (1, 32, 32)}
    model_ctx = ModelContext(num_classes=20, shapes=shapes)
    torch.manual_seed(0)
    student = FrameCNNStudent(model_ctx)
    with torch.no_grad():
        probe = student({"rgb": torch.zeros(1, *shapes["rgb"], dtype=torch.uint8)})
    return student, ObjectiveContext(model=model_ctx, student=student, student_modalities=("rgb",),
                                     student_shapes={k: tuple(v.shape[1:]) for k, v in probe.items()},
                                     teacher_shapes={}, partners={"audio": lambda: MelCNNStudent(model_ctx)})


def test_xkd_ema_teachers_follow_the_cosine_momentum():
    student, ctx = _xkd_ctx()
    obj = XKDObjective(XKDOptions(ema_start=0.9), ctx)
    assert not any(p.requires_grad for p in obj.teachers.parameters())
    w_student = next(student.parameters())
    w_teacher = next(obj.teachers["student"].parameters())
    before = w_teacher.detach().clone()
    with torch.no_grad():
        w_student.add_(1.0)
    obj.after_step(0.5)  # m = 1 - 0.1 * (cos(pi/2) + 1) / 2 = 0.95
    assert torch.allclose(w_teacher, 0.95 * before + 0.05 * w_student.detach(), atol=1e-6)
    after = w_teacher.detach().clone()
    obj.after_step(1.0)  # m = 1: the teacher no longer moves
    assert torch.equal(w_teacher, after)


def test_xkd_terms_and_shared_backbone():
    student, ctx = _xkd_ctx()
    torch.manual_seed(1)
    batch = {"rgb": torch.randint(0, 255, (4, 8, 3, 32, 32), dtype=torch.uint8),
             "audio": torch.randn(4, 1, 32, 32)}
    terms = XKDObjective(XKDOptions(), ctx)(batch, None, None)
    assert sorted(terms) == ["align", "kd", "recon"]
    total = sum(terms.values())
    total.backward()
    assert next(student.parameters()).grad is not None
    mas = XKDObjective(XKDOptions(shared_backbone=True), ctx)
    # XKD-MAS: the other modality runs through the student's own trunk, not a copy
    assert mas.partner.trunk is student.frames
    assert set(mas(batch, None, None)) == {"align", "kd", "recon"}
    ablation = XKDObjective(XKDOptions(align_weight=0, kd_weight=0), ctx)(batch, None, None)
    assert sorted(ablation) == ["recon"]
