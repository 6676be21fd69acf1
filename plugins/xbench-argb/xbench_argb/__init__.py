"""``argb``: augmented RGB via cross-modal distillation for action detection, **reconstructed from
the abstract** (no code is public).

Paper: R. Dai, S. Das, F. Bremond, "Learning an Augmented RGB Representation with Cross-Modal
Knowledge Distillation for Action Detection", ICCV 2021; arXiv 2108.03619.

What the abstract fixes: dense (per-frame, multi-label) action detection in untrimmed video; an RGB
student that learns from teachers on other modalities (optical flow, 3D pose) trained first and
frozen; distillation at two levels, atomic (snippet sub-representations) and sequence (global
contextual relations and action boundary saliency); only RGB at test time, competitive with the
two-stream network.

Loss (F^S, F^T (T x C) the student's and teacher's snippet features at the
distillation layer, here the ``feature`` tap after the temporal layers):

    L = BCE_det + l_a * L_atomic + l_g * L_GCR + l_b * L_ABS
    L_atomic = -(1/N) sum_i log softmax_j(s_i . t_j / tau)_i   over all N = B x T snippets of the
               batch, s = normalize(P_s F^S), t = normalize(P_t F^T) (64-d projections): each
               student snippet must pick its own teacher snippet among the batch's
    L_GCR    = mean over (b, t) of sum_u (G^S_tu - G^T_tu)^2,  G = cosine similarity of snippets (T x T)
    L_ABS    = mean_b KL(a^T || a^S),  a = softmax_t(d_t / mean_t d_t),  d_t = |F_{t+1} - F_t|_1 / C

Every term runs over the real snippets of each sequence only (the task's ``positions``): the
padding after a short sequence is not a snippet to pick, relate or find a boundary in.

Reconstructed (inferred, unverified) choices, each with the default used:
- the atomic term's form: InfoNCE with the batch's other snippets (same video and other videos)
  as negatives, tau = 0.1, 64-d trainable projections on both sides (teacher frozen);
- GCR as the normalised T x T snippet-similarity matrix matched by squared error, summed over
  each snippet's relations and averaged over snippets (the C x C channel covariance is the other
  reading, not offered). A first version averaged over all T x T pairs: with 16-32 snippets a
  sequence that made the term 0.5% of the detection loss at the start of training, inert;
  per snippet, as KD sums over a sample's classes, it is ~T times that;
- ABS as the L1 change between consecutive snippet features (per channel mean), normalised by its
  mean over the sequence so the two modalities' feature scales do not matter, turned into a
  distribution over time by a softmax and matched by KL (``abs_match=mse`` matches the curves);
- lambda_a = lambda_g = lambda_b = 1; the distillation layer is the temporal head's output;
- the teachers are the student's architecture (``snippet-tcn``) on flow (``flow-tcn``, default),
  pose (``--teacher pose-tcn``) or both fused in one model (``--teacher flow-pose-tcn``, in place
  of the paper's separate teachers; all three are the core's detection teachers), trained on the
  teacher split and frozen;
- padding is left out of every term: a third of the synth snippets are padding after short
  sequences, alike in every sequence, so the atomic term could not tell them apart and the
  sequence-level terms would relate and segment empty input (a first version kept them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.distributed import gather
from xbench.search import LogUniform
from xbench.specs import LossSpec, LossTerm, MethodSpec, PaperResult


@dataclass(frozen=True)
class AtomicOptions:
    tau: float = 0.1
    dim: int = 64

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.dim < 1:
            raise ValueError("need tau > 0 and dim >= 1")


@dataclass(frozen=True)
class ABSOptions:
    match: Literal["kl", "mse"] = "kl"


class AtomicContrast(nn.Module):
    """Snippet-level InfoNCE between projected student and teacher snippet features (B, T, C)."""

    def __init__(self, opts: AtomicOptions, dims: dict[str, int]) -> None:
        super().__init__()
        self.tau = opts.tau
        self.student = nn.Linear(dims["student"], opts.dim)
        self.teacher = nn.Linear(dims["teacher"], opts.dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None:  # real snippets only: padding is no snippet to pick
            student, teacher = student[positions], teacher[positions]
        s = F.normalize(self.student(student.float()).flatten(0, -2), dim=-1)
        t = F.normalize(self.teacher(teacher.float()).flatten(0, -2), dim=-1)
        s, t = gather(s), gather(t)  # the negatives are the global batch's, on every rank
        logits = s @ t.T / self.tau
        return F.cross_entropy(logits, torch.arange(len(s), device=s.device))


def _real(f: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(B, T) float mask of real snippets (all ones without ``positions``)."""
    if positions is None:
        return f.new_ones(f.shape[:2], dtype=torch.float32)
    return positions.float()


def relation_loss(student: torch.Tensor, teacher: torch.Tensor,
                  positions: torch.Tensor | None = None) -> torch.Tensor:
    """GCR: the squared difference of the T x T cosine-similarity matrices of the snippets,
    summed over each real snippet's relations to the real snippets of its sequence, mean over
    real snippets."""
    def gram(f: torch.Tensor) -> torch.Tensor:
        f = F.normalize(f.float(), dim=-1)
        return f @ f.transpose(-1, -2)

    real = _real(student, positions)
    pairs = real[:, :, None] * real[:, None, :]
    return ((gram(student) - gram(teacher)).pow(2) * pairs).sum() / real.sum().clamp(min=1)


def boundary_saliency(f: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """d_t = mean over channels of |F_{t+1} - F_t| (B, T-1), divided by its mean over the steps
    whose two snippets are real; returns (d, mask of those steps)."""
    real = _real(f, positions)
    steps = real[:, 1:] * real[:, :-1]
    d = (f[:, 1:] - f[:, :-1]).float().abs().mean(-1)
    mean = (d * steps).sum(-1, keepdim=True) / steps.sum(-1, keepdim=True).clamp(min=1)
    return d / mean.clamp(min=1e-8), steps


class BoundarySaliency(nn.Module):
    """ABS: the student's boundary-saliency curve matched to the teacher's (KL of the softmax over
    the real steps of each sequence, or MSE of the normalised curves), mean over sequences."""

    def __init__(self, opts: ABSOptions) -> None:
        super().__init__()
        self.match = opts.match

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        (a_s, steps), (a_t, _) = boundary_saliency(student, positions), boundary_saliency(teacher, positions)
        seqs = (steps.sum(-1) > 0).float()  # a sequence of one real snippet has no boundary
        if self.match == "mse":
            per_seq = ((a_s - a_t).pow(2) * steps).sum(-1) / steps.sum(-1).clamp(min=1)
        else:
            pad = steps == 0  # outside the sequence: no probability mass
            log_s = F.log_softmax(a_s.masked_fill(pad, float("-inf")), dim=-1)
            log_t = F.log_softmax(a_t.masked_fill(pad, float("-inf")), dim=-1)
            per_seq = (log_t.exp() * (log_t - log_s)).masked_fill(pad, 0.0).sum(-1)
        return (per_seq * seqs).sum() / seqs.sum().clamp(min=1)


class _GCR(nn.Module):
    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return relation_loss(student, teacher, positions)


def _sequences() -> tuple[torch.Tensor, torch.Tensor]:
    """Example arguments for the conformance check: (B, T, C) snippet features."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)


@dataclass(frozen=True)
class ARGBOptions:
    atomic: float = 1.0
    gcr: float = 1.0
    abs: float = 1.0
    tau: float = 0.1
    dim: int = 64
    abs_match: Literal["kl", "mse"] = "kl"

    def __post_init__(self) -> None:
        if min(self.atomic, self.gcr, self.abs) < 0:
            raise ValueError("loss weights must be >= 0")


def _terms(o: ARGBOptions) -> list[LossTerm]:
    terms = [LossTerm("task")]
    for name, weight, options in (("argb-atomic", o.atomic, {"tau": o.tau, "dim": o.dim}),
                                  ("argb-gcr", o.gcr, {}), ("argb-abs", o.abs, {"match": o.abs_match})):
        if weight:  # a zero weight is an ablation: the term is not built at all
            terms.append(LossTerm(name, weight, student="feature", teacher="feature", options=options))
    return terms


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(name="argb-atomic", description="Snippet-level InfoNCE between student and teacher",
                      factory=lambda opts, dims: AtomicContrast(opts, dims), options=AtomicOptions,
                      example=_sequences, positions=True))
    register(LossSpec(name="argb-gcr", description="Match T x T snippet-similarity matrices (GCR)",
                      factory=lambda opts, dims: _GCR(), example=_sequences, positions=True))
    register(LossSpec(name="argb-abs", description="Match action-boundary saliency curves (ABS)",
                      factory=lambda opts, dims: BoundarySaliency(opts), options=ABSOptions,
                      example=_sequences, positions=True))


@hookimpl
def xbench_register_methods(register):
    register(MethodSpec(
        name="argb",
        description="Dai et al. 2021 (reconstructed): BCE + atomic contrast + GCR + ABS",
        terms=_terms,
        options=ARGBOptions,
        search={k: LogUniform(0.1, 10.0) for k in ("atomic", "gcr", "abs")},
        tasks=("detection",),
        paper=(PaperResult(task="detection", dataset="TSU (CS)", metric="frame-mAP", value=32.8,
                           source="secondary: comparison table of MoVie (CVPR 2026); verify"),),
    ))
