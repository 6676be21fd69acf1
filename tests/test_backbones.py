"""Students from the field's libraries (torchvision's video networks): their taps on real clip
shapes, chosen per run with --student for every method alike, refused where a task's objective
reads a tap they lack."""

from __future__ import annotations

import pytest
import torch

from xbench.backbones import video_students
from xbench.cli import main
from xbench.specs import ModelContext
from xbench.store import ResultStore

MICRO = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("teacher_steps", 2), ("eval_every", 2),
                                              ("batch_size", 4))]


def test_video_students_tap_the_last_block_at_16_frames_of_112_px():
    ctx = ModelContext(num_classes=7, shapes={"rgb": (16, 3, 112, 112)})
    clip = torch.randint(0, 256, (1, 16, 3, 112, 112), dtype=torch.uint8)
    shapes = {}
    for name, _, factory in video_students():
        torch.manual_seed(0)
        with torch.no_grad():
            shapes[name] = {k: tuple(v.shape) for k, v in factory(ctx).eval()({"rgb": clip}).items()}
    resnet = {"logits": (1, 7), "feature": (1, 512), "tokens": (1, 2, 512), "spatial": (1, 2, 512, 7, 7)}
    assert shapes == {
        "r3d-18": resnet, "r2plus1d-18": resnet,
        # mixed convolutions: 3D in the first block only, so time is kept
        "mc3-18": {"logits": (1, 7), "feature": (1, 512), "tokens": (1, 16, 512), "spatial": (1, 16, 512, 7, 7)},
        "s3d": {"logits": (1, 7), "feature": (1, 1024), "tokens": (1, 2, 1024), "spatial": (1, 2, 1024, 3, 3)},
    }


def test_student_is_chosen_per_run_for_every_method_alike(capsys):
    base = ["run", "--task", "recognition", "--budget", "smoke", "--quiet", "--student", "r2plus1d-18", *MICRO]
    assert main([*base, "--method", "student"]) == 0 and main([*base, "--method", "kd"]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.config["student"], r.status) for r in records] == [
        ("kd", "r2plus1d-18", "complete"), ("student", "r2plus1d-18", "complete")]
    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO]) == 0
    default = [r for r in ResultStore().records() if r.config["student"] == "frame-cnn"]
    assert len(default) == 1 and default[0].config_hash != records[1].config_hash
    capsys.readouterr()
    assert main(["run", "--method", "student", "--task", "anticipation", "--student", "r2plus1d-18",
                 "--budget", "smoke"]) == 2
    assert capsys.readouterr().err == (
        "xbench: error: method 'student': loss 'caption' reads student tap 'sentence_logits', which student "
        "'r2plus1d-18' does not have (taps: logits, feature, tokens, spatial)\n")


@pytest.mark.parametrize("name", ["r3d-18", "s3d"])
def test_an_unknown_or_unfit_student_is_one_line(capsys, name):
    assert main(["run", "--method", "student", "--task", "recognition", "--student", name.upper(),
                 "--budget", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xbench: error: unknown student '{name.upper()}'") and err.count("\n") == 1


def test_list_students_verbose_shows_inputs_and_taps(capsys):
    assert main(["list", "students", "-v"]) == 0
    cards = {c.split(" ", 1)[0]: c for c in capsys.readouterr().out.strip().split("\n\n")}
    assert sorted(cards) == ["frame-cnn", "mc3-18", "mel-cnn", "r2plus1d-18", "r3d-18", "s3d", "snippet-tcn",
                             "step-avt"]
    assert cards["r2plus1d-18"].splitlines() == [
        "r2plus1d-18 (core)",
        "  torchvision's R(2+1)D-18, the factorised 3D ResNet (Tran et al. 2018), random init (31M)",
        "  reads:    rgb",
        "  taps:     logits, feature, tokens, spatial",
    ]
    assert main(["list", "teachers", "-v"]) == 0
    teachers = {c.split(" ", 1)[0]: c for c in capsys.readouterr().out.strip().split("\n\n")}
    assert teachers["two-stream-tcn"].splitlines()[2:] == ["  reads:    rgb, flow",
                                                            "  taps:     logits, feature, snippets, tokens"]
