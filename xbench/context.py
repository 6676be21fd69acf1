"""What every stage of a run shares: the stage names and one ``RunContext``.

A run is a list of named stages (``Stage``) that the plan builds; each stage reads and writes one
``RunState`` and is handed one ``RunContext`` instead of a plan, a seed, a device, a meter and a
reporter threaded through every call. Stage names are the ones records, leaderboards, ``submit``
and the conformance kit use."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xbench.budget import BudgetMeter

if TYPE_CHECKING:  # the plan is built by the engine; only its type is named here
    from xbench.config import Tier
    from xbench.engine.plan import Plan


class Stage(str, Enum):
    """The stages a run may have, in the order they run. A record's ``budget.stages`` lists the
    ones that ran, by these values."""

    #: frozen-feature mode: the frozen encoder's features of the student's clips (before the others,
    #: as the splits are opened)
    FEATURES = "features"
    TEACHER_PRETRAIN = "teacher-pretrain"
    TEACHER = "teacher"
    PRETRAIN = "pretrain"
    TEACHER_INFERENCE = "teacher-inference"
    STUDENT = "student"
    FINETUNE = "finetune"
    PROBE = "probe"
    TEST = "test"

    def __str__(self) -> str:
        return self.value


def _no_log(message: str) -> None:
    return None


@dataclass
class Reporter:
    """Where a run's messages go: ``log`` for the one-line progress notes of a stage (the CLI
    prints them unless --quiet and keeps them in the run's log.txt), ``progress`` for whether a
    progress bar may be drawn (only on a terminal). Nothing in the engine prints."""

    log: Any = _no_log
    progress: bool = False

    def bar(self, total: int, desc: str, **options: Any) -> Any:
        """A progress bar over ``total`` steps, drawn only where ``progress`` allows it (``options``:
        tqdm's, such as ``unit``)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, **{"leave": False, "mininterval": 0.5,
                                                                           **options})


class Clock:
    """Where a run's wall time goes, by part (``data``, ``setup``, ``train``, ``evaluate``, ...):
    each part's time excludes the parts nested in it, so the parts add up to the time measured.
    A profile for the user (``xbench run`` prints it; ``benchmarks/perf/run_parts.py``): it never
    enters a record, whose numbers must not depend on the machine's speed."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._nested: list[float] = []  # per open part: the time of the parts nested in it

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            total = time.perf_counter() - t0
            self.parts[name] = self.parts.get(name, 0.0) + total - self._nested.pop()
            if self._nested:
                self._nested[-1] += total

    def add(self, name: str, seconds: float) -> None:
        """Time measured elsewhere (a process's start, before any clock existed)."""
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    def summary(self) -> str:
        """One line, the parts in the order they were first timed, with each one's share."""
        total = sum(self.parts.values()) or 1.0
        return ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in self.parts.items())


@dataclass
class RunContext:
    """One seed of one plan on one device: everything a stage needs besides its own inputs.
    ``fit`` alone needs only the tier, seed, device, meter and reporter: a context for it may have
    no plan (``RunContext(None, seed, device, meter, tier=tier)``)."""

    plan: Plan | None
    seed: int
    device: torch.device
    meter: BudgetMeter
    reporter: Reporter = field(default_factory=Reporter)
    #: where datasets are read or generated (None: the dataset's default, XBENCH_DATA)
    data_root: Path | None = None
    #: the budget tier (the plan's unless given)
    tier: Tier | None = None
    #: where the teacher cache lives (None: XBENCH_HOME)
    home: Path | None = None
    #: where the run's wall time goes (never recorded: see ``Clock``)
    clock: Clock = field(default_factory=Clock)
    #: the run's stage checkpoints (``xbench.resume.RunCheckpoints``), or None: none are saved or
    #: read
    checkpoints: Any = None

    def __post_init__(self) -> None:
        if self.tier is None:
            self.tier = self.plan.tier

    def log(self, message: str) -> None:
        self.reporter.log(message)
