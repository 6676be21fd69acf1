"""Leaderboard statistics: bootstrap intervals and the paired comparison with the baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fakes import fake

from xbench.stats import RESAMPLES, holm, paired, seeds_needed, sign_flip_p, summarize


def test_summary_of_one_cell():
    s = summarize([47.73, 48.29, 49.17])
    assert (round(s.mean, 4), round(s.std, 4), s.n) == (48.3967, 0.7259, 3)
    # the percentile bootstrap of a 3-value mean lies within the values' range, around the mean
    assert 47.73 <= s.low < s.mean < s.high <= 49.17
    assert summarize([47.73, 48.29, 49.17]) == s  # seeded: the same table every time


def test_bootstrap_interval_matches_an_independent_resampling():
    values = [16.4, 13.5, 19.4, 15.0, 17.2]
    s = summarize(values, seed=3)
    rng = np.random.default_rng(3)
    means = np.asarray(values)[rng.integers(0, 5, size=(RESAMPLES, 5))].mean(1)
    assert (s.low, s.high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


def test_single_run_has_zero_width_interval():
    assert summarize([30.0]) == summarize([30.0], seed=9)
    s = summarize([30.0])
    assert (s.mean, s.std, s.n, s.low, s.high) == (30.0, 0.0, 1, 30.0, 30.0)
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_sign_flip_p_is_exact():
    d = [1.7, 3.1, 0.8]
    # by hand: of the 8 sign patterns only all-plus and all-minus reach |mean| = 1.8667
    assert sign_flip_p(d) == pytest.approx(2 / 8)
    d = [2.0, -1.0, 0.5, 1.5, 1.0]
    hand = np.mean([abs(np.mean(np.multiply(s, d))) >= abs(np.mean(d)) - 1e-12
                    for s in itertools.product((1, -1), repeat=5)])
    assert sign_flip_p(d) == pytest.approx(hand)
    assert sign_flip_p([0.0, 0.0]) == 1.0


def test_paired_comparison_uses_common_seeds_and_marks_consistent_gains():
    base = {0: 16.38, 1: 13.47, 2: 19.36, 3: 15.0, 4: 17.0}
    mmd = {0: 18.10, 1: 16.60, 2: 20.20, 3: 16.1, 4: 18.4}
    r = paired(mmd, base)
    assert r.n == 5 and r.diff == pytest.approx(np.mean([1.72, 3.13, 0.84, 1.1, 1.4]))
    assert 0 < r.low < r.diff < r.high
    # every seed better: the smallest p 5 seeds allow, and still no star: 2/32 > 0.05
    assert (r.p, r.p_holm, r.significant, r.reachable) == (2 / 32, 2 / 32, False, False)
    six = paired({**mmd, 5: 15.0}, {**base, 5: 14.0})
    assert (six.p, six.significant, six.reachable) == (2 / 64, True, True)
    noisy = {0: 17.0, 1: 12.0, 2: 20.0, 3: 14.0, 4: 18.0}
    assert not paired(noisy, base).significant
    # seeds the baseline lacks are left out; fewer than two common seeds: no comparison
    assert paired({0: 1.0, 1: 2.0, 7: 9.0}, {0: 0.0, 1: 0.0}).n == 2
    assert paired({0: 1.0}, {0: 0.0, 1: 0.0}) is None


def test_leaderboard_rows_carry_intervals_and_the_paired_comparison():
    from xbench.leaderboard import build
    from xbench.render import _cells

    def rec(method, seed, top1, fraction=1.0):
        return fake(method, seed, top1, teacher=False, config_hash=f"{method}-{fraction}", start=seed,
                    dataset_options={"label_fraction": fraction})

    records = [rec("student", s, v) for s, v in enumerate([47.7, 48.3, 49.2])]
    records += [rec("cc", s, v) for s, v in enumerate([49.0, 51.3, 50.6])]
    records += [rec("cc", 0, 30.0, fraction=0.2)]  # another setting: no student of its own
    [table] = build(records)
    cells = {r.label: _cells(r, table, paper=False) for r in table.rows}
    student = cells["student"]
    full, few = (cells[f"cc [dataset.label_fraction={f}]"] for f in (1.0, 0.2))
    assert student["vs student"] == "-"
    cc = paired({0: 49.0, 1: 51.3, 2: 50.6}, {0: 47.7, 1: 48.3, 2: 49.2})
    # 3 seeds: p = 2/8 = 0.25 at best, one comparison in the table: no star can be reached
    assert full["vs student"] == f"{cc.diff:+.2f} [{cc.low:+.2f}, {cc.high:+.2f}] p=0.250 †"
    s = summarize([49.0, 51.3, 50.6])
    assert full["95% CI"] == f"[{s.low:.2f}, {s.high:.2f}]"
    assert few["vs student"] == "-"  # its setting (20% labels) has no student runs


def test_holm_adjusts_step_down_and_keeps_the_order_given():
    # by hand: sorted 0.01, 0.02, 0.03, 0.20 -> 4*0.01, 3*0.02, 2*0.03, 1*0.20, made monotone
    assert holm([0.03, 0.01, 0.20, 0.02]) == pytest.approx([0.06, 0.04, 0.20, 0.06])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.04]) == [0.04] and holm([]) == []
    assert (seeds_needed(1), seeds_needed(3), seeds_needed(17), seeds_needed(18)) == (6, 7, 10, 10)


def test_the_star_is_starred_under_the_null_at_most_as_often_as_it_promises():
    """Null differences (no method helps): the share of starred comparisons, simulated and seeded.
    The old star (the paired bootstrap interval excludes zero) is shown to fail the same test."""
    rng = np.random.default_rng(0)

    def rate(n, sims, m=1):
        new = old = 0
        for _ in range(sims):
            rows = [paired(dict(enumerate(d)), dict.fromkeys(range(n), 0.0), seed=i)
                    for i, d in enumerate(rng.normal(size=(m, n)))]
            new += any(p < 0.05 for p in holm([r.p for r in rows]))  # any starred row is a false positive
            old += any(r.low > 0 or r.high < 0 for r in rows)
        return new / sims, old / sims

    new5, old5 = rate(5, 300)
    new10, old10 = rate(10, 800)
    family10, _ = rate(10, 100, m=6)
    assert new5 == 0.0  # 5 seeds cannot reach p < 0.05
    assert new10 <= 0.05 + 2 * (0.05 * 0.95 / 800) ** 0.5 and family10 <= 0.05 + 2 * (0.05 * 0.95 / 100) ** 0.5
    assert old5 > 0.10 and old10 > 0.06  # what the bootstrap star did: 16% and 9% in the simulation
    print(f"starred under the null: n=5 {new5:.3f} (old star {old5:.3f}), n=10 {new10:.3f} "
          f"(old {old10:.3f}), n=10 family of 6 {family10:.3f}")
