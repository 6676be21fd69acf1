"""What every stage of a run shares: the stage names and one ``RunContext``.

A run is a list of named stages (``Stage``) that the plan builds; each stage reads and writes one
``RunState`` and is handed one ``RunContext`` instead of a plan, a seed, a device, a meter and a
reporter threaded through every call. Stage names are the ones records, leaderboards, ``submit``
and the conformance kit use."""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        if self.tier is None:
            self.tier = self.plan.tier

    def log(self, message: str) -> None:
        self.reporter.log(message)
