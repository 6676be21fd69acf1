"""``ccd``: Cross-modal Contrastive Distillation, **reconstructed from the abstract** (no code is
public).

Paper: Z. Yang, J. Liu, J. Huang, X. He, T. Mei, C. Xu, J. Luo, "Cross-modal Contrastive
Distillation for Instructional Activity Anticipation", ICPR 2022; arXiv 2201.06734.

What the abstract fixes: the task (generate the next steps of an instructional video as text), the
metric (BLEU-4), a text teacher holding external knowledge, a visual-only student, and a
cross-modal *contrastive* distillation loss between their heterogeneous representations.

Loss (s_i = normalize(g_s(h_i^S)), t_i = normalize(g_t(h_i^T))):

    L = L_gen + lambda * L_ccd,
    L_ccd = -(1/B) sum_i log( exp(s_i . t_i / tau) / sum_j exp(s_i . t_j / tau) )

L_gen is the ``anticipation`` task's supervised objective (teacher-forced next-sentence
cross-entropy, next-class cross-entropy and the AVT auxiliaries), shared by every method.

Reconstructed (inferred, unverified) choices, each with the default used:
- the contrastive form: InfoNCE with in-batch negatives (a CRD-style memory bank is the other
  reading; ``queue`` > 0 adds a FIFO queue of past teacher embeddings as extra negatives);
- the distilled representations: the student's context embedding (the state the sentence decoder
  starts from) and the frozen text teacher's context embedding of the same sample;
- tau = 0.07, 128-d projections, trainable projection heads on both sides (the teacher backbone
  frozen), lambda = 1, one direction (student -> teacher; ``symmetric`` adds the other);
- the teacher: xbench's ``minilm`` (a pretrained sentence encoder + recurrent recipe context), in
  place of a Recipe1M-pretrained hierarchical text model;
- the student: the task's AVT-style student with a GRU sentence decoder, trained from the same
  budgeted encoder pretraining as every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.distributed import gather, offset
from xbench.search import LogUniform
from xbench.specs import LossSpec, LossTerm, MethodSpec, PaperResult


@dataclass(frozen=True)
class InfoNCEOptions:
    tau: float = 0.07
    dim: int = 128
    symmetric: bool = False
    #: extra negatives: a FIFO queue of this many past teacher embeddings (0: in-batch only)
    queue: int = 0

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.dim < 1 or self.queue < 0:
            raise ValueError("need tau > 0, dim >= 1, queue >= 0")


class CrossModalInfoNCE(nn.Module):
    """InfoNCE between projected student and teacher embeddings of the same samples."""

    def __init__(self, opts: InfoNCEOptions, dims: dict[str, int]) -> None:
        super().__init__()
        self.opts = opts
        self.student_proj = nn.Linear(dims["student"], opts.dim)
        self.teacher_proj = nn.Linear(dims["teacher"], opts.dim)
        self.register_buffer("bank", torch.zeros(opts.queue, opts.dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = F.normalize(self.student_proj(student.float()), dim=1)
        t = F.normalize(self.teacher_proj(teacher.float()), dim=1)
        # the in-batch negatives are the global batch's (under several processes every rank
        # gathers the others' rows; its own positives start at offset)
        t_all = gather(t)
        negatives = t_all
        if self.opts.queue and self.filled > 0:
            negatives = torch.cat([t_all, self.bank[: int(self.filled)]])
        logits = s @ negatives.T / self.opts.tau
        target = torch.arange(len(s), device=s.device) + offset(len(s))
        loss = F.cross_entropy(logits, target)
        if self.opts.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(t @ gather(s).T / self.opts.tau, target))
        if self.opts.queue and self.training:
            self._enqueue(t_all.detach())  # every rank's queue gets the same rows
        return loss

    @torch.no_grad()
    def _enqueue(self, t: torch.Tensor) -> None:
        k = self.opts.queue
        n = min(len(t), k)
        idx = (self.head + torch.arange(n, device=t.device)) % k
        self.bank[idx] = t[:n]
        self.head.copy_((self.head + n) % k)
        self.filled.copy_(torch.clamp(self.filled + n, max=k))


@dataclass(frozen=True)
class CCDOptions:
    weight: float = 1.0  # lambda
    tau: float = 0.07
    dim: int = 128
    symmetric: bool = False
    queue: int = 0


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="ccd-infonce",
                      description="Cross-modal InfoNCE between projected student/teacher embeddings",
                      factory=lambda opts, dims: CrossModalInfoNCE(opts, dims), options=InfoNCEOptions))


@hookimpl
def xbench_register_methods(register):
    register(MethodSpec(
        name="ccd",
        description="Yang et al. 2022 (reconstructed): L_gen + lambda * cross-modal InfoNCE",
        terms=lambda o: [LossTerm("task"),
                         LossTerm("ccd-infonce", o.weight, student="feature", teacher="feature",
                                  options={"tau": o.tau, "dim": o.dim, "symmetric": o.symmetric,
                                           "queue": o.queue})],
        options=CCDOptions,
        search={"weight": LogUniform(0.1, 10.0), "tau": LogUniform(0.03, 0.3)},
        tasks=("anticipation",),
        # the abstract gives only the relative gain over the visual-only student
        paper=(PaperResult(task="anticipation", dataset="Tasty", metric="BLEU-4", relative_gain=40.2,
                           compares_to="bleu4", source="abstract (absolute values not available)"),),
    ))
