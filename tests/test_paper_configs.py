"""Each paper config (benchmarks/paper/*.yaml: the published backbone, frames, optimizer,
schedule, batch and epochs, and a paper-* tier) runs end to end on a fixture tree of its paper's
dataset in that dataset's exact layout: a smoke of the config with 2 steps per stage, on the CPU,
at a small picture size (the backbones, methods, optimizers and schedules are the papers')."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xbench.cli import main
from xbench.config import load_run_config
from xbench.data import encoded
from xbench.data.flow import prepare_flow
from xbench.data.official import class_list
from xbench.store import ResultStore

SMOKE = ["--device", "cpu", "--seed", "0", "--quiet", "--set=dataset.val_fraction=0.25",
         *(f"--set=budget.{k}=2" for k in ("student_steps", "eval_every", "batch_size")),
         "--set=dataset.short_side=32", "--set=dataset.crop=32"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    encoded.ucf101_tree(root / "ucf", sorted([*class_list("ucf51"), "YoYo"]), ["ApplyEyeMakeup", "Archery", "YoYo"],
                        groups=5, mute=("YoYo",))
    encoded.kinetics_tree(root / "kinetics", ["abseiling", "playing bagpipes"], per_class=4)
    encoded.egtea_tree(root / "egtea")
    encoded.epic55_tree(root / "epic")
    encoded.tasty_tree(root / "tasty")
    encoded.tsu_tree(root / "tsu")
    prepare_flow(root / "tsu", root / "tsu" / "flow")  # as `xbench data flow ROOT --out ROOT/flow`
    return {"mnf-csc": root / "ucf", "xkd": root / "kinetics", "lmkd-egtea": root / "egtea", "lmkd-ek55": root / "epic",
            "ccd": root / "tasty", "argb": root / "tsu"}


def _cnn14_checkpoint(path: Path) -> Path:
    """A file laid out as PANNs' AudioSet checkpoint (weights under "model", with its front end and
    527-class head), random weights: what --set teacher.checkpoint reads."""
    from xbench.backbones import Cnn14

    torch.manual_seed(0)
    weights = dict(Cnn14(64).state_dict(), **{"fc_audioset.weight": torch.zeros(527, 2048),
                                              "fc_audioset.bias": torch.zeros(527),
                                              "logmel_extractor.melW": torch.zeros(257, 64)})
    torch.save({"model": weights, "iteration": 600000}, path)
    return path


@pytest.mark.parametrize("name, extra, stages", [
    # the frozen CNN14 teacher from its checkpoint (0 steps: scored on val once), R(2+1)D from scratch
    ("mnf-csc", ["--set=dataset.mel_frames=64"], ["teacher", "teacher-inference", "student"]),
    # VideoMAE ViT-B and its AST partner, self-supervised then a linear probe
    ("xkd", [f"--set=budget.{k}=2" for k in ("probe_steps", "finetune_steps")] + ["--set=dataset.mel_frames=64"],
     ["student", "probe"]),
    ("lmkd-egtea", ["--set=budget.teacher_steps=2", "--set=task.meteor=false"],
     ["teacher", "teacher-inference", "student"]),
    # AVT's head on a frozen encoder's features of each observed stretch (the paper: irCSN-152's)
    ("lmkd-ek55", ["--set=budget.teacher_steps=2", "--set=task.meteor=false"],
     ["features", "teacher", "teacher-inference", "student"]),
    # reconstructed: every setting but the task, the data and the metric is inferred
    ("ccd", ["--set=budget.teacher_steps=2", "--set=budget.pretrain_steps=2", "--set=task.meteor=false"],
     ["teacher", "pretrain", "teacher-inference", "student"]),
    # reconstructed too: the flow teacher reads the flow `xbench data flow` prepared from the videos
    ("argb", ["--set=budget.teacher_steps=2", "--set=dataset.fps=4"], ["teacher", "teacher-inference", "student"]),
])
def test_each_paper_config_runs_end_to_end_on_its_datasets_fixture_tree(trees, tmp_path, name, extra, stages):
    raw = load_run_config(Path(name))
    if name == "argb":
        extra = [*extra, f"--set=dataset.flow_dir={trees[name] / 'flow'}"]
    if name == "mnf-csc":
        extra = [*extra, f"--set=teacher.checkpoint={_cnn14_checkpoint(tmp_path / 'Cnn14_mAP=0.431.pth')}"]
    assert main(["run", "--config", name, f"--set=dataset.root={trees[name]}", *SMOKE, *extra]) == 0
    (rec,) = ResultStore().records()
    assert (rec.method, rec.dataset, rec.tier, rec.status) == (raw["method"], raw["dataset"],
                                                              f"{raw['budget']}+custom", "complete")
    assert [s.stage for s in rec.budget.stages] == stages
    assert rec.config["student"] == raw.get("student", rec.config["student"])
    assert rec.config.get("models", {}).get("student") == raw.get("student_options")
    if name == "mnf-csc":  # the pretrained teacher: used as it is, and the record says so
        assert (rec.teacher["name"], rec.teacher["train_steps"], rec.checkpoints["teacher"]["unexpected"]) == (
            "cnn14", 0, ["fc_audioset.bias", "fc_audioset.weight", "logmel_extractor.melW"])
