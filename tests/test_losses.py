"""Golden values of every loss on seeded tiny tensors, each checked against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from xbench_baselines import FitNetLoss, KDLoss, KDLossOptions

from xbench.builtin import MaskedCrossEntropy


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


def test_masked_cross_entropy_golden():
    s, _ = _logits()
    y = torch.tensor([0, 3, 1])
    mask = torch.tensor([True, False, True])
    nll = [-(s[i, y[i]] - s[i].logsumexp(0)) for i in range(3)]
    assert float(MaskedCrossEntropy()(s, y, mask)) == pytest.approx(float((nll[0] + nll[2]) / 2), rel=1e-6)
    assert float(MaskedCrossEntropy()(s, y, mask)) == pytest.approx(0.9579787, rel=1e-5)
    # a batch with no labelled example contributes zero, not NaN
    assert float(MaskedCrossEntropy()(s, y, torch.zeros(3, dtype=torch.bool))) == 0.0
