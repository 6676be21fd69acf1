"""Golden values of the LM-teacher KD loss."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_lmkd import LMKDLoss, LMKDLossOptions


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)


def _kl_rows(s, t, T):
    """Hand computation: per-row sum_c p_t (log p_t - log p_s) with p = softmax(z / T)."""
    rows = []
    for i in range(len(s)):
        ps = [math.exp(x / T) for x in s[i]]
        pt = [math.exp(x / T) for x in t[i]]
        ps, pt = [x / sum(ps) for x in ps], [x / sum(pt) for x in pt]
        rows.append(sum(b * math.log(b / a) for a, b in zip(ps, pt)))
    return rows


def test_lmkd_kl_golden_element_mean():
    s, t = _logits()
    value = float(LMKDLoss(LMKDLossOptions(T=10.0))(s, t))
    rows = _kl_rows(s.tolist(), t.tolist(), 10.0)
    assert value == pytest.approx(100.0 * sum(rows) / (3 * 4), rel=1e-5)  # mean over B x C
    assert value == pytest.approx(0.2106263, rel=1e-5)


def test_lmkd_kl_golden_top_k():
    s, t = _logits()
    value = float(LMKDLoss(LMKDLossOptions(T=5.0, top_k=2))(s, t))
    idx = t.topk(2, dim=1).indices
    rows = _kl_rows(s.gather(1, idx).tolist(), t.gather(1, idx).tolist(), 5.0)
    assert value == pytest.approx(25.0 * sum(rows) / (3 * 2), rel=1e-5)
    assert value == pytest.approx(0.1050822, rel=1e-5)


def test_lmkd_missing_teacher_mask_and_uniform():
    s, t = _logits()
    t_missing = t.clone()
    t_missing[1] = float("nan")
    masked = float(LMKDLoss(LMKDLossOptions(T=10.0, missing="mask"))(s, t_missing))
    rows = _kl_rows(s.tolist(), t.tolist(), 10.0)
    assert masked == pytest.approx(100.0 * (rows[0] + rows[2]) / (2 * 4), rel=1e-5)
    uniform = float(LMKDLoss(LMKDLossOptions(T=10.0, missing="uniform"))(s, t_missing))
    t_uniform = t.clone()
    t_uniform[1] = -1.0
    rows_u = _kl_rows(s.tolist(), t_uniform.tolist(), 10.0)
    assert uniform == pytest.approx(100.0 * sum(rows_u) / (3 * 4), rel=1e-5)
