"""The one training loop every method and every stage goes through.

The loop owns everything a comparison must hold fixed: the batch order (a seeded permutation that
depends on the run seed and the stage only, never on the method), the optimizer and schedule (from
the budget tier; a method may only scale the learning rate of its own heads), the step budget and
the wall-clock cap, and model selection (on the val split only; test is evaluated once, later)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from xbench import distributed
from xbench.budget import CurvePoint, StageSpend, peak_memory_mb
from xbench.config import OptimizerConfig, Tier
from xbench.context import RunContext
from xbench.data.examples import Examples
from xbench.errors import CheckpointError, IncompatibleError, PluginError

#: what loading a checkpoint that does not fit the stage's modules or optimizer raises
UNFIT = (RuntimeError, ValueError, KeyError, TypeError, IndexError)


def derive_seed(seed: int, *names: str) -> int:
    """A stable 63-bit seed for one purpose of one run (student init, data order, ...), so that
    e.g. a method building extra heads cannot shift the student's initialisation."""
    import hashlib

    digest = hashlib.sha256(repr((seed, names)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def batch_indices(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless seeded epochs of full batches (drop_last), so every step has the same shapes."""
    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - bs + 1, bs):
            yield perm[i: i + bs]


def share(order: Iterator[torch.Tensor], data: Examples, keys: tuple[str, ...], rank: int,
          world: int) -> Iterator[torch.Tensor]:
    """Rank ``rank``'s share of each batch of ``order`` (the global batch): the r-th of ``world``
    equal slices, so the ranks together train on the single-process batches, step by step. The
    other ranks' rows are counted as drawn (``Examples.skip``), so a column's per-example random
    crops are the single-process ones too."""
    for idx in order:
        local = len(idx) // world
        mine = idx[rank * local: (rank + 1) * local]
        data.skip(torch.cat([idx[: rank * local], idx[(rank + 1) * local:]]), keys)
        yield mine


def build_optimizer(groups: list[tuple[list[nn.Parameter], float]], tier: Tier,
                    cfg: OptimizerConfig | None = None) -> torch.optim.Optimizer:
    """The stage's optimizer: ``cfg`` (the stage's own, with a run's tuned knobs), else the tier's."""
    cfg = cfg or tier.optimizer
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


def set_execution(module: nn.Module, who: str, compile_mode: str | None, activation_checkpointing: bool) -> nn.Module:
    """How ``module`` (``who``: "student 'r3d-18'") executes, set in place: activation
    checkpointing through its library's own switch (transformers' ``gradient_checkpointing_enable``,
    timm's ``set_grad_checkpointing``), then ``torch.compile`` of its forward. ``Module.compile``
    compiles in place, so the state dict keeps the uncompiled names that checkpoints, the selection
    and the caches use."""
    if activation_checkpointing:
        enable_activation_checkpointing(module, who)
    if compile_mode:
        module.compile(mode=None if compile_mode == "default" else compile_mode)
    return module


def enable_activation_checkpointing(module: nn.Module, who: str) -> None:
    """Switch on the activation checkpointing of every transformers or timm network inside
    ``module``; an IncompatibleError where it holds none (a network xbench cannot split into
    checkpointed blocks without changing it)."""
    found = []
    for name, m in module.named_modules():
        if any(name.startswith(f"{f}.") or not f for f in found):
            continue  # inside a network already switched on
        if getattr(m, "supports_gradient_checkpointing", False) and hasattr(m, "gradient_checkpointing_enable"):
            if hasattr(m, "activation_checkpointing_enable"):  # the newer transformers name for it
                m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            found.append(name)
        elif callable(getattr(m, "set_grad_checkpointing", None)) and type(m).__module__.startswith("timm."):
            m.set_grad_checkpointing(True)
            found.append(name)
    if not found:
        raise IncompatibleError(f"{who}: activation_checkpointing needs a transformers or timm network inside "
                                "(videomae-*, ast, wav2vec2-base, hubert-base, tsn-*, tsm-*); this model has none")


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

    def record(self) -> dict[str, Any]:
        """What a run record's ``selection`` says of it."""
        return {"split": "val", "metric": self.metric, "step": self.step, "value": self.value,
                "metrics": self.val_metrics}


@dataclass
class StepSpec:
    """One stage's training, as ``fit`` runs it: the modules it trains and their parameter groups
    (a list of parameters and an lr multiplier each), ``step_fn`` (a batch -> named loss terms,
    already weighted), the data and the keys a batch holds, at most ``max_steps`` steps, and how
    the stage selects: ``evaluate`` on val every ``tier.eval_every`` steps and at the end (None:
    nothing is evaluated and the last state is kept). ``after_step`` is called after every
    optimizer step with the stage's progress in (0, 1] (EMA teachers). ``culprit`` names who a
    non-finite loss is blamed on."""

    stage: str
    modules: dict[str, nn.Module]
    groups: list[tuple[list[nn.Parameter], float]]
    step_fn: Callable[[dict[str, Any]], dict[str, torch.Tensor]]
    data: Any
    keys: tuple[str, ...]
    max_steps: int
    evaluate: Callable[[], dict[str, float]] | None = None
    main_metric: str = "top1"
    teacher_forwards_per_step: int = 0
    culprit: str = ""
    after_step: Callable[[float], None] | None = None
    #: the stage's optimizer settings where they are not the tier's (a method's tuned knobs)
    optimizer: OptimizerConfig | None = None
    #: which of a stage's fits this is where it has several (a crossfit teacher's fold): its
    #: checkpoint's name
    tag: tuple[str, ...] = ()


def fit(spec: StepSpec, ctx: RunContext) -> tuple[StageSpend, Selection]:
    """Train ``spec.modules`` under the run's tier for at most ``spec.max_steps`` steps or until
    the run's wall-clock cap, selecting on val; the best val state is restored and every module
    is left in eval mode. Returns what the stage spent and what it selected."""
    loop = _Loop(spec, ctx)
    try:
        loop.train()
    finally:
        loop.batches.close()  # stops the prefetching thread on CUDA, also when a step raised
    return loop.finish()


class _Loop:
    """The state of one ``fit``: optimizer, schedule, batch stream, meter entry and selection."""

    def __init__(self, spec: StepSpec, ctx: RunContext) -> None:
        self.spec, self.tier, self.device = spec, ctx.tier, ctx.device
        self.meter, self.log = ctx.meter, ctx.log
        self.spend = ctx.meter.stage(spec.stage, spec.max_steps)
        self.clock = ctx.clock
        self.world = distributed.world()
        if self.world > 1:
            self._distribute()
        with self.clock.part("setup"):  # the first optimizer of a process imports torch._dynamo
            self.opt = build_optimizer(spec.groups, self.tier, spec.optimizer)
        self.sched = build_schedule(self.opt, self.tier, spec.max_steps)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else None
        self.best: Selection | None = None
        self.best_state: dict[str, dict] = {}
        self.running: dict[str, list[torch.Tensor]] = {}  # loss terms since the last evaluation
        self.t0 = time.perf_counter()
        self.step = self.last_eval = 0
        # a time-budget tier is never resumed: the clock is its budget, a resumed stage would get more
        self.ckpt = ctx.checkpoints if not self.tier.time_budget else None
        self.ckpt_name = "-".join((spec.stage, *spec.tag))
        if self.ckpt is not None:
            self.restore()
        order = batch_indices(len(spec.data), self.tier.batch_size, derive_seed(ctx.seed, "data", spec.stage))
        for _ in range(self.step):  # the data order (and each example's draws) replayed to the checkpoint
            spec.data.skip(next(order), spec.keys)
        if self.world > 1:
            order = share(order, spec.data, spec.keys, distributed.rank(), self.world)
        self.batches = batch_stream(spec.data, order, spec.keys, self.device)
        self.bar = ctx.reporter.bar(spec.max_steps, spec.stage, initial=self.step)
        # the steps of one-off work: FLOP counting (the first; it runs eagerly) and compiling
        compiled = any(getattr(m, "_compiled_call_impl", None) is not None
                       for module in spec.modules.values() for m in module.modules())
        self.warmup = 2 if compiled else 1
        # under several processes every trained module's gradients are averaged by DDP (built
        # after a restore: its construction hands rank 0's state to every rank)
        self.forward = _ddp(spec, self.device) if self.world > 1 else spec.step_fn

    def _distribute(self) -> None:
        """Under several processes: the global batch must split evenly, and batch norm and
        dropout become the global batch's (statistics over every rank's share; each rank's
        rows of one mask)."""
        bs = min(self.tier.batch_size, len(self.spec.data))
        if bs % self.world:
            raise IncompatibleError(f"{self.spec.culprit or self.spec.stage}: the batch of {bs} does not split over "
                                    f"{self.world} processes (use a process count that divides it)")
        for module in self.spec.modules.values():
            distributed.globalize(module)

    def train_mode(self) -> None:
        for m in self.spec.modules.values():
            m.train()

    def one_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.amp is not None:
            with self.amp:
                terms = self.forward(batch)
        else:
            terms = self.forward(batch)
        values = iter(terms.values())
        loss = next(values)
        for value in values:  # not sum(): that adds a 0 + tensor op every step
            loss = loss + value
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        if self.spec.after_step is not None:
            self.spec.after_step((self.step + 1) / self.spec.max_steps)
        return terms

    def train(self) -> None:
        spec, spend = self.spec, self.spend
        if spec.max_steps == 0 and spec.evaluate is not None:  # a stage of no steps (a pretrained
            self.select()  # teacher used as it is) still says what its state scores on val
        self.train_mode()
        while self.step < spec.max_steps:
            if self._out_of_time():
                # a time-based tier's budget is the clock: it ends the run as max_steps would
                spend.stopped_by = "time_budget" if self.tier.time_budget else "max_seconds"
                break
            batch = next(self.batches)
            t0 = time.perf_counter()
            if self.step == 0:  # count FLOPs once: every step has the same shapes
                with FlopCounterMode(display=False) as counter:
                    terms = self.one_step(batch)
                spend.flops_per_step = int(counter.get_total_flops())
            else:
                terms = self.one_step(batch)
            if self.step < self.warmup:
                self.sync()
                spend.warmup_seconds += time.perf_counter() - t0
                spend.warmup_steps += 1
            self.step += 1
            spend.steps = self.step
            n = len(next(iter(batch.values()))) * self.world  # every rank's share is the same size
            spend.samples += n
            spend.teacher_forwards += spec.teacher_forwards_per_step * n
            for name, value in terms.items():  # kept on device: no host sync per step
                self.running.setdefault(name, []).append(value.detach())
            self.bar.update(1)
            if self.step % self.tier.eval_every == 0 or self.step == spec.max_steps:
                self.select()
                self.train_mode()
            if self.ckpt is not None and (self.step % self.ckpt.interval(self.tier.eval_every) == 0
                                          or self.step == spec.max_steps):
                self.save()
        if self.world > 1 and spend.flops_per_step:  # each rank counted its share of the batch
            spend.flops_per_step = int(distributed.all_sum([spend.flops_per_step])[0])

    def _out_of_time(self) -> bool:
        """Whether the run's clock ran out; under several processes, any rank's (all stop at once)."""
        late = self.meter.out_of_time()
        return bool(distributed.all_max([float(late)])[0]) if self.world > 1 else late

    # -- checkpoints (xbench.resume) ----------------------------------------------------------
    def save(self) -> None:
        """The stage's whole state, as ``restore`` reads it (rank 0's: every rank holds the same)."""
        if not distributed.is_main():
            return
        self.ckpt.save(self.ckpt_name, {
            "step": self.step, "last_eval": self.last_eval, "max_steps": self.spec.max_steps,
            "modules": {n: m.state_dict() for n, m in self.spec.modules.items()},
            "optimizer": self.opt.state_dict(), "schedule": self.sched.state_dict(),
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "running": {k: torch.stack(v) for k, v in self.running.items()},
            "spend": self.spend.as_dict(), "stage_seconds": time.perf_counter() - self.t0,
            "run_seconds": time.perf_counter() - self.meter.started,
            "best": dataclasses.asdict(self.best) if self.best is not None else None,
            "best_state": self.best_state,
        })

    def restore(self) -> None:
        """Continue from the stage's last checkpoint where there is one that fits it."""
        payload = self.ckpt.load(self.ckpt_name)
        if payload is None:
            return
        spec = self.spec
        why = _misfit(payload, spec, self.opt)
        if why is not None:  # nothing is loaded yet: the stage simply starts over
            self.ckpt.discard(self.ckpt_name, f"checkpoint {self.ckpt.path(self.ckpt_name)} does not fit ({why})")
            return
        try:
            for name, module in spec.modules.items():
                module.load_state_dict(payload["modules"][name])
            self.opt.load_state_dict(payload["optimizer"])
            self.sched.load_state_dict(payload["schedule"])
        except UNFIT as exc:
            # the modules may be half loaded: only a new process starts this stage over cleanly
            self.ckpt.discard(self.ckpt_name, f"checkpoint {self.ckpt.path(self.ckpt_name)} does not fit ({exc})")
            raise CheckpointError(f"{spec.culprit or spec.stage}: a checkpoint of stage {self.ckpt_name} did not fit "
                                  f"its modules and was removed; run again") from exc
        torch.set_rng_state(payload["rng"]["cpu"])
        if payload["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
        self.step, self.last_eval = payload["step"], payload["last_eval"]
        self.running = {k: [t.to(self.device) for t in v.unbind()] for k, v in payload["running"].items()}
        saved = StageSpend.from_dict(payload["spend"])
        for f in dataclasses.fields(StageSpend):
            setattr(self.spend, f.name, getattr(saved, f.name))
        self.spend.resumed_at = self.step
        self.t0 = time.perf_counter() - payload["stage_seconds"]
        # the safety net counts the time the run had already spent
        self.meter.started = min(self.meter.started, time.perf_counter() - payload["run_seconds"])
        self.best = Selection(**payload["best"]) if payload["best"] is not None else None
        self.best_state = payload["best_state"]
        self.ckpt.resumed[self.ckpt_name] = self.step
        self.log(f"{self.ckpt_name}: resumed at step {self.step} of {spec.max_steps} from its checkpoint")

    def sync(self) -> None:
        if self.device.type == "cuda":  # the steps queued so far finish inside the interval timed
            torch.cuda.synchronize(self.device)

    def select(self) -> None:
        """An evaluation (the curve's point and the selection), or for a stage that selects
        nothing (self-supervised) the curve's point without a val metric."""
        means = _window(self.step, self.spec, self.running)
        # every rank evaluates rank 0's state: buffers a method did not keep in step (a bank
        # updated with the rank's share only) cannot make the ranks select differently
        distributed.broadcast_buffers(self.spec.modules)
        if self.spec.evaluate is None:
            self.spend.curve.append(CurvePoint(self.step, None, means))
        else:
            self.sync()
            t0 = time.perf_counter()
            with self.clock.part("evaluate"):
                self.best = _select(self.step, self.spec, self.best, self.best_state, self.spend, means)
            self.spend.eval_seconds += time.perf_counter() - t0
        self.last_eval = self.step

    def finish(self) -> tuple[StageSpend, Selection]:
        spec, spend = self.spec, self.spend
        if spend.stopped_by is None:
            spend.stopped_by = "max_steps"
        if self.step > self.last_eval:  # the clock stopped it between evaluations
            self.select()
        self.bar.close()
        best = self.best
        if best is None:  # no step fit in the budget: the untrained state is what was selected
            best = Selection(0, spec.main_metric, float("nan"), {})
        for name, state in self.best_state.items():
            spec.modules[name].load_state_dict(state)
        for m in spec.modules.values():
            m.eval()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        spend.seconds = time.perf_counter() - self.t0
        spend.flops = spend.flops_per_step * spend.steps
        spend.peak_memory_mb, spend.memory_kind = peak_memory_mb(self.device)
        if self.world > 1:  # the run's budget is every rank's: device time summed, the largest peak
            spend.processes = self.world
            spend.device_seconds = distributed.all_sum([spend.seconds])[0]
            spend.peak_memory_mb = distributed.all_max([spend.peak_memory_mb])[0]
        if (rate := spend.throughput()) is not None:
            self.log(f"{spec.stage}: {rate:.1f} samples/s over the steady steps, peak memory "
                     f"{spend.peak_memory_mb:.0f} MiB ({spend.memory_kind})")
        return spend, best


class _Step(nn.Module):
    """A stage's trained modules as one module whose forward is its step (the batch -> the loss
    terms), for DistributedDataParallel to wrap: the step function calls the very modules held
    here, so DDP's gradient hooks see every parameter it uses."""

    def __init__(self, modules: dict[str, nn.Module], step_fn: Callable[[dict[str, Any]], dict[str, torch.Tensor]]):
        super().__init__()
        self.parts = nn.ModuleDict({name.replace(".", "_"): m for name, m in modules.items()})
        self.step_fn = step_fn

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.step_fn(batch)


def _ddp(spec: StepSpec, device: torch.device) -> Callable[[dict[str, Any]], dict[str, torch.Tensor]]:
    """The stage's step under DistributedDataParallel (gradients averaged over the ranks in
    buckets, overlapping the backward), or the step itself where nothing it trains has gradients."""
    from torch.nn.parallel import DistributedDataParallel

    step = _Step(spec.modules, spec.step_fn)
    if not any(p.requires_grad for p in step.parameters()):
        return spec.step_fn
    # a method may leave some of its parameters out of a step (a head a stage does not use);
    # buffers are the method's to keep in step (xbench.distributed.gather), and the loop hands
    # rank 0's to every rank before each evaluation
    import inspect

    # newer torch names the switch forward_sync_buffers (broadcast_buffers warns there)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else "broadcast_buffers")
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True, **{no_sync: False})


def _misfit(payload: dict[str, Any], spec: StepSpec, opt: torch.optim.Optimizer) -> str | None:
    """Why a checkpoint's payload cannot be this stage's state (its budget, its modules' tensors,
    its optimizer's parameter groups), or None where it fits."""
    if payload.get("max_steps") != spec.max_steps or set(payload.get("modules", {})) != set(spec.modules):
        return "another budget or other modules"
    for name, module in spec.modules.items():
        saved, own = payload["modules"][name], module.state_dict()
        if set(saved) != set(own) or any(getattr(saved[k], "shape", None) != getattr(own[k], "shape", None) for k in own):
            return f"module {name} has other tensors"
    groups = payload["optimizer"].get("param_groups", [])
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        return "other parameter groups"
    return None


def _window(step: int, spec: StepSpec, running: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Each loss term's mean over the steps since the last window, checked finite; clears them."""
    means: dict[str, float] = {}
    if running:
        # the one host read per window: each term's sum, checked finite together and kept as its mean
        sums = torch.stack([torch.stack(values).sum().float() for values in running.values()]).tolist()
        if distributed.world() > 1:  # each rank's term is its share's mean: the batch's is their mean
            sums = [total / distributed.world() for total in distributed.all_sum(sums)]
        bad = next((name for name, total in zip(running, sums) if not math.isfinite(total)), None)
        if bad is not None:
            raise PluginError(f"{spec.culprit}: loss term '{bad}' is not finite at step {step}")
        means = {name: total / len(values) for (name, values), total in zip(running.items(), sums)}
    running.clear()
    return means


def _select(step: int, spec: StepSpec, best: Selection | None, best_state: dict[str, dict],
            spend: StageSpend, means: dict[str, float]) -> Selection:
    metrics = spec.evaluate()
    spend.evaluations += 1
    value = metrics[spec.main_metric]
    spend.curve.append(CurvePoint(step, value, means))
    if best is None or value > best.value:
        best = Selection(step, spec.main_metric, value, metrics)
        for name, m in spec.modules.items():
            best_state[name] = copy.deepcopy(m.state_dict())
    return best


def frozen_forward(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """A frozen model's taps under inference mode (no graph, no version counters). Inference
    tensors cannot be saved for backward, so the caller gets ordinary copies of the taps, which a
    distillation loss may use freely (taps are small next to the activations this saves)."""
    with torch.inference_mode():
        out = model(inputs)
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


#: evaluation batch size per device type: on a CPU core small batches keep the activations in
#: cache (the recognition student forwards 1.8x faster at 16 than at 256; benchmarks/perf/run_parts.py)
EVAL_BATCH = {"cpu": 16}


def predict(model: nn.Module, data: Examples, keys: tuple[str, ...], device: torch.device,
            taps: tuple[str, ...] = ("logits",), batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """The ``taps`` of ``model`` over a split, reading only ``keys`` (the modalities it may see:
    the batch it gets holds nothing else). Forwards run in eval mode under inference mode; the
    concatenation happens outside it, so the result is made of ordinary tensors (a linear probe
    trains on them). In eval mode an example's outputs do not depend on the batch it is in, so
    the batch size is the device's fastest (``EVAL_BATCH``) unless given."""
    batch_size = batch_size or EVAL_BATCH.get(device.type, 256)
    model.eval()
    n = len(data)
    # under several processes rank r forwards the batches k with k % world == r, the same
    # batches a single process forms, and every rank gets them all back in order
    starts = list(range(0, n, batch_size))[distributed.rank()::distributed.world()]
    parts: list[dict[str, torch.Tensor]] = []
    with torch.inference_mode():
        for i in starts:
            batch = to_device(data.take(torch.arange(i, min(i + batch_size, n)), keys), device)
            result = model(batch)
            # a tap a model lacks (a teacher has no sentence decoder) is left out
            parts.append({t: result[t].float().cpu() if result[t].is_floating_point() else result[t].cpu()
                          for t in taps if t in result})
    if distributed.world() > 1:
        shares = distributed.gather_objects(parts)
        parts = [shares[k % len(shares)][k // len(shares)] for k in range(sum(map(len, shares)))]
    return {t: torch.cat([p[t] for p in parts]) for t in taps if parts and t in parts[0]}
