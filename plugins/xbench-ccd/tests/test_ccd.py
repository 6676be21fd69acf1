"""Golden values of CCD's cross-modal InfoNCE and its queue."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_ccd import CrossModalInfoNCE, InfoNCEOptions


def test_ccd_infonce_golden():
    torch.manual_seed(0)
    loss = CrossModalInfoNCE(InfoNCEOptions(tau=0.5, dim=3), {"student": 4, "teacher": 2})
    s = torch.randn(3, 4)
    t = torch.randn(3, 2)
    value = float(loss(s, t).detach())
    with torch.no_grad():
        ps = torch.nn.functional.normalize(loss.student_proj(s), dim=1).tolist()
        pt = torch.nn.functional.normalize(loss.teacher_proj(t), dim=1).tolist()
    hand = 0.0
    for i in range(3):
        sims = [sum(a * b for a, b in zip(ps[i], pt[j])) / 0.5 for j in range(3)]
        hand += -(sims[i] - math.log(sum(math.exp(x) for x in sims)))
    assert value == pytest.approx(hand / 3, rel=1e-5)
    assert value == pytest.approx(1.1477919, rel=1e-5)


def test_ccd_queue_adds_negatives():
    torch.manual_seed(0)
    loss = CrossModalInfoNCE(InfoNCEOptions(queue=4, dim=3), {"student": 4, "teacher": 2})
    s, t = torch.randn(3, 4), torch.randn(3, 2)
    loss(s, t)
    assert int(loss.filled) == 3 and int(loss.head) == 3
    loss(s, t)
    assert int(loss.filled) == 4 and int(loss.head) == 2
