"""The control rows every table needs to be read: the noise floor (what chance makes), the
student given the teacher's labelled data (what the extra data alone buys), and XKD's own
baseline (masked reconstruction alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xbench.config import RunConfig, load_tiers, replace_options
from xbench.run import execute, plan
from xbench.testing import micro_tier


def _run(registry, data_root, method, task="recognition", **options):
    tiers = {"micro": replace_options(micro_tier(load_tiers()["smoke"]), {"name": "micro", "student_steps": 6},
                                      "micro")}
    cfg = RunConfig(method=method, task=task, budget="micro", method_options=options)
    return execute(plan(registry, cfg, tiers), 0, device=torch.device("cpu"), data_root=data_root)


def test_the_noise_floor_is_the_student_with_another_dropout_stream(registry, data_root):
    """Same terms, no teacher, same data and budget: only its training randomness differs, so its
    paired difference with `student` is chance."""
    tiers = load_tiers()
    floor, student = (plan(registry, RunConfig(method=m, task="recognition"), tiers) for m in ("noise-floor", "student"))
    assert [(k, t.loss) for k, t, _, _ in floor.terms] == [(k, t.loss) for k, t, _, _ in student.terms] == [("ce", "ce")]
    assert floor.teacher is None and floor.method.rng_stream == "noise-floor" and student.method.rng_stream == ""
    a, b = _run(registry, data_root, "noise-floor"), _run(registry, data_root, "student")
    assert a.data.sizes == b.data.sizes and a.budget.stage("student").samples == b.budget.stage("student").samples
    assert a.budget.stage("student").curve[0].terms != b.budget.stage("student").curve[0].terms
    assert _run(registry, data_root, "student").metrics == b.metrics  # the stream is seeded, not random


def test_the_student_with_the_teachers_labels_trains_on_both_splits(registry, data_root):
    rec = _run(registry, data_root, "student+teacher-labels")
    base = _run(registry, data_root, "student")
    assert rec.config["train_splits"] == ["train", "teacher"] and "train_splits" not in base.config
    # the tiny data's train split (66 clips) and teacher split (56 clips)
    assert (base.data.sizes["train"], rec.data.sizes["train"]) == (66, 66 + 56)
    # the same budget: steps and samples, not epochs
    assert rec.budget.stage("student").samples == base.budget.stage("student").samples


def test_xkd_mae_is_xkd_without_its_cross_modal_terms(registry, data_root):
    """XKD's Table 1 baseline: masked reconstruction alone, the same students and steps; equal to
    xkd with the KD and alignment weights at 0, and with one loss term."""
    mae = _run(registry, data_root, "xkd-mae")
    # a self-supervised stage's curve: its loss terms per window, no val metric
    assert [(c.step, c.value, list(c.terms)) for c in mae.budget.stage("student").curve] == [
        (2, None, ["xkd-mae:recon"]), (4, None, ["xkd-mae:recon"]), (6, None, ["xkd-mae:recon"])]
    ablated = _run(registry, data_root, "xkd", kd_weight=0.0, align_weight=0.0)
    assert mae.metrics == ablated.metrics
    assert mae.trained_steps == ablated.trained_steps == 6 + 2  # self-supervised + fine-tuning


def test_each_cell_draws_its_val_curves_and_names_its_loss_terms(registry, data_root):
    """The HTML page's curve column: per seed the selecting stage's val curve, and the loss terms'
    first and last window in the tooltip."""
    from xbench.leaderboard import build
    from xbench.render import sparkline

    rec = _run(registry, data_root, "kd")
    (table,) = build([rec])
    (row,) = table.rows
    curve = rec.budget.stage("student").curve
    assert row.curves == {0: [(c.step, c.value) for c in curve]} and [s for s, _ in row.curves[0]] == [2, 4, 6]
    assert row.terms == {k: (curve[0].terms[k], curve[-1].terms[k]) for k in ("ce", "kd")}
    svg = sparkline(row)
    assert svg.count("<polyline") == 1 and svg.count(",") == 3  # three points
    assert f"kd {curve[0].terms['kd']:.3g} -&gt; {curve[-1].terms['kd']:.3g}" in svg


def test_the_oracle_control_reads_the_privileged_fact_and_says_so(registry, data_root, monkeypatch):
    """kd-oracle distils only the clips whose audio carries the action: its loss gets the train
    batch's audio_relevant flags (no student ever sees them), its rows say "oracle", and a task
    without that fact refuses it by name."""
    from xbench_baselines import GatedKDLoss

    from xbench.errors import IncompatibleError
    from xbench.leaderboard import build

    seen = []
    forward = GatedKDLoss.forward

    def spy(self, student, teacher, positions=None, target=None, label_mask=None):
        seen.append(target.clone())
        return forward(self, student, teacher, positions, target, label_mask)

    monkeypatch.setattr(GatedKDLoss, "forward", spy)
    rec = _run(registry, data_root, "kd-oracle")
    assert rec.config["privileged"] == ["audio_relevant"]
    assert len(seen) == 6 and all(t.dtype == torch.bool for t in seen)
    assert 0 < float(torch.cat(seen).float().mean()) < 1  # the tiny data has clean and noisy clips
    (table,) = build([rec])
    assert [r.label for r in table.rows] == ["kd-oracle (oracle: audio_relevant)"]
    # the tasks whose examples carry the fact; a method declaring a fact a task lacks is refused too
    assert registry.get("methods", "kd-oracle").tasks == ("recognition", "retrieval")
    assert [registry.get("tasks", t).privileged for t in registry.names("tasks")] == [
        (), (), (), ("audio_relevant",), ("audio_relevant",)]
    oracle = dataclasses.replace(registry.get("methods", "kd-oracle"), tasks=None)
    monkeypatch.setitem(registry.entries["methods"], "kd-oracle",
                        dataclasses.replace(registry.entry("methods", "kd-oracle"), spec=oracle))
    with pytest.raises(IncompatibleError, match=r"^method 'kd-oracle' reads the privileged fact 'audio_relevant', "
                                                r"which task 'anticipation' does not provide$"):
        plan(registry, RunConfig(method="kd-oracle", task="anticipation"), load_tiers())


def test_the_confidence_gated_control_is_kd_with_a_threshold(registry):
    p = plan(registry, RunConfig(method="kd-confident", task="recognition"), load_tiers())
    assert [(k, t.loss, t.weight, t.options) for k, t, _, _ in p.terms] == [
        ("ce", "ce", pytest.approx(0.1), {}),
        ("kd-gated", "kd-gated", 0.9, {"T": 4.0, "threshold": 0.7, "multilabel": False})]
    assert "privileged" not in p.resolved()
