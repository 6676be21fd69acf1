"""One run over several processes: 2 gloo processes train the single-process run of the same
global batch, and a rank that dies ends the run in one line, storing nothing."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xbench import distributed
from xbench.config import RunConfig, load_tiers
from xbench.registry import build_registry
from xbench.run import execute, plan

CPU = torch.device("cpu")
#: every stage evaluated after each of its steps: the first point is the first step alone
BUDGET = {"teacher_steps": 3, "student_steps": 3, "pretrain_steps": 3, "finetune_steps": 3, "probe_steps": 3,
          "eval_every": 1}
#: a method of each kind the harness keeps in step under DDP: plain KD; CRD's memory banks and
#: sampled negatives; XKD's EMA teachers, centres, MMD and per-example masks; CCD's in-batch
#: negatives over the gathered batch and its queue of past batches (on anticipation:
#: variable-length text, a pretrain stage)
CASES = [("kd", "recognition"), ("crd", "recognition"), ("xkd", "recognition"), ("ccd", "anticipation")]
OPTIONS = {"ccd": {"queue": 40}}


def _plan(method: str, task: str):
    return plan(build_registry(), RunConfig(method=method, task=task, budget="smoke", budget_options=BUDGET,
                                            method_options=OPTIONS.get(method, {})), load_tiers())


def _no_attention_dropout() -> None:
    """Attention dropout is drawn inside torch's attention kernel, per rank: the one random draw
    the harness cannot make the single-process one (README: "One run over several processes").
    Off here, on both sides, so what is compared is everything else."""
    init = torch.nn.MultiheadAttention.__init__

    def without(self, embed_dim, num_heads, dropout=0.0, *args, **kwargs):
        init(self, embed_dim, num_heads, 0.0, *args, **kwargs)

    torch.nn.MultiheadAttention.__init__ = without


def _rank(rank: int, store: str, out: str, data_root: str) -> None:
    torch.set_num_threads(1)
    _no_attention_dropout()
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        records = {f"{m}/{t}": execute(_plan(m, t), 0, device=CPU, data_root=Path(data_root)).to_json()
                   for m, t in CASES}
        if rank == 0:
            Path(out).write_text(json.dumps(records))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """Each case's record from one process and from 2 gloo processes (same seed, same global batch)."""
    tmp = tmp_path_factory.mktemp("ddp")
    env = {"XBENCH_HOME": str(tmp / "home"), "XBENCH_TEACHER_CACHE": "0", "XBENCH_PRETRAIN_CACHE": "0",
           "XBENCH_DATA": str(data_root), "XBENCH_CLOCK_LIMIT": "off"}
    saved = {k: os.environ.get(k) for k in env}
    init, threads = torch.nn.MultiheadAttention.__init__, torch.get_num_threads()
    os.environ.update(env)
    try:
        _no_attention_dropout()
        torch.set_num_threads(1)
        one = {f"{m}/{t}": execute(_plan(m, t), 0, device=CPU, data_root=data_root).to_json() for m, t in CASES}
        mp.spawn(_rank, (f"file://{tmp}/store", str(tmp / "two.json"), str(data_root)), nprocs=2)
    finally:
        torch.nn.MultiheadAttention.__init__ = init
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return one, json.loads((tmp / "two.json").read_text())


@pytest.mark.parametrize("case", [f"{m}/{t}" for m, t in CASES])
def test_two_processes_train_the_single_process_run(runs, case):
    """Tolerances: the first step of a stage that starts from its initial weights (a teacher's,
    the student's pretraining) is the same function of the same weights and examples, summed in
    another order (relative 1e-5); later steps, and stages that start from an earlier stage's
    weights, drift by rounding amplified by AdamW (relative 1e-2 over 3 steps); top-1 within
    one test example."""
    one, two = runs[0][case], runs[1][case]
    assert two["env"]["processes"] == 2 and "processes" not in one["env"]
    for a, b in zip(one["budget"]["stages"], two["budget"]["stages"], strict=True):
        assert (b["stage"], b["steps"], b["samples"], b["teacher_forwards"]) == (
            a["stage"], a["steps"], a["samples"], a["teacher_forwards"])
        # the ranks' device time is recorded, summed, for the 2-process run only (its value is the
        # machine's speed: benchmarks/perf/ddp.py measures it)
        assert b["processes"] == 2 and isinstance(b["device_seconds"], float)
        assert "processes" not in a and "device_seconds" not in a
        if case.endswith("recognition"):  # every rank's share has the shapes of the whole
            assert b["flops_per_step"] == a["flops_per_step"]
        if a["stage"] in ("teacher", "pretrain") or a is one["budget"]["stages"][0]:
            for name, value in a["curve"][0]["terms"].items():
                assert math.isclose(b["curve"][0]["terms"][name], value, rel_tol=1e-5), (b["stage"], name)
        for pa, pb in zip(a["curve"], b["curve"], strict=True):
            assert pa["step"] == pb["step"]
            for name, value in pa["terms"].items():
                assert math.isclose(pb["terms"][name], value, rel_tol=1e-2), (b["stage"], pa["step"], name)
    n_test = one["data"]["sizes"]["test"]
    assert abs(two["metrics"]["top1"] - one["metrics"]["top1"]) <= 100 / n_test + 1e-9


def test_gathered_rows_carry_their_gradients_home(tmp_path):
    """``gather`` of rows of different counts per rank: every rank sees the global rows in rank
    order, and each row's gradient, summed over the ranks that used it, comes back to its rank."""
    mp.spawn(_gather_rank, (f"file://{tmp_path}/store", str(tmp_path)), nprocs=2)
    grads = [torch.load(tmp_path / f"grad{r}.pt") for r in range(2)]
    # rank r holds r + 1 rows of value r + 1; the loss on every rank is sum(rows * weights)
    weights = torch.arange(1.0, 4.0)
    assert torch.equal(grads[0], 2 * weights[:1].view(1, 1).expand(1, 2))
    assert torch.equal(grads[1], 2 * weights[1:].view(2, 1).expand(2, 2))


def _gather_rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        x = torch.full((rank + 1, 2), float(rank + 1), requires_grad=True)
        rows = distributed.gather(x)
        assert rows.tolist() == [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
        (rows * torch.arange(1.0, 4.0).view(3, 1)).sum().backward()
        torch.save(x.grad, Path(out) / f"grad{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_rank_that_dies_ends_the_run_in_one_line_and_a_rerun_resumes(tmp_path, data_root):
    """kill -9 of rank 1 of ``xbench run --nproc 2`` once rank 0 wrote a student checkpoint:
    the run stops on every rank, the launcher names the rank, nothing is stored; the same command
    again resumes from the checkpoint and stores the run."""
    env = dict(os.environ, XBENCH_HOME=str(tmp_path / "home"), XBENCH_DATA=str(data_root),
               XBENCH_CHECKPOINT_EVERY="5")
    cmd = [sys.executable, "-m", "xbench.cli", "run", "--method", "kd", "--task", "recognition", "--tier", "smoke",
           "--nproc", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt_dir = tmp_path / "home" / "checkpoints"
    while proc.poll() is None and not list(ckpt_dir.glob("*/student.pt")):
        time.sleep(0.05)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == "xbench: error: rank 1 of 2 failed (signal 9); the run stopped on every rank"
    assert not list((tmp_path / "home").glob("runs/*"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "student: resumed at step" in out.stderr
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "home").glob("runs/*/result.json")]
    assert rec["env"]["processes"] == 2 and rec["budget"]["stages"][-1]["resumed_at"] >= 5


def _rank_pid(launcher: int, rank: int) -> int:
    """The pid of rank ``rank`` among the launcher's children (torchrun sets RANK in each)."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no rank {rank} under pid {launcher}")
