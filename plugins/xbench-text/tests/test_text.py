"""The text teachers: tiny-bert's masked-LM objective learns; lm reads a local transformers folder in
its own tokens."""

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


RECIPE = ("Sauté the crème fraîche with jalapeños", "fold in the gruyère")


def _tiny_folder(path):
    """A 2-layer BERT with a 30-word WordPiece vocabulary, saved as transformers saves one."""
    import inspect

    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fold", "in", "with", "saute", "creme", "fraiche",
             "ja", "##la", "##pen", "##os", "gr", "##uy", "##ere", "slide", "red", "ball", "lift", "blue", "a", "b",
             "c", "d", "e", "f"]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:  # transformers 5
        tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    else:
        tokenizer = BertTokenizer(vocab_file=str(path / "vocab.txt"))
    tokenizer.save_pretrained(path)
    torch.manual_seed(4)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False).save_pretrained(path)
    return path


def test_lm_reads_real_recipe_text_in_the_models_own_tokens():
    """The default (MiniLM's files) tokenises accented recipe words into known word pieces, where
    synth's word vocabulary knows none of them; taps: one state per observed step."""
    from xbench_text import LMOptions, LMTeacher

    from xbench.specs import ModelContext

    teacher = LMTeacher(ModelContext(7, {}), LMOptions(max_length=64))
    ids, mask, seps = teacher.encode([RECIPE, RECIPE[::-1]])
    assert teacher.tokenizer.convert_ids_to_tokens(ids[0].tolist()) == [
        "[CLS]", "sa", "##ute", "the", "cr", "##eme", "fra", "##iche", "with", "ja", "##la", "##pen", "##os", "[SEP]",
        "fold", "in", "the", "gr", "##uy", "##ere", "[SEP]"]
    assert int((ids == teacher.tokenizer.unk_token_id).sum()) == 0 and mask.tolist() == [[1] * 21] * 2
    assert all(ids[i, seps[i]].tolist() == [teacher.tokenizer.sep_token_id] * 2 for i in range(2))
    # synth's word tokeniser (tiny-bert's) drops the accented letters and splits the words there
    assert [words(s) for s in RECIPE] == [["saut", "the", "cr", "me", "fra", "che", "with", "jalape", "os"],
                                          ["fold", "in", "the", "gruy", "re"]]
    with torch.no_grad():
        out = teacher.eval()({"text": [RECIPE, RECIPE[::-1]]})
    assert {k: tuple(v.shape) for k, v in out.items()} == {"logits": (2, 7), "feature": (2, 384), "tokens": (2, 2, 384)}
    assert teacher.weights_source["weights"] == "pretrained" and len(teacher.weights_source["sha256"]) == 64


def test_lm_from_a_local_folder_loads_its_weights_and_names_their_hash(tmp_path):
    from xbench_text import LMOptions, LMTeacher

    from xbench.specs import ModelContext

    folder = _tiny_folder(tmp_path / "tiny-bert-wp")
    a = LMTeacher(ModelContext(3, {}), LMOptions(model=str(folder)))
    b = LMTeacher(ModelContext(3, {}), LMOptions(model=str(folder)))
    torch.manual_seed(0)
    c = LMTeacher(ModelContext(3, {}), LMOptions(model=str(folder), pretrained=False))
    emb = "embeddings.word_embeddings.weight"
    assert torch.equal(a.encoder.state_dict()[emb], b.encoder.state_dict()[emb])
    assert not torch.equal(a.encoder.state_dict()[emb], c.encoder.state_dict()[emb])
    assert a.weights_source["sha256"] == c.weights_source["sha256"] and c.weights_source["weights"] == "random init"
    frozen = LMTeacher(ModelContext(3, {}), LMOptions(model=str(folder), freeze=True)).train()
    assert not frozen.encoder.training and frozen.head.training
    assert [n for n, q in frozen.named_parameters() if q.requires_grad] == [
        "head.weight", "head.bias", "mlm_head.weight", "mlm_head.bias"]
    ids, _, _ = a.encode([RECIPE])
    assert a.tokenizer.convert_ids_to_tokens(ids[0].tolist()) == [
        "[CLS]", "saute", "the", "creme", "fraiche", "with", "ja", "##la", "##pen", "##os", "[SEP]",
        "fold", "in", "the", "gr", "##uy", "##ere", "[SEP]"]
    before = a.weights_source["sha256"]
    (folder / "vocab.txt").write_text((folder / "vocab.txt").read_text() + "g\n")
    assert LMTeacher(ModelContext(3, {}), LMOptions(model=str(folder))).weights_source["sha256"] != before
    # its masked-LM objective learns in the model's own tokens
    opt = torch.optim.AdamW(a.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = a.mlm_loss([RECIPE] * 8)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_lm_teacher_in_a_run_records_its_folder(tmp_path, xbench_registry, xbench_data):
    from xbench.config import RunConfig, load_tiers
    from xbench.run import execute, plan

    folder = _tiny_folder(tmp_path / "tiny-bert-wp")
    cfg = RunConfig(method="lmkd", task="anticipation", budget="smoke", teacher="lm",
                    teacher_options={"model": str(folder), "mlm_steps": 3},
                    budget_options={"student_steps": 2, "teacher_steps": 4, "pretrain_steps": 2, "eval_every": 2})
    rec = execute(plan(xbench_registry, cfg, load_tiers()), 0, device=torch.device("cpu"), data_root=xbench_data)
    assert [(s.stage, s.steps) for s in rec.budget.stages][:2] == [("teacher-pretrain", 3), ("teacher", 4)]
    assert rec.checkpoints["teacher-model"] == {"path": str(folder.resolve()), "sha256": rec.checkpoints[
        "teacher-model"]["sha256"], "weights": "pretrained"}
    assert len(rec.checkpoints["teacher-model"]["sha256"]) == 64 and rec.teacher["name"] == "lm"
