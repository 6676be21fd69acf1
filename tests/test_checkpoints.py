"""Local checkpoints (--set student.checkpoint=PATH / teacher.checkpoint=PATH): safetensors or
weights-only torch files, unwrapped; missing and unexpected keys listed; a shape mismatch or an
unreadable file is one line naming it; the file's hash enters the config hash and the teacher
cache key; a pretrained teacher skips training (teacher.train_steps=0) and says so."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from xbench.backbones import library_models
from xbench.checkpoints import checkpoint_of, load_checkpoint
from xbench.cli import main
from xbench.errors import ConfigError, DataError
from xbench.specs import ModelContext
from xbench.store import ResultStore

MICRO = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("teacher_steps", 2), ("eval_every", 2),
                                              ("batch_size", 4))]
CTX = ModelContext(num_classes=5, shapes={"rgb": (8, 3, 32, 32)})


def _r2plus1d():
    factory = next(f for name, _, f, *_ in library_models() if name == "r2plus1d-18")
    return factory(CTX)


def test_a_torchvision_checkpoint_loads_into_the_library_network_its_head_listed(tmp_path):
    """torchvision's own r2plus1d_18 state dict (its names, its 400-class fc) loads into the
    student's ``net``; the fc is the one unexpected pair, the task head the one missing pair."""
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(1)
    source = r2plus1d_18(weights=None).state_dict()
    torch.save(source, tmp_path / "r2p1d.pth")
    save_file({k: v.contiguous() for k, v in source.items()}, str(tmp_path / "r2p1d.safetensors"))
    # a training script's wrapper around a DistributedDataParallel model
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.items()}}, tmp_path / "ddp.pt")
    for name in ("r2p1d.pth", "r2p1d.safetensors", "ddp.pt"):
        torch.manual_seed(0)
        model = _r2plus1d()
        info = load_checkpoint(model, checkpoint_of(str(tmp_path / name), "student"), "student")
        assert (info["into"], info["loaded"], info["missing"], info["unexpected"]) == (
            "net", len(source) - 2, [], ["fc.bias", "fc.weight"]), name
        assert torch.equal(model.net.stem[0].weight, source["stem.0.weight"])
        assert torch.equal(model.net.layer4[1].conv2[0][3].weight, source["layer4.1.conv2.0.3.weight"])


def test_missing_unexpected_mismatched_and_unreadable_files_are_named(tmp_path):
    torch.manual_seed(0)
    own = {k: v.clone() for k, v in _r2plus1d().state_dict().items()}
    partial = {k: v for k, v in own.items() if not k.startswith("head.")}
    partial["extra.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "partial.pt")
    info = load_checkpoint(_r2plus1d(), checkpoint_of(str(tmp_path / "partial.pt"), "teacher"), "teacher")
    assert (info["into"], info["missing"], info["missing_count"], info["unexpected"]) == (
        "(the model)", ["head.bias", "head.weight"], 2, ["extra.weight"])
    bad = dict(own, **{"net.stem.0.weight": torch.zeros(45, 3, 1, 7, 7)})
    torch.save(bad, tmp_path / "bad.pt")
    bad["net.stem.0.weight"] = torch.zeros(45, 2, 1, 7, 7)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"^teacher.checkpoint .*/bad.pt: 'net.stem.0.weight' has shape "
                                          r"\(45, 2, 1, 7, 7\) in the file and \(45, 3, 1, 7, 7\) in the model$"):
        load_checkpoint(_r2plus1d(), checkpoint_of(str(tmp_path / "bad.pt"), "teacher"), "teacher")
    torch.save({"other.thing": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"^student.checkpoint .*/other.pt: none of its 1 keys is a parameter of "
                                          r"student \(its first: 'other.thing'; the model's: 'net.stem.0.weight'\)$"):
        load_checkpoint(_r2plus1d(), checkpoint_of(str(tmp_path / "other.pt"), "student"), "student")
    (tmp_path / "junk.pt").write_bytes(b"junk" * 10)
    with pytest.raises(DataError, match=r"^student.checkpoint .*/junk.pt: not a readable safetensors or torch file"):
        load_checkpoint(_r2plus1d(), checkpoint_of(str(tmp_path / "junk.pt"), "student"), "student")

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")  # weights_only refuses a pickle that runs code
    with pytest.raises(DataError, match=r"^student.checkpoint .*/evil.pt: not a readable"):
        load_checkpoint(_r2plus1d(), checkpoint_of(str(tmp_path / "evil.pt"), "student"), "student")
    with pytest.raises(ConfigError, match=r"^student.checkpoint: no file /nowhere/x.pt$"):
        checkpoint_of("/nowhere/x.pt", "student")


def _teacher_file(tmp_path, capsys) -> tuple:
    """A trained audio-cnn teacher's weights, taken from the teacher cache of a kd run."""
    assert main(["run", "--method", "kd", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO]) == 0
    (record,) = ResultStore().records()
    from xbench.store import xbench_home

    (path,) = (xbench_home() / "cache" / "teachers" / record.teacher["cache_key"]).glob("teacher.pt")
    capsys.readouterr()
    return str(path), record


def test_a_pretrained_teacher_skips_training_and_its_run_says_where_it_came_from(tmp_path, capsys):
    path, trained = _teacher_file(tmp_path, capsys)
    base = ["run", "--method", "kd", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO,
            f"--set=teacher.checkpoint={path}"]
    assert main([*base, "--set=teacher.train_steps=0"]) == 0
    rec = next(r for r in ResultStore().records() if r.config.get("models"))
    sha = checkpoint_of(path, "teacher").sha256
    assert rec.config["models"] == {"teacher": {"checkpoint": sha, "train_steps": 0}}
    assert rec.config_hash != trained.config_hash and rec.teacher["cache_key"] != trained.teacher["cache_key"]
    teacher_stage = next(s for s in rec.budget.stages if s.stage == "teacher")
    assert (teacher_stage.steps, teacher_stage.evaluations) == (0, 1)
    # the same weights score as they did when trained: selected on val, evaluated once here
    assert rec.teacher["val"] == trained.teacher["val"]
    assert {k: rec.teacher[k] for k in ("checkpoint", "checkpoint_sha256", "train_steps", "trained_on")} == {
        "checkpoint": path, "checkpoint_sha256": sha, "train_steps": 0,
        "trained_on": "nothing here: the pretrained checkpoint, used as it is"}
    assert rec.checkpoints["teacher"]["path"] == path and rec.checkpoints["teacher"]["missing"] == []
    assert rec.metrics == trained.metrics  # same teacher weights, same student: the same run
    # the record says how to run it again: reproduce plans the same configuration
    from xbench.config import load_tiers
    from xbench.reproduce import run_config

    assert run_config(rec, load_tiers()).teacher_options == {"checkpoint": path, "train_steps": 0}
    assert main([*base, "--set=teacher.train_steps=3"]) == 2
    assert capsys.readouterr().err == ("xbench: error: teacher.train_steps: expected an integer from 0 to the "
                                       "tier's teacher_steps (2), got 3\n")
    assert main([*base[:-1], "--set=teacher.train_steps=0"]) == 2
    assert capsys.readouterr().err == ("xbench: error: teacher.train_steps=0 keeps a randomly initialised teacher: "
                                       "give teacher.checkpoint=PATH (a pretrained teacher) or more steps\n")


def test_a_student_checkpoint_starts_every_method_from_the_same_weights(tmp_path, capsys):
    torch.manual_seed(5)
    factory = next(f for name, _, f, *_ in library_models() if name == "r3d-18")
    weights = factory(ModelContext(num_classes=5, shapes={"rgb": (8, 3, 32, 32)})).net.state_dict()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "r3d.safetensors"))
    base = ["run", "--task", "recognition", "--budget", "smoke", "--quiet", "--student", "r3d-18", *MICRO]
    assert main([*base, "--method", "student"]) == 0
    assert main([*base, "--method", "student", f"--set=student.checkpoint={tmp_path / 'r3d.safetensors'}"]) == 0
    plain, loaded = sorted(ResultStore().records(), key=lambda r: "models" in r.config)
    assert plain.checkpoints is None and "models" not in plain.config
    assert loaded.config["models"] == {"student": {"checkpoint": checkpoint_of(
        str(tmp_path / "r3d.safetensors"), "student").sha256}}
    assert {k: loaded.checkpoints["student"][k] for k in ("into", "missing", "unexpected")} == {
        "into": "net", "missing": [], "unexpected": []}
    assert loaded.config_hash != plain.config_hash and loaded.metrics != plain.metrics
    capsys.readouterr()
    assert main([*base, "--method", "student", "--set=student.frozen=1"]) == 2
    assert capsys.readouterr().err == ("xbench: error: student options: unknown key 'frozen' (known: checkpoint, "
                                       "compile, activation_checkpointing, encoder, encoder_checkpoint, "
                                       "encoder_trainable)\n")


def _grads(model, x):
    torch.manual_seed(0)
    out = model({"rgb": x})
    loss = out["logits"].square().mean() + out["feature"].square().mean()
    loss.backward()
    return loss.detach(), {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}


@pytest.mark.parametrize("name", ["videomae-s", "tsn-resnet18"])
def test_activation_checkpointing_recomputes_the_same_loss_and_gradients(name):
    """The transformers (VideoMAE) and timm (TSN) networks recompute their blocks' activations in
    the backward pass: the same loss and gradients as keeping them, to float rounding."""
    from xbench.train import set_execution

    ctx = ModelContext(num_classes=5, shapes={"rgb": (4, 3, 32, 32)})
    factory = next(f for n, _, f, *_ in library_models() if n == name)
    x = torch.randn(2, 4, 3, 32, 32)
    torch.manual_seed(3)
    plain = factory(ctx)
    torch.manual_seed(3)
    ckpt = set_execution(factory(ctx), f"student '{name}'", None, True)
    layers = [m for m in ckpt.modules() if getattr(m, "gradient_checkpointing", False) is True
              or getattr(m, "grad_checkpointing", False) is True]
    assert layers, "nothing was switched to checkpointing"
    (l0, g0), (l1, g1) = _grads(plain.train(), x), _grads(ckpt.train(), x)
    assert torch.allclose(l0, l1, rtol=1e-6) and g0.keys() == g1.keys() and len(g0) > 10
    assert all(torch.allclose(g0[k], g1[k], rtol=1e-4, atol=1e-6) for k in g0)


def test_compile_and_activation_checkpointing_are_options_the_record_states(capsys):
    """``student.compile`` compiles the forward in place (names unchanged, same outputs to
    rounding) and enters the config hash; a bad value and checkpointing on a network without
    it are one-line errors."""
    from xbench.config import RunConfig, load_tiers, stable_hash
    from xbench.registry import build_registry
    from xbench.run import plan
    from xbench.train import set_execution

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    keys, x = list(net.state_dict()), torch.randn(5, 6)
    eager = net(x)
    set_execution(net, "student 'mlp'", "default", False)
    assert list(net.state_dict()) == keys and torch.allclose(net(x), eager, atol=1e-6)
    reg, tiers = build_registry(), load_tiers()

    def hash_of(**student):
        cfg = RunConfig(method="kd", task="recognition", budget="smoke", student_options=student)
        resolved = plan(reg, cfg, tiers).resolved()
        return resolved.get("models"), stable_hash(resolved)

    (none, h0), (on, h1) = hash_of(), hash_of(compile=True)
    (mode, h2), (ac, h3) = hash_of(compile="max-autotune"), hash_of(activation_checkpointing=True)
    assert (none, on, mode, ac) == (None, {"student": {"compile": "default"}},
                                    {"student": {"compile": "max-autotune"}},
                                    {"student": {"activation_checkpointing": True}})
    assert len({h0, h1, h2, h3}) == 4
    base = ["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO]
    capsys.readouterr()  # torch's own notes of the compilation above
    assert main([*base, "--set=student.compile=fast"]) == 2
    assert capsys.readouterr().err == ("xbench: error: student.compile: expected true, false or one of default, "
                                       "reduce-overhead, max-autotune, max-autotune-no-cudagraphs, got 'fast'\n")
    assert main([*base, "--set=student.activation_checkpointing=true"]) == 2
    assert capsys.readouterr().err == (
        "xbench: error: student 'frame-cnn': activation_checkpointing needs a transformers or timm network "
        "inside (videomae-*, ast, wav2vec2-base, hubert-base, tsn-*, tsm-*); this model has none\n")
