"""The core's model architectures: the tasks' students (per-frame CNN, log-mel CNN, the AVT-style
anticipation student, the snippet TCN for detection) and the privileged teachers' encoders.

All are small enough to train in seconds on 2 CPU cores; students are identical for every method
of a comparison (the task picks them) and return a dict of named taps that losses read."""

from __future__ import annotations

import torch
from torch import nn

from xbench.errors import IncompatibleError
from xbench.preprocess import rgb_unit
from xbench.specs import ModelContext


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class FrameCNNStudent(nn.Module):
    """Per-frame 2D CNN -> temporal convolutions -> mean over time -> linear classifier.

    Taps: ``logits`` (B, C), ``feature`` (B, D) pooled clip embedding, ``tokens`` (B, T, D) per-frame
    embeddings after temporal mixing, ``spatial`` (B, T, D, h, w) the last convolutional map.
    The temporal convolutions are what let it tell a slide from a lift: pooling frame features
    alone would discard the order of frames."""

    def __init__(self, ctx: ModelContext, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        self.frames = nn.Sequential(_conv(3, width), _conv(width, 2 * width), _conv(2 * width, dim))
        self.temporal = nn.Sequential(
            nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(dim, ctx.num_classes)
        self.dim = dim

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["rgb"]  # (B, T, 3, H, W) uint8, normalised here so callers pass raw frames
        b, t = x.shape[:2]
        x = rgb_unit(x.flatten(0, 1))
        spatial = self.frames(x)  # (B*T, D, h, w)
        frame = spatial.mean(dim=(2, 3)).view(b, t, -1)
        tokens = frame + self.temporal(frame.transpose(1, 2)).transpose(1, 2)
        feature = tokens.mean(dim=1)
        return {"logits": self.head(self.dropout(feature)), "feature": feature, "tokens": tokens,
                "spatial": spatial.view(b, t, *spatial.shape[1:])}

    def trunk(self) -> tuple[nn.Module, int]:
        """The 2D convolutional trunk and its input channels (a modality-agnostic method may run
        another modality through it)."""
        return self.frames, 3


def needs_log_mel(ctx: ModelContext, name: str) -> tuple[int, int]:
    """The (mel, time) size of the data's log-mel audio; an IncompatibleError naming ``name``
    where the dataset gives waveforms instead (``dataset.audio_input=waveform``)."""
    shape = ctx.shapes.get("audio", (1, 32, 32))
    if len(shape) != 3:
        raise IncompatibleError(f"{name} reads a log-mel spectrogram; this data gives waveforms of {shape[-1]} samples "
                                "(dataset.audio_input=waveform: for wav2vec2-base, hubert-base)")
    return shape[-2], shape[-1]


class MelCNNStudent(nn.Module):
    """The ``audio-tagging`` student: a 2D CNN over the log-mel spectrogram, the audio twin of
    ``frame-cnn``. Taps: ``logits``, ``feature`` (B, D), ``tokens`` (B, h*w, D) time-frequency
    cells, ``spatial`` (B, D, h, w)."""

    def __init__(self, ctx: ModelContext, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        needs_log_mel(ctx, "mel-cnn")
        self.body = nn.Sequential(_conv(1, width), _conv(width, 2 * width), _conv(2 * width, dim))
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(dim, ctx.num_classes)
        self.dim = dim

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spatial = self.body(inputs["audio"])
        feature = spatial.mean(dim=(2, 3))
        return {"logits": self.head(self.dropout(feature)), "feature": feature,
                "tokens": spatial.flatten(2).transpose(1, 2), "spatial": spatial}

    def trunk(self) -> tuple[nn.Module, int]:
        return self.body, 1


class AudioTeacher(nn.Module):
    """A 2D CNN over the log-mel spectrogram of a clip's audio. Taps: ``logits``, ``feature``,
    ``tokens`` (B, t, D): the last map averaged over mel bands, one token per time cell (the axis
    an audio clip shares with its video, for losses that compare positions)."""

    def __init__(self, ctx: ModelContext, width: int = 32, dim: int = 96) -> None:
        super().__init__()
        needs_log_mel(ctx, "audio-cnn")
        self.body = nn.Sequential(_conv(1, width), _conv(width, 2 * width), _conv(2 * width, dim))
        self.head = nn.Linear(dim, ctx.num_classes)
        self.dim = dim

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spatial = self.body(inputs["audio"])  # (B, D, mel, time)
        feature = spatial.mean(dim=(2, 3))
        return {"logits": self.head(feature), "feature": feature,
                "tokens": spatial.mean(dim=2).transpose(1, 2)}


class StepAVT(nn.Module):
    """The anticipation student (AVT-style, Girdhar & Grauman 2021, at CPU scale).

    Each observed step's clip goes through the recognition student's clip encoder (``clip``: per-
    frame CNN + temporal convolutions; its classifier is used only by the encoder-pretraining
    stage), the step embeddings through a causal transformer, and the last position predicts the
    next step: its class (``logits``) and its sentence (a GRU decoder, teacher-forced in training,
    greedy at evaluation). AVT's auxiliary outputs: each position recognises its own observed step
    (``past_logits``) and predicts the next step's embedding (``pred_next`` vs ``next_actual``).

    Taps: logits, feature (the context embedding the decoder starts from), tokens (B, N, D),
    past_logits (B, N, C), pred_next / next_actual (B, N-1, D), sentence_logits (training) or
    generated (evaluation) token ids (B, L).

    It takes another clip encoder (``student.encoder``): given each observed step's frozen encoder
    feature (B, N, F) in place of its frames (RULSTM-style), a linear layer maps them to the step
    embeddings; given the encoder itself (``encoder_trainable``: ``ctx.extras["encoder"]``, AVT-b's
    end-to-end ViT), it is the clip encoder, its feature projected to the step embedding where the
    widths differ. The rest is the same."""

    def __init__(self, ctx: ModelContext, dim: int = 64, word_dim: int = 32) -> None:
        super().__init__()
        shape = ctx.shapes.get("rgb", ())
        #: frozen-feature mode: the observed steps' features (N, F), not their frames (N, T, 3, H, W)
        self.reads_features = len(shape) == 2
        encoder = ctx.extras.get("encoder")
        self.clip: nn.Module = (nn.Linear(shape[-1], dim) if self.reads_features
                                else encoder if encoder is not None else FrameCNNStudent(ctx))
        width = getattr(self.clip, "dim", dim)
        self.project: nn.Module = nn.Linear(width, dim) if not self.reads_features and width != dim else nn.Identity()
        n = ctx.extras.get("observed", 3)
        self.position = nn.Parameter(torch.zeros(1, n, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.register_buffer("causal", torch.triu(torch.full((n, n), float("-inf")), diagonal=1),
                             persistent=False)
        self.head = nn.Linear(dim, ctx.num_classes)
        self.past_head = nn.Linear(dim, ctx.num_classes)
        self.predict_next = nn.Linear(dim, dim)
        vocab = len(ctx.extras.get("vocab", ["<pad>", "<bos>", "<eos>", "<unk>"]))
        self.max_tokens = ctx.extras.get("max_tokens", 12)
        self.embed = nn.Embedding(vocab, word_dim, padding_idx=0)
        self.init_state = nn.Linear(dim, dim)
        self.decoder = nn.GRU(word_dim, dim, batch_first=True)
        self.words = nn.Linear(dim, vocab)

    def pretrain_logits(self, rgb: torch.Tensor) -> torch.Tensor:
        """Single step clips (B, T, 3, H, W) -> step classes: the encoder-pretraining objective."""
        return self.clip({"rgb": rgb})["logits"]

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["rgb"]  # (B, N, T, 3, H, W) uint8, or (B, N, F) features
        b, n = x.shape[:2]
        steps = (self.clip(x) if self.reads_features
                 else self.project(self.clip({"rgb": x.flatten(0, 1)})["feature"]).view(b, n, -1))
        h = self.temporal(steps + self.position[:, :n], mask=self.causal[:n, :n], is_causal=True)
        context = h[:, -1]
        out = {"logits": self.head(context), "feature": context, "tokens": h,
               "past_logits": self.past_head(h), "pred_next": self.predict_next(h[:, :-1]),
               "next_actual": steps[:, 1:]}
        state = torch.tanh(self.init_state(context)).unsqueeze(0)
        if "next_tokens" in inputs:  # teacher forcing: <bos> then the target shifted right
            target = inputs["next_tokens"]
            start = torch.full_like(target[:, :1], 1)
            seq, _ = self.decoder(self.embed(torch.cat([start, target[:, :-1]], dim=1)), state)
            out["sentence_logits"] = self.words(seq)
        else:
            out["generated"] = self.generate(state, b)
        return out

    def generate(self, state: torch.Tensor, b: int) -> torch.Tensor:
        token = torch.full((b, 1), 1, dtype=torch.long, device=state.device)
        out = []
        for _ in range(self.max_tokens):
            seq, state = self.decoder(self.embed(token), state)
            token = self.words(seq[:, -1]).argmax(-1, keepdim=True)
            out.append(token)
        return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- detection


class _FrameEncoder(nn.Module):
    """One modality's frames (B, S, K, ...) -> per-snippet features (B, S, D). rgb: uint8
    (3, H, W) and flow: (2, h, w) frames through a small 2D CNN, the K frames of a snippet
    averaged; pose: the keypoints (P, 3: x, y, visible) of all K frames of a snippet together
    through an MLP, as skeleton models read them (joint, bone and motion streams of 2s-AGCN):
    the positions, the joints relative to the root joint (the pose's shape, free of where the
    actor stands) and the joints' motion between the snippet's frames; standardised by a batch
    norm. (Raw positions alone left the pose teacher on the class-prior plateau for the whole
    cpu budget: val frame mAP 13.6; with the three streams 35-37.)"""

    def __init__(self, modality: str, shape: tuple[int, ...], width: int, dim: int) -> None:
        super().__init__()
        self.modality = modality
        if modality == "pose":
            # K frames x P keypoints x (x, y, visible) -> the width of the three streams
            size = _pose_streams(torch.zeros(1, 1, *shape[1:])).shape[-1]
            self.net = nn.Sequential(nn.BatchNorm1d(size), nn.Linear(size, dim), nn.ReLU(inplace=True),
                                     nn.Linear(dim, dim), nn.ReLU(inplace=True))
        else:
            channels = shape[2]
            self.net = nn.Sequential(_conv(channels, width), _conv(width, 2 * width), _conv(2 * width, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, k = x.shape[:3]
        if self.modality == "pose":
            return self.net(_pose_streams(x.float()).flatten(0, 1)).view(b, s, -1)
        frames = x.flatten(0, 2).float()
        if self.modality == "rgb":
            frames = rgb_unit(frames)
        out = self.net(frames).mean(dim=(2, 3))  # pool space
        return out.view(b, s, k, -1).mean(dim=2)


def _pose_streams(x: torch.Tensor) -> torch.Tensor:
    """(B, S, K, P, 3) keypoints -> (B, S, F): positions, joints relative to joint 0 (the root),
    and joint motion between consecutive frames; a joint that is not visible contributes zeros."""
    xy, vis = x[..., :2], x[..., 2:3]
    bones = (xy - xy[..., :1, :]) * vis
    motion = (xy[:, :, 1:] - xy[:, :, :-1]) * vis[:, :, 1:] * vis[:, :, :-1]
    return torch.cat([x.flatten(2), bones.flatten(2), motion.flatten(2)], dim=-1)


class _DilatedResidual(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.mix(torch.relu(self.conv(x))))


class SnippetTCN(nn.Module):
    """The detection model (PDAN / MS-TCN-like at CPU scale): per-snippet features of each input
    modality, concatenated and embedded, then dilated residual temporal convolutions (dilations
    1, 2, 4) and a per-snippet multi-label classifier. The student reads rgb; teachers are the same
    architecture on flow, pose, or rgb + flow (the two-stream ceiling).

    Taps: ``logits`` (B, S, C), ``feature`` (B, S, D) snippet features after the temporal layers
    (the distillation layer), ``snippets`` (B, S, D) the embedded snippet features before them,
    ``tokens``: ``feature`` again under the name position-wise losses read (its positions are the
    snippets)."""

    def __init__(self, ctx: ModelContext, modalities: tuple[str, ...] = ("rgb",), width: int = 16,
                 dim: int = 64) -> None:
        super().__init__()
        self.modalities = modalities
        self.encoders = nn.ModuleDict({m: _FrameEncoder(m, ctx.shapes[m], width, dim) for m in modalities})
        self.embed = nn.Linear(dim * len(modalities), dim)
        self.temporal = nn.Sequential(*(_DilatedResidual(dim, d) for d in (1, 2, 4)))
        self.head = nn.Linear(dim, ctx.num_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        snippets = self.embed(torch.cat([self.encoders[m](inputs[m]) for m in self.modalities], dim=-1))
        feature = self.temporal(snippets.transpose(1, 2)).transpose(1, 2)
        return {"logits": self.head(feature), "feature": feature, "snippets": snippets, "tokens": feature}
