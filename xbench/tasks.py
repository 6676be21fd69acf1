"""Tasks shared by the core: examples cut from a dataset's videos, and their metrics."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from xbench.data.examples import Examples
from xbench.errors import DataError
from xbench.preprocess import log_mel


@dataclass(frozen=True)
class RecognitionOptions:
    """Options of the ``recognition`` and ``audio-tagging`` tasks."""

    #: frames sampled uniformly from each step (None: the dataset's frames per step)
    frames: int | None = None
    #: how the student becomes a classifier, the same for every method. "finetune": supervised
    #: methods train it end to end; a self-supervised method's student is fine-tuned with the
    #: task's objective for the tier's ``finetune_steps``. "linear": after the method's training
    #: the student is frozen and a linear classifier on its pooled features is trained for the
    #: tier's ``probe_steps`` on the train split; test top-1 is the probe's.
    protocol: Literal["finetune", "linear"] = "finetune"
    #: a video without audio in a dataset that may have such: "error" where a run reads its audio,
    #: or "skip" it in every run (each method sees the same clips) and count it in the log
    missing_audio: Literal["error", "skip"] = field(default="error", metadata={"omit_default": True})


def label_mask(n: int, split: str, label_fraction: float, seed: int) -> torch.Tensor:
    """Which examples' labels the student may use: all, except on the train split with
    ``label_fraction`` < 1, where a fixed seeded subset is hidden (seen by distillation only)."""
    mask = torch.ones(n, dtype=torch.bool)
    if split == "train" and label_fraction < 1.0:
        g = torch.Generator().manual_seed(seed)
        mask[torch.randperm(n, generator=g)[: n - round(label_fraction * n)]] = False
    return mask


def _sample_frames(start: int, end: int, n: int) -> np.ndarray:
    return np.linspace(start, end - 1, n).round().astype(np.int64)


def mel_shape(dataset: Any) -> tuple[int, int]:
    """The log-mel spectrogram's (bands, frames) a dataset asks for (32 x 32 unless it says)."""
    return getattr(dataset, "mel_bands", 32), getattr(dataset, "mel_frames", 32)


def audio_tensor(windows: list[np.ndarray], dataset: Any) -> torch.Tensor:
    """Audio windows as models read them: (N, 1, mel, time) log-mel spectrograms, or where the
    dataset's ``audio_input`` is "waveform" the (N, S) float waveforms themselves."""
    wave = torch.from_numpy(np.stack(windows))
    if getattr(dataset, "audio_input", "log-mel") == "waveform":
        return wave.float()
    return log_mel(wave, dataset.audio_rate, *mel_shape(dataset))


def _audio_window(audio: np.ndarray, start_frame: int, fps: float, rate: int, length: int) -> np.ndarray:
    """``length`` samples of ``audio`` from the time of frame ``start_frame`` (zero-padded past the
    end of the track)."""
    start = int(start_frame * rate / fps)
    out = audio[start: start + length]
    return out if len(out) == length else np.pad(out, (0, length - len(out)))


def audio_subsets(data: Examples) -> dict[str, np.ndarray]:
    """Masks of the examples whose audio carries the action ("clean_audio") and of those whose
    audio is irrelevant ("noisy_audio"), as unconstrained video has. A real dataset does not know
    which is which: both masks are empty (the metrics are nan, never a guess)."""
    if "audio_relevant" not in data.tensors:
        none = np.zeros(len(data), dtype=bool)
        return {"clean_audio": none, "noisy_audio": none}
    relevant = data.tensors["audio_relevant"].numpy()
    return {"clean_audio": relevant, "noisy_audio": ~relevant}


def top_k_accuracy(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """The share of examples whose label is among the ``k`` highest scores, ties ranked as
    scikit-learn's ``top_k_accuracy_score`` ranks them (a stable ascending sort, reversed: of
    equal scores the higher class index ranks first). Written out: importing scikit-learn's
    metrics costs every run a second or more."""
    top = np.argsort(scores, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def _subset_mean(values: np.ndarray, mask: np.ndarray) -> float:
    return 100.0 * float(values[mask].mean()) if mask.any() else float("nan")


class RecognitionTask:
    """Trimmed step clips -> action class. Metrics: top-1, top-5, class-mean accuracy, and top-1
    on the clips with clean and with irrelevant (noisy) audio separately."""

    targets = ("label",)
    metrics = ("top1", "top5", "class_mean", "top1_clean_audio", "top1_noisy_audio")
    main_metric = "top1"
    teacher_metric = "top1"

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
        if hasattr(dataset, "clips"):  # frames read on demand: the split is never held in memory
            return self._lazy_examples(dataset, split, videos, modalities, label_fraction, seed)
        first = videos[0].segments[0]
        per_step = self.options.frames or (first.end - first.start)
        # one audio window for every clip (the first clip's duration), so videos of other frame
        # rates give windows of one length
        window = int(getattr(dataset, "audio_rate", 0) / videos[0].fps) * (first.end - first.start)
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
                    cols["audio"].append(_audio_window(arrays["audio"], seg.start, video.fps,
                                                       dataset.audio_rate, window))
                if "text" in cols:
                    cols["text"].append(seg.sentence)
                labels.append(seg.label)
                relevant.append(seg.audio_relevant)
        tensors: dict[str, torch.Tensor] = {}
        for m, values in cols.items():
            if m == "text":
                continue  # text stays a list of strings in meta; text teachers tokenise it
            if m == "audio":
                tensors[m] = audio_tensor(values, dataset)
            else:
                tensors[m] = torch.from_numpy(np.stack(values))
        n = len(labels)
        tensors["label"] = torch.tensor(labels, dtype=torch.long)
        tensors["audio_relevant"] = torch.tensor(relevant, dtype=torch.bool)
        tensors["index"] = torch.arange(n)
        tensors["label_mask"] = label_mask(n, split, label_fraction, seed)
        return Examples(tensors, meta={"text": cols.get("text")})

    def _lazy_examples(self, dataset, split: str, videos: list, modalities: tuple[str, ...],
                       label_fraction: float, seed: int) -> Examples:
        """Examples of a dataset with ``clips`` (``xbench.data.real``): the rgb column reads its
        frames on demand (random crops on train, seeded by ``seed``); audio is ``audio_samples``
        of each clip, as log-mel."""
        if self.options.missing_audio == "skip":
            kept = [v for v in videos if dataset.has_audio(v)]
            if len(kept) < len(videos):
                logging.getLogger("xbench.data").info(
                    f"{split}: skipped {len(videos) - len(kept)} of {len(videos)} videos without audio "
                    "(task.missing_audio=skip)")
            videos = kept
        steps = [(i, v, seg) for i, v in enumerate(videos) for seg in v.segments]
        tensors: dict[str, Any] = {}
        if "rgb" in modalities:
            per_step = self.options.frames or dataset.clip_frames
            tensors["rgb"] = dataset.clips(videos, [(i, s.start, s.end) for i, _, s in steps], per_step,
                                           split == "train", seed)
        if "audio" in modalities:
            audio = [dataset.read(v, "audio") for v in videos]
            tensors["audio"] = audio_tensor([audio[i] for i, _, _ in steps], dataset)
        n = len(steps)
        tensors["label"] = torch.tensor([s.label for _, _, s in steps], dtype=torch.long)
        tensors["index"] = torch.arange(n)
        tensors["label_mask"] = label_mask(n, split, label_fraction, seed)
        text = [s.sentence for _, _, s in steps] if "text" in modalities else None
        return Examples(tensors, meta={"text": text})

    def teacher_view(self) -> dict[str, Any]:
        """What the teacher stage reads from this task: the step clips (their frames) and
        selection on val top-1. Recognition and retrieval share it, so they share one trained
        teacher and its cached outputs; the evaluation protocol plays no part."""
        return {"examples": "step-clips", "frames": self.options.frames, "selected_on": self.teacher_metric}

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples,
                 final: bool = False) -> dict[str, float]:
        y = data.tensors["label"].numpy()
        scores = outputs["logits"].float().numpy()
        k = min(5, scores.shape[1] - 1)
        pred = scores.argmax(1)
        hit = pred == y
        subsets = {f"top1_{name}": _subset_mean(hit, mask) for name, mask in audio_subsets(data).items()}
        return {
            "top1": 100.0 * float(hit.mean()),
            **subsets,
            "top5": 100.0 * top_k_accuracy(y, scores, k),
            # mean over the classes present in the split of their top-1 recall
            "class_mean": 100.0 * float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)])),
        }


# ----------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class RetrievalOptions:
    """Options of the ``retrieval`` task."""

    #: frames sampled uniformly from each step (None: the dataset's frames per step)
    frames: int | None = None
    #: mAP is computed over this many top-ranked gallery clips (500 in Xia et al.'s protocol)
    top_k: int = 500
    #: as recognition's: "error", or "skip" videos without audio in every run
    missing_audio: Literal["error", "skip"] = field(default="error", metadata={"omit_default": True})

    def __post_init__(self) -> None:
        if self.top_k < 5:
            raise ValueError("top_k must be >= 5")


class RetrievalTask(RecognitionTask):
    """Clip retrieval by the student's embedding (the protocol of Xia et al. and CCL): every clip
    of the evaluated split queries the train split ranked by cosine similarity of the ``feature``
    tap; a gallery clip of the same class is relevant.

    Metrics: mAP over the top ``top_k`` (AP = mean over the relevant clips retrieved in the top
    k of the precision at their rank; averaged over queries with at least one such clip), recall
    @1 and @5 (a relevant clip among the top k), mAP on the clean- and noisy-audio queries, and
    the classifier's top-1 for reference. The student trains as for recognition."""

    metrics = ("map", "recall1", "recall5", "map_clean_audio", "map_noisy_audio", "top1")
    main_metric = "map"
    # the teacher is a classifier (its soft targets and features are what students learn from),
    # selected as recognition selects it, so both tasks share one trained teacher
    teacher_metric = "top1"
    eval_taps = ("logits", "feature")
    gallery_split = "train"

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples, final: bool = False,
                 gallery: tuple[dict[str, torch.Tensor], Examples] | None = None) -> dict[str, float]:
        if gallery is None:
            raise DataError("retrieval needs a gallery split to search")
        g_out, g_data = gallery
        ap, r1, r5 = retrieval_scores(outputs["feature"], data.tensors["label"], g_out["feature"],
                                      g_data.tensors["label"], self.options.top_k)
        has_hit = ~np.isnan(ap)
        out = {"map": 100.0 * float(ap[has_hit].mean()) if has_hit.any() else float("nan"),
               "recall1": 100.0 * float(r1.mean()), "recall5": 100.0 * float(r5.mean())}
        for name, mask in audio_subsets(data).items():
            out[f"map_{name}"] = 100.0 * float(ap[mask & has_hit].mean()) if (mask & has_hit).any() else float("nan")
        y = data.tensors["label"].numpy()
        out["top1"] = 100.0 * float((outputs["logits"].float().numpy().argmax(1) == y).mean())
        return out


def retrieval_scores(queries: torch.Tensor, q_labels: torch.Tensor, gallery: torch.Tensor,
                     g_labels: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: average precision over the top ``top_k`` by cosine similarity (NaN when none of
    them is relevant), and whether the top 1 / top 5 hold a relevant clip."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    k = min(top_k, len(g))
    # ties are broken by gallery order (topk is not stable across builds; argsort stable is)
    order = torch.argsort(-(q @ g.T), dim=1, stable=True)[:, :k]
    rel = (g_labels[order] == q_labels[:, None]).double()
    hits = rel.cumsum(1)
    precision = hits / torch.arange(1, k + 1, dtype=torch.float64)
    n_hits = rel.sum(1)
    ap = torch.where(n_hits > 0, (precision * rel).sum(1) / n_hits.clamp(min=1), torch.nan)
    return ap.numpy(), rel[:, :1].amax(1).bool().numpy(), rel[:, :5].amax(1).bool().numpy()


# ----------------------------------------------------------------------------- anticipation

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def words(sentence: str) -> list[str]:
    """The tokenisation of sentences for the decoder and the caption metrics: lower case, words
    and digits only (the synthetic sentences have no punctuation that carries meaning)."""
    import re

    return re.findall(r"[a-z0-9]+", sentence.lower())


@dataclass(frozen=True)
class AnticipationOptions:
    """Options of the ``anticipation`` task."""

    #: observed steps before the one to anticipate
    observed: int = 3
    #: frames sampled from each observed step (None: the dataset's frames per step)
    frames: int | None = None
    #: classes with at least this many train examples are "many-shot" (EPIC-KITCHENS' many-shot
    #: recall averages over the frequent classes only)
    many_shot_min: int = 20
    #: tokens of a generated sentence, end token included
    max_tokens: int = 12
    #: METEOR at the final test evaluation (needs java; skipped and recorded so without it)
    meteor: bool = True

    def __post_init__(self) -> None:
        if self.observed < 1 or self.max_tokens < 2:
            raise ValueError("need observed >= 1 and max_tokens >= 2")


class AnticipationTask:
    """From the rgb clips of the last N observed steps of a procedure, predict the next step's
    action class and generate its sentence.

    Metrics: top-1/top-5 accuracy, class-mean recall@1/@5 (over the classes present), many-shot
    class-mean recall@5 (over present classes with >= ``many_shot_min`` train examples), and for
    the generated sentence corpus BLEU-1/BLEU-4, ROUGE-L and CIDEr (pycocoevalcap), plus METEOR
    at the final evaluation where java runs. The main metric, used for val selection, is BLEU-4."""

    metrics = ("top1", "top5", "cm_recall1", "cm_recall5", "many_shot_cm_recall5",
               "bleu1", "bleu4", "rouge_l", "cider")
    main_metric = "bleu4"
    #: teachers predict the next class, not its sentence: their stage selects on this
    teacher_metric = "top1"
    eval_taps = ("logits", "generated")

    def __init__(self, options: AnticipationOptions) -> None:
        self.options = options
        #: the dataset's anticipation protocol (tau_a; ``xbench.data.real.Anticipation``), if any
        self.protocol: Any = None
        self.vocab: list[str] | None = None
        self.train_counts: np.ndarray | None = None
        self.extras: dict[str, Any] = {}

    def _prepare(self, dataset) -> None:
        """Vocabulary and class counts come from the train split's annotations only."""
        if self.vocab is not None:
            return
        train = dataset.videos("train")
        self.protocol = getattr(dataset, "anticipation", None)
        # an untrimmed video's actions overlap: all of them are anticipated at tau_a
        steps = _actions if self.protocol else (lambda v: v.segments)
        found = sorted({w for v in train for s in steps(v) for w in words(s.sentence)})
        self.vocab = [PAD, BOS, EOS, UNK, *found]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        counts = np.zeros(dataset.num_classes, dtype=np.int64)
        n = self.options.observed
        for v in train:  # the anticipated actions: all at tau_a, those after N observed steps else
            for seg in steps(v) if self.protocol else v.segments[n:]:
                counts[seg.label] += 1
        self.train_counts = counts
        self.extras = {"vocab": list(self.vocab), "max_tokens": self.options.max_tokens,
                       "observed": n,
                       # how a sentence becomes the vocabulary's words (a text teacher's tokenizer)
                       "tokenize": words,
                       # the train split's procedures as text: a corpus for text-teacher pretraining
                       "corpus": [tuple(s.sentence for s in steps(v)) for v in train]}

    def encode(self, sentence: str) -> list[int]:
        ids = [self.index.get(w, 3) for w in words(sentence)][: self.options.max_tokens - 1] + [2]
        return ids + [0] * (self.options.max_tokens - len(ids))

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            if i == 2:
                break
            if i > 3:
                out.append(self.vocab[i])
        return " ".join(out)

    def pretrain_examples(self, dataset, label_fraction: float, seed: int) -> Examples:
        """Single step clips of the train split, for the encoder-pretraining stage."""
        return RecognitionTask(RecognitionOptions(self.options.frames)).examples(
            dataset, "train", ("rgb",), label_fraction, seed)

    def examples(self, dataset, split: str, modalities: tuple[str, ...], label_fraction: float = 1.0,
                 seed: int = 0) -> Examples:
        from xbench.errors import IncompatibleError

        unsupported = [m for m in modalities if m not in ("rgb", "text")]
        if unsupported:
            raise IncompatibleError(f"task 'anticipation' provides rgb and text, not {unsupported[0]}")
        self._prepare(dataset)
        if self.protocol is not None:
            return self._horizon_examples(dataset, split, modalities, label_fraction, seed)
        n = self.options.observed
        rgb, text, labels, past, tokens, sentences = [], [], [], [], [], []
        lazy = "rgb" in modalities and hasattr(dataset, "clips")  # real video: frames read on demand
        videos, spans, maps = dataset.videos(split), [], []
        for i, video in enumerate(videos):
            if len(video.segments) <= n:
                continue
            frames = dataset.read(video, "rgb") if "rgb" in modalities and not lazy else None
            segs = video.segments
            per_step = self.options.frames or (dataset.clip_frames if lazy else segs[0].end - segs[0].start)
            for k in range(n, len(segs)):
                observed = segs[k - n: k]
                if lazy:  # the observed steps' frames, read when a batch needs them
                    maps.append(np.stack([_sample_frames(s.start, s.end, per_step) for s in observed]))
                    spans.append((i, observed[0].start, observed[-1].end))
                elif frames is not None:
                    rgb.append(np.stack([frames[_sample_frames(s.start, s.end, per_step)]
                                         .transpose(0, 3, 1, 2) for s in observed]))
                text.append(tuple(s.sentence for s in observed))
                labels.append(segs[k].label)
                past.append([s.label for s in observed])
                tokens.append(self.encode(segs[k].sentence))
                sentences.append(" ".join(words(segs[k].sentence)))
        if not labels:
            raise DataError(f"dataset split '{split}' has no procedure longer than {n} steps")
        column = (dataset.clips(videos, spans, maps[0].shape[1], split == "train", seed, frame_map=maps) if lazy
                  else torch.from_numpy(np.stack(rgb)) if rgb else None)
        return _anticipation_examples(labels, past, tokens, sentences, text if "text" in modalities else None,
                                      column, split, label_fraction, seed)

    def _horizon_examples(self, dataset, split: str, modalities: tuple[str, ...], label_fraction: float,
                          seed: int) -> Examples:
        """Examples of an untrimmed dataset with an anticipation protocol (EPIC-KITCHENS'
        RULSTM splits, EGTEA Gaze+): every action of the split, anticipated from the ``observe``
        seconds of video that end ``horizon`` seconds (tau_a) before it starts, cut into
        ``observed`` stretches of ``frames`` frames each (frames read on demand). The text of an
        example is the sentences of the last ``observed`` actions begun before the observation
        ends (the past labels a language-model teacher reads; "" where the video has fewer);
        ``past_labels`` is the action under each stretch (-100 where there is none)."""
        n, proto = self.options.observed, self.protocol
        if not hasattr(dataset, "clips"):
            raise DataError(f"dataset '{dataset.name}' has an anticipation protocol but no frames read on demand")
        per_step = self.options.frames or dataset.clip_frames
        videos = dataset.videos(split)
        spans, maps, text, labels, past, tokens, sentences = [], [], [], [], [], [], []
        early = 0
        for i, video in enumerate(videos):
            acts = _actions(video)
            for k, act in enumerate(acts):
                end = act.start - round(proto.horizon * video.fps)  # the observation ends here (exclusive)
                if end < 1:  # the action starts within tau_a of the video's start: nothing is observed
                    early += 1
                    continue
                begin = max(0, end - max(1, round(proto.observe * video.fps)))
                frames = np.linspace(begin, end - 1, n * per_step).round().astype(np.int64).reshape(n, per_step)
                spans.append((i, begin, end))
                maps.append(frames)
                history = [b.sentence for b in acts[:k] if b.start < end][-n:]
                text.append(tuple([""] * (n - len(history)) + history))
                past.append([_under(acts[:k], f[0], f[-1] + 1) for f in frames])
                labels.append(act.label)
                tokens.append(self.encode(act.sentence))
                sentences.append(" ".join(words(act.sentence)))
        if early:
            logging.getLogger("xbench.data").info(
                f"{split}: {early} actions start less than tau_a = {proto.horizon} s into their video; not anticipated")
        if not labels:
            raise DataError(f"dataset split '{split}' has no action starting more than {proto.horizon} s into its video")
        rgb = dataset.clips(videos, spans, per_step, split == "train", seed, frame_map=maps) if "rgb" in modalities else None
        return _anticipation_examples(labels, past, tokens, sentences, text if "text" in modalities else None, rgb,
                                      split, label_fraction, seed)

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples,
                 final: bool = False) -> dict[str, float]:
        y = data.tensors["label"].numpy()
        scores = outputs["logits"].float().numpy()
        k5 = min(5, scores.shape[1])
        top5 = np.argsort(-scores, axis=1)[:, :k5]
        hit1 = scores.argmax(1) == y
        hit5 = (top5 == y[:, None]).any(1)
        present = np.unique(y)
        if self.protocol is not None and self.protocol.many_shot is not None:
            # the protocol's many-shot classes present in the split (RULSTM's topk_recall)
            listed = set(self.protocol.many_shot)
            many = [c for c in present if c in listed]
        else:
            many = [c for c in present if self.train_counts[c] >= self.options.many_shot_min]

        def class_mean(hits: np.ndarray, classes) -> float:
            return 100.0 * float(np.mean([hits[y == c].mean() for c in classes])) if len(classes) else float("nan")

        out = {"top1": 100.0 * float(hit1.mean()), "top5": 100.0 * float(hit5.mean()),
               "cm_recall1": class_mean(hit1, present), "cm_recall5": class_mean(hit5, present),
               "many_shot_cm_recall5": class_mean(hit5, many)}
        if "generated" in outputs:  # text teachers predict the class only
            hyps = [self.decode(row.tolist()) for row in outputs["generated"]]
            out.update(caption_metrics(data.meta["sentences"], hyps, meteor=final and self.options.meteor))
        return out


def _anticipation_examples(labels: list[int], past: list[list[int]], tokens: list[list[int]], sentences: list[str],
                           text: list | None, rgb: Any, split: str, label_fraction: float, seed: int) -> Examples:
    """The anticipation columns as ``Examples`` (text and rgb where asked for)."""
    m = len(labels)
    tensors: dict[str, Any] = {
        "label": torch.tensor(labels), "past_labels": torch.tensor(past),
        "next_tokens": torch.tensor(tokens), "index": torch.arange(m),
    }
    if rgb is not None:
        tensors["rgb"] = rgb
    if text is not None:
        tensors["text"] = text
    tensors["label_mask"] = label_mask(m, split, label_fraction, seed)
    return Examples(tensors, meta={"sentences": sentences})


def _actions(video) -> list:
    """A video's annotated actions in order of start: its steps and those overlapping them."""
    return sorted((*video.segments, *video.overlaps), key=lambda s: (s.start, s.end))


def _under(actions: list, first: int, end: int) -> int:
    """The label of the latest-begun of ``actions`` overlapping frames [first, end), -100 if none."""
    over = [a for a in actions if a.start < end and a.end > first]
    return max(over, key=lambda a: a.start).label if over else -100


def caption_metrics(refs: list[str], hyps: list[str], meteor: bool = False) -> dict[str, float]:
    """Corpus BLEU-1/4, ROUGE-L and CIDEr (and METEOR) from pycocoevalcap, x 100. Sentences are
    already tokenised (space-separated words), so the PTB tokenizer (java) is not needed."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [r] for i, r in enumerate(refs)}
    # an empty hypothesis would divide by zero inside ROUGE-L; "<empty>" matches nothing
    res = {i: [h if h else "<empty>"] for i, h in enumerate(hyps)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {"bleu1": 100.0 * float(bleu[0]), "bleu4": 100.0 * float(bleu[3]),
           "rouge_l": 100.0 * float(rouge), "cider": 100.0 * float(cider)}
    if meteor and (scorer := _meteor()) is not None:
        out["meteor"] = 100.0 * float(scorer.compute_score(gts, res)[0])
    return out


@functools.cache
def _meteor() -> Any:
    """One METEOR scorer per process (None without java): a java subprocess that takes seconds to
    load its tables, then scores each call's sentences on their own (as COCO's evaluation reuses
    one); it ends with the process."""
    import shutil

    if not shutil.which("java"):
        return None
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class DetectionOptions:
    """Options of the ``detection`` task."""

    #: frames per snippet: the student scores each snippet, and each frame gets its snippet's score
    snippet: int = 4
    #: frames of each snippet the models see, evenly spaced (None: all); the labels and the
    #: metrics stay per frame. 2 keeps motion visible at half the compute of 4
    sampled: int | None = 2
    #: frames of every sequence (shorter videos are padded, padding is never scored); None: the
    #: longest video of the dataset, rounded up to whole snippets
    length: int | None = None
    #: a predicted event is a run of frames whose class probability is at least this
    event_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.snippet < 1 or (self.length is not None and self.length < self.snippet):
            raise ValueError("need snippet >= 1 and length >= snippet")
        if self.sampled is not None and not 1 <= self.sampled <= self.snippet:
            raise ValueError("sampled must be in 1..snippet")
        if not 0.0 < self.event_threshold < 1.0:
            raise ValueError("event_threshold must be in (0, 1)")


#: temporal IoU thresholds of the event-level mAP
EVENT_IOUS = (0.1, 0.3, 0.5)


class DetectionTask:
    """Temporal action detection in untrimmed sequences (dense, multi-label per frame): the whole
    video as snippets of ``snippet`` frames in, per-snippet class scores out (each frame takes its
    snippet's score). Frames of the procedure's steps carry the step's class, frames of an
    overlapping second actor carry its class too, gaps between steps are background (no class).

    Targets: ``frame_labels`` (L, C): 1 present, 0 absent, -1 padding (never scored); besides,
    ``positions`` (S,) marks the real snippets, for distillation losses over time steps. Metrics:
    per-frame mAP (scikit-learn's average precision per class over all real frames of the split,
    mean over classes with a positive frame; the main metric) and event-level mAP at temporal IoU
    0.1 / 0.3 / 0.5 (events: runs of frames with probability >= ``event_threshold``, scored by their
    mean probability, matched greedily to unmatched ground-truth events of the same class and
    video; AP as the area under the interpolated precision-recall curve, mean over classes with
    ground-truth events)."""

    targets = ("frame_labels",)
    metrics = ("frame_map", "event_map_10", "event_map_30", "event_map_50")
    main_metric = "frame_map"
    teacher_metric = "frame_map"

    def __init__(self, options: DetectionOptions) -> None:
        self.options = options

    def _length(self, dataset) -> int:
        if self.options.length is not None:
            n = self.options.length
        else:
            n = max(v.num_frames for split in ("train", "val", "test") for v in dataset.videos(split))
        return -(-n // self.options.snippet) * self.options.snippet

    def examples(self, dataset, split: str, modalities: tuple[str, ...], label_fraction: float = 1.0,
                 seed: int = 0) -> Examples:
        from xbench.errors import IncompatibleError

        unsupported = [m for m in modalities if m not in ("rgb", "flow", "pose")]
        if unsupported:
            raise IncompatibleError(f"task 'detection' provides rgb, flow and pose, not {unsupported[0]}")
        videos = dataset.videos(split)
        if not videos:
            raise DataError(f"dataset split '{split}' has no videos")
        length, snip = self._length(dataset), self.options.snippet
        pick = _sample_frames(0, snip, self.options.sampled or snip)
        cols: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
        labels = np.full((len(videos), length, dataset.num_classes), -1.0, dtype=np.float32)
        lazy = "rgb" in modalities and hasattr(dataset, "clips")  # frames read on demand, never all held
        maps = []
        for i, video in enumerate(videos):
            n = min(video.num_frames, length)
            labels[i, :n] = 0.0
            for seg in (*video.segments, *video.overlaps):
                labels[i, seg.start: min(seg.end, n), seg.label] = 1.0
            if lazy:  # the frames each snippet reads, -1 past the video's end (padding)
                frames = np.where(np.arange(length) < n, np.arange(length), -1)
                maps.append(frames.reshape(length // snip, snip)[:, pick])
            for m in modalities:
                if m == "rgb" and lazy:
                    continue
                x = dataset.read(video, m)[:n]
                if m == "rgb":
                    x = x.transpose(0, 3, 1, 2)  # (N, 3, H, W)
                pad = np.zeros((length - n, *x.shape[1:]), dtype=x.dtype)
                x = np.concatenate([x, pad])
                cols[m].append(x.reshape(length // snip, snip, *x.shape[1:])[:, pick])
        tensors: dict[str, Any] = {m: torch.from_numpy(np.stack(v)) for m, v in cols.items() if v}
        if lazy:
            tensors["rgb"] = dataset.clips(videos, [(i, 0, v.num_frames) for i, v in enumerate(videos)], snip,
                                           split == "train", seed, frame_map=maps)
        tensors["frame_labels"] = torch.from_numpy(labels)
        # the real snippets of each sequence (a snippet is real when its first frame is)
        tensors["positions"] = torch.from_numpy(labels[:, ::snip, 0] >= 0)
        points = getattr(dataset, "points", None)
        if points:  # the protocol's times j / P of each video's length, as kept frames floor(j n / P)
            tensors["points"] = torch.tensor(np.stack([np.minimum(np.arange(points) * v.num_frames // points,
                                                                  min(v.num_frames, length) - 1) for v in videos]))
        tensors["index"] = torch.arange(len(videos))
        tensors["label_mask"] = label_mask(len(videos), split, label_fraction, seed)
        return Examples(tensors)

    def frame_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-snippet logits (N, S, C) -> per-frame probabilities (N, S * snippet, C)."""
        return torch.sigmoid(logits.float()).repeat_interleave(self.options.snippet, dim=1)

    def evaluate(self, outputs: dict[str, torch.Tensor], data: Examples,
                 final: bool = False) -> dict[str, float]:
        scores = self.frame_scores(outputs["logits"]).numpy()
        labels = data.tensors["frame_labels"].numpy()
        out = {"frame_map": frame_map(scores, labels)}
        if "points" in data.tensors:
            out["point_map"] = point_map(scores, labels, data.tensors["points"].numpy())
        for iou in EVENT_IOUS:
            out[f"event_map_{round(iou * 100)}"] = event_map(scores, labels, iou, self.options.event_threshold)
        return out


def frame_map(scores: np.ndarray, labels: np.ndarray) -> float:
    """Per-frame mAP x 100: per class, scikit-learn's average precision over every real frame
    (label >= 0) of every video; the mean over classes with at least one positive frame."""
    from sklearn.metrics import average_precision_score

    real = labels[..., 0] >= 0
    s, y = scores[real], labels[real]
    aps = [average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    return 100.0 * float(np.mean(aps)) if aps else float("nan")


def point_map(scores: np.ndarray, labels: np.ndarray, points: np.ndarray) -> float:
    """Per-frame mAP x 100 at a localisation protocol's points (Charades_v1_localize: 25 equally
    spaced times per video, t_j = j / 25 of its length): per class, the frames at the points of
    every video ranked by score (ties in video order), AP the mean of the precision at each
    positive (THUMOS's, not interpolated); the mean over classes with a positive point."""
    rows = np.arange(len(points))[:, None]
    s = scores[rows, points].reshape(-1, scores.shape[2])
    y = labels[rows, points].reshape(-1, labels.shape[2]) > 0
    aps = []
    for c in range(y.shape[1]):
        if y[:, c].any():
            hits = y[np.argsort(-s[:, c], kind="stable"), c]
            aps.append(float((np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)).mean()))
    return 100.0 * float(np.mean(aps)) if aps else float("nan")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def event_map(scores: np.ndarray, labels: np.ndarray, iou: float, threshold: float) -> float:
    """Event-level mAP x 100 at temporal IoU ``iou`` (see :class:`DetectionTask`)."""
    aps = []
    for c in range(labels.shape[2]):
        truth = {v: _runs(labels[v, :, c] > 0) for v in range(len(labels))}
        n_truth = sum(len(t) for t in truth.values())
        if not n_truth:
            continue
        preds = []
        for v in range(len(labels)):
            real = labels[v, :, 0] >= 0
            for s, e in _runs((scores[v, :, c] >= threshold) & real):
                preds.append((float(scores[v, s:e, c].mean()), v, s, e))
        preds.sort(key=lambda p: -p[0])
        used = {v: [False] * len(t) for v, t in truth.items()}
        hits = []
        for _, v, s, e in preds:
            best, best_iou = -1, iou
            for k, (ts, te) in enumerate(truth[v]):
                inter = max(0, min(e, te) - max(s, ts))
                union = max(e, te) - min(s, ts)
                if not used[v][k] and inter / union >= best_iou:
                    best, best_iou = k, inter / union
            if best >= 0:
                used[v][best] = True
            hits.append(best >= 0)
        aps.append(_interpolated_ap(np.array(hits, dtype=bool), n_truth))
    return 100.0 * float(np.mean(aps)) if aps else float("nan")


def _interpolated_ap(hits: np.ndarray, n_truth: int) -> float:
    """Area under the precision-recall curve with precision made monotone (VOC/ActivityNet)."""
    if not len(hits):
        return 0.0
    tp = np.cumsum(hits)
    recall = np.concatenate([[0.0], tp / n_truth])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))
