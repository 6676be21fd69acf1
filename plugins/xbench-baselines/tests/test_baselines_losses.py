"""Golden values of the KD, gated-KD and FitNet losses on seeded tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_baselines import FitNetLoss, GatedKDLoss, GatedKDLossOptions, KDLoss, KDLossOptions

from xbench.testing import seeded_randn as randn


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)


def test_kd_loss_golden():
    s, t = _logits()
    value = float(KDLoss(KDLossOptions(T=4.0))(s, t))
    # hand computation: T^2 * mean_i sum_c p_t log(p_t / p_s) with p = softmax(z / T)
    T = 4.0
    expected = 0.0
    for i in range(3):
        ps = [math.exp(x / T) for x in s[i].tolist()]
        pt = [math.exp(x / T) for x in t[i].tolist()]
        ps = [x / sum(ps) for x in ps]
        pt = [x / sum(pt) for x in pt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = T * T * expected / 3
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(0.8432606, rel=1e-5)


def _kd_row(s, t, i, T=4.0, multilabel=False):
    return float(KDLoss(KDLossOptions(T=T, multilabel=multilabel))(s[[i]], t[[i]]))


@pytest.mark.parametrize("multilabel", [False, True])
def test_gated_kd_without_a_gate_is_kd(multilabel):
    s, t = _logits()
    gated = GatedKDLoss(GatedKDLossOptions(T=4.0, multilabel=multilabel))(s, t)
    assert float(gated) == pytest.approx(float(KDLoss(KDLossOptions(T=4.0, multilabel=multilabel))(s, t)), rel=1e-6)


def test_gated_kd_oracle_target_keeps_the_true_rows_over_the_whole_batch():
    s, t = _logits()
    value = float(GatedKDLoss(GatedKDLossOptions(T=4.0))(s, t, target=torch.tensor([True, False, True])))
    # a gated-out example counts 0 in the batch mean (FixMatch's masked mean)
    assert value == pytest.approx((_kd_row(s, t, 0) + _kd_row(s, t, 2)) / 3, rel=1e-6)
    assert value == pytest.approx(0.4181387, rel=1e-5)


def test_gated_kd_confidence_gate():
    s, t = _logits()
    t[1] = t[1] * 6  # max softmax probabilities: 0.613, 0.996, 0.410
    value = float(GatedKDLoss(GatedKDLossOptions(T=4.0, threshold=0.6))(s, t))
    assert value == pytest.approx((_kd_row(s, t, 0) + _kd_row(s, t, 1)) / 3, rel=1e-6)
    assert value == pytest.approx(4.0150065, rel=1e-5)
    # multi-label: the largest per-class sigmoid (0.750, 0.592, 0.811) is the confidence
    s, t = _logits()
    value = float(GatedKDLoss(GatedKDLossOptions(T=2.0, threshold=0.6, multilabel=True))(s, t))
    rows = [_kd_row(s, t, i, T=2.0, multilabel=True) for i in (0, 2)]
    assert value == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_gated_kd_gates_time_steps_and_ignores_padding():
    s, t = _logits()
    s3, t3 = s.view(1, 3, 4), t.view(1, 3, 4)
    positions = torch.tensor([[True, True, False]])
    value = float(GatedKDLoss(GatedKDLossOptions(T=4.0))(s3, t3, positions, target=torch.tensor([True])))
    assert value == pytest.approx((_kd_row(s, t, 0) + _kd_row(s, t, 1)) / 2, rel=1e-6)
    assert float(GatedKDLoss(GatedKDLossOptions(T=4.0))(s3, t3, positions, target=torch.tensor([False]))) == 0.0


def test_kd_loss_is_zero_for_identical_logits():
    s, _ = _logits()
    assert float(KDLoss(KDLossOptions(T=2.0))(s, s.clone())) == pytest.approx(0.0, abs=1e-7)


def test_fitnet_loss_golden():
    torch.manual_seed(0)
    loss = FitNetLoss({"student": 4, "teacher": 2})
    s, _ = _logits()
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    expected = ((loss.regressor(s) - t) ** 2).mean()
    hand = sum((float((loss.regressor.weight[j] @ s[i] + loss.regressor.bias[j]).detach()) - float(t[i, j])) ** 2
               for i in range(3) for j in range(2)) / 6
    assert float(loss(s, t).detach()) == pytest.approx(hand, rel=1e-6)
    assert float(loss(s, t).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float(loss(s, t).detach()) == pytest.approx(0.3517936, rel=1e-5)


def test_multilabel_kd_golden():
    s, t = randn(2, 3, 4, seed=2), randn(2, 3, 4, seed=3)
    value = float(KDLoss(KDLossOptions(T=2.0, multilabel=True))(s, t))
    total = 0.0
    for i in range(2):
        for f in range(3):
            for c in range(4):
                ps = 1 / (1 + math.exp(-s[i, f, c].item() / 2))
                pt = 1 / (1 + math.exp(-t[i, f, c].item() / 2))
                total += pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
    assert value == pytest.approx(4 * total / (6 * 4), rel=1e-5)  # T^2, mean over 6 frames x 4 classes
    assert value == pytest.approx(0.1711170, rel=1e-5)
    # softmax KD on (B, T, C) averages over positions as well: equal to the 2-D loss on (B*T, C)
    soft = KDLoss(KDLossOptions(T=2.0))
    assert float(soft(s, t)) == pytest.approx(float(soft(s.flatten(0, 1), t.flatten(0, 1))), rel=1e-6)
