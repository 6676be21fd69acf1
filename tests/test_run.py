"""End-to-end runs on the tiny synthetic data under the smoke tier."""

from __future__ import annotations

import json

import pytest
import torch

from xbench.config import RunConfig, load_tiers
from xbench.data.examples import Examples
from xbench.run import execute, plan
from xbench.store import ResultStore
from xbench.train import batch_indices, share


def _run(registry, data_root, method, seed=0, **budget):
    p = plan(registry, RunConfig(method=method, task="recognition", budget="smoke",
                                 budget_options=budget), load_tiers())
    return execute(p, seed, device=torch.device("cpu"), data_root=data_root)


@pytest.fixture(scope="module")
def records(registry, data_root):
    out = {m: _run(registry, data_root, m) for m in ("student", "kd", "fitnet", "teacher")}
    out["kd-again"] = _run(registry, data_root, "kd")
    return out


def test_same_seed_gives_identical_metrics(records):
    assert records["kd"].metrics == records["kd-again"].metrics
    assert records["kd"].selection == records["kd-again"].selection
    assert records["kd"].config_hash == records["kd-again"].config_hash


def test_every_method_gets_the_same_student_budget(records):
    spend = {m: (r.budget.stages[-1].stage, r.budget.stages[-1].steps,
                 r.budget.stages[-1].samples) for m, r in records.items() if m != "teacher"}
    assert spend == {m: ("student", 30, 480) for m in ("student", "kd", "fitnet", "kd-again")}
    assert [s.stage for s in records["kd"].budget.stages] == ["teacher", "teacher-inference",
                                                                        "student"]
    assert [s.stage for s in records["student"].budget.stages] == ["student"]
    assert records["kd"].budget.stages[0].steps == 30
    # the frozen teacher runs once over the train split (its outputs are cached), not per step
    assert records["kd"].budget.totals.teacher_forwards == records["kd"].data.sizes["train"]
    assert records["student"].budget.totals.teacher_forwards == 0
    assert all(s.flops_per_step > 0 and s.flops == s.flops_per_step * s.steps
               for r in records.values() for s in r.budget.stages if s.stage != "teacher-inference")


def test_student_params_identical_and_heads_counted(records):
    assert {r.params.student for m, r in records.items() if m != "teacher"} == {
        records["student"].params.student}
    assert records["student"].params.heads == 0
    assert records["kd"].params.heads == 0
    assert records["fitnet"].params.heads == 64 * 96 + 96  # the linear regressor


def test_record_says_what_was_evaluated(records):
    assert records["kd"].evaluated == "student"
    assert records["kd"].eval_modalities == ("rgb",)
    assert records["teacher"].evaluated == "teacher"
    assert records["teacher"].eval_modalities == ("audio",)
    assert records["kd"].selection.split == "val"
    assert records["kd"].teacher["trained_on"] == "teacher split (disjoint from the student's train split)"
    assert sorted(records["kd"].metrics) == ["class_mean", "top1", "top1_clean_audio", "top1_noisy_audio", "top5"]
    assert records["kd"].tier == "smoke" and records["kd"].budget.tier["student_steps"] == 30


def test_data_order_depends_on_seed_and_stage_only():
    a = [b.tolist() for b, _ in zip(batch_indices(10, 4, 123), range(5))]
    b = [b.tolist() for b, _ in zip(batch_indices(10, 4, 123), range(5))]
    assert a == b and all(len(x) == 4 for x in a)
    assert sorted(a[0] + a[1]) == sorted(set(a[0] + a[1]))  # no repeats within an epoch
    # under two processes each rank takes its half of every global batch, and counts the other
    # half as drawn (a column's per-example crops stay the single-process ones)
    data = Examples({"x": torch.arange(10), "clip": _Draws()})
    r0 = [x.tolist() for _, x in zip(range(5), share(batch_indices(10, 4, 123), data, ("clip",), 0, 2))]
    assert r0 == [x[:2] for x in a]
    assert data.tensors["clip"].skipped == [x[2:] for x in a]
    r1 = [x.tolist() for _, x in zip(range(5), share(batch_indices(10, 4, 123), data, ("x",), 1, 2))]
    assert r1 == [x[2:] for x in a]


class _Draws:
    """A lazy column that records what ``Examples.skip`` counted."""

    def __init__(self) -> None:
        self.skipped: list[list[int]] = []

    def __len__(self) -> int:
        return 10

    def skip(self, index: torch.Tensor) -> None:
        self.skipped.append(index.tolist())


def test_wall_clock_cap_stops_the_run_and_is_recorded_incomplete(registry, data_root, monkeypatch):
    monkeypatch.setenv("XBENCH_CLOCK_LIMIT", "on")
    rec = _run(registry, data_root, "student", max_seconds=0.001)
    stage = rec.budget.stages[-1]
    assert stage.stopped_by == "max_seconds" and stage.steps == 0
    assert rec.budget.totals.stopped_by == "student:max_seconds"
    assert (rec.tier, rec.status, rec.complete) == ("smoke+custom", "incomplete", False)
    # off, the safety net never stops a run: the same tier runs its whole budget
    monkeypatch.setenv("XBENCH_CLOCK_LIMIT", "off")
    rec = _run(registry, data_root, "student", max_seconds=0.001)
    assert (rec.budget.stages[-1].steps, rec.status) == (30, "complete")


def test_an_incomplete_run_says_so_exits_3_and_stays_out_of_the_leaderboard(monkeypatch, capsys):
    from xbench.cli import main

    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet"]) == 0
    monkeypatch.setenv("XBENCH_CLOCK_LIMIT", "on")
    assert main(["run", "--method", "kd", "--task", "recognition", "--budget", "smoke", "--quiet",
                 "--set", "budget.max_seconds=0.001"]) == 3
    err = capsys.readouterr().err.splitlines()
    (short,) = [r for r in ResultStore().records() if not r.complete]
    # its teacher, cut short at step 0, is not cached for the runs after it
    assert not list((ResultStore().home / "cache" / "teachers").glob("*/teacher.pt"))
    assert err == [(f"xbench: incomplete: seed 0: the wall-clock limit (max_seconds=0.001) stopped teacher at "
                    f"step 0 of 30; stored as incomplete ({short.id}), left out of leaderboards")]
    assert main(["leaderboard", "--task", "recognition", "--format", "plain"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"xbench: left out 1 incomplete run(s) (the wall-clock limit stopped them before their budget): "
                   f"{short.id}; --include-incomplete shows them\n")
    assert [line.split()[0] for line in out.splitlines()[3:-1]] == ["student"]
    assert main(["leaderboard", "--task", "recognition", "--format", "plain", "--include-incomplete"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "kd [1 incomplete]" in out


def test_store_and_leaderboard(records, capsys):
    from xbench.cli import main

    store = ResultStore()
    for m in ("student", "kd", "kd-again"):
        store.add(records[m])
    assert [r.method for r in store.records(task="recognition")] == ["student", "kd", "kd"]
    saved = json.loads((store.home / "runs" / records["kd"].id / "result.json").read_text())
    assert saved == records["kd"].to_json()
    assert main(["leaderboard", "--task", "recognition"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "### recognition, tier smoke: test top1 of the val-selected model"
    assert [c.strip() for c in out[2].split("|")[1:-1]] == [
        "method", "n", "top1", "95% CI", "vs student", "steps", "params", "teacher", "GFLOPs",
        "device-s", "peak MB", "Pareto"]
    kd = [c.strip() for c in out[4].split("|")[1:-1]]
    latest = records["kd-again"]
    top1 = latest.metrics["top1"]
    stages = latest.budget.stages
    teacher_s = sum(s.seconds for s in stages if s.stage.startswith("teacher"))
    # two stored kd records of seed 0: the later one counts once; one seed has no interval and
    # no paired comparison
    assert kd[2].strip("*") == f"{top1:.2f} ± 0.00"  # bold where it is the best
    # seed 0 kept its last evaluated state (step 30): val was still rising
    assert kd[:2] + kd[3:10] == ["kd", "1", "-", "-", "30 (still improving: 1/1)",
                       f"{latest.params.student:,}",
                       f"{teacher_s:.0f} s, {latest.data.sizes['train']:,} fwd (cached)",
                       f"{latest.budget.totals.flops / 1e9:,.0f}",
                       f"{latest.budget.totals.seconds:.0f}"]


def test_teacher_cache_is_shared_and_invalidated_by_a_new_checkpoint(registry, data_root):
    def sources(rec):
        return [(s.stage, s.source) for s in rec.budget.stages]

    kd = _run(registry, data_root, "kd")
    assert sources(kd) == [("teacher", "computed"), ("teacher-inference", "computed"),
                           ("student", "computed")]
    fitnet = _run(registry, data_root, "fitnet")  # another method, same teacher: nothing recomputed
    assert sources(fitnet) == [("teacher", "cache"), ("teacher-inference", "cache"),
                               ("student", "computed")]
    # the record still shows what the teacher cost, paid once by the run that filled the cache
    assert fitnet.budget.stages[0].steps == kd.budget.stages[0].steps == 30
    assert fitnet.budget.stages[1].teacher_forwards == kd.data.sizes["train"]
    assert fitnet.teacher["cache_key"] == kd.teacher["cache_key"]
    # a changed checkpoint, even rewritten with its checksum, is not the one the entry's record
    # (its training spend and val score) was written with: trained again, the same bit for bit
    from xbench.data.io import sha256_file
    from xbench.store import xbench_home

    (entry,) = (xbench_home() / "cache" / "teachers").iterdir()
    state = torch.load(entry / "teacher.pt", weights_only=True)
    state["head.bias"] += 1.0
    torch.save(state, entry / "teacher.pt")
    written = sha256_file(entry / "teacher.pt")
    (entry / "teacher.pt.sha256").write_text(written + "\n")
    logs: list[str] = []
    p = plan(registry, RunConfig(method="fitnet", task="recognition", budget="smoke"), load_tiers())
    again = execute(p, 0, device=torch.device("cpu"), data_root=data_root, log=logs.append)
    assert sources(again)[0] == ("teacher", "computed")
    assert f"teacher cache: corrupt entry {entry} (its state is not the one its record was written with); " \
           "retraining" in logs
    assert repr(again.metrics) == repr(fitnet.metrics)
    # the same file edited behind the checksum's back is a corrupt entry: trained again
    torch.save({**state, "head.bias": state["head.bias"] + 1.0}, entry / "teacher.pt")
    logs.clear()
    retrained = execute(p, 0, device=torch.device("cpu"), data_root=data_root, log=logs.append)
    assert sources(retrained)[0] == ("teacher", "computed")
    assert f"teacher cache: corrupt entry {entry} (checksum mismatch: its content changed after it was written); " \
           "retraining" in logs
    # damaged files (0-byte, garbled, another well-formed file): tests/faults/test_fault_cache.py



def test_recognition_and_retrieval_share_one_trained_teacher(registry, data_root, monkeypatch):
    def run(task, method="kd"):
        p = plan(registry, RunConfig(method=method, task=task, budget="smoke"), load_tiers())
        return execute(p, 0, device=torch.device("cpu"), data_root=data_root)

    rec, ret = run("recognition"), run("retrieval")
    # the teacher trained for recognition (and its outputs on the train split) serve retrieval
    assert [(s.stage, s.source) for s in ret.budget.stages] == [
        ("teacher", "cache"), ("teacher-inference", "cache"), ("student", "computed")]
    assert ret.teacher["cache_key"] == rec.teacher["cache_key"]
    # and it is the teacher retrieval trains on its own: the same selected step and val scores
    monkeypatch.setenv("XBENCH_TEACHER_CACHE", "0")
    alone = run("retrieval")
    assert alone.teacher["source"] == "computed"
    assert (alone.teacher["selected_step"], alone.teacher["val"]["top1"]) == (
        ret.teacher["selected_step"], ret.teacher["val"]["top1"])
    # without the cache the frozen teacher runs online (inference mode) every step: same student
    assert alone.metrics == ret.metrics
    # another teacher objective's view does not share: detection trains its own teacher
    assert run("detection").teacher["cache_key"] != rec.teacher["cache_key"]


def test_frozen_forwards_give_ordinary_tensors_a_loss_can_use():
    from xbench.tasks import Examples
    from xbench.train import frozen_forward, predict

    model = torch.nn.Linear(3, 2)

    class Taps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x):
            return {"logits": self.lin(x["x"]), "note": "text"}

    out = frozen_forward(Taps(), {"x": torch.ones(4, 3)})
    assert not out["logits"].is_inference() and not out["logits"].requires_grad and out["note"] == "text"
    student = torch.ones(4, 2, requires_grad=True)
    torch.nn.functional.mse_loss(student, out["logits"]).backward()  # saved for backward: allowed
    data = Examples({"x": torch.arange(12.0).view(4, 3)})
    feats = predict(Taps(), data, ("x",), torch.device("cpu"), batch_size=3)["logits"]
    assert not feats.is_inference() and torch.equal(feats, model(data.tensors["x"]).detach())


class _EditedLinear(torch.nn.Linear):
    """Same parameters as nn.Linear, code in another file: stands for a teacher edited in place."""


def test_teacher_cache_key_follows_the_teachers_code_and_architecture():
    from xbench.engine.teacher import code_hash as _code_hash

    # same class and shapes: same key, so a teacher trained before is reused
    assert _code_hash(torch.nn.Linear(4, 3)) == _code_hash(torch.nn.Linear(4, 3))
    # another architecture of the same class, or the same shapes from other code: not reused
    assert _code_hash(torch.nn.Linear(4, 3)) != _code_hash(torch.nn.Linear(4, 5))
    assert _code_hash(torch.nn.Linear(4, 3)) != _code_hash(_EditedLinear(4, 3))


def test_batches_stay_as_they_are_on_cpu():
    """The GPU path (pinned, non-blocking copies) changes nothing on CPU: the same objects."""
    from xbench.train import to_device

    batch = {"rgb": torch.zeros(2, 3), "text": ["a", "b"]}
    out = to_device(batch, torch.device("cpu"))
    assert out is batch and out["rgb"] is batch["rgb"]


def test_gpu_layout_is_channels_last_and_cpu_models_are_left_alone():
    from xbench.train import place, to_channels_last

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.Flatten(0, 1), torch.nn.Conv2d(3, 5, 3))

    on_cpu = place(net(), torch.device("cpu"))  # nothing changes on CPU
    assert all(q.is_contiguous() for q in on_cpu.parameters())
    nhwc = to_channels_last(net())
    assert nhwc[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert nhwc[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert not nhwc[2].weight.is_contiguous()  # really another layout, not a no-op
    x = torch.randn(2, 2, 5, 6, 6)
    assert torch.allclose(nhwc(x), on_cpu(x), atol=1e-5)


def test_prefetching_keeps_the_order_raises_and_stops():
    import threading

    from xbench.tasks import Examples
    from xbench.train import batch_stream, prefetched

    assert list(prefetched(iter(range(7)), depth=2)) == list(range(7))

    def broken():
        yield 1
        raise ValueError("bad batch 2")

    it = prefetched(broken())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad batch 2"):
        next(it)
    endless = prefetched(iter(lambda: 0, 1))  # never ends by itself
    next(endless)
    endless.close()
    assert not any(t.name == "xbench-prefetch" and t.is_alive() for t in threading.enumerate())
    # the stage's batches: the seeded order, gathered when needed on CPU
    data = Examples({"x": torch.arange(10), "y": torch.arange(10) * 2})
    stream = batch_stream(data, batch_indices(10, 4, seed=3), ("x",), torch.device("cpu"))
    order = batch_indices(10, 4, seed=3)
    for _ in range(5):  # past the end of an epoch: a new permutation
        batch = next(stream)
        assert list(batch) == ["x"] and torch.equal(batch["x"], next(order))


def test_the_loop_syncs_with_the_host_once_per_evaluation_only(monkeypatch):
    """The loop's own code reads no tensor value on the host per step (on CUDA each such read
    waits for the GPU); the one read is the finiteness check of the loss terms, per evaluation."""
    import sys

    from xbench import train
    from xbench.budget import BudgetMeter
    from xbench.context import RunContext
    from xbench.tasks import Examples

    reads = []
    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code
            if caller.co_filename == train.__file__:
                reads.append((caller.co_name, _name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    tier = load_tiers()["smoke"]  # 30 steps, evaluated every 15
    model = torch.nn.Linear(4, 3)
    data = Examples({"x": torch.randn(64, 4), "y": torch.randint(0, 3, (64,))})
    spend, _ = train.fit(train.StepSpec(
        stage="student", modules={"m": model}, groups=[(list(model.parameters()), 1.0)],
        step_fn=lambda b: {"ce": torch.nn.functional.cross_entropy(model(b["x"]), b["y"]),
                           "l2": 1e-3 * model.weight.pow(2).sum()},
        data=data, keys=("x", "y"), max_steps=30, evaluate=lambda: {"top1": 1.0}, main_metric="top1"),
        RunContext(None, 0, torch.device("cpu"), BudgetMeter(60), tier=tier))
    assert spend.steps == 30 and spend.evaluations == 2
    assert reads == [("_window", "tolist")] * 2  # one per evaluation, for both terms (checked, then kept)
    assert [(p.step, sorted(p.terms)) for p in spend.curve] == [(15, ["ce", "l2"]), (30, ["ce", "l2"])]
