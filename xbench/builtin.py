"""The core's own parts, registered through the ``xbench`` entry point like any plugin:
the ``synth`` dataset, the ``recognition`` task, its student and audio teacher, and the ``ce``
loss every supervised objective uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xbench.hookspecs import hookimpl
from xbench.specs import DatasetSpec, LossSpec, LossTerm, StudentSpec, TaskSpec, TeacherSpec


class MaskedCrossEntropy(nn.Module):
    """Cross-entropy on the examples whose label the student may use (``label_mask``)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), target, reduction="none")
        if mask is None:
            return loss.mean()
        # divide by the count of labelled examples, never by zero (a batch may have none)
        return (loss * mask).sum() / mask.sum().clamp(min=1)


@hookimpl
def xbench_register_datasets(register):
    from xbench.data.synth import SynthDataset, SynthOptions

    register(DatasetSpec(
        name="synth",
        description="Generated multimodal procedures (rgb mp4, wav, flow, pose, text); no download",
        factory=lambda opts, root: SynthDataset(opts, root),
        modalities=SynthDataset.modalities,
        options=SynthOptions,
    ))


@hookimpl
def xbench_register_tasks(register):
    from xbench.tasks import RecognitionOptions, RecognitionTask

    register(TaskSpec(
        name="recognition",
        description="Trimmed step clips -> action class (top-1, top-5, class-mean accuracy)",
        factory=RecognitionTask,
        student="frame-cnn",
        default_teacher="audio-cnn",
        student_modalities=("rgb",),
        main_metric="top1",
        datasets=("synth",),
        options=RecognitionOptions,
        terms=(LossTerm("ce", target="label"),),
        targets=("label",),
    ))


@hookimpl
def xbench_register_students(register):
    from xbench.models import FrameCNNStudent

    register(StudentSpec(
        name="frame-cnn",
        description="Per-frame 2D CNN + temporal convolutions + mean pooling (~0.2M params)",
        factory=FrameCNNStudent,
        modalities=("rgb",),
        taps=("logits", "feature", "tokens", "spatial"),
    ))


@hookimpl
def xbench_register_teachers(register):
    from xbench.models import AudioTeacher

    register(TeacherSpec(
        name="audio-cnn",
        description="2D CNN over the clip's log-mel spectrogram (hears the privileged audio)",
        factory=AudioTeacher,
        modalities=("audio",),
        taps=("logits", "feature"),
    ))


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(
        name="ce",
        description="Cross-entropy on labelled examples (label_mask respected)",
        factory=lambda opts, dims: MaskedCrossEntropy(),
        reads="target",
    ))
