"""The same tuning budget for every method: search spaces and seeded random search (DomainBed's
protocol, Gulrajani & Lopez-Paz 2021).

Every method is tuned over the **shared knobs** of its own stage (``lr_scale``, a factor on the
tier's learning rate, and ``weight_decay``), ``student`` and ``teacher`` included, plus the
search space its :class:`~xbench.specs.MethodSpec` declares for its own options. A tier states
the number of trials; trial 0 is the defaults (the paper's settings), trial k > 0 draws every
knob from its distribution with a generator seeded by (method, task, tier, k) alone, so a trial is
the same on any machine and adding a method never changes another's draws. Trials run on the
tier's tuning seed (not one of the seeds a table reports), the trial with the best val score wins
(ties: the lowest trial, the defaults first), and the tuned configuration is then run on the
table's seeds like the default one. The test split is never read by the search.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from xbench.config import stable_hash


@dataclass(frozen=True)
class LogUniform:
    """exp(U(log low, log high)): a scale (a weight, a learning rate, a temperature)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, not {self.low}, {self.high}")

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))

    def describe(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform:
    """U(low, high): a mixing weight, a margin."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, not {self.low}, {self.high}")

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def describe(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each equally likely: a discrete option."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Choice needs at least one value")

    def sample(self, rng: random.Random) -> Any:
        return self.values[rng.randrange(len(self.values))]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


Distribution = LogUniform | Uniform | Choice

#: the knobs every method tunes, on its own stage only (a shared teacher is never retuned): the
#: tier's learning rate times ``lr_scale``, and the weight decay
SHARED: dict[str, Distribution] = {"lr_scale": LogUniform(1 / 3, 3.0), "weight_decay": LogUniform(1e-6, 1e-2)}


def space(spec: Any) -> dict[str, Distribution]:
    """A method's whole search space: ``hparams.<knob>`` for the shared knobs, ``method.<option>``
    for the options its spec's ``search`` names (sorted: the draw order is fixed)."""
    out = {f"hparams.{k}": d for k, d in SHARED.items()}
    out.update({f"method.{k}": d for k, d in sorted(spec.search.items())})
    return out


def trial(spec: Any, task: str, tier: str, k: int) -> dict[str, dict[str, Any]]:
    """Trial ``k``'s settings as RunConfig sections: {"hparams": {...}, "method_options": {...}}.
    Trial 0 is the defaults (empty sections)."""
    out: dict[str, dict[str, Any]] = {"hparams": {}, "method_options": {}}
    if k == 0:
        return out
    rng = random.Random(stable_hash(["search", spec.name, task, tier, k]))
    for key, dist in space(spec).items():
        section, name = key.split(".", 1)
        value = dist.sample(rng)
        out["hparams" if section == "hparams" else "method_options"][name] = (
            float(f"{value:.4g}") if isinstance(value, float) else value)  # a readable config
    return out


def best_trial(scores: dict[int, float]) -> int:
    """The trial with the highest val score; a tie goes to the lowest trial (the defaults first).
    A trial whose score is NaN never wins."""
    ok = {k: v for k, v in scores.items() if not math.isnan(v)}
    if not ok:
        return 0
    top = max(ok.values())
    return min(k for k, v in ok.items() if v == top)
