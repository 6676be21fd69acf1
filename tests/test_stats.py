"""Leaderboard statistics: bootstrap intervals and the paired comparison with the baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fakes import fake

from xbench.stats import RESAMPLES, paired, sign_flip_p, summarize


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
    assert 0 < r.low < r.diff < r.high and r.significant
    assert r.p == pytest.approx(2 / 32)  # every seed better: the smallest p 5 seeds allow
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
    assert full["vs student"] == f"{cc.diff:+.2f} [{cc.low:+.2f}, {cc.high:+.2f}] p=0.250 *"
    s = summarize([49.0, 51.3, 50.6])
    assert full["95% CI"] == f"[{s.low:.2f}, {s.high:.2f}]"
    assert few["vs student"] == "-"  # its setting (20% labels) has no student runs
