"""The BudgetMeter: what each stage spent, and the limit that stopped it."""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class CurvePoint:
    """One evaluation of a stage: where the val metric and the loss terms stood."""

    step: int
    #: the val metric; None where the stage selects nothing (self-supervised: no labels)
    value: float | None
    terms: dict[str, float]


@dataclass
class StageSpend:
    """What one stage spent. FLOPs are counted with torch.utils.flop_counter on the stage's first
    step (forward + backward + teacher forward) and multiplied by the steps taken: every step has
    the same shapes (drop_last batches), so this is exact without counting every step."""

    stage: str
    max_steps: int
    steps: int = 0
    samples: int = 0
    teacher_forwards: int = 0
    flops_per_step: int = 0
    flops: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = "host-rss"
    stopped_by: str | None = None
    evaluations: int = 0
    #: "computed" in this run, or "cache": the cost was paid by the run that filled the cache
    source: str = "computed"
    #: one point per evaluation: the step, the main metric on val, and each loss term's mean
    #: (weighted, as optimised) over the steps since the previous evaluation
    curve: list[CurvePoint] = field(default_factory=list, metadata={"since": 3})
    #: of ``seconds``: the evaluations on val, and the warm-up steps' one-off work (the first
    #: step counts FLOPs; a compiled model compiles in the second, the first it runs compiled);
    #: the rest is the steady training steps
    #: (None in a record from before they were kept)
    eval_seconds: float | None = field(default=None, metadata={"optional_before": math.inf})
    warmup_steps: int | None = field(default=None, metadata={"optional_before": math.inf})
    warmup_seconds: float | None = field(default=None, metadata={"optional_before": math.inf})
    #: the step a killed run's stage resumed at from its checkpoint (``xbench.resume``); None: it
    #: ran from its start in one process
    resumed_at: int | None = field(default=None, metadata={"optional_before": math.inf})
    #: the processes the stage ran on (``torchrun``/``--nproc``; None: one) and the device time
    #: they spent together, each rank's ``seconds`` summed (None: one process, ``seconds``); steps
    #: are global steps and samples, teacher forwards and FLOPs count every rank's share
    processes: int | None = field(default=None, metadata={"optional_before": math.inf})
    device_seconds: float | None = field(default=None, metadata={"optional_before": math.inf})

    def throughput(self) -> float | None:
        """Training samples per second over the steady steps (warm-up and evaluations out), or
        None where there were none (a cached stage, a stage of no steady step, an older record)."""
        if self.warmup_steps is None or self.source != "computed":
            return None
        steady = self.seconds - (self.eval_seconds or 0.0) - (self.warmup_seconds or 0.0)
        if self.steps <= self.warmup_steps or steady <= 0:
            return None
        return self.samples * (self.steps - self.warmup_steps) / self.steps / steady

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StageSpend:
        """The inverse of :meth:`as_dict` (a spend kept before curves were: none)."""
        return cls(**{**data, "curve": [CurvePoint(**c) for c in data.get("curve", [])]})


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda-allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "host-rss"


@dataclass
class BudgetMeter:
    """Counts every stage of one run against one tier; ``deadline`` is the run's wall-clock cap."""

    max_seconds: float
    started: float = field(default_factory=time.perf_counter)
    stages: list[StageSpend] = field(default_factory=list)

    def stage(self, name: str, max_steps: int) -> StageSpend:
        # every stage of this version keeps the figures older records lack (None there)
        spend = StageSpend(stage=name, max_steps=max_steps, eval_seconds=0.0, warmup_steps=0, warmup_seconds=0.0)
        self.stages.append(spend)
        return spend

    def out_of_time(self) -> bool:
        return time.perf_counter() - self.started >= self.max_seconds

    def totals(self) -> dict:
        keys = ("steps", "samples", "teacher_forwards", "flops", "seconds")
        out = {k: sum(getattr(s, k) for s in self.stages) for k in keys}
        out["peak_memory_mb"] = max((s.peak_memory_mb for s in self.stages), default=0.0)
        out["stopped_by"] = next((f"{s.stage}:{s.stopped_by}" for s in self.stages
                                  if s.stopped_by not in (None, "max_steps", "done", "time_budget")), None)
        return out
