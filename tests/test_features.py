"""Frozen-feature mode (``--set student.encoder=NAME``): a frozen encoder's features of the student's
clips, computed once per clip and cached, in place of the clips."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from xbench import testing
from xbench.cli import main
from xbench.config import RunConfig, load_tiers
from xbench.engine.features import FrozenFeatures
from xbench.errors import PluginError
from xbench.models import FrameCNNStudent
from xbench.run import execute, plan
from xbench.specs import ModelContext
from xbench.store import xbench_home
from xbench.train import derive_seed

CPU = torch.device("cpu")


def _tiers():
    tiers = load_tiers()
    tiers["smoke"] = dataclasses.replace(tiers["smoke"], **testing.MICRO)
    return tiers


def _run(registry, data_root, method="student", **student_options):
    cfg = RunConfig(method=method, task="anticipation", budget="smoke", task_options={"meteor": False},
                    student_options={"encoder": "frame-cnn", **student_options})
    p = plan(registry, cfg, _tiers())
    return p, execute(p, 0, device=CPU, data_root=data_root)


def _stage(rec, name):
    return next(s for s in rec.budget.stages if s.stage == name)


def test_the_plan_drops_encoder_pretraining_and_hashes_the_encoder(registry):
    tiers = _tiers()
    base = RunConfig(method="student", task="anticipation", budget="smoke")
    frozen = dataclasses.replace(base, student_options={"encoder": "frame-cnn"})
    assert [s.value for s in plan(registry, base, tiers).stages] == ["pretrain", "student", "test"]
    p = plan(registry, frozen, tiers)
    assert [s.value for s in p.stages] == ["student", "test"]
    assert p.encoder.name == "frame-cnn"
    assert p.resolved()["models"] == {"student": {"encoder": "frame-cnn"}}
    assert "models" not in plan(registry, base, tiers).resolved()
    # trained as the student's clip encoder (AVT-b's end-to-end ViT): pretrained like the default one
    trained = dataclasses.replace(base, student_options={"encoder": "frame-cnn", "encoder_trainable": True})
    p = plan(registry, trained, tiers)
    assert ([s.value for s in p.stages], p.frozen_encoder) == (["pretrain", "student", "test"], False)
    assert p.resolved()["models"] == {"student": {"encoder": "frame-cnn", "encoder_trainable": True}}


def test_the_student_trains_on_the_encoders_features_cached_once_for_every_method(registry, data_root, monkeypatch):
    p, first = _run(registry, data_root)
    spend = _stage(first, "features")
    # smoke synth: 30 train, 20 val, 16 test examples of 3 observed steps each
    assert (spend.samples, spend.source, spend.steps) == ((30 + 20 + 16) * 3, "computed", 0)
    assert [s.stage for s in first.budget.stages] == ["features", "student"]
    # the cached features are the seeded, frozen frame-cnn's feature tap of each observed clip
    entries = sorted((xbench_home() / "cache" / "features").glob("*.pt"))
    assert len(entries) == 3
    test = p.task.factory(p.task_options).examples(p.dataset.factory(p.dataset_options, data_root), "test",
                                                   ("rgb",))
    dataset = p.dataset.factory(p.dataset_options, data_root)
    torch.manual_seed(derive_seed(0, "encoder-init"))
    encoder = FrameCNNStudent(ModelContext(num_classes=dataset.num_classes,
                                           shapes={"rgb": tuple(test.tensors["rgb"].shape[2:])})).eval()
    with torch.inference_mode():
        expected = encoder({"rgb": test.tensors["rgb"].flatten(0, 1)})["feature"].view(16, 3, -1)
    stored = [torch.load(e, weights_only=True)["features"] for e in entries]
    assert any(s.shape == expected.shape and torch.equal(s, expected) for s in stored)

    # another method of the comparison reads them from the cache, with the same numbers
    _, again = _run(registry, data_root)
    assert _stage(again, "features").source == "cache"
    monkeypatch.setenv("XBENCH_FEATURE_CACHE", "0")
    _, alone = _run(registry, data_root)
    assert _stage(alone, "features").source == "computed"
    assert repr(first.metrics) == repr(again.metrics) == repr(alone.metrics)
    assert first.config_hash == again.config_hash == alone.config_hash

    # a damaged entry is a miss: computed again, same numbers
    monkeypatch.setenv("XBENCH_FEATURE_CACHE", "1")
    for e in entries:
        e.write_bytes(b"not a torch file")
    _, mended = _run(registry, data_root)
    assert _stage(mended, "features").source == "computed" and repr(mended.metrics) == repr(first.metrics)


def test_an_encoder_checkpoint_loads_into_the_encoder_and_is_recorded(registry, data_root, tmp_path):
    torch.manual_seed(5)
    weights = FrameCNNStudent(ModelContext(num_classes=3, shapes={})).state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith("head.")}  # another task's head left out
    path = tmp_path / "encoder.pt"
    torch.save(weights, path)
    _, random_init = _run(registry, data_root)
    _, loaded = _run(registry, data_root, encoder_checkpoint=str(path))
    info = loaded.checkpoints["student-encoder"]
    assert (info["path"], info["loaded"], info["unexpected"]) == (str(path.resolve()), len(weights), [])
    assert info["missing"] == ["head.bias", "head.weight"]
    assert loaded.config["models"] == {"student": {"encoder": "frame-cnn", "encoder_checkpoint": info["sha256"]}}
    assert loaded.config_hash != random_init.config_hash
    assert _stage(loaded, "features").source == "computed"  # another key: not the random encoder's entry


def test_a_trainable_encoder_is_the_students_clip_encoder_from_its_checkpoint(registry, data_root, tmp_path):
    torch.manual_seed(5)
    weights = FrameCNNStudent(ModelContext(num_classes=3, shapes={})).state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith("head.")}
    path = tmp_path / "encoder.pt"
    torch.save(weights, path)
    p, rec = _run(registry, data_root, encoder_checkpoint=str(path), encoder_trainable=True)
    assert [s.stage for s in rec.budget.stages] == ["pretrain", "student"]  # no features: it trains
    info = rec.checkpoints["student-encoder"]
    assert (info["loaded"], info["missing"], info["unexpected"]) == (len(weights), ["head.bias", "head.weight"], [])
    # the student, built as the run builds it, holds the file's weights in its clip encoder and
    # trains all of them (the encoder's feature projected to the step embedding where widths differ)
    from xbench.budget import BudgetMeter
    from xbench.context import Clock, Reporter
    from xbench.engine import RunContext, prepare

    ctx = RunContext(p, 0, CPU, BudgetMeter(float("inf")), Reporter(lambda s: None, False), data_root,
                     home=tmp_path / "home", clock=Clock())
    student = prepare(ctx).student
    own = student.clip.state_dict()
    assert all(torch.equal(own[k], v) for k, v in weights.items())
    assert all(q.requires_grad for q in student.clip.parameters())
    assert isinstance(student.project, torch.nn.Identity)  # frame-cnn's 64-d feature is the step width


def _err(args, capsys):
    code = main(["run", "--method", "student", "--budget", "smoke", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--task", "anticipation", "--set", "student.encoder=tsn-resnet81"],
     "student.encoder: unknown student 'tsn-resnet81'; did you mean 'tsn-resnet18'?"),
    (["--task", "recognition", "--set", "student.encoder=tsn-resnet18"],
     "student.encoder: student 'frame-cnn' takes no encoder (a student that does declares takes_encoder)"),
    (["--task", "anticipation", "--set", "student.encoder=mel-cnn"],
     "student.encoder: 'mel-cnn' reads audio; task 'anticipation' gives the student rgb"),
    (["--task", "anticipation", "--set", "student.encoder=step-avt"],
     "student.encoder: 'step-avt' lacks a sample shape of its rgb input, so it cannot encode clips"),
    (["--task", "anticipation", "--set", "student.encoder_trainable=true"],
     "student.encoder_trainable: give student.encoder=NAME too (the network it trains)"),
    (["--task", "anticipation", "--set", "student.encoder_checkpoint=x.pt"],
     "student.encoder_checkpoint: give student.encoder=NAME too (the network it initialises)"),
    (["--task", "anticipation", "--set", "student.encoder=frame-cnn", "--set", "student.encoder_checkpoint=no.pt"],
     "student.encoder_checkpoint: no file no.pt"),
])
def test_a_bad_encoder_is_one_line_and_exit_2(args, message, capsys):
    assert _err(args, capsys) == (2, f"xbench: error: {message}\n")


def test_an_encoder_whose_feature_tap_is_not_one_row_per_clip_is_named(registry):
    cfg = RunConfig(method="student", task="anticipation", budget="smoke", student_options={"encoder": "frame-cnn"})
    p = plan(registry, cfg, _tiers())

    class PerFrame(torch.nn.Module):
        def forward(self, inputs):
            return {"feature": inputs["rgb"].float().mean(dim=(3, 4))}  # (clips, frames, channels)

    features = FrozenFeatures.__new__(FrozenFeatures)  # the encoding alone, without a run around it
    features.ctx, features.spec, features.modality = SimpleNamespace(plan=p, device=CPU), p.encoder, "rgb"
    features.model, features.culprit = PerFrame(), "student.encoder 'frame-cnn'"
    with pytest.raises(PluginError, match=r"^student.encoder 'frame-cnn': its 'feature' tap is \(4, 8, 3\), "
                                          r"expected \(clips, width\)$"):
        features._encode(torch.zeros(2, 2, 8, 3, 4, 4, dtype=torch.uint8), (2,))

