"""module:<path>[:layout] taps: any layer of any student or teacher through forward hooks, put in
the layout the losses read; a bad name or path is one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xbench.cli import main
from xbench.errors import ConfigError, IncompatibleError
from xbench.store import ResultStore
from xbench.taps import as_layout, install, parse

MICRO = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("teacher_steps", 2), ("eval_every", 2),
                                              ("batch_size", 4))]


def test_each_rank_is_put_in_each_layout():
    video = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).view(2, 3, 4, 2, 2)  # (B, C, T, H, W)
    assert torch.equal(as_layout(video, "feature", 2, False, "t"), video.mean(dim=(2, 3, 4)))
    assert torch.equal(as_layout(video, "tokens", 2, False, "t"), video.mean(dim=(3, 4)).transpose(1, 2))
    assert as_layout(video, "spatial", 2, False, "t").shape == (2, 4, 3, 2, 2)
    assert as_layout(video, None, 2, False, "t") is video
    # channels last (Swin's stages): (B, T, H, W, C) is read as the same map
    assert torch.equal(as_layout(video.permute(0, 2, 3, 4, 1), "tokens", 2, True, "t"),
                       as_layout(video, "tokens", 2, False, "t"))
    # a 2D network per frame: B x T rows are unfolded into time
    frames = video.transpose(1, 2).reshape(8, 3, 2, 2)  # (B*T, C, H, W)
    assert torch.equal(as_layout(frames, "tokens", 2, False, "t"), as_layout(video, "tokens", 2, False, "t"))
    image = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)  # (B, C, H, W): cells are tokens
    assert as_layout(image, "tokens", 2, False, "t").tolist()[0] == [[0.0, 4.0, 8.0], [1.0, 5.0, 9.0],
                                                                     [2.0, 6.0, 10.0], [3.0, 7.0, 11.0]]
    seq = torch.arange(12, dtype=torch.float32).view(2, 3, 2)  # (B, N, D)
    assert as_layout(seq, "feature", 2, False, "t").tolist() == [[2.0, 3.0], [8.0, 9.0]]
    assert as_layout(seq, "tokens", 2, False, "t") is seq
    assert as_layout(seq[:, 0], "tokens", 2, False, "t").shape == (2, 1, 2)
    with pytest.raises(IncompatibleError, match=r"^tap 'module:x:spatial': the module's output has shape \(2, 3, 2\), "
                                                r"which has no spatial layout$"):
        as_layout(seq, "spatial", 2, False, "module:x:spatial")


def test_a_bad_tap_name_or_path_is_one_line():
    assert parse("module:net.layer3") == ("net.layer3", None) and parse("module:a.b:tokens") == ("a.b", "tokens")
    for bad in ("module:", "module:a:pooled"):
        with pytest.raises(ConfigError, match=rf"^tap '{bad}': expected module:<dotted.path>\[:feature\|tokens\|spatial\]$"):
            parse(bad)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 3), nn.ReLU())

        def forward(self, inputs):
            return {"logits": self.body(inputs["x"])}

    net = Net()
    with pytest.raises(IncompatibleError, match=r"^student 'n' has no module 'body.2'; did you mean 'body.1', 'body.0', 'body'\?$"):
        install(net, ["module:body.2"], "student 'n'")
    install(net, ["module:body.0", "module:body.1:tokens", "logits"], "student 'n'")
    x = torch.randn(5, 4)
    out = net({"x": x})
    assert sorted(out) == ["logits", "module:body.0", "module:body.1:tokens"]
    assert torch.equal(out["module:body.0"], net.body[0](x)) and out["module:body.1:tokens"].shape == (5, 1, 3)
    assert net.state_dict().keys() == Net().state_dict().keys()  # hooks, not wrappers: checkpoints still load


def test_losses_read_any_layer_of_the_student_and_the_teacher(capsys):
    terms = ('[{loss: task}, {loss: fitnet, student: "module:temporal.1:feature", teacher: "module:body.1:feature"}, '
             '{loss: at, student: "module:frames.1:tokens", teacher: "module:body.1:tokens"}]')
    base = ["run", "--method", "combo", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO]
    assert main([*base, f"--set=method.terms={terms}"]) == 0
    (rec,) = ResultStore().records()
    assert [(t["key"], t["student"], t["teacher"]) for t in rec.config["loss_terms"]] == [
        ("ce", "logits", None), ("fitnet", "module:temporal.1:feature", "module:body.1:feature"),
        ("at", "module:frames.1:tokens", "module:body.1:tokens")]
    assert rec.status == "complete"
    capsys.readouterr()
    assert main([*base, '--set=method.terms=[{loss: task}, {loss: cosine, student: "module:temporal.9:feature"}]']) == 2
    assert capsys.readouterr().err == ("xbench: error: student 'frame-cnn' has no module 'temporal.9'; did you mean "
                                       "'temporal.3', 'temporal.2', 'temporal.1'?\n")
