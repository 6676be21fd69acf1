"""The core's own parts, registered through the ``xbench`` entry point like any plugin: the
``synth`` dataset; the tasks (recognition, retrieval, audio-tagging, anticipation, detection);
their students (frame-cnn, mel-cnn, step-avt, snippet-tcn); the privileged teachers that read the
synth modalities (audio, video, flow and pose networks); and the task losses every supervised
objective uses (ce, bce, caption, mse). The text teachers come from the xbench-text plugin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xbench import distributed
from xbench.hookspecs import hookimpl
from xbench.specs import DatasetSpec, LossSpec, LossTerm, StudentSpec, TaskSpec, TeacherSpec


def _masked_mean(per_example: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_example.mean()
    # divide by the count of labelled examples, never by zero (a batch may have none); under
    # several processes by the ranks' mean count, so the ranks' average is the global batch's mean
    return (per_example * mask).sum() / distributed.mean_count(mask.sum()).clamp(min=1)


class MaskedCrossEntropy(nn.Module):
    """Cross-entropy on the examples whose label the student may use (``label_mask``). Logits
    (B, C) with targets (B,), or (B, N, C) with (B, N): the mean over N per example, positions
    whose target is -100 (none: an observed stretch of video with no action) left out."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        loss = F.cross_entropy(logits.float().flatten(0, -2), target.flatten(), reduction="none")
        real = (target != -100).view(target.shape[0], -1)
        per_example = loss.view(target.shape[0], -1).sum(1) / real.sum(1).clamp(min=1)
        return _masked_mean(per_example, mask)


class CaptionLoss(nn.Module):
    """Teacher-forced token cross-entropy of a sentence decoder: the mean over each sentence's
    non-padding tokens (padding id 0), then over labelled examples."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        tok = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none",
                              ignore_index=0).view(target.shape)
        per_sentence = tok.sum(1) / (target != 0).sum(1).clamp(min=1)
        return _masked_mean(per_sentence, mask)


class FrameBCE(nn.Module):
    """Multi-label binary cross-entropy per frame: per-snippet logits (B, S, C) are repeated to the
    frames of their snippet and scored against ``frame_labels`` (B, L, C), skipping padding
    (label -1); the mean over real frames and classes per example, then over labelled examples."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        frames = logits.float().repeat_interleave(target.shape[1] // logits.shape[1], dim=1)
        real = (target >= 0).float()
        loss = F.binary_cross_entropy_with_logits(frames, target.clamp(min=0), reduction="none")
        per_example = (loss * real).flatten(1).sum(1) / real.flatten(1).sum(1).clamp(min=1)
        return _masked_mean(per_example, mask)


class FeatureMSE(nn.Module):
    """Mean squared error between two feature tensors of the student (no labels involved)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.mse_loss(a.float(), b.float())


@hookimpl
def xbench_register_datasets(register):
    from xbench.data.synth import SynthDataset, SynthOptions

    register(DatasetSpec(
        name="synth",
        description="Generated multimodal procedures (rgb mp4, wav, flow, pose, text); no download",
        factory=lambda opts, root: SynthDataset(opts, root),
        modalities=SynthDataset.modalities,
        options=SynthOptions,
        annotations=("steps", "untrimmed", "procedures", "sentences", "verb-noun", "audio_relevant"),
    ))
    from xbench.data import real

    # your own videos: the same reader, splits and manifest; they differ in how clips are listed
    for name, description, factory, options, sample, provides, layout in (
        ("folder", ("Your videos, one sub-folder per class (optionally under train/ val/ test/): "
                    "--set dataset.root=PATH"), real.open_folder, real.FolderOptions, real.sample_folder, ("steps",),
         "ROOT/<class>/<video> or ROOT/{train,val,test}/<class>/<video>"),
        ("list", ("Your videos from a CSV/JSONL list (path, label, optional split, start, end, group, text, "
                  "actions): --set dataset.root=PATH --set dataset.annotations=FILE"),
         real.open_list, real.ListOptions, real.sample_list, ("steps", "untrimmed"),
         "ROOT/<video files>; a CSV or JSONL list: path,label[,split,start,end,group,text,actions]"),
    ):
        register(DatasetSpec(name=name, description=description, factory=factory,
                             modalities=real.ClipDataset.modalities, options=options, annotations=provides,
                             sample=sample, fingerprint=real.fingerprint(factory), layout=layout))
    from xbench.data import official

    # the papers' datasets, read from the annotation files they are distributed with
    for spec in official.SPECS:
        register(DatasetSpec(**{"modalities": real.ClipDataset.modalities, "annotations": ("steps",), **spec},
                             fingerprint=real.fingerprint(spec["factory"], official.PICKS)))


@hookimpl
def xbench_register_tasks(register):
    from xbench.tasks import (
        AnticipationOptions,
        AnticipationTask,
        DetectionOptions,
        DetectionTask,
        RecognitionOptions,
        RecognitionTask,
        RetrievalOptions,
        RetrievalTask,
    )

    register(TaskSpec(
        name="anticipation",
        description="Last N observed steps (rgb) -> next step's class and sentence (BLEU-4, recall@5)",
        factory=AnticipationTask,
        student="step-avt",
        # the default teacher is the text teacher that declares itself anticipation's default
        # (xbench-text's minilm): the core names no teacher only a plugin registers
        student_modalities=("rgb",),
        main_metric="bleu4",
        annotations=("steps", "procedures", "sentences"),
        options=AnticipationOptions,
        # the AVT-style objective every method shares: next class, next sentence, and AVT's
        # auxiliary next-embedding regression (weight 1) and observed-step recognition (0.1)
        terms=(LossTerm("ce", target="label"),
               LossTerm("caption", student="sentence_logits", target="next_tokens"),
               LossTerm("mse", 1.0, student="pred_next", target="student:next_actual"),
               LossTerm("ce", 0.1, student="past_logits", target="past_labels")),
        targets=("label", "next_tokens", "past_labels"),
        pretrain=True,
    ))

    register(TaskSpec(
        name="detection",
        description="Untrimmed sequences -> per-frame multi-label action scores (frame mAP, event mAP)",
        factory=DetectionTask,
        student="snippet-tcn",
        default_teacher="flow-tcn",
        student_modalities=("rgb",),
        main_metric="frame_map",
        options=DetectionOptions,
        annotations=("steps", "untrimmed"),
        terms=(LossTerm("bce", target="frame_labels"),),
        targets=("frame_labels",),
        teacher_terms=(LossTerm("bce", target="frame_labels"),),
        # a second actor overlaps 30% of the steps: frames with two actions
        dataset_defaults={"overlap_rate": 0.3},
        multilabel=True,
    ))

    # trimmed-clip classification tasks: one clip in, its action class out, trained with CE
    clip_tasks = (
        ("recognition", "Trimmed step clips -> action class (top-1, top-5, class-mean accuracy)",
         RecognitionTask, RecognitionOptions, "frame-cnn", "audio-cnn", "rgb", "top1"),
        ("retrieval", "Test clips query the train clips by the student's embedding (mAP@500, R@1/5)",
         RetrievalTask, RetrievalOptions, "frame-cnn", "audio-cnn", "rgb", "map"),
        ("audio-tagging", "Trimmed step clips heard (log-mel) -> action class; the teacher sees the video",
         RecognitionTask, RecognitionOptions, "mel-cnn", "video-cnn", "audio", "top1"),
    )
    for name, description, factory, options, student, teacher, modality, metric in clip_tasks:
        register(TaskSpec(name=name, description=description, factory=factory, student=student,
                          default_teacher=teacher, student_modalities=(modality,), main_metric=metric,
                          options=options,
                          terms=(LossTerm("ce", target="label"),), targets=("label",),
                          # whether the audio teacher's input carries the action (oracle controls);
                          # audio-tagging's teacher sees the video, so it is no teacher fact there
                          privileged=("audio_relevant",) if teacher == "audio-cnn" else ()))


#: the synth benchmark's inputs (8 frames of 32 px, a 32 x 32 log-mel), where list -v shows shapes
SYNTH_SAMPLE = {"rgb": {"rgb": (8, 3, 32, 32)}, "audio": {"audio": (1, 32, 32)}}


@hookimpl
def xbench_register_students(register):
    from xbench.models import FrameCNNStudent, MelCNNStudent, SnippetTCN, StepAVT

    register(StudentSpec(
        name="step-avt",
        description="Clip encoder per observed step + causal transformer + class head + GRU decoder",
        factory=StepAVT,
        modalities=("rgb",),
        taps=("logits", "feature", "tokens", "past_logits", "pred_next", "next_actual",
              "sentence_logits", "generated"),
        train_inputs=("next_tokens",),
        takes_encoder=True,  # --set student.encoder=NAME: frozen features (RULSTM) or trained (AVT-b)
    ))

    register(StudentSpec(
        name="frame-cnn",
        description="Per-frame 2D CNN + temporal convolutions + mean pooling (~0.2M params)",
        factory=FrameCNNStudent,
        modalities=("rgb",),
        taps=("logits", "feature", "tokens", "spatial"),
        sample=SYNTH_SAMPLE["rgb"],
        partners={"audio": "mel-cnn"},  # its audio twin (XKD's other encoder)
    ))

    register(StudentSpec(
        name="snippet-tcn",
        description="Per-frame CNN pooled per snippet + dilated temporal convs, per-snippet scores",
        factory=SnippetTCN,
        modalities=("rgb",),
        taps=("logits", "feature", "snippets", "tokens"),
    ))

    from xbench.backbones import library_models

    # the field's networks (torchvision, timm, transformers, PANNs' CNN14), for any clip task:
    # --student NAME
    for name, description, factory, modalities, taps, sample, partners in library_models():
        register(StudentSpec(name=name, description=description, factory=factory, modalities=modalities, taps=taps,
                             sample=sample, partners=partners))

    register(StudentSpec(
        name="mel-cnn",
        description="2D CNN over the clip's log-mel spectrogram (~0.06M params)",
        factory=MelCNNStudent,
        modalities=("audio",),
        taps=("logits", "feature", "tokens", "spatial"),
        sample=SYNTH_SAMPLE["audio"],
        partners={"rgb": "frame-cnn"},
    ))


@hookimpl
def xbench_register_teachers(register):
    from xbench.models import AudioTeacher, FrameCNNStudent, SnippetTCN

    register(TeacherSpec(
        name="audio-cnn",
        description="2D CNN over the clip's log-mel spectrogram (hears the privileged audio)",
        factory=AudioTeacher,
        modalities=("audio",),
        taps=("logits", "feature", "tokens"),
        sample=SYNTH_SAMPLE["audio"],
    ))

    register(TeacherSpec(
        name="video-cnn",
        description="frame-cnn at 1.5x width over the clip's frames (the teacher of audio-tagging)",
        factory=lambda ctx: FrameCNNStudent(ctx, width=24, dim=96),
        modalities=("rgb",),
        taps=("logits", "feature", "tokens", "spatial"),
        sample=SYNTH_SAMPLE["rgb"],
    ))


    from xbench.backbones import library_models

    # the same networks as teachers (--teacher NAME; a pretrained one from a local checkpoint:
    # --set teacher.checkpoint=PATH --set teacher.train_steps=0)
    for name, description, factory, modalities, taps, sample, _ in library_models():
        register(TeacherSpec(name=name, description=description, factory=factory, modalities=modalities, taps=taps,
                             sample=sample))

    # detection teachers: the student's architecture on privileged modalities
    for name, mods, what in (("flow-tcn", ("flow",), "optical flow"), ("pose-tcn", ("pose",), "pose keypoints"),
                             ("rgb-tcn", ("rgb",), "rgb, the student's own input (a teacher for data without flow)"),
                             ("two-stream-tcn", ("rgb", "flow"), "rgb + optical flow (the two-stream ceiling)"),
                             ("flow-pose-tcn", ("flow", "pose"), "optical flow + pose keypoints")):
        register(TeacherSpec(
            name=name,
            description=f"snippet-tcn on {what}",
            factory=lambda ctx, mods=mods: SnippetTCN(ctx, mods),
            modalities=mods,
            taps=("logits", "feature", "snippets", "tokens"),
        ))


@hookimpl
def xbench_register_losses(register):
    register(LossSpec(
        name="ce",
        description="Cross-entropy on labelled examples (label_mask respected)",
        factory=lambda opts, dims: MaskedCrossEntropy(),
        reads="target",
    ))
    register(LossSpec(
        name="caption",
        description="Teacher-forced token cross-entropy of a sentence decoder",
        factory=lambda opts, dims: CaptionLoss(),
        reads="target",
        example=lambda: (torch.randn(4, 5, 8), torch.tensor([[4, 5, 2, 0, 0]] * 4), None),
    ))
    register(LossSpec(
        name="bce",
        description="Per-frame multi-label binary cross-entropy (detection; padding skipped)",
        factory=lambda opts, dims: FrameBCE(),
        reads="target",
        example=lambda: (torch.randn(4, 2, 8), torch.tensor([[[1.0] * 8] * 4 + [[-1.0] * 8] * 2] * 4), None),
    ))
    register(LossSpec(
        name="mse",
        description="Mean squared error between two student taps (e.g. predicted vs actual embedding)",
        factory=lambda opts, dims: FeatureMSE(),
        reads="target",
        example=lambda: (torch.randn(4, 2, 8), torch.randn(4, 2, 8), None),
    ))
