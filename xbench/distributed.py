"""One run over several processes (``torchrun`` or ``xbench run --nproc N``): the process group,
and what a method needs to stay exact under it. Public: plugins may import it.

Under N processes the tier's batch is the *global* batch: each step every rank trains on its
1/N share of the same seeded batch and DistributedDataParallel averages the gradients, so a
loss that is a mean over examples gives the single-process gradient. A term that relates the
examples of a batch to each other (in-batch negatives, a batch mean, an MMD) must see the whole
batch: compute it over ``gather(x)`` (differentiable) on every rank, and it gives the
single-process gradient too. A memory bank or queue is updated with ``gather``-ed rows, so every
rank holds the same bank. With one process every function here is the identity.

Environment: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous variables torchrun sets."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def world() -> int:
    """How many processes the run has (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes (the record, the caches, checkpoints, the log): rank 0."""
    return rank() == 0


def requested() -> int:
    """The world size torchrun set in the environment (1: none)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init(device_type: str, timeout_s: float = 1800.0) -> torch.device | None:
    """Join the process group torchrun's environment describes (gloo on CPU, NCCL on CUDA); the
    rank's CUDA device where there is one. Nothing where the environment asks for one process."""
    if requested() <= 1 or dist.is_initialized():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = None
    if device_type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=dt.timedelta(seconds=timeout_s),
                            device_id=device)
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it generates the data, fills a cache) while the others wait,
    then the others run it (and find what rank 0 wrote)."""
    if world() == 1:
        yield
        return
    if not is_main():
        dist.barrier()
    try:
        yield
    finally:
        if is_main():
            dist.barrier()


def _sizes(x: torch.Tensor) -> list[int]:
    """Every rank's number of rows of ``x``."""
    n = torch.tensor([len(x)], dtype=torch.long, device=x.device)
    parts = [torch.empty_like(n) for _ in range(world())]
    dist.all_gather(parts, n)
    return [int(p) for p in parts]


def _all_gather(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of ``x`` in rank order (ranks may hold different numbers of rows: each is
    padded to the largest for the collective and cut back)."""
    most = max(sizes)
    padded = x.contiguous()
    if len(x) < most:
        padded = torch.cat([padded, padded.new_zeros((most - len(x), *x.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded)
    return torch.cat([p[:k] for p, k in zip(parts, sizes)])


class _Gather(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows, summed over the
    ranks that used them (an all_reduce of the whole gradient: every backend has it)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        sizes = _sizes(x)
        ctx.start, ctx.n = sum(sizes[: rank()]), len(x)
        return _all_gather(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start: ctx.start + ctx.n]


class _AllReduce(torch.autograd.Function):
    """A sum over the ranks whose backward sums the gradients over the ranks (every rank's loss
    depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order: the global batch's rows in the
    single-process order (ranks may hold different numbers of rows). Gradients flow back to
    the rank each row came from, so a loss computed over the gathered batch on every rank gives
    the single-process gradient once DDP averages the ranks'."""
    if world() == 1:
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return _Gather.apply(x)
    return _all_gather(x, _sizes(x))


def offset(local: int) -> int:
    """Where this rank's rows start in a ``gather``-ed batch of ``local`` rows per rank (the
    positive's column of an in-batch contrastive loss)."""
    return rank() * local


def rand_rows(rows: int, *shape: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.rand(rows, *shape)`` for this rank's ``rows`` of the global batch: the global
    batch's draws are made (every rank alike: the same random state) and this rank's rows kept,
    so per-example random choices (masks) are the single-process ones, not copies across ranks."""
    if world() == 1:
        return torch.rand(rows, *shape, device=device)
    return torch.rand(rows * world(), *shape, device=device)[offset(rows): offset(rows) + rows]


def mean(x: torch.Tensor, dim: int = 0, keepdim: bool = False) -> torch.Tensor:
    """The mean over the global batch along ``dim`` (no gradient: a statistic such as a centre)."""
    with torch.no_grad():
        return gather(x.detach()).mean(dim, keepdim=keepdim)


def mean_count(n: torch.Tensor) -> torch.Tensor:
    """A count (labelled examples, real tokens) averaged over the ranks: the denominator of a
    per-rank sum whose average over the ranks (DDP's gradient average) is the global batch's mean
    where the ranks hold different counts. ``n`` itself with one process."""
    if world() == 1:
        return n
    total = n.detach().clone().float()
    dist.all_reduce(total)
    return (total / world()).to(n.dtype) if n.is_floating_point() else total / world()


def all_sum(values: list[float]) -> list[float]:
    """Each value summed over the ranks (budget counts)."""
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def all_max(values: list[float]) -> list[float]:
    """Each value's maximum over the ranks (peak memory; whether any rank's clock ran out)."""
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if world() == 1:
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(modules: dict[str, nn.Module]) -> None:
    """Rank 0's buffers (running statistics, banks) on every rank."""
    if world() == 1:
        return
    for module in modules.values():
        for b in module.buffers():
            dist.broadcast(b.data, 0)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over the global batch: in training, each rank's sums are all-reduced
    (differentiably), so the statistics, the outputs, the gradients and the running statistics
    are the single-process ones. Works on every backend (torch's SyncBatchNorm is CUDA-only, so
    the gloo tests could not use it). Same parameters and buffers as the layer it replaces."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world() == 1 or not self.track_running_stats:
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        # two passes, as batch norm computes them (the mean, then the squared deviations from it)
        total = _AllReduce.apply(torch.cat([xf.sum(dims), count]))
        n = total[-1]
        mu = total[:c] / n
        centred = xf - mu.view(shape)
        var = _AllReduce.apply((centred * centred).sum(dims)) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mu.detach().to(self.running_mean.dtype), alpha=m)
            self.running_var.mul_(1 - m).add_((var.detach() * n / (n - 1)).to(self.running_var.dtype), alpha=m)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class GlobalDropout(nn.Dropout):
    """Dropout whose mask is drawn for the global batch and sliced: every rank draws the same
    (its random state is the same: one seed, the same draws), so each rank's rows get the
    single-process mask's rows and the ranks' masks are not copies of each other. On CPU the
    mask is the one ``nn.Dropout`` draws in one process, bit for bit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or world() == 1 or x.dim() == 0:
            return super().forward(x)
        b = x.shape[0]
        # nn.Dropout fills a mask laid out as its input is (empty_like), in memory order: the
        # global mask gets the input's layout so its rows are the single-process mask's
        layout = sorted(range(x.dim()), key=lambda d: -x.stride(d)) if x.dim() > 1 else [0]
        noise = torch.empty_permuted((b * world(), *x.shape[1:]), layout, dtype=x.dtype,
                                     device=x.device).bernoulli_(1 - self.p)
        noise = noise[rank() * b: (rank() + 1) * b]
        if self.p < 1:
            noise = noise.div_(1 - self.p)
        return x.mul_(noise) if self.inplace else x * noise


#: the layers whose training-time result depends on the whole batch or on the random state, and
#: their global-batch forms
_GLOBAL = {nn.BatchNorm1d: GlobalBatchNorm, nn.BatchNorm2d: GlobalBatchNorm, nn.BatchNorm3d: GlobalBatchNorm,
           nn.Dropout: GlobalDropout}


def globalize(module: nn.Module) -> int:
    """Every batch-norm and dropout layer inside ``module`` made its global-batch form
    (``GlobalBatchNorm``, ``GlobalDropout``), in place: the class is swapped and the parameter
    and buffer objects kept (an optimizer built on them stays valid, state dicts keep their
    names). How many were changed. Dropout a model calls as a function (inside attention) is
    not reached: it draws each rank's mask from the same state."""
    n = 0
    for m in module.modules():
        if type(m) in _GLOBAL:
            m.__class__ = _GLOBAL[type(m)]
            n += 1
    return n
