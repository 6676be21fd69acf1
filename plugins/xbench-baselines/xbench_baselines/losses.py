"""The generic KD losses of the CRD benchmark (Tian et al. 2020, RepDistiller) and the distribution
alignments, written from the papers' formulas. Each class docstring cites the
paper, states the formula and the paper's default hyperparameters; the registered method of the
same name uses them (``CE + weight * loss``).

Taps. Logit losses read ``logits``; embedding losses read the pooled ``feature`` of student and
teacher; AT and NST read ``tokens`` (B, N, D): per-position features, channels last. Across
modalities the positions both sides share are time steps (frames and audio frames, observed
steps and their sentences, snippets), so AT and NST transfer attention over time rather than
over an image grid: a deviation from the papers' spatial maps, which a cross-modal pair has no
common grid for. Where N differs the longer side is average-pooled to the shorter (as
RepDistiller pools the larger map).

Time steps. On detection taps are sequences (B, S, ...) with a ``positions`` mask of real
snippets: pointwise losses (DKD, VID, cosine) and the distribution alignments (MMD, CORAL) take
every real snippet as a sample; the relational losses (SP, CC, RKD, PKT) and CRD take each
sequence's mean over its real snippets as that example's embedding (their relations are between
examples of a batch); AT and NST zero the padding on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# the multi-kernel MMD and its bandwidths are shared with XKD's modality alignment
from xbench.distributed import gather, offset, world
from xbench.losses import GAMMAS, mmd2  # noqa: F401 - re-exported for this plugin's losses

# ----------------------------------------------------------------------------- shared helpers


def rows(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Samples as rows: (B, D) as is; (B, T, D) -> its real time steps (N, D)."""
    if x.ndim == 2:
        return x.float()
    if positions is not None:
        return x[positions].float()
    return x.flatten(0, -2).float()


def pooled(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """One embedding per example: (B, D) as is; (B, T, D) -> the mean over its real time steps."""
    if x.ndim == 2:
        return x.float()
    if positions is None:
        return x.float().mean(1)
    w = positions.unsqueeze(-1).float()
    return (x.float() * w).sum(1) / w.sum(1).clamp(min=1)


def _masked_tokens(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(B, N, D) tokens with padded positions zeroed (a padded step carries no attention)."""
    x = x.float()
    if positions is not None and positions.shape == x.shape[:2]:
        x = x * positions.unsqueeze(-1)
    return x


def _match_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the position axis (dim 1) of the longer of two (B, N, ...) tensors to the
    length of the shorter."""
    n = min(a.shape[1], b.shape[1])

    def pool(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == n:
            return x
        flat = x.flatten(2).transpose(1, 2)  # (B, rest, N)
        return F.adaptive_avg_pool1d(flat, n).transpose(1, 2).reshape(x.shape[0], n, *x.shape[2:])

    return pool(a), pool(b)


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of x (B, D), zero on the diagonal; the clamp keeps
    the gradient finite where two rows coincide."""
    sq = x.pow(2).sum(1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.t()).clamp(min=eps)
    return d2.sqrt() * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


# ----------------------------------------------------------------------------- logits


@dataclass(frozen=True)
class DKDOptions:
    alpha: float = 1.0
    beta: float = 8.0
    T: float = 4.0

    def __post_init__(self) -> None:
        if self.T <= 0 or self.alpha < 0 or self.beta < 0:
            raise ValueError("need T > 0, alpha >= 0 and beta >= 0")


class DKDLoss(nn.Module):
    """Decoupled KD. Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022,
    arXiv 2203.08679.

    With p = softmax(z / T) and g the ground-truth class: b = (p_g, 1 - p_g) the binary target /
    non-target distribution, p^ = softmax over the non-target classes only;
    TCKD = KL(b_t || b_s), NCKD = KL(p^_t || p^_s),
    L = T^2 (alpha * TCKD + beta * NCKD), mean over the batch. Defaults alpha = 1, beta = 8,
    T = 4 (the paper's CIFAR-100 setting; CE weight 1).

    Targets: class indices (B,) for single-label tasks. An example whose label the student may not
    use takes the teacher's argmax as g (the decomposition needs a target class).
    Multi-label (inferred, no published form): with frame labels (B, L, C) the classes are
    independent Bernoullis sigmoid(z / T) per snippet; TCKD is the binary KL summed over the
    snippet's present classes, NCKD over its absent ones, both divided by the number of classes
    (the mean over classes, as the task's BCE and multi-label KD reduce), (frames are pooled to
    their snippet by max; unlabelled examples use teacher sigmoid >= 0.5), mean over real snippets.
    The paper ramps the DKD weight linearly over its first 20 of 240 epochs; the ``dkd`` method
    does the same over the first 1/12 of the stage's steps (``LossTerm.warmup``, option
    ``warmup``), so this loss itself is unweighted."""

    def __init__(self, opts: DKDOptions) -> None:
        super().__init__()
        self.alpha, self.beta, self.T = opts.alpha, opts.beta, opts.T

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None, *, target: torch.Tensor,
                label_mask: torch.Tensor | None = None) -> torch.Tensor:
        s, t = student.float() / self.T, teacher.float() / self.T
        if target.ndim == student.ndim:  # multi-hot frame labels of a multi-label task
            return self._multilabel(s, t, target, positions, label_mask)
        g = target.long()
        if label_mask is not None:
            g = torch.where(label_mask, g, t.argmax(-1))
        gt = F.one_hot(g, s.shape[-1]).bool()
        p_s, p_t = F.softmax(s, -1), F.softmax(t, -1)
        b_s = torch.stack([p_s[gt], (1 - p_s[gt]).clamp(min=1e-12)], -1)
        b_t = torch.stack([p_t[gt], (1 - p_t[gt]).clamp(min=1e-12)], -1)
        tckd = (b_t * (b_t.clamp(min=1e-12).log() - b_s.clamp(min=1e-12).log())).sum(-1)
        # the target class removed from both distributions (-inf logit: zero probability)
        log_q_s = F.log_softmax(s.masked_fill(gt, -math.inf), -1)
        log_q_t = F.log_softmax(t.masked_fill(gt, -math.inf), -1)
        nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(gt, 0).sum(-1)
        return (self.alpha * tckd + self.beta * nckd).mean() * self.T ** 2

    def _multilabel(self, s, t, target, positions, label_mask) -> torch.Tensor:
        k = target.shape[1] // s.shape[1]  # frames per snippet
        present = target.view(target.shape[0], s.shape[1], k, -1).amax(2) > 0.5
        if label_mask is not None:
            guess = torch.sigmoid(t) >= 0.5
            present = torch.where(label_mask.view(-1, 1, 1), present, guess)
        p_t = torch.sigmoid(t)
        kl = (p_t * (F.logsigmoid(t) - F.logsigmoid(s))
              + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s)))
        per_step = (self.alpha * (kl * present).sum(-1) + self.beta * (kl * ~present).sum(-1)) / kl.shape[-1]
        if positions is not None:
            per_step = per_step[positions]
        return per_step.mean() * self.T ** 2


# ----------------------------------------------------------------------------- attention maps


@dataclass(frozen=True)
class ATOptions:
    p: float = 2.0

    def __post_init__(self) -> None:
        if self.p <= 0:
            raise ValueError("need p > 0")


class ATLoss(nn.Module):
    """Attention transfer. Zagoruyko & Komodakis, "Paying More Attention to Attention",
    ICLR 2017, arXiv 1612.03928.

    Q = normalize(mean_c |A_c|^p) over positions; L = mean over batch and positions of
    (Q_s - Q_t)^2 (the paper's beta/2 * ||Q_s - Q_t||^2 with beta divided by the map size and
    the batch, as the authors' code and RepDistiller compute it). Defaults p = 2, weight
    beta = 1000. Reads ``tokens`` (B, N, D); positions are time steps across modalities (module
    docstring)."""

    def __init__(self, opts: ATOptions) -> None:
        super().__init__()
        self.p = opts.p

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _masked_tokens(student, positions), _masked_tokens(teacher, positions)
        a_s, a_t = _match_length(s.abs().pow(self.p).mean(-1, keepdim=True),
                                 t.abs().pow(self.p).mean(-1, keepdim=True))
        q_s, q_t = F.normalize(a_s.flatten(1), dim=1), F.normalize(a_t.flatten(1), dim=1)
        return (q_s - q_t).pow(2).mean()


class NSTLoss(nn.Module):
    """Neuron selectivity transfer. Huang & Wang, "Like What You Like: Knowledge Distill via
    Neuron Selectivity Transfer", arXiv 1707.01219 (2017).

    Each channel's activations over positions, L2-normalised, is a sample of the layer's
    "selectivity" distribution; L = MMD^2 between the student's and the teacher's channel samples
    with the polynomial kernel k(a, b) = (a . b)^2 (d = 2, c = 0, the paper's best):
    L = mean k(t, t) + mean k(s, s) - 2 mean k(s, t), per example, then the batch mean.
    Default weight 50 (CRD benchmark). Reads ``tokens`` (B, N, D)."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _match_length(_masked_tokens(student, positions), _masked_tokens(teacher, positions))
        s = F.normalize(s.transpose(1, 2), dim=2)  # (B, D_s, N): one row per neuron
        t = F.normalize(t.transpose(1, 2), dim=2)

        def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a @ b.transpose(1, 2)).pow(2).mean()

        return k(t, t) + k(s, s) - 2 * k(s, t)


# ----------------------------------------------------------------------------- relations


class SPLoss(nn.Module):
    """Similarity-preserving KD. Tung & Mori, "Similarity-Preserving Knowledge Distillation",
    ICCV 2019, arXiv 1907.09682.

    G = row-normalise(F F^T) (B x B) of the flattened features; L = ||G_s - G_t||_F^2 / B^2.
    Default weight gamma = 3000. Reads ``feature``."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        # over the global batch: under several processes every rank gathers the others' rows
        s, t = gather(pooled(student, positions)), gather(pooled(teacher, positions))
        g_s, g_t = F.normalize(s @ s.t(), dim=1), F.normalize(t @ t.t(), dim=1)
        return (g_s - g_t).pow(2).sum() / len(s) ** 2


@dataclass(frozen=True)
class CCOptions:
    gamma: float = 0.4
    order: int = 2

    def __post_init__(self) -> None:
        if self.gamma <= 0 or self.order < 0:
            raise ValueError("need gamma > 0 and order >= 0")


class CCLoss(nn.Module):
    """Correlation congruence. Peng et al., "Correlation Congruence for Knowledge Distillation",
    ICCV 2019, arXiv 1904.01802.

    Embeddings L2-normalised; correlation C_ij = k(f_i, f_j) with the Gaussian RBF kernel
    exp(-gamma ||f_i - f_j||^2) = exp(-2 gamma) exp(2 gamma f_i . f_j), its second factor by its
    Taylor series to order P; L = ||C_s - C_t||_F^2 / B^2. Defaults gamma = 0.4, P = 2 (the
    paper's). Weight 50, ours: the CRD benchmark's 0.02 belongs to RepDistiller's own form of CC
    (a product of feature differences on unnormalised embeddings) and made this form's term
    0.01% of cross-entropy; 50 makes it 2-16% of the task loss in the conformance kit's first
    steps on every task (about 20% of CE on recognition at batch 16). Reads ``feature``."""

    def __init__(self, opts: CCOptions) -> None:
        super().__init__()
        self.gamma, self.order = opts.gamma, opts.order

    def correlation(self, f: torch.Tensor) -> torch.Tensor:
        dot = F.normalize(f, dim=1) @ F.normalize(f, dim=1).t()
        series = sum((2 * self.gamma) ** p / math.factorial(p) * dot.pow(p) for p in range(self.order + 1))
        return math.exp(-2 * self.gamma) * series

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        s, t = gather(pooled(student, positions)), gather(pooled(teacher, positions))  # the global batch
        return (self.correlation(s) - self.correlation(t)).pow(2).sum() / len(s) ** 2


@dataclass(frozen=True)
class RKDOptions:
    distance: float = 25.0
    angle: float = 50.0

    def __post_init__(self) -> None:
        if self.distance < 0 or self.angle < 0:
            raise ValueError("need distance >= 0 and angle >= 0")


class RKDLoss(nn.Module):
    """Relational KD. Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
    arXiv 1904.05068.

    Distance: psi_D(i, j) = ||f_i - f_j|| / mu, mu the mean distance over distinct pairs of the
    batch; angle: psi_A(i, j, k) = cos of the angle at j between f_i - f_j and f_k - f_j;
    L = w_D * Huber(psi_D^s, psi_D^t) + w_A * Huber(psi_A^s, psi_A^t) (smooth L1, delta 1),
    each averaged over pairs / triplets. Defaults w_D = 25, w_A = 50 (the paper's), weight 1.
    Reads ``feature``."""

    def __init__(self, opts: RKDOptions) -> None:
        super().__init__()
        self.w_d, self.w_a = opts.distance, opts.angle

    @staticmethod
    def _distance(f: torch.Tensor) -> torch.Tensor:
        d = pairwise_distances(f)
        return d / d[d > 0].mean().clamp(min=1e-12)

    @staticmethod
    def _angle(f: torch.Tensor) -> torch.Tensor:
        e = F.normalize(f.unsqueeze(0) - f.unsqueeze(1), dim=2)  # e[j, i] = unit(f_i - f_j)
        return (e @ e.transpose(1, 2)).flatten()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        s, t = gather(pooled(student, positions)), gather(pooled(teacher, positions))  # the global batch
        loss = s.new_zeros(())
        if self.w_d:
            loss = loss + self.w_d * F.smooth_l1_loss(self._distance(s), self._distance(t).detach())
        if self.w_a:
            loss = loss + self.w_a * F.smooth_l1_loss(self._angle(s), self._angle(t).detach())
        return loss


class PKTLoss(nn.Module):
    """Probabilistic knowledge transfer. Passalis & Tefas, "Learning Deep Representations with
    Probabilistic Knowledge Transfer", ECCV 2018, arXiv 1803.10837.

    K(a, b) = (cos(a, b) + 1) / 2; p_{i|j} = K(f_i, f_j) / sum_k K(f_k, f_j) over the batch;
    L = mean_{i,j} p^t_{i|j} log(p^t_{i|j} / p^s_{i|j}) (eps 1e-7 in both logs). Default weight
    30000 (CRD benchmark). Reads ``feature``."""

    @staticmethod
    def conditional(f: torch.Tensor) -> torch.Tensor:
        f = F.normalize(f, dim=1)
        k = (f @ f.t() + 1) / 2
        return k / k.sum(1, keepdim=True)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        p_s = self.conditional(gather(pooled(student, positions)))  # the global batch
        p_t = self.conditional(gather(pooled(teacher, positions)))
        return (p_t * torch.log((p_t + 1e-7) / (p_s + 1e-7))).mean()


# ----------------------------------------------------------------------------- regressions


@dataclass(frozen=True)
class VIDOptions:
    init_variance: float = 5.0

    def __post_init__(self) -> None:
        if self.init_variance <= 1e-5:
            raise ValueError("need init_variance > 1e-5")


class VIDLoss(nn.Module):
    """Variational information distillation. Ahn, Hu, Damianou, Lawrence & Dai, "Variational
    Information Distillation for Knowledge Transfer", CVPR 2019, arXiv 1904.05835.

    The teacher feature is modelled as a Gaussian with mean mu(f_s) (a learned regressor: three
    linear layers with ReLUs, the 1x1 convolutions of the paper on pooled features) and a learned
    per-channel variance sigma_c^2 = softplus(alpha_c) + eps;
    L = mean_c [ log sigma_c + (t_c - mu_c(s))^2 / (2 sigma_c^2) ] (up to a constant), over
    batch, channels and real time steps. Defaults: initial variance 5, eps 1e-5, weight 1."""

    def __init__(self, opts: VIDOptions, dims: dict[str, int]) -> None:
        super().__init__()
        d_s, d_t = dims["student"], dims["teacher"]
        self.regressor = nn.Sequential(nn.Linear(d_s, d_t), nn.ReLU(), nn.Linear(d_t, d_t), nn.ReLU(),
                                       nn.Linear(d_t, d_t))
        # softplus^-1(init - eps): the variance starts at init_variance
        self.log_scale = nn.Parameter(torch.full((d_t,), math.log(math.expm1(opts.init_variance - 1e-5))))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        s, t = rows(student, positions), rows(teacher, positions)
        var = F.softplus(self.log_scale) + 1e-5
        return (0.5 * ((self.regressor(s) - t).pow(2) / var + var.log())).mean()


class RegressedLoss(nn.Module):
    """A loss between r(f_s), the student's feature through a learned linear map ``regressor`` to
    the teacher's width, and f_t, every real time step a sample (:func:`rows`); subclasses give
    ``compare(x, y)``."""

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        self.regressor = nn.Linear(dims["student"], dims["teacher"])

    def compare(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.compare(self.regressor(rows(student, positions)), rows(teacher, positions))


class CosineLoss(RegressedLoss):
    """Cosine feature distillation: L = mean (1 - cos(r(f_s), f_t)), r a learned linear map to the
    teacher's width, over the batch (and real time steps). Default weight 1 (xbench's; the
    ``lmkd`` paper's unused variant)."""

    def compare(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(x, y, dim=1)).mean()


# ----------------------------------------------------------------------------- distributions


class MMDLoss(RegressedLoss):
    """Multi-kernel MMD alignment (Gretton et al. 2012; Long et al., "Learning Transferable
    Features with Deep Adaptation Networks", ICML 2015, arXiv 1502.02791; XKD's domain alignment).

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y), k = sum_gamma exp(-gamma ||x - y||^2),
    gamma in {1e-3, ..., 1e3}; x = r(f_s) (a learned linear map to the teacher's width), y = f_t,
    biased estimate over the batch (every real time step a sample). Default weight 1."""

    def compare(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mmd2(gather(x), gather(y))  # the global batch


class CORALLoss(RegressedLoss):
    """CORAL alignment. Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain
    Adaptation", ECCV 2016 Workshops, arXiv 1607.01719 (with the mean term as XKD uses it).

    L = mean_d (mu_x - mu_y)_d^2 + ||Sigma_x - Sigma_y||_F^2 / (4 d^2), x = r(f_s) (learned
    linear map to the teacher's width, d), y = f_t, Sigma the unbiased covariance over the batch
    (every real time step a sample). The covariance term is Deep CORAL's, 1/(4 d^2) of the squared
    Frobenius norm (a first version took the mean over d^2 entries: four times that). Default
    weight 1."""

    def compare(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = gather(x), gather(y)  # the global batch
        return (x.mean(0) - y.mean(0)).pow(2).mean() + (_cov(x) - _cov(y)).pow(2).mean() / 4


def _cov(x: torch.Tensor) -> torch.Tensor:
    c = x - x.mean(0, keepdim=True)
    return c.t() @ c / max(len(x) - 1, 1)


# ----------------------------------------------------------------------------- contrastive


@dataclass(frozen=True)
class CRDOptions:
    dim: int = 128
    negatives: int = 16384
    tau: float = 0.07
    momentum: float = 0.5

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.negatives <= 0 or self.tau <= 0 or not 0 <= self.momentum < 1:
            raise ValueError("need dim > 0, negatives > 0, tau > 0 and 0 <= momentum < 1")


class CRDLoss(nn.Module):
    """Contrastive representation distillation. Tian, Krishnan & Isola, "Contrastive
    Representation Distillation", ICLR 2020, arXiv 1910.10699.

    s = normalize(W_s f_s), t = normalize(W_t f_t) in 128-d. Two memory banks (one per side) hold
    an embedding of every train example, updated with momentum 0.5 after each step. For an
    example i, the positive pairs its student embedding with its own teacher entry and K
    negatives with teacher entries of K examples drawn uniformly (with replacement) from the
    train split, and symmetrically. h(s, t) = exp(s.t / tau) / Z, Z = N * mean of the first
    batch's exp scores (fixed after it, as in the paper's code), N = train-split size;
    L = -log[h_pos / (h_pos + K/N)] - sum_neg log[(K/N) / (h_neg + K/N)] (per example, mean over
    the batch), summed over both directions. Defaults 128-d, K = 16384, tau = 0.07, momentum 0.5;
    weight 0.8 (CRD benchmark).

    Deviations: RepDistiller's CIFAR loader draws negatives from other classes; here they are
    drawn from all train examples (the paper's formulation; no label needed). When K + 1 >= N the
    scores against the whole bank are computed once and the K draws gathered from them (the same
    values, less memory traffic than gathering K embeddings per example).

    K is capped at N - 1: the paper's 16384 negatives come from 50,000 (CIFAR) or 1.28 M
    (ImageNet) examples; drawn from fewer than K examples, every one would be a negative several
    times over and the noise ratio K/N above 1 (a first version drew 16384 from 4,192)."""

    def __init__(self, opts: CRDOptions, dims: dict[str, int]) -> None:
        super().__init__()
        self.n = dims["examples"]
        self.k, self.tau, self.momentum = min(opts.negatives, max(1, self.n - 1)), opts.tau, opts.momentum
        self.embed_s = nn.Linear(dims["student"], opts.dim)
        self.embed_t = nn.Linear(dims["teacher"], opts.dim)
        std = 1.0 / math.sqrt(opts.dim / 3)
        self.register_buffer("bank_s", torch.rand(self.n, opts.dim).mul_(2 * std).sub_(std))
        self.register_buffer("bank_t", torch.rand(self.n, opts.dim).mul_(2 * std).sub_(std))
        self.register_buffer("z", torch.full((2,), -1.0))  # normalising constants, set once

    def _scores(self, v: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """exp(bank[idx] . v / tau): (B, K + 1) with the positive in column 0."""
        if self.n <= idx.shape[1]:
            logits = torch.gather(v @ bank.t(), 1, idx)
        else:
            logits = torch.bmm(bank[idx], v.unsqueeze(2)).squeeze(2)
        return torch.exp(logits / self.tau)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                positions: torch.Tensor | None = None, *, index: torch.Tensor) -> torch.Tensor:
        # float: exp(score / 0.07) needs more precision than a bf16 autocast keeps
        s = F.normalize(self.embed_s(pooled(student, positions)).float(), dim=1)
        t = F.normalize(self.embed_t(pooled(teacher, positions)).float(), dim=1)
        b = len(s)
        # the global batch's draws, this rank's rows of them (every rank draws alike)
        neg = torch.randint(0, self.n, (b * world(), self.k), device=s.device)[offset(b): offset(b) + b]
        idx = torch.cat([index.view(-1, 1).to(s.device), neg], dim=1)
        # student vs teacher bank, teacher vs student bank (both directions of the paper)
        out_s, out_t = self._scores(s, self.bank_t, idx), self._scores(t, self.bank_s, idx)
        if self.z[0] < 0:
            with torch.no_grad():  # the global batch's means: every rank keeps the same constants
                self.z.copy_(gather(torch.stack([out_s.mean(), out_t.mean()]).unsqueeze(0)).mean(0) * self.n)
        loss = self._nce(out_s / self.z[0]) + self._nce(out_t / self.z[1])
        with torch.no_grad():  # the banks follow the current embeddings (a moving average)
            # of the global batch: every rank's bank stays the same
            index = gather(index.to(s.device))
            for name, v in (("bank_s", gather(s)), ("bank_t", gather(t))):
                bank = getattr(self, name)
                mixed = F.normalize(bank[index] * self.momentum + v.detach() * (1 - self.momentum), dim=1)
                # out of place: this step's scores still need the bank as it was for backward
                setattr(self, name, bank.index_copy(0, index, mixed))
        return loss

    def _nce(self, h: torch.Tensor) -> torch.Tensor:
        noise = self.k / self.n  # K * P_n with P_n = 1/N
        pos = torch.log(h[:, 0] / (h[:, 0] + noise + 1e-7))
        neg = torch.log(noise / (h[:, 1:] + noise + 1e-7)).sum(1)
        return -(pos + neg).mean()
