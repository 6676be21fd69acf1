"""Tasks shared by the core: examples cut from a dataset's videos, and their metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xbench.data.synth import AUDIO_RATE
from xbench.errors import DataError
from xbench.models import log_mel


@dataclass
class Examples:
    """One split as tensors: modality and target name -> tensor with the examples first."""

    #: tensors, or lists for values that are not tensors (the text of the observed steps)
    tensors: dict[str, Any]
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def take(self, index: torch.Tensor, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        keys = keys or tuple(self.tensors)
        out = {}
        for k in keys:
            v = self.tensors[k]
            out[k] = v[index] if isinstance(v, torch.Tensor) else [v[i] for i in index.tolist()]
        return out


@dataclass(frozen=True)
class RecognitionOptions:
    """Options of the ``recognition`` task."""

    #: frames sampled uniformly from each step (None: the dataset's frames per step)
    frames: int | None = None


def _sample_frames(start: int, end: int, n: int) -> np.ndarray:
    return np.linspace(start, end - 1, n).round().astype(np.int64)


class RecognitionTask:
    """Trimmed step clips -> action class. Metrics: top-1, top-5, class-mean accuracy."""

    targets = ("label",)
    metrics = ("top1", "top5", "class_mean")
    main_metric = "top1"

    def __init__(self, options: RecognitionOptions) -> None:
        self.options = options

    def examples(self, dataset, split: str, modalities: tuple[str, ...], label_fraction: float = 1.0,
                 seed: int = 0) -> Examples:
        """Decode every clip of ``split`` once into memory (uint8 frames), with the modalities
        asked for. ``label_fraction`` < 1 hides the labels of a fixed random subset of the train
        clips from the student's supervised loss (``label_mask``)."""
        videos = dataset.videos(split)
        if not videos:
            raise DataError(f"dataset split '{split}' has no videos")
        per_step = self.options.frames or (videos[0].segments[0].end - videos[0].segments[0].start)
        cols: dict[str, list] = {m: [] for m in modalities}
        labels, relevant = [], []
        for video in videos:
            arrays = {m: dataset.read(video, m) for m in modalities if m != "text"}
            for seg in video.segments:
                idx = _sample_frames(seg.start, seg.end, per_step)
                if "rgb" in arrays:
                    cols["rgb"].append(arrays["rgb"][idx].transpose(0, 3, 1, 2))
                if "flow" in arrays:
                    cols["flow"].append(arrays["flow"][idx])
                if "pose" in arrays:
                    cols["pose"].append(arrays["pose"][idx])
                if "audio" in arrays:
                    spf = int(AUDIO_RATE / video.fps)
                    cols["audio"].append(arrays["audio"][seg.start * spf: seg.end * spf])
                if "text" in cols:
                    cols["text"].append(seg.sentence)
                labels.append(seg.label)
                relevant.append(seg.audio_relevant)
        tensors: dict[str, torch.Tensor] = {}
        for m, values in cols.items():
            if m == "text":
                continue  # text stays a list of strings in meta; text teachers tokenise it
            if m == "audio":
                tensors[m] = log_mel(torch.from_numpy(np.stack(values)), AUDIO_RATE)
            else:
                tensors[m] = torch.from_numpy(np.stack(values))
        n = len(labels)
        tensors["label"] = torch.tensor(labels, dtype=torch.long)
        tensors["audio_relevant"] = torch.tensor(relevant, dtype=torch.bool)
        tensors["index"] = torch.arange(n)
        mask = torch.ones(n, dtype=torch.bool)
        if split == "train" and label_fraction < 1.0:
            g = torch.Generator().manual_seed(seed)
            hidden = torch.randperm(n, generator=g)[: n - round(label_fraction * n)]
            mask[hidden] = False
        tensors["label_mask"] = mask
        return Examples(tensors, meta={"text": cols.get("text")})

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples,
                 final: bool = False) -> dict[str, float]:
        from sklearn.metrics import recall_score, top_k_accuracy_score

        y = data.tensors["label"].numpy()
        scores = outputs["logits"].float().numpy()
        classes = np.arange(scores.shape[1])
        k = min(5, scores.shape[1] - 1)
        return {
            "top1": 100.0 * float((scores.argmax(1) == y).mean()),
            "top5": 100.0 * float(top_k_accuracy_score(y, scores, k=k, labels=classes)),
            # mean over the classes present in the split of their top-1 recall
            "class_mean": 100.0 * float(recall_score(y, scores.argmax(1), labels=np.unique(y),
                                                     average="macro", zero_division=0)),
        }
