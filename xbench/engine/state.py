"""What a run's stages read and write: the opened data and task, the models, and what was spent
and selected."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xbench.atomic import write_error
from xbench.budget import StageSpend
from xbench.context import RunContext, Stage
from xbench.errors import PluginError, XbenchError
from xbench.specs import ModelContext
from xbench.train import predict


def add_cached(ctx: RunContext, state: RunState, spends: list[dict[str, Any]]) -> list[StageSpend]:
    """A cached stage's spends as this run's (``source: cache``): counted in its budget and record."""
    out = [dataclasses.replace(StageSpend.from_dict(s), source="cache") for s in spends]
    ctx.meter.stages.extend(out)
    state.spent.extend(s.as_dict() for s in out)
    return out


def call(owner: str, what: str, fn: Callable, *args: Any) -> Any:
    """Run plugin code; any exception but an XbenchError is re-raised naming the plugin."""
    try:
        return fn(*args)
    except XbenchError:
        raise
    except Exception as exc:
        if (err := write_error(exc)) is not None:  # a full disk is not the plugin's fault
            raise err from exc
        raise PluginError(f"plugin '{owner}' raised in {what}: {type(exc).__name__}: {exc}") from exc


@dataclass
class TeacherSlot:
    """One teacher of the run and what its stages leave: under "crossfit:K", ``fold`` is the fold
    of train it never trains on and gives the soft targets of; None: it trains on the whole
    teacher split."""

    model: nn.Module
    fold: int | None = None
    #: names of parameters its factory froze (kept frozen in the cache)
    frozen: set[str] = field(default_factory=set)
    cache: Any = None
    #: what its stages spent before training (masked-LM pretraining)
    spends: list[Any] = field(default_factory=list)
    #: its training stage's spend and val selection, once trained or taken from the cache
    spend: Any = None
    selection: Any = None

    @property
    def tag(self) -> tuple[str, ...]:
        return fold_tag(self.fold)


def fold_tag(fold: int | None) -> tuple[str, ...]:
    """What a teacher's seeds add to the run's: nothing for the only teacher, its fold under
    "crossfit:K"."""
    return () if fold is None else (f"fold{fold}",)


@dataclass
class RunState:
    """The inputs every stage shares (data, task, model context) and the outputs stages leave
    for the next ones. ``done`` holds the stages whose outputs exist (run, or restored from a
    cache), which the runner skips."""

    dataset: Any
    task: Any
    train: Any
    val: Any
    test: Any
    model_ctx: ModelContext
    student_modalities: tuple[str, ...]
    teacher_modalities: tuple[str, ...]
    train_modalities: tuple[str, ...]
    done: set[Stage] = field(default_factory=set)
    #: the budget entries of the stages, in the order they ran (the record's budget.stages)
    spent: list[dict[str, Any]] = field(default_factory=list)
    #: the teacher the record describes, a teacher reference is scored by and loss heads are
    #: sized for: the first of ``teachers``
    teacher: nn.Module | None = None
    #: every teacher the run trains: one, or one per fold under the "crossfit:K" protocol
    teachers: list[TeacherSlot] = field(default_factory=list)
    teacher_record: dict[str, Any] | None = None
    teacher_outputs: dict[str, Any] | None = None
    #: "crossfit:K": the fold of each train example (the teacher that did not see it gives its soft
    #: targets), else None
    example_fold: Any = None
    #: "crossfit:K": each fold's labels, as the task cut them (checked against train's)
    fold_labels: Any = None
    student: nn.Module | None = None
    #: the student's taps on two train examples (the widths heads are built for)
    tap_samples: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, nn.Module] = field(default_factory=dict)
    objective: nn.Module | None = None
    selection: dict[str, Any] | None = None
    final_model: nn.Module | None = None
    final_modalities: tuple[str, ...] = ()
    metrics: dict[str, float] | None = None
    #: the local checkpoints loaded (``student``, ``teacher``): path, hash, missing/unexpected keys
    checkpoints: dict[str, Any] = field(default_factory=dict)
    #: retrieval galleries embedded per modality set (kept for the run)
    galleries: dict[tuple[str, ...], Any] = field(default_factory=dict)
    #: frozen-feature mode: (examples, split) -> the examples with the student's clips replaced by
    #: the frozen encoder's features (``xbench.engine.features``), else None
    features: Callable[[Any, str], Any] | None = None

    def load(self, ctx: RunContext, split: str, modalities: tuple[str, ...]) -> Any:
        """One split's examples with ``modalities`` (each once), labels masked as the dataset's
        ``label_fraction`` asks."""
        examples = self.task.examples(self.dataset, split, tuple(dict.fromkeys(modalities)),
                                      ctx.plan.label_fraction, ctx.seed)
        return examples if self.features is None else self.features(examples, split)

    def evaluator(self, ctx: RunContext, model: nn.Module, modalities: tuple[str, ...], data: Any,
                  final: bool = False) -> Callable[[], dict[str, float]]:
        """A function that scores ``model`` on ``data`` with the task's metrics, reading only
        ``modalities``."""
        task = self.task
        taps = getattr(task, "eval_taps", ("logits",))
        gallery_split = getattr(task, "gallery_split", None)

        def evaluate() -> dict[str, float]:
            outputs = predict(model, data, modalities, ctx.device, taps)
            if gallery_split is None:
                return task.evaluate(outputs, data, final)
            # retrieval: the queries search a gallery split embedded by the same model
            gallery = self.gallery(ctx, gallery_split, modalities)
            return task.evaluate(outputs, data, final,
                                 gallery=(predict(model, gallery, modalities, ctx.device, taps), gallery))

        return evaluate

    def gallery(self, ctx: RunContext, split: str, modalities: tuple[str, ...]) -> Any:
        if modalities not in self.galleries:
            train = self.train
            reuse = train is not None and split == "train" and all(m in train.tensors for m in modalities)
            self.galleries[modalities] = train if reuse else self.load(ctx, split, modalities)
        return self.galleries[modalities]
