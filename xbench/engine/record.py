"""The run record: what was run (the resolved configuration and its hash), what it scored, what
it spent, and where (versions, device, threads, allocator, the source commit)."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import secrets
import subprocess
from pathlib import Path
from typing import Any

import torch

from xbench import __version__, distributed
from xbench.alloc import state as alloc_state
from xbench.config import REPO_ROOT, stable_hash, to_plain
from xbench.context import RunContext
from xbench.engine.heads import count, count_own
from xbench.engine.state import RunState
from xbench.records import SCHEMA_VERSION, RunRecord, status_of


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of xbench's own source checkout (with ``-dirty`` for uncommitted changes), or
    None for an installed package: git is asked only about a folder that is xbench's checkout."""
    if not (REPO_ROOT / ".git").exists() or not (REPO_ROOT / "xbench" / "__init__.py").is_file():
        return None
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             check=False, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


#: the environment keys a result's bits may depend on
NUMERIC_ENV = ("torch", "numpy", "python", "cpu_capability", "cpu", "device", "threads")


@functools.cache
def cpu_model() -> str:
    """The processor's model name: the same code, torch and threads gave a cpu-tier run's top-1
    34.59 on one machine and 34.36 on another, so a record names its processor too."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def numerics(device: torch.device) -> dict[str, Any]:
    """The numerical stack (``NUMERIC_ENV``): what a cached stage is keyed by besides its inputs."""
    import numpy

    return {"torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_model(), "device": device_name(device),
            "threads": torch.get_num_threads(),
            # a run over several processes (torchrun) sums in another order: its own cache entries
            **({"processes": distributed.world()} if distributed.world() > 1 else {})}


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run ran: what its numbers may depend on besides its configuration and seed."""
    return {"xbench": __version__, **numerics(device), "platform": platform.platform(), "git_sha": git_sha(),
            "allocator": alloc_state()}


def build_record(ctx: RunContext, state: RunState, started: dt.datetime) -> RunRecord:
    """The record of one finished run (not yet stored), with its per-field integrity hashes."""
    from xbench.submit import integrity

    p, seed = ctx.plan, ctx.seed
    finished = dt.datetime.now(dt.timezone.utc)
    resolved = p.resolved()
    run_id = f"{p.method.name}-{p.task.name}-{p.tier.name}-s{seed}-" \
             f"{started.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    totals = ctx.meter.totals()
    record = {
        "schema": SCHEMA_VERSION,
        "id": run_id,
        "method": p.method.name,
        "task": p.task.name,
        "dataset": p.dataset_name,
        "tier": p.tier.name,
        "seed": seed,
        "evaluated": p.method.evaluates,
        "baseline": p.method.baseline,
        "eval_modalities": list(state.final_modalities),
        "main_metric": p.task.main_metric,
        "metrics": state.metrics,
        "selection": state.selection,
        "budget": {"stages": state.spent, "totals": totals, "tier": to_plain(p.tier)},
        "status": status_of(totals["stopped_by"]),
        "params": {"student": count(state.student),
                   "heads": sum(count(h) for h in state.heads.values()) + count_own(state.objective, state.student),
                   "teacher": count(state.teacher)},
        "teacher": state.teacher_record,
        "config": {**resolved, "seed": seed},
        "config_hash": stable_hash(resolved),
        "plugins": p.plugins,
        "data": {"root": str(getattr(state.dataset, "root", "")),
                 "manifest_sha256": state.dataset.manifest_hash(),
                 "sizes": {"train": len(state.train) if state.train is not None else 0,
                           "val": len(state.val), "test": len(state.test)}},
        "env": environment(ctx.device),
        **({"checkpoints": state.checkpoints} if state.checkpoints else {}),
        "started": started.isoformat(),
        "finished": finished.isoformat(),
    }
    # per-field hashes of the record as the typed layer writes it (an optional field that is
    # None left out): a record edited after the run is rejected naming what changed
    written = RunRecord.from_json({**record, "integrity": {}}, f"run {run_id}").to_json()
    written["integrity"] = integrity(written)
    return RunRecord.from_json(written, f"run {run_id}")  # what is written is what is read
