"""The contracts of the objects plugins hand the harness (part of the public API).

A spec (``xbench.specs``) holds a factory; what the factory builds must satisfy one of these
protocols. The harness calls nothing else on it: an object that provides these members works, and
``xbench check --plugin NAME`` checks that it does (members present, frames of one size and dtype,
a manifest hash that follows the labels and the files, disjoint splits).

Optional capabilities are protocols too: the harness uses one only where the object has it (a
teacher with ``mlm_loss`` gets masked-LM pretraining; a student with ``pretrain_logits`` gets the
encoder-pretraining stage of tasks that have it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from xbench.data.examples import Examples
from xbench.data.io import Segment, VideoRecord

__all__ = [
    "Dataset",
    "Examples",
    "MaskedLM",
    "Objective",
    "Pretrainable",
    "Segment",
    "SharedTrunk",
    "Task",
    "VideoRecord",
    "members",
    "missing_members",
    "teacher_is_train",
]


@runtime_checkable
class Dataset(Protocol):
    """What ``DatasetSpec.factory(options, root)`` returns: annotated videos per split and their
    modalities as arrays.

    - ``num_classes``: the number of action classes; labels are 0 .. num_classes - 1.
    - ``class_names``: one name per class.
    - ``splits``: the splits it has. ``train``, ``val`` and ``test`` are required; ``teacher``
      (videos a privileged teacher trains on: disjoint from ``train``, or exactly ``train`` where
      the teacher trains on the student's data, as the papers' teachers do) is needed by methods
      that train a teacher.
    - ``videos(split)``: the split's videos (``VideoRecord``: id, frame count, fps, files by
      modality, annotated ``Segment`` steps with label, verb, noun, sentence, frame range).
    - ``read(video, modality)``: one modality of one video as an array: ``rgb`` uint8
      (frames, height, width, 3), every video of a dataset the same height and width; ``audio``
      float32 mono samples at the dataset's audio rate; ``flow`` (frames, 2, h, w); ``pose``
      (frames, keypoints, 3).
    - ``manifest_hash()``: a content hash of everything the examples depend on (files and
      annotations): it must change when a label or a file changes, since cached teachers and
      decoded frames are keyed by it.

    Optional, for datasets of real video whose splits do not fit in memory (``folder`` and
    ``list`` have them, and a dataset built on ``xbench.data.real.ClipDataset`` inherits them):
    ``clips(videos, spans, frames, train, seed, frame_map=None)`` returns the lazy ``rgb`` column
    (``xbench.data.clips.Clips``) the built-in tasks then use instead of ``read``;
    ``clip_frames`` (frames per clip), ``audio_samples`` (samples of audio per clip) and
    ``has_audio(video)`` go with it. ``teacher_folds`` (K > 0 under a "crossfit:K" teacher
    protocol): ``videos("fold:k")`` are train's k-th fold, ``videos("teacher:k")`` train without
    it, and ``videos("train")`` lists the folds in order, so a task cutting examples video by
    video makes fold k's examples the k-th block of train's; teacher k trains on the others and
    gives fold k's soft targets.
    """

    num_classes: int
    class_names: Sequence[str]
    splits: tuple[str, ...]

    def videos(self, split: str) -> list[VideoRecord]: ...

    def read(self, video: VideoRecord, modality: str) -> np.ndarray: ...

    def manifest_hash(self) -> str: ...


@runtime_checkable
class Task(Protocol):
    """What ``TaskSpec.factory(options)`` returns: how examples are cut from a dataset and scored.

    - ``examples(dataset, split, modalities, label_fraction, seed)``: the split as ``Examples``
      with the modalities asked for, the task's targets, ``index`` (0 .. n-1) and ``label_mask``
      (which labels the student may use).
    - ``evaluate(outputs, data, final)``: metric name -> value (higher is better for the main
      metric) from the model's taps on ``data``; ``final`` is True for the one test evaluation.
    - ``metrics``, ``main_metric``: the metric names it reports and the one that selects.

    Optional members: ``teacher_metric`` (what the teacher stage selects on), ``teacher_view()``
    (what the teacher stage depends on: tasks with equal views share trained teachers),
    ``eval_taps`` (taps ``evaluate`` reads; default ``("logits",)``), ``gallery_split`` (retrieval:
    the split the queries search, passed as ``gallery=(outputs, data)``), ``extras`` (facts a model
    factory gets as ``ModelContext.extras``: vocabulary, tokenizer, corpus), and
    ``pretrain_examples(dataset, label_fraction, seed)`` for tasks with a pretraining stage.
    """

    metrics: tuple[str, ...]
    main_metric: str

    def examples(self, dataset: Any, split: str, modalities: tuple[str, ...], label_fraction: float = 1.0,
                 seed: int = 0) -> Examples: ...

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples, final: bool = False,
                 **kwargs: Any) -> dict[str, float]: ...


@runtime_checkable
class Objective(Protocol):
    """What ``MethodSpec.objective(options, ObjectiveContext)`` returns: an ``nn.Module`` called
    as ``objective(batch, student_outputs, teacher_outputs)`` -> loss name -> weighted scalar.

    Optional: ``after_step(progress)`` is called after every optimizer step with the stage's
    progress in (0, 1] (EMA teachers); ``uses_student_output = False`` spares the harness the
    student's forward on the batch when no loss term reads it."""

    def __call__(self, batch: dict[str, Any], student: dict[str, torch.Tensor] | None,
                 teacher: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class MaskedLM(Protocol):
    """A text teacher that can be masked-LM pretrained (``teacher.mlm_steps`` > 0)."""

    def mlm_loss(self, text: list[tuple[str, ...]]) -> torch.Tensor: ...


@runtime_checkable
class Pretrainable(Protocol):
    """A student whose clip encoder has the encoder-pretraining stage: logits of single clips."""

    def pretrain_logits(self, rgb: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SharedTrunk(Protocol):
    """A student whose convolutional trunk another modality's encoder may share: ``trunk()``
    returns the trunk module and its input channel count."""

    def trunk(self) -> tuple[torch.nn.Module, int]: ...


def teacher_is_train(dataset: Any) -> bool:
    """Whether the dataset's teacher split is its train split (the teacher trains on the student's
    data, as the papers' teachers do) rather than videos of its own."""
    return "teacher" in dataset.splits and \
        {v.id for v in dataset.videos("teacher")} == {v.id for v in dataset.videos("train")}


def members(protocol: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A protocol's required attributes and methods, read from the protocol itself."""
    methods = tuple(n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_"))
    return tuple(protocol.__annotations__), methods


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (a method must be callable)."""
    attributes, methods = members(protocol)
    return [n for n in attributes if getattr(obj, n, None) is None] + \
        [n for n in methods if not callable(getattr(obj, n, None))]
