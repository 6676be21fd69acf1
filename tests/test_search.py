"""The same tuning budget for every method: search spaces, seeded trials, the shared knobs of a
method's own stage, the sweep's search and tuned rows, and a table that refuses unequal budgets."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import yaml

from xbench import search
from xbench.cli import main
from xbench.config import RunConfig, load_tiers, to_plain
from xbench.engine.plan import plan
from xbench.errors import ConfigError
from xbench.leaderboard import build
from xbench.store import ResultStore


def test_distributions_sample_in_their_ranges_and_are_seeded():
    rng = random.Random(0)
    draws = [search.LogUniform(0.1, 10.0).sample(rng) for _ in range(200)]
    assert 0.1 <= min(draws) and max(draws) <= 10.0
    # log-uniform: about half the draws below the geometric middle (1.0)
    assert 80 < sum(d < 1.0 for d in draws) < 120
    assert search.Choice(("a", "b")).sample(random.Random(3)) == search.Choice(("a", "b")).sample(random.Random(3))
    with pytest.raises(ValueError, match="LogUniform needs 0 < low < high"):
        search.LogUniform(0.0, 1.0)


def test_trial_zero_is_the_defaults_and_trials_are_fixed_by_method_task_tier(registry):
    kd = registry.get("methods", "kd")
    assert search.trial(kd, "recognition", "cpu", 0) == {"hparams": {}, "method_options": {}}
    assert search.trial(kd, "recognition", "cpu", 1) == {
        "hparams": {"lr_scale": 1.746, "weight_decay": 9.41e-05}, "method_options": {"T": 4.855, "alpha": 0.7781}}
    assert search.trial(kd, "recognition", "cpu", 1) != search.trial(kd, "anticipation", "cpu", 1)
    assert list(search.space(kd)) == ["hparams.lr_scale", "hparams.weight_decay", "method.T", "method.alpha"]
    student = registry.get("methods", "student")
    assert list(search.trial(student, "recognition", "cpu", 1)["hparams"]) == ["lr_scale", "weight_decay"]


def test_best_trial_is_the_highest_val_score_ties_to_the_defaults():
    assert search.best_trial({0: 50.0, 1: 61.0, 2: 61.0, 3: math.nan}) == 1
    assert search.best_trial({0: 61.0, 1: 61.0}) == 0
    assert search.best_trial({0: math.nan, 1: math.nan}) == 0


def test_every_methods_space_names_its_options_and_every_draw_plans(registry):
    tiers = load_tiers()
    for name in registry.names("methods"):
        spec = registry.get("methods", name)
        fields = {f.name for f in dataclasses.fields(spec.options)}
        assert set(spec.search) <= fields, f"{name}: search names {set(spec.search) - fields}"
        if name == "combo":
            continue  # its terms come from the suite entry
        task = spec.tasks[0] if spec.tasks else "recognition"
        for k in (1, 2, 3):
            t = search.trial(spec, task, "cpu", k)
            plan(registry, RunConfig(method=name, task=task, method_options=t["method_options"],
                                     hparams=t["hparams"]), tiers)


def test_the_shared_knobs_change_the_methods_stage_only(registry):
    tiers = load_tiers()
    base = tiers["cpu"].optimizer
    p = plan(registry, RunConfig(method="kd", task="recognition", hparams={"lr_scale": 2.0, "weight_decay": 0.01}),
             tiers)
    assert (p.method_optimizer.lr, p.method_optimizer.weight_decay) == (2 * base.lr, 0.01)
    assert p.teacher_optimizer == base  # the shared teacher is never retuned by a student's search
    assert p.resolved()["hparams"] == {"lr_scale": 2.0, "weight_decay": 0.01}
    assert "hparams" not in plan(registry, RunConfig(method="kd", task="recognition"), tiers).resolved()
    teacher = plan(registry, RunConfig(method="teacher", task="recognition", hparams={"lr_scale": 0.5}), tiers)
    assert teacher.teacher_optimizer.lr == 0.5 * base.lr  # the teacher reference's own stage
    with pytest.raises(ValueError, match="unknown knob 'lr'"):
        RunConfig(method="kd", task="recognition", hparams={"lr": 1.0})


def test_a_sweep_searches_each_method_then_runs_the_winner_on_the_seeds(tmp_path, monkeypatch, capsys):
    """Two trials per method on the tuning seed, the val winner on the suite's seeds; the table has
    a default and a tuned row per method, trials are no rows, and the tuned rows carry the
    search's cost. Rows searched with another number of trials cannot share a table."""
    tier = to_plain(load_tiers()["smoke"])
    tier.pop("name")
    tier.update(trials=2, student_steps=6, teacher_steps=6, eval_every=3)
    (tmp_path / "budgets.yaml").write_text(yaml.safe_dump({"tune": tier}))
    monkeypatch.setenv("XBENCH_BUDGETS", str(tmp_path / "budgets.yaml"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "tier": "tune", "seeds": [0, 1], "tasks": ["recognition"],
                                     "methods": ["student", "kd"]}))
    assert main(["sweep", str(suite), "--quiet", "--jobs", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["suite 't': tier tune, 2 cells x 2 seeds + 4 search trials = 8 runs; 0 already stored, 8 to run",
                       ("search: 2 trials per method on seed 1000; each method's tuned runs start once its "
                        "trials are stored (2 searches: 4 tuned runs in all)")]
    recs = ResultStore().records()
    assert sorted((r.method, r.trial, r.seed) for r in recs if r.trial is not None) == [
        ("kd", 0, 1000), ("kd", 1, 1000), ("student", 0, 1000), ("student", 1, 1000)]
    tuned = [r for r in recs if r.tuning]
    assert sorted((r.method, r.seed) for r in tuned) == [("kd", 0), ("kd", 1), ("student", 0), ("student", 1)]
    for rec in tuned:
        trials = {r.trial: r for r in recs if r.trial is not None and r.method == rec.method}
        scores = {k: t.selection.value for k, t in trials.items()}
        assert rec.tuning["val"] == {str(k): v for k, v in scores.items()}
        assert rec.tuning["selected"] == search.best_trial(scores)
        assert rec.tuning["steps"] == sum(t.trained_steps for t in trials.values()) == 12
        won = search.trial(rec_spec(rec), "recognition", "tune", rec.tuning["selected"])
        assert rec.config.get("hparams", {}) == won["hparams"]
    (table,) = build(recs)
    assert [r.label for r in table.rows] == ["kd", "kd (tuned)", "student", "student (tuned)"]
    assert [r.search.split(" (")[0] for r in table.rows] == ["", "2 trials, 12 steps", "", "2 trials, 12 steps"]
    # the tuned kd is paired with the tuned student, the default kd with the default student
    student_tuned = next(r for r in table.rows if r.label == "student (tuned)")
    kd_tuned = next(r for r in table.rows if r.label == "kd (tuned)")
    assert kd_tuned.versus.diff == pytest.approx(
        sum(kd_tuned.scores[s] - student_tuned.scores[s] for s in (0, 1)) / 2)
    odd = [dataclasses.replace(r, config={**r.config, "tuning": {**r.tuning, "trials": 3}})
           if r.tuning and r.method == "kd" else r for r in recs]
    with pytest.raises(ConfigError, match=r"^table tune/recognition mixes tuned rows searched with 2 and 3 trials"):
        build(odd)


def rec_spec(rec):
    from xbench.registry import build_registry

    return build_registry().get("methods", rec.method)


def test_a_suite_may_give_every_method_fewer_trials_than_its_tier(tmp_path, registry):
    """``trials:`` in a suite: every cell's search has that many trials (the first draws of the
    tier's own search, so trial k is the same run either way)."""
    from xbench.store import ResultStore
    from xbench.sweep import load_suite, plan_sweep

    def planned(**extra):
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump({"name": "t", "tier": "cpu", "seeds": [0], "tasks": ["recognition"],
                                        "methods": ["student", "kd"], **extra}))
        return [(r.label, r.config_hash) for r in plan_sweep(load_suite(path), registry, ResultStore()).runs]

    eight, four = planned(), planned(trials=4)
    assert [label for label, _ in four] == ["student", "student [trial 0]", "student [trial 1]", "student [trial 2]",
                                            "student [trial 3]", "kd", "kd [trial 0]", "kd [trial 1]",
                                            "kd [trial 2]", "kd [trial 3]"]
    assert set(four) <= set(eight) and len(eight) == 2 * 9
    with pytest.raises(ConfigError, match=r"suite.yaml: trials must be >= 0 \(or left out: the tier's\)$"):
        planned(trials=-1)
    with pytest.raises(ConfigError, match=r"rows: tuned needs a search \(the suite has trials: 0\)$"):
        planned(trials=0, rows="tuned")
