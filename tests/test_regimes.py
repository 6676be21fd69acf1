"""Regimes as data: the shipped ones, how one changes a run's data and tier, how a record names
it, how a sweep crosses them, and that leaderboards keep each regime's runs in their own table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xbench.config import RunConfig, load_tiers, replace_options, stable_hash
from xbench.errors import ConfigError, IncompatibleError
from xbench.regimes import load_regime, select, shipped
from xbench.run import execute, plan
from xbench.testing import micro_tier


def test_the_shipped_regimes():
    assert [(r.name, r.tasks) for r in shipped()] == [
        ("R0-published", None), ("R1-clean-teacher", ["recognition", "retrieval"]),
        ("R2-labels-03", None), ("R2-labels-10", None), ("R2-labels-30", None),
        ("R3-few-labels-clean-teacher", ["recognition", "retrieval"]),
        ("R4-noise-30-other", ["recognition", "retrieval"]), ("R4-noise-30-white", ["recognition", "retrieval"]),
        ("R4-noise-60-other", ["recognition", "retrieval"]), ("R4-noise-60-white", ["recognition", "retrieval"]),
        ("R5-steps-x4", None), ("R6-harder-video", None), ("R7-big-teacher", None)]
    assert all(r.tests and "\n" not in r.tests for r in shipped())
    assert [r.name for r in select("R0, R2,R4-noise-60-other")] == [
        "R0-published", "R2-labels-03", "R2-labels-10", "R2-labels-30", "R4-noise-60-other"]


def test_a_regime_changes_the_data_and_the_tier_and_is_part_of_the_configuration(registry):
    tiers = load_tiers()
    base = plan(registry, RunConfig(method="kd", task="recognition"), tiers)
    r5 = plan(registry, RunConfig(method="kd", task="recognition", regime="R5-steps-x4"), tiers)
    r2 = plan(registry, RunConfig(method="kd", task="recognition", regime="R2-labels-10"), tiers)
    assert (r5.tier.name, r5.tier.student_steps, r5.tier.finetune_steps, r5.tier.eval_every) == ("cpu", 1000, 1000, 200)
    assert (r5.tier.teacher_steps, r5.tier.batch_size) == (base.tier.teacher_steps, base.tier.batch_size)
    assert r2.dataset_options.label_fraction == 0.1 and r2.tier == base.tier
    assert r2.resolved()["regime"] == {
        "name": "R2-labels-10", "tests": load_regime("R2-labels-10").tests,
        "dataset_options": {"label_fraction": 0.1}, "budget_scale": {}, "budget_options": {}, "tasks": None}
    assert "regime" not in base.resolved()
    assert len({stable_hash(p.resolved()) for p in (base, r5, r2)}) == 3
    r7 = plan(registry, RunConfig(method="kd", task="recognition", regime="R7-big-teacher"), tiers)
    assert (r7.dataset_options.teacher_size, r7.tier.teacher_steps) == (4.0, 4 * base.tier.teacher_steps)


def test_bad_regimes_are_one_line_errors(registry, tmp_path):
    tiers = load_tiers()
    with pytest.raises(ConfigError, match=r"^unknown regime 'R9' \(shipped: R0-published, "):
        plan(registry, RunConfig(method="kd", task="recognition", regime="R9"), tiers)
    with pytest.raises(ConfigError, match=r"^dataset.label_fraction is set by regime 'R2-labels-10'; "):
        plan(registry, RunConfig(method="kd", task="recognition", regime="R2-labels-10",
                                 dataset_options={"label_fraction": 0.5}), tiers)
    bad = tmp_path / "mine.yaml"
    bad.write_text("tests: more steps\nbudget_scale: {batch_size: 2}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: budget_scale: 'batch_size' cannot be scaled"):
        load_regime(bad)
    bad.write_text("tests: a knob synth lacks\ndataset_options: {fog: 0.5}\n")
    with pytest.raises(IncompatibleError, match=r"^regime 'mine' sets dataset option 'fog', which dataset 'synth'"):
        plan(registry, RunConfig(method="kd", task="recognition", regime=str(bad)), tiers)


def test_a_record_names_its_regime_and_tables_keep_regimes_apart(registry, data_root):
    from xbench.leaderboard import build

    tiers = {"micro": replace_options(micro_tier(load_tiers()["smoke"]), {"name": "micro", "student_steps": 4},
                                      "micro")}

    def run(method, regime=None):
        cfg = RunConfig(method=method, task="recognition", budget="micro", regime=regime)
        return execute(plan(registry, cfg, tiers), 0, device=torch.device("cpu"), data_root=data_root)

    recs = [run("student"), run("student", "R2-labels-30"), run("kd", "R2-labels-30")]
    assert [r.regime for r in recs] == [None, "R2-labels-30", "R2-labels-30"]
    assert recs[1].config["dataset_options"]["label_fraction"] == 0.3
    assert recs[0].config["dataset_options"]["label_fraction"] == 1.0
    tables = build(recs)
    assert [(t.tier, [r.label for r in t.rows]) for t in tables] == [
        ("micro", ["student"]), ("micro, regime R2-labels-30", ["kd", "student"])]


def test_a_sweep_crosses_its_grid_with_regimes(registry, tmp_path):
    from xbench.store import ResultStore
    from xbench.sweep import load_suite, plan_sweep, with_regimes

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: s\ntier: smoke\nseeds: [0]\ntasks: [recognition, anticipation]\n"
                          "methods: [student, kd]\nregimes: [R0]\n")
    suite = load_suite(suite_file)
    assert suite.regimes == ["R0-published"]
    sp = plan_sweep(with_regimes(suite, "R2-labels-10,R4-noise-60-white"), registry, ResultStore(tmp_path / "h"))
    # R4 changes the audio teacher's input: it crosses only the tasks whose teacher hears it
    assert sorted((r.task, r.label) for r in sp.runs) == [
        ("anticipation", "kd @ R2-labels-10"), ("anticipation", "student @ R2-labels-10"),
        ("recognition", "kd @ R2-labels-10"), ("recognition", "kd @ R4-noise-60-white"),
        ("recognition", "student @ R2-labels-10"), ("recognition", "student @ R4-noise-60-white")]
    assert all(r.config["regime"] in ("R2-labels-10", "R4-noise-60-white") for r in sp.runs)


def test_the_teacher_split_can_be_larger_than_train():
    from xbench.data.synth import SynthOptions

    assert SynthOptions().counts() == {"train": 700, "val": 150, "test": 150, "teacher": 350}
    assert SynthOptions(teacher_size=4.0).counts()["teacher"] == 2800
    assert SynthOptions(size="tiny", teacher_size=2.0).counts()["teacher"] == 24
    # unset, the generated files (and their key) are the ones made before the knob existed
    assert SynthOptions().generation_key() == SynthOptions(overlap_rate=0.0).generation_key()
    assert SynthOptions(teacher_size=4.0).generation_key() != SynthOptions().generation_key()
    with pytest.raises(ValueError, match="teacher_size"):
        SynthOptions(teacher_size=0.0)


def test_regime_files_are_package_data():
    import tomllib

    from xbench.config import REPO_ROOT

    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path("benchmarks/regimes/R0-published.yaml").match(g) for g in data["xbench"])


def test_a_suite_of_tuned_rows_runs_no_default_rows(registry, tmp_path):
    """A regime map's cells are tuned rows: `rows: tuned` runs the search (trial 0 is the defaults)
    and the winners, not the defaults again on every seed."""
    from xbench.store import ResultStore
    from xbench.sweep import describe, load_suite, plan_sweep

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: s\ntier: cpu\nseeds: [0, 1]\ntasks: [recognition]\nmethods: [student, kd]\n"
                          "rows: tuned\nregimes: [R2-labels-10]\n")
    sp = plan_sweep(load_suite(suite_file), registry, ResultStore(tmp_path / "h"))
    assert sorted({(r.label.split(" [")[0], r.seed) for r in sp.runs}) == [
        ("kd @ R2-labels-10", 1000), ("student @ R2-labels-10", 1000)]
    assert len(sp.runs) == 16  # 8 trials each; the tuned runs join once the trials are stored
    assert describe(sp).splitlines()[1] == (
        "search: 8 trials per method on seed 1000; each method's tuned runs start once its trials are stored "
        "(2 searches: 4 tuned runs in all, and no default rows: rows: tuned)")
    suite_file.write_text("name: s\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\nrows: tuned\n")
    with pytest.raises(ConfigError, match=r"rows: tuned needs a search \(tier 'smoke' has trials: 0\)$"):
        plan_sweep(load_suite(suite_file), registry, ResultStore(tmp_path / "h"))
