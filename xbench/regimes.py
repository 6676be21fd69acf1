"""Regimes: named conditions a comparison runs under (fewer labels, a cleaner or noisier teacher,
longer training, harder video, a teacher trained on more data), as data.

A regime is a YAML file (the shipped ones: ``xbench/benchmarks/regimes/``) with a one-line
statement of what it tests and the dataset options and tier changes that make it::

    name: R2-labels-10
    tests: "Semi-supervised: labels on 10% of train clips; the teacher sees every clip"
    dataset_options: {label_fraction: 0.1}
    budget_scale: {student_steps: 4}     # the tier's value times 4
    budget_options: {}                   # the tier's value replaced

``xbench run --regime R2-labels-10`` runs one; ``xbench sweep SUITE --regimes R0,R2`` crosses a
suite with several (``R2`` names the family ``R2-*``). A run's record names its regime, and
leaderboards never put two regimes' runs in one table.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xbench.config import Tier, from_mapping, load_yaml, packaged, replace_options
from xbench.errors import ConfigError

#: the tier fields a regime may scale: step counts (and how often they are evaluated)
SCALABLE = ("student_steps", "teacher_steps", "pretrain_steps", "probe_steps", "finetune_steps", "eval_every")


@dataclass(frozen=True)
class Regime:
    name: str
    #: what the regime tests, in one line (shown under the regime table)
    tests: str
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: tier field -> factor (step counts: the result is rounded to a whole step)
    budget_scale: dict[str, float] = field(default_factory=dict)
    #: tier field -> value
    budget_options: dict[str, Any] = field(default_factory=dict)
    #: the tasks where the regime changes what it says (a noisier audio teacher means nothing to a
    #: task whose teacher reads text); None: every task. A sweep leaves the others out
    tasks: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\, "):
            raise ValueError(f"name {self.name!r}: a regime's name has no '/', ',' or spaces")
        if not self.tests.strip() or "\n" in self.tests.strip():
            raise ValueError("tests: say in one line what the regime tests")
        bad = sorted(set(self.budget_scale) - set(SCALABLE))
        if bad:
            raise ValueError(f"budget_scale: '{bad[0]}' cannot be scaled (scalable: {', '.join(SCALABLE)})")
        if any(not isinstance(v, (int, float)) or v <= 0 for v in self.budget_scale.values()):
            raise ValueError("budget_scale: factors must be positive numbers")
        if "name" in self.budget_options:
            raise ValueError("budget_options: a regime cannot rename the tier")

    def tier(self, tier: Tier) -> Tier:
        """``tier`` as this regime changes it (same name: the regime, recorded beside it, says
        what changed)."""
        scaled = {k: max(1, round(getattr(tier, k) * f)) if getattr(tier, k) else 0
                  for k, f in self.budget_scale.items()}
        updates = {**scaled, **self.budget_options}
        return replace_options(tier, updates, f"regime '{self.name}'") if updates else tier

    def plain(self) -> dict[str, Any]:
        """What a run's resolved configuration records of its regime."""
        return dataclasses.asdict(self)


def regimes_dir() -> Path:
    return packaged("regimes")


def shipped() -> list[Regime]:
    """The regimes shipped with xbench, by name."""
    return sorted((_read(str(p)) for p in regimes_dir().glob("*.yaml")), key=lambda r: order_key(r.name))


def order_key(name: str) -> tuple[int, str]:
    """R0 < R1 < ... < R10 (numbers as numbers), then the rest by name."""
    head = name.split("-", 1)[0]
    return (int(head[1:]), name) if head[:1] == "R" and head[1:].isdigit() else (10 ** 6, name)


def load_regime(arg: str | Path) -> Regime:
    """A regime from a YAML file, or a shipped one by name (``R2-labels-10``)."""
    path = Path(arg)
    if not path.is_file():
        path = regimes_dir() / f"{arg}.yaml"
        if not path.is_file():
            known = ", ".join(r.name for r in shipped())
            raise ConfigError(f"unknown regime '{arg}' (shipped: {known}; or give a regime YAML file)")
    return _read(str(path))


@functools.cache
def _read(path: str) -> Regime:
    """A regime file, read once per process: a sweep plans every run of its grid in its regime."""
    raw = load_yaml(Path(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, tests, dataset_options, budget_scale")
    raw.setdefault("name", Path(path).stem)
    return from_mapping(Regime, raw, f"regime file {path}")


def select(spec: str) -> list[Regime]:
    """``R0,R2`` -> the regimes named so, a family name (``R2``) standing for all of ``R2-*``;
    a YAML path stands for itself."""
    out: list[Regime] = []
    known = shipped()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        family = [r for r in known if r.name.startswith(f"{token}-")]
        found = family if family and not (regimes_dir() / f"{token}.yaml").is_file() else [load_regime(token)]
        out += [r for r in found if r.name not in {o.name for o in out}]
    if not out:
        raise ConfigError(f"--regimes {spec!r}: name at least one regime")
    return out
