"""The one training loop every method and every stage goes through.

The loop owns everything a comparison must hold fixed: the batch order (a seeded permutation that
depends on the run seed and the stage only, never on the method), the optimizer and schedule (from
the budget tier; a method may only scale the learning rate of its own heads), the step budget and
the wall-clock cap, and model selection (on the val split only; test is evaluated once, later)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from xbench.budget import BudgetMeter, StageSpend, peak_memory_mb
from xbench.config import Tier
from xbench.errors import PluginError
from xbench.tasks import Examples


def derive_seed(seed: int, *names: str) -> int:
    """A stable 63-bit seed for one purpose of one run (student init, data order, ...), so that
    e.g. a method building extra heads cannot shift the student's initialisation."""
    import hashlib

    digest = hashlib.sha256(repr((seed, names)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def batch_indices(n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """Endless seeded epochs of full batches (drop_last), so every step has the same shapes.
    With ``world`` > 1 each rank takes every world-th batch of the same permutation."""
    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=g)
        for k, i in enumerate(range(0, n - bs + 1, bs)):
            if k % world == rank:
                yield perm[i: i + bs]


def build_optimizer(groups: list[tuple[list[nn.Parameter], float]], tier: Tier) -> torch.optim.Optimizer:
    cfg = tier.optimizer
    params = [{"params": p, "lr": cfg.lr * mult} for p, mult in groups if p]
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_schedule(opt: torch.optim.Optimizer, tier: Tier, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warm = tier.schedule.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if tier.schedule.name == "constant":
            return 1.0
        progress = (step - warm) / max(steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def place(module: nn.Module, device: torch.device) -> nn.Module:
    """A model on ``device``. On CUDA its convolution weights also go channels-last (NHWC, and
    NDHWC for 3D convolutions), the layout cuDNN's fastest kernels and tensor cores use: a conv
    with a channels-last weight gives channels-last outputs, so the layout carries through the
    network with one conversion of the input. On CPU the model is left exactly as it was."""
    module = module.to(device)
    if device.type == "cuda":
        to_channels_last(module)
    return module


def to_channels_last(module: nn.Module) -> nn.Module:
    """Convert the weights of every 2D and 3D convolution in ``module`` to channels-last, in
    place (``Module.to(memory_format=...)`` cannot: it applies one format to 4D and 5D alike)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            m.to(memory_format=torch.channels_last)
        elif isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
            m.to(memory_format=torch.channels_last_3d)
    return module


def prefetched(batches: Iterator[dict[str, Any]], depth: int = 2) -> Iterator[dict[str, Any]]:
    """``batches`` gathered ``depth`` ahead by one persistent background thread, in order (torch
    releases the GIL while it copies, so gathering and pinning the next batch overlaps the GPU
    running this one). An exception in the thread is raised here; closing the generator stops
    the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():  # a consumer that stopped early never blocks the thread
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer, with its traceback
            put(exc)
            return
        put(done)

    thread = threading.Thread(target=work, name="xbench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def batch_stream(data: Examples, order: Iterator[torch.Tensor], keys: tuple[str, ...],
                 device: torch.device) -> Iterator[dict[str, Any]]:
    """The stage's batches in the seeded order, on ``device``. On CPU each batch is gathered when
    it is needed; on CUDA a background thread gathers it into pinned memory two steps ahead and
    the copy to the GPU does not block."""
    if device.type != "cuda":
        while True:
            yield data.take(next(order), keys)
    for batch in prefetched(_pinned(data.take(idx, keys)) for idx in order):
        yield _copied(batch, device)


def _pinned(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _copied(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to the device; other values (text) stay as they are. On CUDA a batch is copied
    from pinned memory without blocking (a copy from pageable memory would wait for it), so the
    copy overlaps the previous step's kernels; on CPU the batch is returned as it is."""
    if device.type == "cpu":
        return batch
    return _copied(_pinned(batch) if device.type == "cuda" else batch, device)


@dataclass
class Selection:
    """The val-selected state of a stage."""

    step: int
    metric: str
    value: float
    val_metrics: dict[str, float]


def fit(
    *,
    stage: str,
    modules: dict[str, nn.Module],
    groups: list[tuple[list[nn.Parameter], float]],
    step_fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    data: Examples,
    keys: tuple[str, ...],
    tier: Tier,
    max_steps: int,
    seed: int,
    device: torch.device,
    meter: BudgetMeter,
    evaluate: Callable[[], dict[str, float]] | None,
    main_metric: str,
    teacher_forwards_per_step: int = 0,
    progress: bool = False,
    culprit: str = "",
    after_step: Callable[[float], None] | None = None,
) -> tuple[StageSpend, Selection]:
    """Train ``modules`` with ``step_fn`` (a batch -> named loss terms, already weighted) for at
    most ``max_steps`` steps or until the run's wall-clock cap; evaluate on val every
    ``tier.eval_every`` steps and at the end; restore the best val state. With ``evaluate`` None
    (a pretraining stage) nothing is evaluated and the last state is kept. ``after_step`` is
    called after every optimizer step with the stage's progress in (0, 1] (EMA teachers)."""
    from tqdm.auto import tqdm

    spend = meter.stage(stage, max_steps)
    opt = build_optimizer(groups, tier)
    sched = build_schedule(opt, tier, max_steps)
    order = batch_indices(len(data), tier.batch_size, derive_seed(seed, "data", stage))
    batches = batch_stream(data, order, keys, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    best: Selection | None = None
    best_state: dict[str, dict] = {}
    running: dict[str, list[torch.Tensor]] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=max_steps, desc=stage, disable=not progress, leave=False, mininterval=0.5)

    def train_mode() -> None:
        for m in modules.values():
            m.train()

    def one_step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if amp is not None:
            with amp:
                terms = step_fn(batch)
        else:
            terms = step_fn(batch)
        values = iter(terms.values())
        loss = next(values)
        for value in values:  # not sum(): that adds a 0 + tensor op every step
            loss = loss + value
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step((step + 1) / max_steps)
        return terms

    train_mode()
    step = last_eval = 0
    try:
        while step < max_steps:
            if meter.out_of_time():
                spend.stopped_by = "max_seconds"
                break
            batch = next(batches)
            if step == 0:  # count FLOPs once: every step has the same shapes
                with FlopCounterMode(display=False) as counter:
                    terms = one_step(batch)
                spend.flops_per_step = int(counter.get_total_flops())
            else:
                terms = one_step(batch)
            step += 1
            spend.steps = step
            n = len(next(iter(batch.values())))
            spend.samples += n
            spend.teacher_forwards += teacher_forwards_per_step * n
            for name, value in terms.items():  # kept on device: no host sync per step
                running.setdefault(name, []).append(value.detach())
            bar.update(1)
            if evaluate is not None and (step % tier.eval_every == 0 or step == max_steps):
                best = _select(step, evaluate, main_metric, best, best_state, modules, spend, running, culprit)
                last_eval = step
                train_mode()
    finally:
        batches.close()  # stops the prefetching thread on CUDA, also when a step raised
    if spend.stopped_by is None:
        spend.stopped_by = "max_steps"
    if evaluate is not None and step > last_eval:  # stopped by the wall-clock cap between evaluations
        best = _select(step, evaluate, main_metric, best, best_state, modules, spend, running, culprit)
    bar.close()
    if best is None:  # no step fit in the budget: the untrained state is what was selected
        best = Selection(0, main_metric, float("nan"), {})
    for name, state in best_state.items():
        modules[name].load_state_dict(state)
    for m in modules.values():
        m.eval()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    spend.seconds = time.perf_counter() - t0
    spend.flops = spend.flops_per_step * spend.steps
    spend.peak_memory_mb, spend.memory_kind = peak_memory_mb(device)
    return spend, best


def _select(step, evaluate, main_metric, best, best_state, modules, spend, running, culprit):
    # one host sync per evaluation: the accumulated loss terms checked finite together (which
    # one is not is looked up only when one is not)
    if running:
        sums = torch.stack([torch.stack(values).sum().float() for values in running.values()])
        if not bool(torch.isfinite(sums).all()):
            bad = next(name for name, ok in zip(running, torch.isfinite(sums).tolist()) if not ok)
            raise PluginError(f"{culprit}: loss term '{bad}' is not finite at step {step}")
    running.clear()
    metrics = evaluate()
    spend.evaluations += 1
    value = metrics[main_metric]
    if best is None or value > best.value:
        best = Selection(step, main_metric, value, metrics)
        for name, m in modules.items():
            best_state[name] = copy.deepcopy(m.state_dict())
    return best


def frozen_forward(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """A frozen model's taps under inference mode (no graph, no version counters). Inference
    tensors cannot be saved for backward, so the caller gets ordinary copies of the taps, which a
    distillation loss may use freely (taps are small next to the activations this saves)."""
    with torch.inference_mode():
        out = model(inputs)
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def predict(model: nn.Module, data: Examples, keys: tuple[str, ...], device: torch.device,
            taps: tuple[str, ...] = ("logits",), batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The ``taps`` of ``model`` over a split, reading only ``keys`` (the modalities it may see:
    the batch it gets holds nothing else). Forwards run in eval mode under inference mode; the
    concatenation happens outside it, so the result is made of ordinary tensors (a linear probe
    trains on them)."""
    model.eval()
    out: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
    n = len(data)
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            batch = to_device(data.take(torch.arange(i, min(i + batch_size, n)), keys), device)
            result = model(batch)
            for t in taps:
                if t not in result:  # e.g. a teacher has no sentence decoder
                    continue
                value = result[t]
                out[t].append(value.float().cpu() if value.is_floating_point() else value.cpu())
    return {t: torch.cat(v) for t, v in out.items() if v}
