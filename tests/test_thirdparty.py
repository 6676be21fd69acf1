"""A throw-away third-party distribution, installed with pip, is found and runs like a built-in."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "xbench-cosine-demo"
version = "0.3.1"

[project.entry-points.xbench]
cosine-demo = "cosine_demo"

[tool.setuptools]
py-modules = ["cosine_demo"]
"""

MODULE = '''
"""A third-party method: CE + (1 - cos) between a projected student feature and the teacher's."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xbench import hookimpl
from xbench.specs import LossSpec, LossTerm, MethodSpec


class CosineLoss(torch.nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.proj = torch.nn.Linear(dims["student"], dims["teacher"])

    def forward(self, s, t):
        return (1 - F.cosine_similarity(self.proj(s), t, dim=1)).mean()


@dataclass(frozen=True)
class Options:
    weight: float = 1.0


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="cosine-demo", description="1 - cos(proj(f_s), f_t)",
                      factory=lambda opts, dims: CosineLoss(dims)))


@hookimpl
def xbench_register_methods(register):
    register(MethodSpec(
        name="cosine-demo", description="CE + cosine feature distillation (third party)",
        terms=lambda o: [LossTerm("ce", target="label"),
                         LossTerm("cosine-demo", o.weight, student="feature", teacher="feature")],
        options=Options, lr_multipliers={"cosine-demo": 0.5}))
'''


def test_installed_third_party_plugin_lists_and_runs(tmp_path, data_root):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "cosine_demo.py").write_text(textwrap.dedent(MODULE))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def xbench(*args):
        return subprocess.run([sys.executable, "-m", "xbench.cli", *args], env=env, text=True,
                              capture_output=True, timeout=600, check=False)

    listed = xbench("list", "methods")
    assert listed.returncode == 0, listed.stderr
    assert ("cosine-demo CE + cosine feature distillation (third party) cosine-demo"
            in [" ".join(line.split()) for line in listed.stdout.splitlines()])
    plugins = xbench("plugins")
    assert [line.split()[:3] for line in plugins.stdout.splitlines()[2:]] == [
        ["argb", "xbench-argb", "0.1.0"], ["baselines", "xbench-baselines", "0.1.0"],
        ["ccd", "xbench-ccd", "0.1.0"], ["core", "xbench", "0.1.0"],
        ["cosine-demo", "xbench-cosine-demo", "0.3.1"],
        ["lmkd", "xbench-lmkd", "0.1.0"], ["mnf-csc", "xbench-mnf-csc", "0.1.0"],
        ["text", "xbench-text", "0.1.0"], ["xkd", "xbench-xkd", "0.1.0"]]
    ran = xbench("run", "--method", "cosine-demo", "--task", "recognition", "--budget", "smoke",
                 "--quiet", "--set", "method.weight=2")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == (
        "cosine-demo on recognition (synth), tier smoke, test metrics of the val-selected student; "
        "main metric: top1")
    from xbench.store import ResultStore

    (rec,) = ResultStore().records()
    assert rec.plugins["cosine-demo"] == {"dist": "xbench-cosine-demo", "version": "0.3.1"}
    assert rec.config["method_options"] == {"weight": 2.0}
    assert rec.config["lr_multipliers"] == {"cosine-demo": 0.5}
    assert rec.params.heads == 64 * 96 + 96
