"""Reference methods every leaderboard needs, as an ordinary xbench plugin.

- ``student``: the task's student trained on labels alone (no distillation): the baseline.
- ``teacher``: the task's default privileged-modality teacher alone: the ceiling. Its row is the
  only one evaluated with a privileged modality, and its record says ``evaluates: teacher``.
- ``kd``: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep
  Learning Workshop, arXiv 1503.02531.
  L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).
  Defaults T = 4, alpha = 0.9 (the CIFAR-100 settings of the CRD benchmark, Tian et al. 2020).
  On a multi-label task (per-frame detection) the distributions are per-class sigmoids, and the
  KL is averaged over frames (snippets) as well as the batch: frame-level KD.
- ``fitnet``: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, arXiv 1412.6550.
  L = CE(y, softmax(z_s)) + beta * ||r(f_s) - f_t||^2 (mean over elements), r a learned linear
  regressor. Default beta = 100 (CRD benchmark).
  In both, "CE" is the task's supervised objective (``LossTerm("task")``): cross-entropy on
  recognition; next-class and next-sentence cross-entropy plus the AVT auxiliaries on anticipation.
  Deviation (fitnet): the hint is the pooled clip embedding of the student and the teacher's pooled
  embedding (different modalities have no shared spatial grid), not an intermediate feature map,
  and the hint is trained jointly with CE rather than in a separate hint stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.specs import LossSpec, LossTerm, MethodSpec


@dataclass(frozen=True)
class KDLossOptions:
    T: float = 4.0
    #: independent classes (multi-label detection): per-class binary KL of sigmoid(z / T)
    multilabel: bool = False


class KDLoss(nn.Module):
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) over the classes (the last dimension), averaged
    over the batch and any positions (frames, snippets; only the real ones when a (B, T) mask of
    ``positions`` is given). With ``multilabel`` each class is its own
    Bernoulli: T^2 * sum_c KL(sigmoid(z_t,c/T) || sigmoid(z_s,c/T)), same averaging."""

    def __init__(self, opts: KDLossOptions) -> None:
        super().__init__()
        self.T, self.multilabel = opts.T, opts.multilabel

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None:  # (B, T) real time steps: padding of short sequences is not distilled
            student, teacher = student[positions], teacher[positions]
        s, t = student.float() / self.T, teacher.float() / self.T
        if self.multilabel:
            p_t = torch.sigmoid(t)
            # log sigmoid(x) and log(1 - sigmoid(x)) = log sigmoid(-x), stable for large |x|
            kl = (p_t * (F.logsigmoid(t) - F.logsigmoid(s))
                  + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s)))
        else:
            log_p_t = F.log_softmax(t, dim=-1)
            kl = log_p_t.exp() * (log_p_t - F.log_softmax(s, dim=-1))
        return kl.sum(-1).mean() * self.T ** 2


class FitNetLoss(nn.Module):
    """||r(f_s) - f_t||^2 averaged over elements (of real time steps, given ``positions``); r is a
    learned linear regressor."""

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        self.regressor = nn.Linear(dims["student"], dims["teacher"])

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None:  # (B, T) real time steps only
            student, teacher = student[positions], teacher[positions]
        return F.mse_loss(self.regressor(student).float(), teacher.float())


@dataclass(frozen=True)
class KDOptions:
    T: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.T <= 0:
            raise ValueError("need 0 <= alpha <= 1 and T > 0")


@dataclass(frozen=True)
class FitNetOptions:
    beta: float = 100.0


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="kd", description="Hinton KD: T^2 KL of temperature-softened logits",
                      factory=lambda opts, dims: KDLoss(opts), options=KDLossOptions, positions=True))
    register(LossSpec(name="fitnet", description="FitNet hint: MSE of regressed student features",
                      factory=lambda opts, dims: FitNetLoss(dims), positions=True))


@hookimpl
def xbench_register_methods(register):
    task = LossTerm("task")  # the task's supervised objective (recognition: CE on the label)
    register(MethodSpec(name="student", description="The task's student on labels alone (no KD)",
                        terms=lambda o: [task], teacher=None))
    register(MethodSpec(name="teacher",
                        description="The task's privileged-modality teacher alone (the ceiling)",
                        terms=lambda o: [], teacher="default", evaluates="teacher"))
    register(MethodSpec(
        name="kd", description="Hinton et al. 2015: CE + T^2 KL of softened logits",
        terms=lambda o, task: [LossTerm("task", 1.0 - o.alpha),
                               LossTerm("kd", o.alpha, teacher="logits",
                                        options={"T": o.T, "multilabel": task.multilabel})],
        options=KDOptions))
    register(MethodSpec(
        name="fitnet", description="Romero et al. 2015: CE + feature regression to the teacher",
        terms=lambda o: [task, LossTerm("fitnet", o.beta, student="feature", teacher="feature")],
        options=FitNetOptions))
