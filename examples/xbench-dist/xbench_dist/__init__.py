"""DIST: knowledge distillation from a stronger teacher, as an xbench plugin.

Paper: T. Huang, S. You, F. Wang, C. Qian, C. Xu, "Knowledge Distillation from A Stronger
Teacher", NeurIPS 2022 (arXiv 2205.10536). Code: github.com/hunto/DIST_KD.

Why it fits cross-modal KD: DIST was written for teachers much stronger than, and calibrated
differently from, the student. Instead of matching the teacher's probabilities exactly (KL), it
matches their *relations*: for each example, the student's class probabilities should be
linearly correlated with the teacher's (inter-class); for each class, the student should rank the
examples of a batch as the teacher does (intra-class). A teacher reading another modality is the
extreme case of a differently calibrated one.

Loss, with Y_s = softmax(Z_s / tau), Y_t = softmax(Z_t / tau) for a batch of B examples and C
classes, and rho the Pearson correlation of two vectors:

    L_inter = tau^2 * (1 / B) * sum_i (1 - rho(Y_s[i, :], Y_t[i, :]))
    L_intra = tau^2 * (1 / C) * sum_j (1 - rho(Y_s[:, j], Y_t[:, j]))
    L       = CE(Z_s, y) + beta * L_inter + gamma * L_intra

Defaults: tau = 1, beta = gamma = 1 (the paper's ImageNet setting, the one of its headline
number; its CIFAR-100 setting is tau = 4, beta = gamma = 2: ``--set method.tau=4 --set
method.beta=2 --set method.gamma=2``); the CE weight is 1 as in the paper.

Deviations: none in the loss (the Pearson correlation is computed as the paper's code does, a
cosine similarity of mean-centred vectors with eps = 1e-8 in the denominator). The student, data,
optimizer and budget are xbench's, not the paper's (ResNets on ImageNet, 100 epochs).

Tasks: the single-label ones (recognition, retrieval, anticipation's next-step class,
audio-tagging). Detection's per-frame multi-label sigmoid scores have no softmax distribution,
and the paper defines none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xbench import hookimpl
from xbench.specs import LossSpec, LossTerm, MethodSpec, PaperResult


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: (N, K) -> (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DISTLoss(nn.Module):
    """beta * L_inter + gamma * L_intra on the student's and the teacher's logits (B, C)."""

    def __init__(self, tau: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> None:
        super().__init__()
        self.tau, self.beta, self.gamma = tau, beta, gamma

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        y_s = (student.float() / self.tau).softmax(dim=-1)
        y_t = (teacher.float() / self.tau).softmax(dim=-1)
        inter = 1 - pearson_rows(y_s, y_t).mean()
        intra = 1 - pearson_rows(y_s.t(), y_t.t()).mean()
        return self.tau ** 2 * (self.beta * inter + self.gamma * intra)


@dataclass(frozen=True)
class DISTOptions:
    """The loss's options (``--set method.tau=4``)."""

    tau: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="dist", description="DIST: inter- and intra-class Pearson relations of softmax outputs",
                      factory=lambda o, dims: DISTLoss(o.tau, o.beta, o.gamma), options=DISTOptions))


@hookimpl
def xbench_register_methods(register):
    register(MethodSpec(
        name="dist",
        description="Huang et al. 2022 (DIST): CE + inter- and intra-class relation matching",
        terms=lambda o: [LossTerm("task"),
                         LossTerm("dist", options={"tau": o.tau, "beta": o.beta, "gamma": o.gamma})],
        options=DISTOptions,
        tasks=("recognition", "retrieval", "anticipation", "audio-tagging"),
        # the paper's headline: ImageNet, ResNet-34 teacher -> ResNet-18 student (the README of
        # the authors' code; Table 2 of the paper), 69.76 without KD
        paper=(PaperResult(task="recognition", dataset="ImageNet (R34 -> R18)", metric="top-1",
                           value=72.07, baseline=69.76, compares_to="top1",
                           source="paper Table 2; README of the authors' code"),),
    ))
