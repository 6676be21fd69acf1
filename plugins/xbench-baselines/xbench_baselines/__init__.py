"""Reference methods every leaderboard needs, as an ordinary xbench plugin.

- ``student``: the task's student trained on labels alone (no distillation): the baseline.
- ``noise-floor``: ``student`` again with another stream of its training randomness (dropout),
  the same data order, initialisation and budget: its paired difference with ``student`` is what
  chance alone makes, the scale against which every other row's gain is read.
- ``student+teacher-labels``: ``student`` trained on the train split and the teacher's split
  (labels only, the same steps and batch size): the teacher's extra labelled data alone, without
  its modality. A distillation method that beats ``student`` but not this control gains from the
  teacher's data, not from what the teacher's modality knows.
- ``kd-confident`` and ``kd-oracle``: controls. kd only on the clips the teacher is confident on
  (largest class probability at T = 1 at least ``threshold``, 0.7), and kd only on the clips whose
  audio carries the action (the task's privileged ``audio_relevant``: an upper bound for any noise
  filter, labelled as an oracle). ``GatedKDLoss``: gated-out examples count 0 in the batch mean.
- ``teacher``: the task's default privileged-modality teacher alone: the ceiling. Its row is the
  only one evaluated with a privileged modality, and its record says ``evaluates: teacher``.
- ``kd``: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep
  Learning Workshop, arXiv 1503.02531.
  L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).
  Defaults T = 4, alpha = 0.9 (the CIFAR-100 settings of the CRD benchmark, Tian et al. 2020).
  On a multi-label task (per-frame detection) the distributions are per-class sigmoids, and the
  binary KL is averaged over classes and frames (snippets) as well as the batch: frame-level KD
  reduced as the task's BCE is, so that alpha mixes two terms on one scale (summed over classes,
  as a first version did, the KD term was ~C times the BCE's scale: 9.9 against 0.024 at C = 20).
- ``fitnet``: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, arXiv 1412.6550.
  L = CE(y, softmax(z_s)) + beta * ||r(f_s) - f_t||^2 (mean over elements), r a learned linear
  regressor. Default beta = 100 (CRD benchmark).
  In both, "CE" is the task's supervised objective (``LossTerm("task")``): cross-entropy on
  recognition; next-class and next-sentence cross-entropy plus the AVT auxiliaries on anticipation.
  Deviation (fitnet): the hint is the pooled clip embedding of the student and the teacher's pooled
  embedding (different modalities have no shared spatial grid), not an intermediate feature map,
  and the hint is trained jointly with CE rather than in a separate hint stage.
- the generic KD suite of the CRD benchmark and the distribution alignments, each a loss and a
  method of the same name (``CE + weight * loss`` from the task's default teacher): ``dkd``,
  ``at``, ``nst``, ``sp``, ``cc``, ``rkd``, ``pkt``, ``vid``, ``crd``, ``mmd``, ``coral``,
  ``cosine``. Citations, formulas, default hyperparameters and the taps each reads: the loss
  classes in :mod:`xbench_baselines.losses`. ``--set method.weight=W`` scales the term, the
  other method options are the loss's.
- ``combo``: any losses combined by config, no code: ``method_options.terms`` is a list of
  ``{loss, weight, student, teacher, target, options}`` (``loss: task`` is the task's supervised
  objective; taps and target default to the loss's own), e.g. CRD + KD in
  ``benchmarks/configs/crd-kd.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.search import LogUniform, Uniform
from xbench.specs import LossSpec, LossTerm, MethodSpec, NoOptions
from xbench_baselines.losses import (
    ATLoss,
    ATOptions,
    CCLoss,
    CCOptions,
    CORALLoss,
    CosineLoss,
    CRDLoss,
    CRDOptions,
    DKDLoss,
    DKDOptions,
    MMDLoss,
    NSTLoss,
    PKTLoss,
    RegressedLoss,
    RKDLoss,
    RKDOptions,
    SPLoss,
    VIDLoss,
    VIDOptions,
)


@dataclass(frozen=True)
class KDLossOptions:
    T: float = 4.0
    #: independent classes (multi-label detection): per-class binary KL of sigmoid(z / T)
    multilabel: bool = False


class KDLoss(nn.Module):
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) over the classes (the last dimension), averaged
    over the batch and any positions (frames, snippets; only the real ones when a (B, T) mask of
    ``positions`` is given). With ``multilabel`` each class is its own
    Bernoulli: T^2 * mean_c KL(sigmoid(z_t,c/T) || sigmoid(z_s,c/T)), same averaging: the mean
    over classes, as binary cross-entropy is reduced."""

    def __init__(self, opts: KDLossOptions) -> None:
        super().__init__()
        self.T, self.multilabel = opts.T, opts.multilabel

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None:  # (B, T) real time steps: padding of short sequences is not distilled
            student, teacher = student[positions], teacher[positions]
        kl = kl_terms(student, teacher, self.T, self.multilabel)
        if self.multilabel:
            return kl.mean() * self.T ** 2  # independent classes: the mean, as BCE's
        return kl.sum(-1).mean() * self.T ** 2  # one distribution over the classes: its KL


def kl_terms(student: torch.Tensor, teacher: torch.Tensor, T: float, multilabel: bool) -> torch.Tensor:
    """The per-class terms of KL(teacher || student) of temperature-softened outputs, before any
    reduction: softmax over the last dimension, or with ``multilabel`` one Bernoulli per class."""
    s, t = student.float() / T, teacher.float() / T
    if multilabel:
        p_t = torch.sigmoid(t)
        # log sigmoid(x) and log(1 - sigmoid(x)) = log sigmoid(-x), stable for large |x|
        return p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    log_p_t = F.log_softmax(t, dim=-1)
    return log_p_t.exp() * (log_p_t - F.log_softmax(s, dim=-1))


@dataclass(frozen=True)
class GatedKDLossOptions(KDLossOptions):
    #: the teacher's largest class probability (softmax at temperature 1; per class for
    #: multi-label) an example needs for its KD term; 0: every example
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0 or self.T <= 0:
            raise ValueError("need 0 <= threshold < 1 and T > 0")


class GatedKDLoss(nn.Module):
    """``KDLoss`` on the examples a gate lets through: the teacher's confidence (its largest
    softmax probability at T = 1; for multi-label, the largest of its per-class sigmoids) at
    least ``threshold``, and where a boolean ``target`` is given (an oracle's privileged fact),
    that target too. Averaged over every example (or real time step), a gated-out one counting
    0, as FixMatch's confidence-masked loss is: the weight keeps one meaning however many pass."""

    def __init__(self, opts: GatedKDLossOptions) -> None:
        super().__init__()
        self.T, self.threshold, self.multilabel = opts.T, opts.threshold, opts.multilabel

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, positions: torch.Tensor | None = None,
                target: torch.Tensor | None = None, label_mask: torch.Tensor | None = None) -> torch.Tensor:
        t1 = teacher.float()
        conf = (torch.sigmoid(t1) if self.multilabel else t1.softmax(-1)).amax(-1)  # (B, ...) per example
        gate = conf >= self.threshold
        if target is not None:  # per example (B,) or time step (B, T); per class: any class on
            fact = target.bool()
            while fact.dim() > gate.dim():
                fact = fact.any(-1)
            gate = gate & fact.view(*fact.shape, *([1] * (gate.dim() - fact.dim())))
        if positions is not None:
            student, teacher, gate = student[positions], teacher[positions], gate[positions]
        kl = kl_terms(student, teacher, self.T, self.multilabel)
        per_example = kl.mean(-1) if self.multilabel else kl.sum(-1)
        return (per_example * gate).mean() * self.T ** 2


class FitNetLoss(RegressedLoss):
    """||r(f_s) - f_t||^2 averaged over elements (of real time steps, given ``positions``); r is a
    learned linear regressor."""

    def compare(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(x, y)


@dataclass(frozen=True)
class KDOptions:
    T: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.T <= 0:
            raise ValueError("need 0 <= alpha <= 1 and T > 0")


@dataclass(frozen=True)
class GatedKDOptions(KDOptions):
    #: the teacher's confidence a clip needs (``GatedKDLoss``): at 0.7 the recognition teacher
    #: passes 97-100% of the clips whose audio carries the action and 0-5% of the others
    threshold: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError("need 0 <= threshold < 1")


#: kd's search space for its tuned row, shared by its gated controls
KD_SEARCH = {"T": LogUniform(1.0, 8.0), "alpha": Uniform(0.1, 0.95)}


@dataclass(frozen=True)
class FitNetOptions:
    beta: float = 100.0


@dataclass(frozen=True)
class Generic:
    """One loss of the generic suite and the method that distils with it alone."""

    name: str
    #: the loss's one-line description
    description: str
    #: the method's one-line description: authors, year, what it adds to CE
    method: str
    factory: Callable[[Any, dict[str, int]], Any]
    options: type
    #: the method's default weight of the loss term (the paper's or the CRD benchmark's)
    weight: float
    #: the tap it reads on both sides
    tap: str
    target: bool = False
    index: bool = False
    #: the paper's linear warm-up of the term's weight, as a fraction of training (0: none); the
    #: method gets a ``warmup`` option with this default
    warmup: float = 0.0
    #: the tuned row's space for the loss's own options (the weight's is added: ``_generic_search``)
    search: tuple[tuple[str, Any], ...] = ()

    def example(self) -> tuple:
        """Conformance-check arguments for token losses: (B, N, D) sequences."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(4, 6, 8, generator=g), torch.randn(4, 6, 8, generator=g)


GENERIC = (
    Generic("dkd", "Decoupled KD: weighted target-class and non-target-class KL of logits",
            "Zhao et al. 2022 (DKD): CE + T^2 (1 TCKD + 8 NCKD), warmed up over 1/12 of training",
            lambda o, d: DKDLoss(o), DKDOptions, 1.0, "logits", target=True, warmup=20 / 240,
            search=(("T", LogUniform(1.0, 8.0)),)),  # its temperature, as KD's
    Generic("at", "Attention transfer: distance of normalised attention maps over positions",
            "Zagoruyko & Komodakis 2017 (AT): CE + 1000 x attention-map distance",
            lambda o, d: ATLoss(o), ATOptions, 1000.0, "tokens"),
    Generic("nst", "Neuron selectivity transfer: polynomial-kernel MMD of channel activations",
            "Huang & Wang 2017 (NST): CE + 50 x MMD of neuron selectivity patterns",
            lambda o, d: NSTLoss(), NoOptions, 50.0, "tokens"),
    Generic("sp", "Similarity-preserving: match the batch's row-normalised Gram matrices",
            "Tung & Mori 2019 (SP): CE + 3000 x batch-similarity distance",
            lambda o, d: SPLoss(), NoOptions, 3000.0, "feature"),
    Generic("cc", "Correlation congruence: match Taylor-RBF correlation matrices of the batch",
            "Peng et al. 2019 (CC): CE + 50 x correlation-matrix distance",
            lambda o, d: CCLoss(o), CCOptions, 50.0, "feature"),
    Generic("rkd", "Relational KD: Huber loss on normalised distances and angles",
            "Park et al. 2019 (RKD): CE + 25 distance + 50 angle relations",
            lambda o, d: RKDLoss(o), RKDOptions, 1.0, "feature"),
    Generic("pkt", "Probabilistic transfer: KL of cosine-kernel conditional distributions",
            "Passalis & Tefas 2018 (PKT): CE + 30000 x KL of similarity distributions",
            lambda o, d: PKTLoss(), NoOptions, 30000.0, "feature"),
    Generic("vid", "Variational information distillation: Gaussian NLL of the teacher feature",
            "Ahn et al. 2019 (VID): CE + NLL of the teacher feature under a learned Gaussian",
            lambda o, d: VIDLoss(o, d), VIDOptions, 1.0, "feature"),
    Generic("crd", "Contrastive representation distillation with memory banks (NCE)",
            "Tian et al. 2020 (CRD): CE + 0.8 x NCE against min(16384, N - 1) memory-bank negatives",
            lambda o, d: CRDLoss(o, d), CRDOptions, 0.8, "feature", index=True),
    Generic("mmd", "Multi-kernel MMD between regressed student and teacher features",
            "Gretton et al. 2012 / Long et al. 2015 (MMD): CE + multi-kernel MMD alignment",
            lambda o, d: MMDLoss(d), NoOptions, 1.0, "feature"),
    Generic("coral", "CORAL: match means and covariances of regressed student and teacher features",
            "Sun & Saenko 2016 (CORAL): CE + mean and covariance alignment",
            lambda o, d: CORALLoss(d), NoOptions, 1.0, "feature"),
    Generic("cosine", "Cosine feature distillation: 1 - cos(r(f_s), f_t)",
            "Cosine feature KD: CE + 1 - cos of a regressed student feature and the teacher's",
            lambda o, d: CosineLoss(d), NoOptions, 1.0, "feature"),
)


def _method_options(g: Generic) -> type:
    """The method's options: the loss's options plus ``weight``, the weight of its term (and
    ``warmup``, the fraction of the stage its weight ramps over, where the paper warms it up)."""
    base_check = getattr(g.options, "__post_init__", None)

    def post_init(self) -> None:
        if self.weight < 0:
            raise ValueError("need weight >= 0")
        if not 0 <= getattr(self, "warmup", 0.0) <= 1:
            raise ValueError("need 0 <= warmup <= 1 (a fraction of the stage)")
        if base_check is not None:
            base_check(self)

    own = [("weight", float, field(default=g.weight))]
    if g.warmup:
        own.append(("warmup", float, field(default=g.warmup)))
    return dataclasses.make_dataclass(f"{g.name.upper()}MethodOptions", own, bases=(g.options,), frozen=True,
                                      namespace={"__post_init__": post_init})


def _generic_search(g: Generic) -> dict[str, Any]:
    """The tuned row's space: the term's weight over two decades around its default (the
    papers' weights were set for another setting), and the loss's own options its entry names."""
    return {"weight": LogUniform(g.weight / 10, g.weight * 10), **dict(g.search)}


def _generic_terms(g: Generic) -> Callable[[Any], list[LossTerm]]:
    names = [f.name for f in fields(g.options)]

    def terms(o: Any) -> list[LossTerm]:
        # taps and target are the loss's own (LossSpec.student_tap/teacher_tap; DKD's target is
        # the task's first), filled in when the run is planned
        return [LossTerm("task"), LossTerm(g.name, o.weight, options={n: getattr(o, n) for n in names},
                                           warmup=getattr(o, "warmup", 0.0))]
    return terms


@dataclass(frozen=True)
class ComboOptions:
    """A combination's terms, each a :class:`LossTerm` written as a mapping ``{loss, weight,
    student, teacher, target, options}``; unset taps and target are the loss's defaults."""

    terms: tuple[LossTerm, ...] = (LossTerm("task"),)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("terms: give at least one term")


def _combo_terms(o: ComboOptions, task: Any) -> list[LossTerm]:
    """The configured terms; a ``kd`` term on a multi-label task (detection) is told so, as the
    ``kd`` method's is, unless its options say otherwise: softmax KD over independent labels
    would compare distributions that do not exist."""
    return [dataclasses.replace(t, options={"multilabel": task.multilabel, **t.options}) if t.loss == "kd" else t
            for t in o.terms]


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="kd", description="Hinton KD: T^2 KL of temperature-softened logits",
                      factory=lambda opts, dims: KDLoss(opts), options=KDLossOptions, positions=True))
    register(LossSpec(name="kd-gated", description="KD on the examples the teacher is confident on",
                      factory=lambda opts, dims: GatedKDLoss(opts), options=GatedKDLossOptions, positions=True))
    register(LossSpec(name="kd-oracle", description="KD on the examples a privileged boolean target lets through",
                      factory=lambda opts, dims: GatedKDLoss(opts), options=GatedKDLossOptions, positions=True,
                      target=True))
    register(LossSpec(name="fitnet", description="FitNet hint: MSE of regressed student features",
                      factory=lambda opts, dims: FitNetLoss(dims), positions=True,
                      student_tap="feature", teacher_tap="feature"))
    for g in GENERIC:
        register(LossSpec(name=g.name, description=g.description, factory=g.factory, options=g.options,
                          positions=True, target=g.target, index=g.index, student_tap=g.tap,
                          teacher_tap=g.tap, example=g.example if g.tap == "tokens" else None))


@hookimpl
def xbench_register_methods(register):
    task = LossTerm("task")  # the task's supervised objective (recognition: CE on the label)
    register(MethodSpec(name="student", description="The task's student on labels alone (no KD)",
                        terms=lambda o: [task], teacher=None, baseline=True))
    register(MethodSpec(name="noise-floor",
                        description="Control: student with another dropout stream (what chance makes)",
                        terms=lambda o: [task], teacher=None, rng_stream="noise-floor"))
    register(MethodSpec(name="student+teacher-labels",
                        description="Control: student on the train and teacher splits' labels (the extra data alone)",
                        terms=lambda o: [task], teacher=None, train_splits=("train", "teacher")))
    register(MethodSpec(name="teacher",
                        description="The task's privileged-modality teacher alone (the ceiling)",
                        terms=lambda o: [], teacher="default", evaluates="teacher"))
    register(MethodSpec(
        name="kd", description="Hinton et al. 2015: CE + T^2 KL of softened logits",
        terms=lambda o, task: [LossTerm("task", 1.0 - o.alpha),
                               LossTerm("kd", o.alpha, teacher="logits",
                                        options={"T": o.T, "multilabel": task.multilabel})],
        options=KDOptions, search=KD_SEARCH))
    register(MethodSpec(
        name="kd-confident", description="Control: kd only on clips the teacher is confident on (a simple noise filter)",
        terms=lambda o, task: [LossTerm("task", 1.0 - o.alpha),
                               LossTerm("kd-gated", o.alpha, teacher="logits",
                                        options={"T": o.T, "threshold": o.threshold, "multilabel": task.multilabel})],
        options=GatedKDOptions, kit_options={"threshold": 0.0},  # the kit's few-step teacher is never sure
        search={**KD_SEARCH, "threshold": Uniform(0.3, 0.95)}))
    register(MethodSpec(
        name="kd-oracle",
        description="Control (oracle): kd only on clips whose audio carries the action (privileged)",
        terms=lambda o, task: [LossTerm("task", 1.0 - o.alpha),
                               LossTerm("kd-oracle", o.alpha, teacher="logits", target="audio_relevant",
                                        options={"T": o.T, "multilabel": task.multilabel})],
        options=KDOptions, privileged=("audio_relevant",), tasks=("recognition", "retrieval"),
        search=KD_SEARCH))
    register(MethodSpec(
        name="fitnet", description="Romero et al. 2015: CE + feature regression to the teacher",
        terms=lambda o: [task, LossTerm("fitnet", o.beta, student="feature", teacher="feature")],
        options=FitNetOptions, search={"beta": LogUniform(10.0, 1000.0)}))
    for g in GENERIC:
        register(MethodSpec(name=g.name, description=g.method, terms=_generic_terms(g),
                            options=_method_options(g), search=_generic_search(g)))
    register(MethodSpec(
        name="combo", description="Losses combined by config: method.terms = [{loss, weight, ...}]",
        terms=_combo_terms, options=ComboOptions))
