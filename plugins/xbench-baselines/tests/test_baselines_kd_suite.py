"""Golden values of the generic KD losses on seeded tiny tensors, each checked against an
independent hand computation (numpy in float64, written from the papers' formulas, loop by loop
where the loss is a sum over pairs or triplets), plus the methods and combinations built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from xbench_baselines import KDLoss, KDLossOptions
from xbench_baselines.losses import (
    ATLoss,
    ATOptions,
    CCLoss,
    CCOptions,
    CORALLoss,
    CosineLoss,
    CRDLoss,
    CRDOptions,
    DKDLoss,
    DKDOptions,
    MMDLoss,
    NSTLoss,
    PKTLoss,
    RKDLoss,
    RKDOptions,
    SPLoss,
    VIDLoss,
    VIDOptions,
)

from xbench.config import RunConfig, load_tiers
from xbench.errors import ConfigError, IncompatibleError
from xbench.run import plan


def _pair(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


def _np(x):
    return x.detach().double().numpy()


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


# ----------------------------------------------------------------------------- DKD


def _dkd_hand(s, t, y, alpha, beta, T):
    total = 0.0
    for i in range(len(s)):
        ps, pt = _softmax(s[i] / T), _softmax(t[i] / T)
        g = y[i]
        bs, bt = np.array([ps[g], 1 - ps[g]]), np.array([pt[g], 1 - pt[g]])
        tckd = (bt * np.log(bt / bs)).sum()
        others = [c for c in range(len(s[i])) if c != g]
        qs, qt = _softmax(s[i][others] / T), _softmax(t[i][others] / T)
        nckd = (qt * np.log(qt / qs)).sum()
        total += alpha * tckd + beta * nckd
    return T * T * total / len(s)


def test_dkd_golden():
    s, t = _pair(3, 5)
    y = torch.tensor([0, 3, 4])
    value = float(DKDLoss(DKDOptions())(s, t, target=y))
    assert value == pytest.approx(_dkd_hand(_np(s), _np(t), [0, 3, 4], 1.0, 8.0, 4.0), rel=1e-5)
    assert value == pytest.approx(6.091278, rel=1e-5)


def test_dkd_decomposes_kd():
    """The paper's identity: KD = TCKD + (1 - p^t_g) * NCKD, per example."""
    s, t = _pair(1, 6, seed=3)
    y = torch.tensor([2])
    tckd = float(DKDLoss(DKDOptions(alpha=1.0, beta=0.0, T=2.0))(s, t, target=y))
    nckd = float(DKDLoss(DKDOptions(alpha=0.0, beta=1.0, T=2.0))(s, t, target=y))
    p_g = float(torch.softmax(t / 2.0, -1)[0, 2])
    kd = float(KDLoss(KDLossOptions(T=2.0))(s, t))
    assert kd == pytest.approx(tckd + (1 - p_g) * nckd, rel=1e-5)


def test_dkd_unlabelled_examples_take_the_teachers_class():
    s, t = _pair(3, 5)
    mask = torch.tensor([True, False, True])
    y = torch.tensor([0, 3, 4])
    guessed = torch.tensor([0, int(t[1].argmax()), 4])
    value = float(DKDLoss(DKDOptions())(s, t, target=y, label_mask=mask))
    assert value == pytest.approx(_dkd_hand(_np(s), _np(t), guessed.tolist(), 1.0, 8.0, 4.0), rel=1e-5)


def test_dkd_multilabel_golden():
    """Frame labels (B, L, C) pooled to snippets by max; per-class Bernoulli KL split into present
    (alpha) and absent (beta) classes; mean over real snippets."""
    s, t = _pair(2, 3, 4, seed=5)
    frames = (torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(6)) > 0.6).float()
    positions = torch.tensor([[True, True, True], [True, True, False]])
    T, alpha, beta = 4.0, 1.0, 8.0
    value = float(DKDLoss(DKDOptions(alpha=alpha, beta=beta, T=T))(s, t, positions, target=frames))
    ss, tt, ff = _np(s) / T, _np(t) / T, _np(frames)
    total, n = 0.0, 0
    for b in range(2):
        for k in range(3):
            if not positions[b, k]:
                continue
            present = ff[b, 2 * k: 2 * k + 2].max(0) > 0.5
            for c in range(4):
                ps, pt = 1 / (1 + math.exp(-ss[b, k, c])), 1 / (1 + math.exp(-tt[b, k, c]))
                kl = pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
                total += (alpha if present[c] else beta) * kl
            n += 1
    assert value == pytest.approx(T * T * total / (n * 4), rel=1e-5)  # the mean over 4 classes
    assert value == pytest.approx(0.5309976, rel=1e-5)


# ----------------------------------------------------------------------------- AT, NST


def test_at_golden():
    s, t = _pair(2, 4, 3)
    value = float(ATLoss(ATOptions())(s, t))
    ss, tt = _np(s), _np(t)
    total = 0.0
    for b in range(2):
        qs = (ss[b] ** 2).mean(1)
        qt = (tt[b] ** 2).mean(1)
        total += ((qs / np.linalg.norm(qs) - qt / np.linalg.norm(qt)) ** 2).sum()
    assert value == pytest.approx(total / 8, rel=1e-5)
    assert value == pytest.approx(0.2113837, rel=1e-5)


def test_at_pools_the_longer_side_to_the_shorter():
    """8 student frames vs 4 audio time cells: the student's attention is averaged in pairs."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 8, 3, generator=g), torch.randn(2, 4, 5, generator=g)
    value = float(ATLoss(ATOptions())(s, t))
    ss, tt = _np(s), _np(t)
    total = 0.0
    for b in range(2):
        a = (ss[b] ** 2).mean(1)
        qs = a.reshape(4, 2).mean(1)
        qt = (tt[b] ** 2).mean(1)
        total += ((qs / np.linalg.norm(qs) - qt / np.linalg.norm(qt)) ** 2).sum()
    assert value == pytest.approx(total / 8, rel=1e-5)


def test_nst_golden():
    s, t = _pair(2, 5, 3, seed=2)
    value = float(NSTLoss()(s, t))
    ss, tt = _np(s), _np(t)
    total = 0.0
    for b in range(2):
        fs = ss[b].T / np.linalg.norm(ss[b].T, axis=1, keepdims=True)  # neurons x positions
        ft = tt[b].T / np.linalg.norm(tt[b].T, axis=1, keepdims=True)

        def k(a, c):
            return np.mean([(a[i] @ c[j]) ** 2 for i in range(len(a)) for j in range(len(c))])

        total += k(ft, ft) + k(fs, fs) - 2 * k(fs, ft)
    assert value == pytest.approx(total / 2, rel=1e-5)
    assert value == pytest.approx(0.537354, rel=1e-5)


# ----------------------------------------------------------------------------- relational


def test_sp_golden():
    s, t = _pair(4, 3)
    value = float(SPLoss()(s, t))
    ss, tt = _np(s), _np(t)
    gs, gt = ss @ ss.T, tt @ tt.T
    gs /= np.linalg.norm(gs, axis=1, keepdims=True)
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    assert value == pytest.approx(((gs - gt) ** 2).sum() / 16, rel=1e-5)
    assert value == pytest.approx(0.3300871, rel=1e-5)


def test_cc_golden_and_taylor_limit():
    s, t = _pair(4, 3, seed=1)
    value = float(CCLoss(CCOptions())(s, t))
    ss, tt = _np(s), _np(t)

    def corr(f, order, exact=False):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        c = np.zeros((len(f), len(f)))
        for i in range(len(f)):
            for j in range(len(f)):
                if exact:
                    c[i, j] = math.exp(-0.4 * ((f[i] - f[j]) ** 2).sum())
                else:
                    x = f[i] @ f[j]
                    c[i, j] = math.exp(-0.8) * sum((0.8 * x) ** p / math.factorial(p) for p in range(order + 1))
        return c

    assert value == pytest.approx(((corr(ss, 2) - corr(tt, 2)) ** 2).sum() / 16, rel=1e-5)
    assert value == pytest.approx(0.02643725, rel=1e-5)
    # a long series is the Gaussian kernel itself
    long = float(CCLoss(CCOptions(order=20))(s, t))
    assert long == pytest.approx(((corr(ss, 0, True) - corr(tt, 0, True)) ** 2).sum() / 16, rel=1e-5)


def test_rkd_golden():
    s, t = _pair(4, 3, seed=4)
    value = float(RKDLoss(RKDOptions())(s, t))
    ss, tt = _np(s), _np(t)

    def dist(f):
        d = np.array([[np.linalg.norm(f[i] - f[j]) for j in range(4)] for i in range(4)])
        return d / d[d > 0].mean()

    def angle(f):
        out = []
        for j in range(4):
            for i in range(4):
                for k in range(4):
                    a, b = f[i] - f[j], f[k] - f[j]
                    na, nb = np.linalg.norm(a), np.linalg.norm(b)
                    out.append(0.0 if na == 0 or nb == 0 else (a @ b) / (na * nb))
        return np.array(out)

    hand = 25 * _huber(dist(ss), dist(tt)) + 50 * _huber(angle(ss), angle(tt))
    assert value == pytest.approx(hand, rel=1e-5)
    assert value == pytest.approx(0.8483842, rel=1e-5)


def test_pkt_golden():
    s, t = _pair(4, 3, seed=7)
    value = float(PKTLoss()(s, t))

    def cond(f):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        k = (f @ f.T + 1) / 2
        return k / k.sum(1, keepdims=True)

    ps, pt = cond(_np(s)), cond(_np(t))
    assert value == pytest.approx((pt * np.log((pt + 1e-7) / (ps + 1e-7))).mean(), rel=1e-5)
    assert value == pytest.approx(0.05760494, rel=1e-5)


# ----------------------------------------------------------------------------- regressions


def test_vid_golden():
    torch.manual_seed(0)
    loss = VIDLoss(VIDOptions(), {"student": 3, "teacher": 2})
    s, _ = _pair(4, 3)
    t = _pair(4, 2, seed=9)[0]
    mu = _np(loss.regressor(s))
    # at initialisation every channel's variance is init_variance
    var = 5.0
    hand = (0.5 * ((mu - _np(t)) ** 2 / var + math.log(var))).mean()
    assert float(loss(s, t).detach()) == pytest.approx(hand, rel=1e-5)
    assert float(loss(s, t).detach()) == pytest.approx(0.9358423, rel=1e-5)


def test_cosine_golden():
    torch.manual_seed(0)
    loss = CosineLoss({"student": 3, "teacher": 2})
    s, _ = _pair(4, 3)
    t = _pair(4, 2, seed=9)[0]
    r, tt = _np(loss.regressor(s)), _np(t)
    hand = np.mean([1 - r[i] @ tt[i] / (np.linalg.norm(r[i]) * np.linalg.norm(tt[i])) for i in range(4)])
    assert float(loss(s, t).detach()) == pytest.approx(hand, rel=1e-5)
    assert float(loss(s, t).detach()) == pytest.approx(0.774426, rel=1e-5)


# ----------------------------------------------------------------------------- distributions


def test_mmd_golden():
    torch.manual_seed(0)
    loss = MMDLoss({"student": 3, "teacher": 2})
    s, _ = _pair(4, 3)
    t = _pair(5, 2, seed=9)[0][:4]
    x, y = _np(loss.regressor(s)), _np(t)
    gammas = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)

    def k(a, b):
        return np.mean([sum(math.exp(-g * ((a[i] - b[j]) ** 2).sum()) for g in gammas)
                        for i in range(len(a)) for j in range(len(b))])

    assert float(loss(s, t).detach()) == pytest.approx(k(x, x) + k(y, y) - 2 * k(x, y), rel=1e-4)
    assert float(loss(s, t).detach()) == pytest.approx(1.569177, rel=1e-5)


def test_coral_golden():
    torch.manual_seed(0)
    loss = CORALLoss({"student": 3, "teacher": 2})
    s, _ = _pair(4, 3)
    t = _pair(4, 2, seed=9)[0]
    x, y = _np(loss.regressor(s)), _np(t)
    d = y.shape[1]  # Deep CORAL: ||C_x - C_y||_F^2 / (4 d^2)
    hand = ((x.mean(0) - y.mean(0)) ** 2).mean() + ((np.cov(x.T) - np.cov(y.T)) ** 2).sum() / (4 * d * d)
    assert float(loss(s, t).detach()) == pytest.approx(hand, rel=1e-5)
    assert float(loss(s, t).detach()) == pytest.approx(0.1870758, rel=1e-5)


# ----------------------------------------------------------------------------- CRD


def test_crd_golden_and_memory_update():
    """Recomputed by hand from the banks before the call and the same negative draws: NCE with
    Z fixed on the first batch, both directions; then each bank row of the batch moves halfway to
    the new embedding and is renormalised."""
    torch.manual_seed(0)
    n, k, tau = 10, 6, 0.07
    loss = CRDLoss(CRDOptions(dim=4, negatives=k), {"student": 3, "teacher": 2, "examples": n})
    s, _ = _pair(3, 3)
    t = _pair(3, 2, seed=9)[0]
    index = torch.tensor([4, 0, 7])
    bank_s, bank_t = _np(loss.bank_s).copy(), _np(loss.bank_t).copy()
    torch.manual_seed(1)
    value = float(loss(s, t, index=index).detach())
    torch.manual_seed(1)
    neg = torch.randint(0, n, (3, k)).numpy()

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    es, et = unit(_np(loss.embed_s(s))), unit(_np(loss.embed_t(t)))
    idx = np.concatenate([index.numpy()[:, None], neg], 1)
    total = 0.0
    for v, bank in ((es, bank_t), (et, bank_s)):
        h = np.exp(np.einsum("bkd,bd->bk", bank[idx], v) / tau)
        h = h / (h.mean() * n)
        noise = k / n
        per = np.log(h[:, 0] / (h[:, 0] + noise + 1e-7)) + np.log(noise / (h[:, 1:] + noise + 1e-7)).sum(1)
        total += -per.mean()
    assert value == pytest.approx(total, rel=1e-5)
    assert value == pytest.approx(23.795, rel=1e-5)
    expected = unit(0.5 * bank_s[index.numpy()] + 0.5 * es)
    assert np.allclose(_np(loss.bank_s)[index.numpy()], expected, atol=1e-6)
    untouched = [i for i in range(n) if i not in (4, 0, 7)]
    assert np.array_equal(_np(loss.bank_s)[untouched], bank_s[untouched])


def test_crd_whole_bank_scores_equal_gathered_scores():
    """The N < K shortcut (scores against the whole bank, then gathered) gives the same loss as
    gathering K embeddings per example."""
    torch.manual_seed(0)
    small = CRDLoss(CRDOptions(dim=4, negatives=12), {"student": 3, "teacher": 2, "examples": 10})
    big = CRDLoss(CRDOptions(dim=4, negatives=12), {"student": 3, "teacher": 2, "examples": 10})
    big.load_state_dict(small.state_dict())
    big.n = 10**9  # force the gathering path; the draws below stay in range of the real bank
    s, _ = _pair(3, 3)
    idx = torch.cat([torch.tensor([[1], [2], [3]]), torch.randint(0, 10, (3, 12))], 1)
    v = torch.nn.functional.normalize(small.embed_s(s), dim=1)
    assert torch.allclose(small._scores(v, small.bank_t, idx), big._scores(v, big.bank_t, idx), rtol=1e-5)


def test_crd_negatives_capped_below_the_train_split():
    """K = 16384 negatives from 4,192 examples would repeat each ~4 times and put K/N above 1: K is
    capped at N - 1 (the paper's setting is kept where the split is larger)."""
    small = CRDLoss(CRDOptions(dim=4), {"student": 3, "teacher": 2, "examples": 4192})
    assert (small.k, small.n) == (4191, 4192)
    large = CRDLoss(CRDOptions(dim=4), {"student": 3, "teacher": 2, "examples": 50000})
    assert large.k == 16384


def test_dkd_term_warms_up_over_a_twelfth_of_the_stage(xbench_registry):
    """The DKD term is ramped linearly as the paper ramps it over 20 of 240 epochs: at step s of a
    240-step stage it weighs min(1, s / 20); the task term is not ramped."""
    from xbench.config import RunConfig, load_tiers
    from xbench.engine.heads import step_fn
    from xbench.engine.plan import plan

    p = plan(xbench_registry, RunConfig(method="dkd", task="recognition"), load_tiers())
    assert [(k, round(t.warmup, 6)) for k, t, _, _ in p.terms] == [("ce", 0.0), ("dkd", 0.083333)]
    assert [d["warmup"] for d in p.resolved()["loss_terms"] if "warmup" in d] == [20 / 240]

    class Unit(torch.nn.Module):  # every loss returns 1: the step's terms are their weights
        def forward(self, *args, **kwargs):
            return torch.tensor(1.0)

    heads = {k: Unit() for k, _, _, _ in p.terms}
    batch = {"rgb": torch.zeros(2, 1), "label": torch.zeros(2), "label_mask": torch.ones(2, dtype=torch.bool)}
    fn = step_fn(p.terms, heads, lambda x: {"logits": None, "feature": None}, ("rgb",), None,
                 lambda b: {"logits": None}, "dkd", steps=240)
    weights = [fn(batch) for _ in range(22)]
    assert [round(float(w["dkd"]), 4) for w in weights[:3]] == [0.05, 0.1, 0.15]
    assert [float(w["dkd"]) for w in weights[19:]] == [1.0, 1.0, 1.0]
    assert {float(w["ce"]) for w in weights} == {1.0}
    off = plan(xbench_registry, RunConfig(method="dkd", task="recognition", method_options={"warmup": 0}),
               load_tiers())
    assert "warmup" not in off.resolved()["loss_terms"][1]


# ----------------------------------------------------------------------------- methods


def test_generic_methods_registered_with_their_losses(xbench_registry):
    from xbench_baselines import GENERIC

    names = [g.name for g in GENERIC]
    assert names == ["dkd", "at", "nst", "sp", "cc", "rkd", "pkt", "vid", "crd", "mmd", "coral", "cosine"]
    for name in names:
        assert xbench_registry.owner("methods", name).dist == "xbench-baselines"
        assert xbench_registry.owner("losses", name).dist == "xbench-baselines"


@pytest.mark.parametrize("method, taps, weight", [
    ("dkd", ("logits", "logits"), 1.0), ("at", ("tokens", "tokens"), 1000.0),
    ("nst", ("tokens", "tokens"), 50.0), ("sp", ("feature", "feature"), 3000.0),
    ("cc", ("feature", "feature"), 50.0), ("rkd", ("feature", "feature"), 1.0),
    ("pkt", ("feature", "feature"), 30000.0), ("vid", ("feature", "feature"), 1.0),
    ("crd", ("feature", "feature"), 0.8), ("mmd", ("feature", "feature"), 1.0),
    ("coral", ("feature", "feature"), 1.0), ("cosine", ("feature", "feature"), 1.0)])
@pytest.mark.parametrize("task, teacher", [("recognition", "audio-cnn"), ("anticipation", "minilm"),
                                           ("detection", "flow-tcn"), ("audio-tagging", "video-cnn"),
                                           ("retrieval", "audio-cnn")])
def test_generic_method_plans_on_every_task(xbench_registry, method, taps, weight, task, teacher):
    """No per-task code: the task's default teacher, CE (the task's objective) + weight * loss."""
    p = plan(xbench_registry, RunConfig(method=method, task=task), load_tiers())
    assert p.teacher.name == teacher
    key, term, _, _ = p.terms[-1]
    assert (key, term.student, term.teacher, term.weight) == (method, *taps, weight)
    assert [t.loss for _, t, _, _ in p.terms[:-1]] == [t.loss for t in xbench_registry.get("tasks", task).terms]
    if method == "dkd":  # the loss that reads a target gets the task's first target
        assert term.target == xbench_registry.get("tasks", task).targets[0]


def test_generic_method_options_are_the_loss_options_and_weight(xbench_registry):
    p = plan(xbench_registry, RunConfig(method="crd", task="recognition",
                                 method_options={"weight": 2.0, "negatives": 4096}), load_tiers())
    _, term, _, opts = p.terms[-1]
    assert term.weight == 2.0
    assert opts == CRDOptions(negatives=4096)
    with pytest.raises(ConfigError, match=r"^method 'crd' options: need weight >= 0$"):
        plan(xbench_registry, RunConfig(method="crd", task="recognition", method_options={"weight": -1}), load_tiers())
    with pytest.raises(ConfigError, match=r"^method 'dkd' options: need T > 0, alpha >= 0 and beta >= 0$"):
        plan(xbench_registry, RunConfig(method="dkd", task="recognition", method_options={"T": 0}), load_tiers())


def test_combo_combines_losses_by_config(xbench_registry):
    from xbench.config import REPO_ROOT, load_run_config

    raw = load_run_config(REPO_ROOT / "benchmarks" / "configs" / "crd-kd.yaml")
    p = plan(xbench_registry, RunConfig(**raw), load_tiers())
    assert [(k, t.student, t.teacher, t.target, t.weight) for k, t, _, _ in p.terms] == [
        ("ce", "logits", None, "label", pytest.approx(0.1)),
        ("kd", "logits", "logits", None, 0.9),
        ("crd", "feature", "feature", None, 0.8)]
    # taps named in the config win over the loss's defaults; a second term of a loss gets a key
    p = plan(xbench_registry, RunConfig(method="combo", task="recognition", method_options={"terms": [
        {"loss": "task"}, {"loss": "cosine", "student": "tokens", "teacher": "tokens"},
        {"loss": "cosine", "weight": 0.5}]}), load_tiers())
    assert [(k, t.student, t.teacher) for k, t, _, _ in p.terms] == [
        ("ce", "logits", None), ("cosine", "tokens", "tokens"), ("cosine#2", "feature", "feature")]


def test_combo_tells_a_kd_term_that_its_task_is_multi_label(xbench_registry):
    """As the kd method does: softmax KD over detection's independent labels compared
    distributions that do not exist (the combo row of the published detection table)."""
    def kd_options(task, options=None):
        p = plan(xbench_registry, RunConfig(method="combo", task=task, method_options={"terms": [
            {"loss": "task"}, {"loss": "kd", "options": options or {"T": 4.0}}]}), load_tiers())
        return next(o for k, _, _, o in p.terms if k == "kd")

    assert kd_options("detection").multilabel is True
    assert kd_options("recognition").multilabel is False
    assert kd_options("detection", {"T": 4.0, "multilabel": False}).multilabel is False  # the config wins


def test_combo_errors_name_the_culprit(xbench_registry):
    def run(terms, task="recognition"):
        plan(xbench_registry, RunConfig(method="combo", task=task, method_options={"terms": terms}), load_tiers())

    with pytest.raises(IncompatibleError, match=r"^method 'combo': unknown loss 'crdd'; did you mean 'crd'\?$"):
        run([{"loss": "crdd"}])
    with pytest.raises(IncompatibleError, match=r"^method 'combo': loss 'at' reads teacher tap 'tokens', which "
                                                r"teacher 'tiny-bert' does not have \(taps: logits, feature\)$"):
        plan(xbench_registry, RunConfig(method="combo", task="anticipation", teacher="tiny-bert",
                                 method_options={"terms": [{"loss": "at"}]}), load_tiers())
    with pytest.raises(ConfigError, match=r"^method 'combo' options: key 'terms'\[0\]: unknown key 'weigth' \(known: loss, "
                                         r"options, student, target, teacher, warmup, weight\)$"):
        run([{"loss": "kd", "weigth": 1}])
    with pytest.raises(ConfigError, match=r"^method 'combo' options: terms: give at least one term$"):
        run([])


def test_combo_without_teacher_terms_trains_no_teacher(xbench_registry):
    p = plan(xbench_registry, RunConfig(method="combo", task="recognition"), load_tiers())
    assert p.teacher is None and [k for k, *_ in p.terms] == ["ce"]


def test_combo_config_runs_end_to_end(xbench_registry, capsys):
    """The CRD + KD config through the CLI (a few steps): the record holds the three terms, the
    teacher's cost and the CRD heads' parameters."""
    import json

    from xbench.cli import main
    from xbench.config import REPO_ROOT
    from xbench.records import RunRecord
    from xbench.store import xbench_home

    code = main(["run", "--config", str(REPO_ROOT / "benchmarks" / "configs" / "crd-kd.yaml"), "--budget",
                 "smoke", "--set", "budget.student_steps=4", "--set", "budget.teacher_steps=4", "--quiet"])
    assert code == 0
    (path,) = (xbench_home() / "runs").glob("combo-recognition-*/result.json")
    rec = RunRecord.from_json(json.loads(path.read_text()), str(path))  # the record as xbench reads it
    assert [(t["key"], t["weight"]) for t in rec.config["loss_terms"]] == [
        ("ce", pytest.approx(0.1)), ("kd", 0.9), ("crd", 0.8)]
    assert [s.stage for s in rec.budget.stages] == ["teacher", "teacher-inference", "student"]
    # CRD's two 128-d embeddings: (64 + 1) * 128 + (96 + 1) * 128
    assert rec.params.heads == 65 * 128 + 97 * 128
