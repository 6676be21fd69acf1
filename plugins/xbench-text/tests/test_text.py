"""The text teachers: tiny-bert's masked-LM objective learns."""

from __future__ import annotations

import torch

from xbench.tasks import words


def test_tiny_bert_mlm_loss_learns():
    from xbench_text import TinyBertOptions, TinyBertTeacher

    from xbench.specs import ModelContext

    torch.manual_seed(0)
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", "slide", "the", "red", "ball", "lift", "blue"]
    teacher = TinyBertTeacher(ModelContext(4, {}, {"vocab": vocab, "tokenize": words}), TinyBertOptions(mask_prob=0.3))
    texts = [("slide the red ball", "lift the blue ball")] * 8
    opt = torch.optim.AdamW(teacher.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = teacher.mlm_loss(texts)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
