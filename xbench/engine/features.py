"""Frozen-feature mode (``--set student.encoder=NAME``, ``--set student.encoder_checkpoint=PATH``).

RULSTM-style anticipation (EPIC-KITCHENS, EGTEA Gaze+) trains its temporal model on features of a
frozen, pretrained backbone, computed once per clip. Here the encoder is any registered student
with a ``feature`` tap that reads the task's student modality (``tsn-resnet50``, ``r2plus1d-18``,
``frame-cnn``, ...), built from its local checkpoint (or randomly initialised, seeded: a
random-feature baseline) and frozen. Every split the run opens has its student clips replaced by
the encoder's features, their leading axes kept (anticipation's observed steps: (M, N, T, 3, H, W)
becomes (M, N, D)), and a student that declares ``takes_encoder`` trains on them; the encoder
pretraining stage is dropped (the frozen encoder is the clip encoder it would train).

The features are the same for every method of a comparison, so they are computed once and cached
(``XBENCH_HOME/cache/features``), keyed by the encoder, its plugin and code, the checkpoint's hash,
the dataset and its options (decode parameters included) and files, the task and its options, the
split, the seed (train clips of real video are cut by it) and the numerical stack. The run records
a ``features`` stage: the clips encoded and the seconds it took, ``source: cache`` where it read
them."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from xbench import __version__
from xbench.cache import FeatureCache, enabled
from xbench.checkpoints import describe, load_checkpoint
from xbench.config import stable_hash, to_plain
from xbench.context import RunContext, Stage
from xbench.data.examples import Examples
from xbench.engine.record import numerics
from xbench.engine.state import RunState, call
from xbench.engine.teacher import code_hash
from xbench.errors import PluginError
from xbench.specs import ModelContext
from xbench.store import xbench_home
from xbench.train import EVAL_BATCH, derive_seed, place


def clip_axes(p: Any) -> int:
    """How many trailing axes of the student's examples make one clip the encoder reads (its
    sample's); the axes before them are kept (anticipation's observed steps)."""
    return len(p.encoder.sample[p.task.student_modalities[0]])


def build_encoder(ctx: RunContext, state: RunState, clip: tuple[int, ...]) -> torch.nn.Module:
    """``student.encoder`` built for clips of shape ``clip``: seeded by the run's seed alone (the same
    network for every method), from ``student.encoder_checkpoint`` where given (recorded as
    ``checkpoints["student-encoder"]``)."""
    p = ctx.plan
    assert p.encoder is not None
    culprit = f"student.encoder '{p.encoder.name}'"
    torch.manual_seed(derive_seed(ctx.seed, "encoder-init"))
    mctx = ModelContext(num_classes=state.dataset.num_classes, shapes={p.task.student_modalities[0]: clip})
    model = call(p.owner("students", p.encoder.name), culprit, p.encoder.factory, mctx)
    ckpt = p.student_setup.encoder_checkpoint
    if ckpt is not None:
        state.checkpoints["student-encoder"] = load_checkpoint(model, ckpt, "student.encoder_checkpoint")
        ctx.log(f"{culprit}: {describe(state.checkpoints['student-encoder'])}")
    else:
        ctx.log(f"{culprit}: randomly initialised (no student.encoder_checkpoint)"
                + ("" if p.student_setup.encoder_trainable else ": random features"))
    return model


class FrozenFeatures:
    """``state.features``: a split's examples with the student's clips encoded by the frozen encoder
    (built on the first split it sees: the clip's shape comes from the data)."""

    def __init__(self, ctx: RunContext, state: RunState) -> None:
        p = ctx.plan
        assert p.encoder is not None
        self.ctx, self.state, self.spec = ctx, state, p.encoder
        self.modality = p.task.student_modalities[0]
        self.rank = clip_axes(p)
        self.model: torch.nn.Module | None = None
        self.key_base: dict[str, Any] = {}
        self.spend = ctx.meter.stage(Stage.FEATURES.value, 0)
        # "computed" once any split is encoded here; "cache" while every one was read back
        self.spend.stopped_by, self.spend.source = "done", "cache"
        self.culprit = f"student.encoder '{p.encoder.name}'"

    def _build(self, clip: tuple[int, ...]) -> torch.nn.Module:
        ctx, state, p = self.ctx, self.state, self.ctx.plan
        model = build_encoder(ctx, state, clip)
        ckpt = p.student_setup.encoder_checkpoint
        model.requires_grad_(False)
        plugin = p.plugins[p.owner("students", self.spec.name)]
        self.key_base = {
            "xbench": __version__, "plugin": [plugin["dist"], plugin["version"]], "encoder": self.spec.name,
            "code": code_hash(model, state.task), "checkpoint": ckpt.sha256 if ckpt else None,
            "dataset": p.dataset_name, "dataset_options": to_plain(p.dataset_options),
            "data": state.dataset.manifest_hash(), "task": p.task.name, "task_options": to_plain(p.task_options),
            "modality": self.modality, "seed": ctx.seed, "numerics": numerics(ctx.device),
        }
        return place(model, ctx.device).eval()

    def __call__(self, examples: Examples, split: str) -> Examples:
        column = examples.tensors.get(self.modality)
        if column is None:  # a split loaded for the teacher's modalities only
            return examples
        shape = tuple(column.shape)
        if len(shape) < 1 + self.rank:
            raise PluginError(f"{self.culprit}: a clip of its {self.modality} input has {self.rank} axes; the "
                              f"task's {self.modality} examples are {shape}")
        lead = shape[1:len(shape) - self.rank]
        if self.model is None:
            self.model = self._build(shape[len(shape) - self.rank:])
        t0 = time.perf_counter()
        cache = (FeatureCache(self.ctx.home or xbench_home(), stable_hash({**self.key_base, "split": split}),
                              self.ctx.log) if enabled("features", self.ctx.plan.tier) else None)
        features = cache.load((shape[0], *lead)) if cache is not None else None
        fresh = features is None
        if features is None:
            features = self._encode(column, lead)
            self.spend.source = "computed"
            if cache is not None:
                cache.save(features)
        self.spend.samples += shape[0] * math.prod(lead)
        self.spend.seconds += time.perf_counter() - t0
        self.ctx.log(f"features ({split}): {shape[0]} x {'x'.join(map(str, lead)) or '1'} clips -> "
                     f"{tuple(features.shape)} ({'computed' if fresh else 'cache'})")
        return Examples({**examples.tensors, self.modality: features}, examples.meta)

    def _encode(self, column: Any, lead: tuple[int, ...]) -> torch.Tensor:
        """The encoder's ``feature`` tap of every clip of ``column``, (M, *lead, D), float32 on the CPU."""
        assert self.model is not None
        n, per_row = len(column), math.prod(lead)
        rows = max(1, EVAL_BATCH.get(self.ctx.device.type, 256) // per_row)
        out = []
        with torch.inference_mode():
            for i in range(0, n, rows):
                x = column[torch.arange(i, min(i + rows, n))]
                flat = x.flatten(0, len(lead)) if lead else x
                taps = call(self.ctx.plan.owner("students", self.spec.name), self.culprit, self.model,
                            {self.modality: flat.to(self.ctx.device)})
                f = taps.get("feature") if isinstance(taps, dict) else None
                if not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) != len(flat):
                    got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                    raise PluginError(f"{self.culprit}: its 'feature' tap is {got}, expected (clips, width)")
                out.append(f.float().cpu().view(len(x), *lead, f.shape[1]))
        return torch.cat(out)

    def finish(self, state: RunState) -> None:
        """Records the stage (after the run's splits are opened)."""
        state.spent.append(self.spend.as_dict())
