"""``xbench new-plugin NAME``: a complete plugin distribution that installs and passes its own
tests as generated, for an author to turn into their method.

The generated method is a working one (CE + w * (1 - cos) between a projected student feature
and the teacher's), so every file can be run before it is edited: its golden-value test, the
conformance kit (``xbench_check``), ``xbench run`` and the leaderboard.
"""

from __future__ import annotations

import re
from pathlib import Path

from xbench.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "xbench-{name}"
version = "0.1.0"
description = "{name}: a cross-modal distillation method for xbench"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["xbench"]

[project.optional-dependencies]
test = ["pytest>=7"]

# xbench finds the plugin through this entry point, exactly as it finds its own
[project.entry-points.xbench]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]
'''

MODULE = '''\
"""{name}: TITLE OF THE METHOD.

Paper: AUTHORS, "TITLE", VENUE YEAR (arXiv ID). Code: URL or "none public".

Loss (write the formula the code computes, with every symbol):

    L = CE(z_s, y) + weight * (1 - cos(P f_s, f_t))

    f_s: the student's pooled ``feature`` tap, f_t: the frozen teacher's, P: a linear
    projection trained with the student (an extra head, counted in the params column).

Defaults: weight = 1.0 (SAY WHERE EACH DEFAULT COMES FROM: the paper's table, its code, or
inferred).

Deviations from the paper (list each, or write "none"):
- ...

Reconstructed parts (where the paper is silent and this code chose; "none" if it has code):
- ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.specs import LossSpec, LossTerm, MethodSpec

NAME = "{name}"


class {cls}Loss(nn.Module):
    """1 - cos(P f_s, f_t), averaged over the batch. ``dims`` gives the widths of the taps the
    harness will pass: ``dims["student"]`` and ``dims["teacher"]``."""

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        self.proj = nn.Linear(dims["student"], dims["teacher"])

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(self.proj(student), teacher, dim=-1)).mean()


@dataclass(frozen=True)
class Options:
    """Options a user sets with ``--set method.KEY=VALUE`` (typed and checked by xbench)."""

    weight: float = 1.0


@hookimpl
def xbench_register_losses(register):
    # specs hold factories: registering builds nothing and downloads nothing
    register(LossSpec(name=NAME, description="1 - cos of a projected student feature and the teacher's",
                      factory=lambda options, dims: {cls}Loss(dims),
                      student_tap="feature", teacher_tap="feature"))


@hookimpl
def xbench_register_methods(register):
    # the task's objective (CE for recognition, the sentence loss for anticipation, ...) plus
    # the distillation term; the student, data, optimizer and budget are the harness's
    register(MethodSpec(
        name=NAME,
        description="CE + weight * (1 - cos) feature distillation (edit me)",
        terms=lambda o: [LossTerm("task"), LossTerm(NAME, o.weight)],
        options=Options,
    ))
'''

TEST = '''\
"""Tests of {name}: the loss against a hand computation, and xbench's conformance kit (the
``xbench_check`` fixture comes with xbench)."""

from __future__ import annotations

import math

import torch

from {module} import {cls}Loss


def test_loss_golden_value():
    torch.manual_seed(0)
    loss = {cls}Loss({{"student": 3, "teacher": 2}})
    with torch.no_grad():
        loss.proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        loss.proj.bias.zero_()
    s = torch.tensor([[1.0, 0.0, 5.0], [1.0, 1.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    # row 1: P s = (1, 0), cos = 1; row 2: P s = (1, 1), cos with (-1, 0) = -1/sqrt(2)
    expected = ((1 - 1) + (1 + 1 / math.sqrt(2))) / 2
    assert abs(loss(s, t).item() - expected) < 1e-6


def test_conformance(xbench_check):
    # every check on every task the method fits: builds, runs, budget obeyed, selection on
    # val only, no privileged input at evaluation, frozen teacher unchanged, deterministic
    results = xbench_check(plugin="{name}")
    assert results and all(r.ok for r in results)
'''

README = '''\
# xbench-{name}

TITLE OF THE METHOD, as an xbench plugin (cross-modal knowledge distillation benchmark).

Paper: AUTHORS, "TITLE", VENUE YEAR. The module docstring of `{module}` states the loss, the
defaults and where each comes from, every deviation from the paper and every reconstructed part.

```bash
pip install -e ".[test]" && python -m pytest -q        # golden value + xbench's conformance kit
xbench run --method {name} --task recognition --budget smoke   # seconds, tiny data
xbench run --method {name} --task recognition --seed 0 1 2 3 4 # the cpu tier of the leaderboard
xbench leaderboard --task recognition --paper
```

## Paper vs reproduced

| setting | metric | paper (its student -> with KD) | reproduced in xbench (tier, seeds) |
|---|---|---|---|
| DATASET, TASK | METRIC | BASELINE -> VALUE (TABLE N) | MEAN ± STD vs student (cpu, 5 seeds) |

Give the paper's values to the leaderboard with `MethodSpec(paper=(PaperResult(...),))` so
`xbench leaderboard --paper` shows them beside the reproduction.

## Deviations

- ...
'''


def module_name(name: str) -> str:
    return "xbench_" + name.replace("-", "_")


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def new_plugin(name: str, parent: Path, registry=None) -> Path:
    """Write ``parent/xbench-NAME/``; returns the folder. Fails on a bad or taken name and on
    a folder that exists, before writing anything."""
    if not NAME.match(name):
        raise ConfigError(f"plugin name '{name}': use lowercase letters, digits and dashes "
                          f"(e.g. 'my-kd'), starting with a letter")
    if registry is not None:
        for kind in ("methods", "losses"):
            if name in registry.entries[kind]:
                owner = registry.entries[kind][name].plugin
                raise ConfigError(f"plugin name '{name}': a {kind[:-1] if kind != 'losses' else 'loss'} "
                                  f"of that name exists (plugin '{owner}'); choose another")
    folder = parent / f"xbench-{name}"
    if folder.exists():
        raise ConfigError(f"{folder} exists; choose another --dir or name")
    module, cls = module_name(name), class_name(name)
    files = {
        "pyproject.toml": PYPROJECT.format(name=name, module=module),
        f"{module}/__init__.py": MODULE.format(name=name, cls=cls),
        f"tests/test_{module}.py": TEST.format(name=name, module=module, cls=cls),
        "README.md": README.format(name=name, module=module),
    }
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder
