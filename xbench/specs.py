"""Frozen specs that plugins register. They hold factories, never built models: registering is
cheap and never downloads or builds anything (the factories run only when a run needs them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

#: Every modality a batch may carry. Students read the task's student modalities; teachers may
#: read privileged ones at train time only.
MODALITIES = ("rgb", "audio", "flow", "pose", "text")


@dataclass(frozen=True)
class NoOptions:
    """Options type of a spec that takes none."""


@dataclass(frozen=True)
class ModelContext:
    """What a student or teacher factory is told about the data it will see."""

    num_classes: int
    #: modality -> shape of one sample (without the batch dimension), e.g. rgb: (T, 3, H, W)
    shapes: dict[str, tuple[int, ...]]
    #: task-specific facts, e.g. the sentence vocabulary: {"vocab": [...], "max_tokens": 12}
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudentSpec:
    """A student architecture. Built by ``factory(ctx)``; its ``forward(inputs)`` takes a dict
    modality -> tensor holding exactly ``modalities`` and returns a dict of named taps that
    includes every name in ``taps`` (``logits`` always).

    Taps are how losses read a model without reaching into it. The names generic losses read:
    ``logits``; ``feature`` (B, D) the pooled embedding (per time step (B, T, D) on dense tasks);
    ``tokens`` (B, N, D) per-position features, channels last, positioned along the axis the
    task's cross-modal pairs share (time: frames, observed steps, snippets); ``spatial`` the last
    convolutional map. A model may expose any other tap for its own methods."""

    name: str
    description: str
    factory: Callable[[ModelContext], nn.Module]
    modalities: tuple[str, ...] = ("rgb",)
    taps: tuple[str, ...] = ("logits", "feature")
    #: targets the harness also passes to ``forward`` in training only (teacher forcing of a
    #: sentence decoder); at evaluation the student gets its modalities and nothing else
    train_inputs: tuple[str, ...] = ()
    #: modality -> the student a method with an objective builds beside this one for that modality
    #: (XKD's encoder of the other modality); unnamed: the first registered student reading it
    #: that has every tap this one has
    partners: dict[str, str] = field(default_factory=dict)
    #: an input shape per modality (no batch axis) at which ``xbench list students -v`` shows the
    #: shapes of the taps and of the top modules (built on the meta device: nothing is computed)
    sample: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: the student encodes its clips with another registered network where the user names one
    #: (``--set student.encoder=NAME``): frozen by default, it reads that encoder's features in
    #: place of the clips (RULSTM-style; its ``ctx.shapes[modality]`` then ends in the feature
    #: width instead of the clip's axes, the leading axes kept: anticipation's (N, T, 3, H, W)
    #: becomes (N, D), float features); with ``student.encoder_trainable=true`` it gets the
    #: encoder itself, built, as ``ctx.extras["encoder"]`` (its ``dim`` the feature width), and
    #: trains it as its clip encoder (AVT-b's end-to-end ViT)
    takes_encoder: bool = False


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher reading privileged modalities. Same calling convention as a student; the harness
    trains it in the ``teacher`` stage with cross-entropy on its ``logits`` tap, then freezes it.
    A model that loads weights of its own from local files (a pretrained encoder's folder) sets
    ``weights_source = {"path": ..., "sha256": ...}`` on itself: the hash enters the teacher
    cache's key and the run's record keeps both (``checkpoints["teacher-model"]``)."""

    name: str
    description: str
    factory: Callable[..., nn.Module]
    modalities: tuple[str, ...]
    taps: tuple[str, ...] = ("logits", "feature")
    #: options type (``--set teacher.KEY=VALUE``); when set, the factory is ``factory(ctx, options)``.
    #: A teacher whose model has ``mlm_loss(texts)`` and whose options have ``mlm_steps`` > 0 first
    #: gets a ``teacher-pretrain`` stage (masked-LM on ``ctx.extras["corpus"]`` or a local file).
    options: type = NoOptions
    #: tasks whose default teacher this is, for a task that names none (``TaskSpec.default_teacher``
    #: None): a plugin that brings a teacher can make it a built-in task's default
    default_for: tuple[str, ...] = ()
    #: as ``StudentSpec.sample``
    sample: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class LossSpec:
    """A loss term. ``factory(options, dims)`` returns an ``nn.Module`` returning a scalar, called
    as ``loss(student, teacher)`` when ``reads`` is "teacher" (a student tap and a teacher tap),
    or ``loss(student, target, label_mask)`` when ``reads`` is "target" (a student tap, a target
    or another student tap, and the mask of examples whose label the student may use). ``dims``
    maps 'student'/'teacher' to the feature sizes (last dimension) of the taps it reads, so losses
    with learned parts (a FitNet regressor) can size them, and 'examples' to the size of the train
    split (memory banks). Parameters of the module are extra trainable heads, counted in the run's
    params; its buffers (a memory bank) are state, kept with the val-selected checkpoint."""

    name: str
    description: str
    factory: Callable[[Any, dict[str, int]], nn.Module]
    options: type = NoOptions
    #: "teacher" when the second argument is a teacher tap, "target" when it is a label
    reads: str = "teacher"
    #: a teacher-reading loss over time steps (B, T, ...) that takes a third argument: the (B, T)
    #: bool mask of real time steps, False on padding of sequences shorter than the batch's
    #: (``positions`` of dense tasks like detection), or None where the task has no padding
    positions: bool = False
    #: a teacher-reading loss that also reads the term's target (DKD needs the ground-truth
    #: class): called with keywords ``target=`` (the batch's ``LossTerm.target``, by default the
    #: task's first target) and ``label_mask=`` (which examples' labels the student may use)
    target: bool = False
    #: a loss that keeps state per train example (CRD's memory banks): called with keyword
    #: ``index=``, the batch's positions in the train split; ``dims["examples"]`` is its size
    index: bool = False
    #: the student and teacher taps a term reads when it names none (a combination by config)
    student_tap: str = "logits"
    teacher_tap: str = "logits"
    #: for the conformance check: a function returning example call arguments (student, other[,
    #: mask]) with a student width of 8, where the default (logits (4, 8) with class targets, or
    #: two (4, 8) features) does not fit the loss
    example: Callable[[], tuple] | None = None

    @property
    def reads_target(self) -> bool:
        """Whether the loss reads a target (a label loss, or a teacher loss with ``target``)."""
        return self.reads == "target" or self.target


#: the annotations a dataset may provide and a task may need
ANNOTATIONS = {
    "steps": "actions as labelled frame ranges of a video (Segment start, end, label)",
    "untrimmed": "videos with several actions over time, each frame labelled (not one clip, one class)",
    "procedures": "the steps of a video are one procedure in order (what comes next is defined)",
    "sentences": "a sentence describing each step (Segment.sentence)",
    "verb-noun": "each step's verb and noun classes (Segment.verb, Segment.noun)",
    # a privileged fact a task may carry and an oracle control may read: only generated data knows it
    "audio_relevant": "whether each step's audio carries its action (Segment.audio_relevant)",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: videos with annotations and the modalities stored for them.
    ``factory(options, root)`` returns an object satisfying :class:`xbench.contracts.Dataset`
    (``num_classes``, ``class_names``, ``splits``, ``videos(split)``, ``read(video, modality)``,
    ``manifest_hash()``); ``xbench check --plugin NAME`` checks it."""

    name: str
    description: str
    factory: Callable[[Any, Any], Any]
    modalities: tuple[str, ...]
    options: type = NoOptions
    #: the annotations its videos carry (``ANNOTATIONS``): tasks needing them run on it
    annotations: tuple[str, ...] = ("steps",)
    #: ``sample(folder)`` writes a tiny example of the files it reads into ``folder`` and returns
    #: the options that open it (a dataset of the user's own files has no data of its own to check
    #: itself on); None: its defaults open it (a generated dataset)
    sample: Callable[[Path], dict[str, Any]] | None = None
    #: ``fingerprint(options)``: the content hash of the files these options read (the manifest
    #: hash), for datasets of the user's files; it enters every run's config hash. None: the
    #: options determine the data (a generated dataset)
    fingerprint: Callable[[Any], str] | None = None
    #: the files it expects under its root (``xbench list datasets -v``)
    layout: str = ""
    #: the paper protocol it implements: splits, validation, metrics
    protocol: str = ""
    #: task -> the metric its paper protocol reports, which then selects on val and heads the
    #: tables in place of the task's own (EPIC-KITCHENS' anticipation: many-shot recall@5)
    main_metrics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """A task: how examples are cut from a dataset's videos, what the student reads, the student
    architecture every method shares, the default teacher and the metrics."""

    name: str
    description: str
    #: options -> the task object: ``examples(dataset, split, modalities, ...)``, ``evaluate(...)``,
    #: ``metrics``, ``main_metric``; optionally ``teacher_metric`` (what the teacher stage selects
    #: on) and ``teacher_view()`` (what the teacher stage depends on: tasks returning equal views
    #: share trained teachers and their cached outputs; without it a teacher is this task's alone)
    factory: Callable[[Any], Any]
    student: str
    #: the teacher of methods that use the task's default teacher; None: the registered teacher
    #: whose ``default_for`` names this task
    default_teacher: str | None = None
    student_modalities: tuple[str, ...] = ("rgb",)
    main_metric: str = "top1"
    #: the annotations the task needs (``ANNOTATIONS``): it runs on every dataset that provides
    #: them and the student's modalities
    annotations: tuple[str, ...] = ("steps",)
    #: the dataset a run uses when it names none
    default_dataset: str = "synth"
    options: type = NoOptions
    #: the supervised objective every method trains the student with; a method includes it with
    #: ``LossTerm("task", weight)`` (weight scales every term)
    terms: tuple[LossTerm, ...] = ()
    #: target names examples carry (losses may read them with ``LossTerm(target=...)``)
    targets: tuple[str, ...] = ("label",)
    #: facts examples carry that no method may know in practice (whether a clip's audio carries
    #: its action): only a method declaring them in its own ``privileged`` (an oracle control,
    #: labelled so in every table) may read them, at train time
    privileged: tuple[str, ...] = ()
    #: whether the student's clip encoder gets the budgeted ``pretrain`` stage (the same for
    #: every method): the task's ``pretrain_examples`` and the student's ``pretrain_logits``
    pretrain: bool = False
    #: the objective a teacher trains with in the ``teacher`` stage (on its ``logits`` tap)
    teacher_terms: tuple[LossTerm, ...] = ()
    #: dataset options this task needs unless the run says otherwise (e.g. overlapping actions
    #: for detection); applied over the tier's dataset options
    dataset_defaults: dict[str, Any] = field(default_factory=dict)
    #: True when the classes of one output are independent (per-frame multi-label detection):
    #: methods use sigmoid, not softmax, distributions
    multilabel: bool = False


@dataclass(frozen=True)
class LossTerm:
    """One weighted term of a method's objective: ``weight * loss(student.<student>, <other>)``
    where other is ``teacher.<teacher>``, the target ``target``, or another student tap when
    ``target`` is ``"student:<tap>"``. ``LossTerm("task", w)`` stands for the task's supervised
    terms, each scaled by ``w``."""

    loss: str
    weight: float = 1.0
    #: the student tap; None: the loss's ``student_tap``
    student: str | None = None
    #: the teacher tap of a teacher-reading loss; None: the loss's ``teacher_tap``
    teacher: str | None = None
    target: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: a linear warm-up of the weight over this fraction of the stage's steps (DKD ramps its
    #: term over 20 of 240 epochs: 20/240): at step s of n the term weighs
    #: ``weight * min(1, s / max(1, round(warmup * n)))``; 0: the full weight from the first step
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup <= 1.0:
            raise ValueError(f"loss term '{self.loss}': warmup is a fraction of the stage, in [0, 1]")


@dataclass(frozen=True)
class PaperResult:
    """A result the method's paper reports, for the leaderboard to show beside the reproduction
    (``xbench leaderboard --paper``). Papers report on their own datasets, so the table shows the
    paper's setting and, where the paper gives its student without distillation (``baseline``)
    or only a relative gain, the gain in percent, which is comparable across datasets where the
    absolute numbers are not. ``task`` is the xbench task of that setting."""

    task: str
    dataset: str
    metric: str
    value: float | None = None
    baseline: float | None = None
    #: percent over the paper's student; computed from value and baseline when both are given
    relative_gain: float | None = None
    #: where the number is: table, abstract, code; with an evidence tag where it is uncertain
    source: str = ""
    #: the xbench metric of the same quantity (e.g. ``cm_recall1`` for class-mean top-1): the
    #: reproduction's gain is computed on it (default: the task's main metric)
    compares_to: str | None = None

    def __post_init__(self) -> None:
        if self.relative_gain is None and self.value is not None and self.baseline:
            object.__setattr__(self, "relative_gain", 100 * (self.value / self.baseline - 1))

    def describe(self) -> str:
        if self.value is not None and self.baseline is not None:
            text = f"{self.value:g} vs {self.baseline:g} ({self.relative_gain:+.1f}%)"
        elif self.value is not None:
            text = f"{self.value:g}"
        else:
            text = f"{self.relative_gain:+.1f}%"
        return f"{text}, {self.dataset} {self.metric}"


@dataclass(frozen=True)
class MethodSpec:
    """A distillation method: the loss terms it trains the task's student with, and which teacher.

    ``terms(options)`` (or ``terms(options, task)`` with the :class:`TaskSpec`, for methods whose
    terms depend on the task, e.g. sigmoid KD on a multi-label task) returns the
    :class:`LossTerm` list. ``teacher`` is ``"default"`` (the task's
    default teacher), a teacher name, or ``None`` (no teacher). ``evaluates`` is ``"student"`` for
    every distillation method; only the ``teacher`` reference method sets ``"teacher"`` (its row is
    the privileged-modality ceiling and is labelled so). ``lr_multipliers`` maps a loss name, or
    the name of a child module of the objective, to the learning-rate multiplier of its
    parameters: the only optimizer setting a method owns.

    A method whose objective is more than a sum of (student tap, other) losses (masked
    reconstruction with EMA teachers, a noise filter routing its own gradients) gives
    ``objective``: ``objective(options, ctx: ObjectiveContext)`` returns an ``nn.Module`` called
    each step as ``objective(batch, student_out, teacher_out)`` that returns named loss terms
    (already weighted; added to those of ``terms``). ``batch`` holds the student's modalities,
    the method's train-time ``modalities``, ``index``, and the targets and ``label_mask`` only
    when ``labels`` is true; ``student_out`` is the student's taps on the batch (None when the
    objective sets ``uses_student_output = False``); ``teacher_out`` the frozen teacher's
    ``teacher_taps``. The objective may call ``ctx.student`` on views it builds (masked, cropped);
    it never owns the student: its parameters stay in the student's group. If the module has
    ``after_step(progress)`` (progress in (0, 1]) the loop calls it after every optimizer step
    (EMA teachers). ``labels=False`` marks a self-supervised method: no label reaches its stage,
    nothing is selected on val labels (the last state is kept), and the task's protocol (linear
    probe or fine-tuning) turns its student into a classifier."""

    name: str
    description: str
    terms: Callable[[Any], list[LossTerm]]
    options: type = NoOptions
    teacher: str | None = "default"
    evaluates: str = "student"
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    tasks: tuple[str, ...] | None = None
    objective: Callable[[Any, ObjectiveContext], nn.Module] | None = None
    #: teacher taps the objective reads (checked against the teacher; cached like loss inputs)
    teacher_taps: tuple[str, ...] = ()
    #: modalities besides the student's that the objective reads at train time (never at eval)
    modalities: tuple[str, ...] = ()
    #: False for a self-supervised method: its training never receives a label
    labels: bool = True
    #: another stream of the method stage's training randomness (dropout, masking draws) with the
    #: same seed: "" for every method; the noise-floor control names one, so that its only
    #: difference from ``student`` is a perturbation that should not matter. The data order and
    #: the initialisation are the harness's and never change with it
    rng_stream: str = ""
    #: the dataset splits the method's student trains on: ("train",) for every method; the
    #: ``student+teacher-labels`` control adds the teacher's split, to show what the teacher's
    #: extra labelled data alone buys (same steps, same batch size)
    train_splits: tuple[str, ...] = ("train",)
    #: the search space of the method's own options for the tuned row (``xbench.search``): option
    #: name -> ``LogUniform``/``Uniform``/``Choice``; trial 0 is the defaults. Every method also
    #: tunes the shared knobs of its stage (lr scale, weight decay), so an empty space still tunes
    search: dict[str, Any] = field(default_factory=dict)
    #: objective terms that penalise the method's own parameters (an L1 on a layer's weights):
    #: they carry no teacher information, and their scale is set against the weights, not the
    #: task loss, so the conformance kit's inert-term check leaves them out
    regularizers: tuple[str, ...] = ()
    #: method options the conformance kit runs the method with instead of its defaults, where a
    #: default presumes a trained teacher: a confidence threshold set for the real teacher lets
    #: nothing of the kit's few-step teacher through, and its term would look inert
    kit_options: dict[str, Any] = field(default_factory=dict)
    #: privileged facts of the train examples the method reads (the task's ``privileged``): an
    #: oracle control, an upper bound no real method can reach; its rows say "oracle". Its loss
    #: terms may read them as targets
    privileged: tuple[str, ...] = ()
    #: results the method's paper reports (:class:`PaperResult`), shown beside the reproduction
    paper: tuple[PaperResult, ...] = ()
    #: the reference every other method of a task is compared with, seed by seed (the task's
    #: student without KD); leaderboards pair each row with the baseline's runs of its setting
    baseline: bool = False


@dataclass(frozen=True)
class ObjectiveContext:
    """What a method's objective factory is told: the data, the built student (to call on views
    the objective makes, never to replace), and the shapes of the taps it can read."""

    model: ModelContext
    student: nn.Module
    student_modalities: tuple[str, ...]
    #: student tap -> shape of one example's value (batch dimension left out)
    student_shapes: dict[str, tuple[int, ...]]
    #: teacher tap -> shape of one example's value, for the taps in ``teacher_taps``
    teacher_shapes: dict[str, tuple[int, ...]]
    #: for each modality the method reads at train time that the student does not: a function
    #: building a new, randomly initialised student of that modality (the registered student that
    #: reads exactly it and has every tap the task's student has), for an objective that needs an
    #: encoder of the other modality
    partners: dict[str, Callable[[], nn.Module]] = field(default_factory=dict)
    #: the optimizer steps of the stage the objective trains in (the tier's): a schedule written
    #: for another run length (an EMA momentum) can be expressed relative to it
    steps: int = 0
