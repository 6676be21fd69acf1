"""Audio-visual distillation: the xkd and mnf-csc plugins, the linear-probe and fine-tuning
protocols, retrieval, audio-tagging and the clean/noisy-audio subsets."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import fake
from xbench_xkd import XKDObjective

from xbench.config import REPO_ROOT, RunConfig, from_mapping, load_run_config, load_tiers
from xbench.errors import ConfigError, IncompatibleError
from xbench.registry import build_registry
from xbench.run import execute, plan
from xbench.tasks import Examples, RecognitionOptions, RecognitionTask, retrieval_scores
from xbench.testing import check_method


def _run(registry, data_root, method, task="recognition", task_options=None, **budget):
    p = plan(registry, RunConfig(method=method, task=task, budget="smoke", budget_options=budget,
                                 task_options=task_options or {}), load_tiers())
    return execute(p, 0, device=torch.device("cpu"), data_root=data_root)


def test_xkd_training_never_receives_labels(registry, data_root, monkeypatch):
    seen: list[set[str]] = []
    forward = XKDObjective.forward

    def spy(self, batch, student_out, teacher_out):
        seen.append(set(batch))
        assert student_out is None and teacher_out is None
        return forward(self, batch, student_out, teacher_out)

    monkeypatch.setattr(XKDObjective, "forward", spy)
    rec = _run(registry, data_root, "xkd", task_options={"protocol": "linear"}, student_steps=3)
    assert seen == [{"rgb", "audio", "index"}] * 3
    assert [s.stage for s in rec.budget.stages] == ["student", "probe"]
    assert rec.selection.split is None and rec.teacher is None
    assert math.isfinite(rec.metrics["top1"])


def test_xkd_finetune_protocol_adds_a_val_selected_stage(registry, data_root):
    rec = _run(registry, data_root, "xkd", student_steps=2, finetune_steps=4, eval_every=2)
    stages = [(s.stage, s.steps) for s in rec.budget.stages]
    assert stages == [("student", 2), ("finetune", 4)]
    assert rec.selection.split == "val" and rec.selection.stage == "finetune"


def test_self_supervised_method_may_not_read_labels(add_plugin):
    add_plugin("peeky", """
        import torch
        from xbench import hookimpl
        from xbench.specs import LossTerm, MethodSpec

        class Obj(torch.nn.Module):
            def __init__(self, opts, ctx):
                super().__init__()

        @hookimpl
        def xbench_register_methods(register):
            register(MethodSpec(name="peeky", description="d", terms=lambda o: [LossTerm("task")],
                                teacher=None, objective=Obj, labels=False))
    """)
    with pytest.raises(IncompatibleError, match=r"^method 'peeky' is self-supervised \(labels=False\) "
                                                r"but its loss 'ce' reads target 'label'$"):
        plan(build_registry(), RunConfig(method="peeky", task="recognition", budget="smoke"), load_tiers())


def test_linear_probe_protocol_is_the_same_for_every_method(registry, data_root):
    rec = _run(registry, data_root, "kd", task_options={"protocol": "linear"})
    assert [(s.stage, s.steps) for s in rec.budget.stages] == [
        ("teacher", 30), ("teacher-inference", 0), ("student", 30), ("probe", 30)]
    assert rec.selection.split == "val"  # the student's own stage, as in fine-tuning
    with pytest.raises(ConfigError, match=r"^task 'recognition' protocol 'linear' needs probe_steps > 0 "
                                          r"in budget tier 'smoke\+custom'$"):
        _run(registry, data_root, "kd", task_options={"protocol": "linear"}, probe_steps=0)


def test_clean_and_noisy_audio_subsets_are_reported():
    task = RecognitionTask(RecognitionOptions())
    data = Examples({"label": torch.tensor([0, 1, 2, 0]),
                     "audio_relevant": torch.tensor([True, True, False, False])})
    logits = torch.tensor([[5.0, 0, 0], [0, 0, 5.0], [0, 0, 5.0], [0, 5.0, 0]])
    out = task.evaluate({"logits": logits}, data)
    assert (out["top1"], out["top1_clean_audio"], out["top1_noisy_audio"]) == (50.0, 50.0, 50.0)
    data.tensors["audio_relevant"] = torch.tensor([True, False, True, False])
    out = task.evaluate({"logits": logits}, data)
    assert (out["top1_clean_audio"], out["top1_noisy_audio"]) == (100.0, 0.0)


def test_retrieval_scores_golden():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [-1.0, 0.0]])
    g_labels = torch.tensor([0, 1, 1, 0, 0])
    queries = torch.tensor([[1.0, 0.05], [0.0, 1.0], [0.0, -1.0]])
    q_labels = torch.tensor([0, 1, 2])
    ap, r1, r5 = retrieval_scores(queries, q_labels, gallery, g_labels, top_k=5)
    # query 0 ranks gallery 0, 2, 3, 1, 4: relevant (label 0) at ranks 1, 3, 5
    # query 1 ranks 1, 3, 2, 0, 4: relevant (label 1) at ranks 1, 3; query 2: none relevant
    assert ap[:2].tolist() == pytest.approx([(1 + 2 / 3 + 3 / 5) / 3, (1 + 2 / 3) / 2])
    assert np.isnan(ap[2])
    assert r1.tolist() == [True, True, False] and r5.tolist() == [True, True, False]
    ap3, _, _ = retrieval_scores(queries[:1], q_labels[:1], gallery, g_labels, top_k=3)
    assert ap3.tolist() == pytest.approx([(1 + 2 / 3) / 2])  # only the hits in the top 3 count


@pytest.mark.parametrize("method", ["student", "xkd"])
def test_retrieval_task_end_to_end(registry, data_root, method):
    rec = _run(registry, data_root, method, task="retrieval", student_steps=6, eval_every=3)
    assert set(rec.metrics) == {"map", "recall1", "recall5", "map_clean_audio", "map_noisy_audio", "top1"}
    assert 0 < rec.metrics["map"] <= 100 and rec.main_metric == "map"


def test_audio_tagging_runs_the_other_direction(registry, data_root):
    rec = check_method(registry, "mnf-csc", "audio-tagging", data_root)
    assert rec.eval_modalities == ("audio",) and rec.teacher["modalities"] == ["rgb"]
    assert rec.teacher["name"] == "video-cnn"


@pytest.mark.parametrize("name", ["xkd", "mnf-csc", "lmkd-egtea", "lmkd-ek55", "ccd"])
def test_paper_configs_are_valid_and_need_real_data(registry, name, tmp_path):
    path = REPO_ROOT / "xbench" / "benchmarks" / "paper" / f"{name}.yaml"
    raw = load_run_config(Path(path))
    tiers = load_tiers()
    assert raw["budget"] == f"paper-{name}" and raw["budget"] in tiers
    cfg = from_mapping(RunConfig, raw, str(path))
    dataset = {"mnf-csc": "ucf51", "xkd": "kinetics-sound", "lmkd-egtea": "egtea-gaze",
               "lmkd-ek55": "epic-kitchens-55", "ccd": "tasty"}[name]
    if name == "mnf-csc":  # its pretrained CNN14 teacher is a file the user gives
        with pytest.raises(Exception, match="^teacher.train_steps=0 keeps a randomly initialised teacher"):
            plan(registry, cfg, tiers)
        (tmp_path / "cnn14.pth").write_bytes(b"")
        cfg = dataclasses.replace(cfg, teacher_options={**cfg.teacher_options,
                                                        "checkpoint": str(tmp_path / "cnn14.pth")})
    with pytest.raises(Exception, match=f"^dataset '{dataset}' needs its root: --set dataset.root=PATH$"):
        plan(registry, cfg, tiers)
    # the same method options are valid on synth (with the task's own student and teacher)
    p = plan(registry, dataclasses.replace(cfg, dataset="synth", budget="cpu", dataset_options={}, student=None,
                                           teacher=None, teacher_options={}), tiers)
    assert p.method.name == raw["method"] and name.startswith(raw["method"])


def test_leaderboard_keeps_protocols_apart():
    from xbench.leaderboard import build

    def rec(method, protocol, seed, top1, stages, kd=1.0):
        return fake(method, seed, top1, teacher=False, heads=2, config_hash=f"{method}-{protocol}-{kd}",
                    task_options={"protocol": protocol}, options={"kd_weight": kd, "tau": 0.1},
                    own_stages=stages, start=seed)

    from xbench.leaderboard import mean_std

    [table] = build([rec("xkd", "finetune", 0, 40.0, [("student", 5), ("finetune", 3)]),
                     rec("xkd", "finetune", 1, 42.0, [("student", 5), ("finetune", 3)]),
                     rec("xkd", "linear", 0, 30.0, [("student", 5), ("probe", 7)]),
                     rec("xkd", "linear", 0, 35.0, [("student", 5), ("probe", 7)], kd=0.0)])
    assert [(r.label, len(r.scores), mean_std(list(r.scores.values())), r.steps) for r in table.rows] == [
        # steps: every stage that trained the evaluated model (self-supervised + probe or fine-tuning)
        ("xkd (linear probe) [kd_weight=0.0]", 1, "35.00 ± 0.00", "12"),
        ("xkd (linear probe) [kd_weight=1.0]", 1, "30.00 ± 0.00", "12"),
        ("xkd [kd_weight=1.0]", 2, "41.00 ± 1.41", "8")]


def test_cli_says_how_a_self_supervised_student_was_evaluated(capsys):
    from xbench.cli import main

    assert main(["run", "--method", "xkd", "--task", "recognition", "--budget", "smoke", "--quiet",
                 "--set", "task.protocol=linear", "--set", "budget.student_steps=2",
                 "--set", "budget.probe_steps=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("xkd on recognition (synth), tier smoke+custom, test metrics of the student's last "
                      "state (self-supervised, nothing selected) through a linear probe; main metric: top1")
    assert out[3].split()[6:8] == ["2", "32"]  # the method's own stage: 2 steps of 16


def test_mnf_side_alone_leaves_the_student_bit_identical(registry, data_root):
    """With the CSC weight at 0 nothing of mnf-csc reaches the student (L_a is computed on detached
    features, its modules draw no random numbers the student uses): the run must reproduce the
    student-only baseline exactly, which also shows the harness gives both the same batches,
    initialisation and optimizer."""
    base = _run(registry, data_root, "student", student_steps=6, eval_every=3)
    p = plan(registry, RunConfig(method="mnf-csc", task="recognition", budget="smoke",
                                 budget_options={"student_steps": 6, "eval_every": 3},
                                 method_options={"csc_weight": 0.0}), load_tiers())
    rec = execute(p, 0, device=torch.device("cpu"), data_root=data_root)
    assert rec.metrics == base.metrics and rec.selection == base.selection
    assert rec.params.heads > 0
