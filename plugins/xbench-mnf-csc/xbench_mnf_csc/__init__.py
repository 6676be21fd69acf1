"""``mnf-csc``: robust cross-modal knowledge distillation with a Modality Noise Filter (MNF) and
Contrastive Semantic Calibration (CSC).

Paper: W. Xia, X. Li, A. Deng, H. Xiong, D. Dou, D. Hu, "Robust Cross-Modal Knowledge Distillation
for Unconstrained Videos", arXiv 2304.07775 (2023). Implemented from the paper's formulas
(the authors' repository has no licence: none of its code is copied).

A frozen teacher of another modality (audio for a video student) gives one embedding f_a per clip.
In unconstrained video that audio is often irrelevant, so it is filtered before it guides the
student, and it guides only *how hard* the student is pulled towards audio-guided features:

MNF:  m_a = sigmoid(FS([f_a ; f_v])),  f_a^p = m_a * f_a,
      L_t = mean_i max(0, cos(f_v,i, f_a,i) - cos(f_v,i, f_a,i^p) + 0.2)   (anchor video, positive
      purified audio, negative raw audio), plus 1e-3 * mean over rows of |W|_1 of FS's last layer
CSC:  f_v^g = LinBNReLU(MHA(query f_a^p, keys/values the student's spatio-temporal tokens, 2 heads)),
      S_ij = norm(f_v,i) . norm(f_v,j^g),  tau_ij = sg(cos(f_v,i, f_a,j^p)) + tau0 (clamped >= 0.01)
      L_csc = mean_i -(1/|P_i|) sum_{j in P_i} log softmax_k(S_ik / tau_ik)_j,  P_i = {j: y_j = y_i}
Objectives (the code's gradient routing): the student gets CE(p_v) + 1.0 L_csc; the MNF modules
(FS, attention, projection, auxiliary classifier) get L_a = CE(p_sv) + L_t + L1 and also L_csc's
gradient through f_v^g. L_a never reaches the student: it is computed on detached student features.
The MNF modules train at 0.2x the student's learning rate (an lr multiplier on the ``mnf`` group).

Deviations, each documented:
- tau_ij is clamped at ``min_tau`` = 0.01 (the code does not clamp; tau <= 0 when cos <= -tau0).
- Only the last FS layer is L1-regularised, as the code does (its loop overwrites the sum);
  ``l1_both=true`` regularises both layers.
- log-softmax in place of the code's log(softmax + 1e-10) (differs only near 1e-10).
- The teacher is the harness's frozen teacher of the task (the ``audio-cnn`` trained on the teacher
  split for a video student; ``video-cnn`` for the audio-tagging student): its ``feature`` tap,
  cached once per run, stands for the paper's precomputed CNN14 embeddings. When its width differs
  from the student's, a bias-free linear map + ReLU (part of the MNF group) brings it to the
  student's width, non-negative like CNN14's ReLU embedding (the paper's are both 512-d).
- The student's tokens are its ``spatial`` tap (T x h x w cells; the paper's R(2+1)D map is 2x7x7).
- One optimizer with two lr groups replaces the code's two Adam optimizers (same per-parameter
  updates); the tier fixes optimizer, weight decay and schedule (paper: Adam lr 3e-4, wd 5e-4,
  200 epochs, step decay at 150: ``paper-mnf-csc`` tier).
- The MNF modules run twice per step (once on detached student features for L_a, once for CSC),
  so their batch-norm statistics see each batch twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.distributed import gather
from xbench.search import LogUniform, Uniform
from xbench.specs import LossTerm, MethodSpec, ObjectiveContext


@dataclass(frozen=True)
class MNFCSCOptions:
    #: base temperature of the per-pair CSC temperature (0.07 UCF51, 0.2 ActivityNet)
    tau0: float = 0.07
    #: lower clamp of the per-pair temperature (a deviation: the code does not clamp)
    min_tau: float = 0.01
    margin: float = 0.2
    l1_weight: float = 1e-3
    l1_both: bool = False
    csc_weight: float = 1.0
    heads: int = 2
    #: the Modality Noise Filter; false: CSC with the raw teacher embedding (ablation)
    noise_filter: bool = True

    def __post_init__(self) -> None:
        if self.tau0 <= 0 or self.min_tau <= 0:
            raise ValueError("tau0 and min_tau must be > 0")
        if self.margin < 0 or self.l1_weight < 0 or self.csc_weight < 0 or self.heads < 1:
            raise ValueError("margin, l1_weight, csc_weight must be >= 0 and heads >= 1")


# ----------------------------------------------------------------------------- loss terms


def cosine_triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   margin: float) -> torch.Tensor:
    """mean_i max(0, cos(a_i, n_i) - cos(a_i, p_i) + margin)."""
    pos = F.cosine_similarity(anchor.float(), positive.float(), dim=-1)
    neg = F.cosine_similarity(anchor.float(), negative.float(), dim=-1)
    return F.relu(neg - pos + margin).mean()


def csc_loss(f_v: torch.Tensor, f_g: torch.Tensor, f_ap: torch.Tensor, labels: torch.Tensor,
             label_mask: torch.Tensor | None, tau0: float, min_tau: float) -> torch.Tensor:
    """Supervised contrast of the student's features against audio-guided features with the
    per-pair temperature tau_ij = sg(cos(f_v,i, f_a,j^p)) + tau0, clamped at ``min_tau``.
    Anchors and positives are the examples whose label the student may use; over the global
    batch (under several processes every rank gathers the others' rows)."""
    f_v, f_g, f_ap, labels = gather(f_v), gather(f_g), gather(f_ap), gather(labels)
    label_mask = gather(label_mask) if label_mask is not None else None
    v = F.normalize(f_v.float(), dim=-1)
    g = F.normalize(f_g.float(), dim=-1)
    a = F.normalize(f_ap.float(), dim=-1)
    tau = ((v @ a.T).detach() + tau0).clamp(min=min_tau)
    log_p = F.log_softmax((v @ g.T) / tau, dim=1)
    mask = torch.ones_like(labels, dtype=torch.bool) if label_mask is None else label_mask.bool()
    pos = (labels[:, None] == labels[None, :]) & mask[None, :]
    per_anchor = -(log_p * pos).sum(1) / pos.sum(1).clamp(min=1)
    return (per_anchor * mask).sum() / mask.sum().clamp(min=1)


def _tokens(tap: torch.Tensor) -> torch.Tensor:
    """A student tap as (B, N, D) tokens: (B, T, D, h, w), (B, D, h, w) or (B, N, D)."""
    if tap.ndim == 5:
        return tap.permute(0, 1, 3, 4, 2).flatten(1, 3)
    if tap.ndim == 4:
        return tap.flatten(2).transpose(1, 2)
    return tap


class MNF(nn.Module):
    """The modules MNF+CSC adds (one lr group): the teacher-width map, the feature-selection
    mask, the audio-guided attention with its projection, and the auxiliary classifier."""

    def __init__(self, d_teacher: int, d: int, num_classes: int, heads: int) -> None:
        super().__init__()
        # the teacher embedding is non-negative (pooled after a ReLU, as CNN14's is), so cosines
        # with the student's non-negative features are >= 0 and tau_ij >= tau0; a plain linear
        # map would make half of them negative and drive tau_ij to the clamp
        self.adapt = nn.Identity() if d_teacher == d else nn.Sequential(
            nn.Linear(d_teacher, d, bias=False), nn.ReLU())
        self.select = nn.Sequential(nn.Linear(2 * d, d // 2), nn.BatchNorm1d(d // 2), nn.ReLU(),
                                    nn.Linear(d // 2, d))
        self.attend = nn.MultiheadAttention(d, heads, batch_first=True)
        self.project = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU())
        self.classify = nn.Linear(d, num_classes)

    def forward(self, f_a: torch.Tensor, f_v: torch.Tensor, tokens: torch.Tensor,
                use_filter: bool) -> tuple[torch.Tensor, torch.Tensor]:
        f_ap = torch.sigmoid(self.select(torch.cat([f_a, f_v], 1))) * f_a if use_filter else f_a
        guided, _ = self.attend(f_ap.unsqueeze(1), tokens, tokens, need_weights=False)
        return f_ap, self.project(guided.squeeze(1))


class MNFCSCObjective(nn.Module):
    """L_a (MNF side, on detached student features) and L_csc (student side) per step."""

    def __init__(self, opts: MNFCSCOptions, ctx: ObjectiveContext) -> None:
        super().__init__()
        self.opts = opts
        self.token_tap = "spatial" if "spatial" in ctx.student_shapes else "tokens"
        d = ctx.student_shapes["feature"][-1]
        if d % opts.heads:
            raise ValueError(f"student feature width {d} is not divisible by heads={opts.heads}")
        self.mnf = MNF(ctx.teacher_shapes["feature"][-1], d, ctx.model.num_classes, opts.heads)

    def forward(self, batch, student_out, teacher_out) -> dict[str, torch.Tensor]:
        o = self.opts
        f_v = student_out["feature"].float()
        tokens = _tokens(student_out[self.token_tap]).float()
        f_a = self.mnf.adapt(teacher_out["feature"].float())
        y, mask = batch["label"], batch["label_mask"]
        # L_a: the MNF modules' objective; detached student features, as the code zeroes the
        # student's gradients of L_a before the student's own backward
        f_ap_a, f_g_a = self.mnf(f_a, f_v.detach(), tokens.detach(), o.noise_filter)
        ce = F.cross_entropy(self.mnf.classify(f_g_a), y, reduction="none")
        terms = {"mnf_ce": (ce * mask).sum() / mask.sum().clamp(min=1)}
        if o.noise_filter:
            terms["triplet"] = cosine_triplet(f_v.detach(), f_ap_a, f_a, o.margin)
            layers = [self.mnf.select[3]] + ([self.mnf.select[0]] if o.l1_both else [])
            terms["l1"] = o.l1_weight * sum(lin.weight.abs().sum(1).mean() for lin in layers)
        # L_csc: reaches the student directly and the MNF modules through f_v^g
        f_ap, f_g = self.mnf(f_a, f_v, tokens, o.noise_filter)
        terms["csc"] = o.csc_weight * csc_loss(f_v, f_g, f_ap, y, mask, o.tau0, o.min_tau)
        return terms


@hookimpl
def xbench_register_methods(register):
    register(MethodSpec(
        name="mnf-csc",
        description="Xia et al. 2023: CE + audio noise filter + contrastive semantic calibration",
        terms=lambda opts: [LossTerm("task")],
        options=MNFCSCOptions,
        teacher="default",
        objective=MNFCSCObjective,
        teacher_taps=("feature",),
        lr_multipliers={"mnf": 0.2},
        tasks=("recognition", "retrieval", "audio-tagging"),
        regularizers=("l1",),  # the L1 on the feature-selection layer's weights
        search={"csc_weight": LogUniform(0.1, 10.0), "tau0": LogUniform(0.03, 0.3), "margin": Uniform(0.05, 0.5)},
    ))
