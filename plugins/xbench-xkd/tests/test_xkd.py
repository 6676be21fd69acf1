"""XKD's objective: EMA teachers, its terms, the shared backbone."""

from __future__ import annotations

import torch
from xbench_xkd import XKDObjective, XKDOptions

from xbench.models import FrameCNNStudent, MelCNNStudent
from xbench.specs import ModelContext, ObjectiveContext


def _xkd_ctx(steps: int = 250):
    shapes = {"rgb": (8, 3, 32, 32), "audio": (1, 32, 32)}
    model_ctx = ModelContext(num_classes=20, shapes=shapes)
    torch.manual_seed(0)
    student = FrameCNNStudent(model_ctx)
    with torch.no_grad():
        probe = student({"rgb": torch.zeros(1, *shapes["rgb"], dtype=torch.uint8)})
    return student, ObjectiveContext(model=model_ctx, student=student, student_modalities=("rgb",),
                                     student_shapes={k: tuple(v.shape[1:]) for k, v in probe.items()},
                                     teacher_shapes={}, partners={"audio": lambda: MelCNNStudent(model_ctx)},
                                     steps=steps)


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


def test_xkd_momentum_is_relative_to_the_stage():
    """The paper's 0.997 (a 750k-step run) where the stage is long enough; on a shorter stage the
    start is lowered to 1 - 10 / steps, so the teachers' random initialisation is gone by the end
    (at 0.997, 250 steps left ~69% of it)."""
    import math

    from xbench_xkd import ema_start

    assert [ema_start(XKDOptions(), n) for n in (250, 1000, 750_000)] == [0.96, 0.99, 0.997]
    assert ema_start(XKDOptions(ema_start=0.997), 250) == 0.997

    def kept(m0, n):  # share of the initial weights left after n steps of the cosine schedule
        return math.prod(1 - (1 - m0) * (math.cos(math.pi * s / n) + 1) / 2 for s in range(1, n + 1))

    assert round(kept(0.997, 250), 2) == 0.69
    assert kept(ema_start(XKDOptions(), 250), 250) < math.exp(-5) * 1.01


def test_xkd_teachers_batch_norm_statistics_follow_their_weights():
    """Float buffers (running mean and variance) are averaged with the weights' momentum, not
    copied from the student; counters are copied."""
    student, ctx = _xkd_ctx(steps=250)
    obj = XKDObjective(XKDOptions(), ctx)
    s_bufs = dict(student.named_buffers())
    t_bufs = dict(obj.teachers["student"].named_buffers())
    name = next(k for k, v in s_bufs.items() if v.is_floating_point())
    counter = next(k for k, v in s_bufs.items() if not v.is_floating_point())
    before = t_bufs[name].clone()
    with torch.no_grad():
        s_bufs[name].add_(1.0)
        s_bufs[counter].add_(7)
    obj.after_step(0.0)  # m = m0 = 0.96 at 250 steps
    assert torch.allclose(t_bufs[name], 0.96 * before + 0.04 * s_bufs[name], atol=1e-6)
    assert torch.equal(t_bufs[counter], s_bufs[counter])


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
