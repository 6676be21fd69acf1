"""Where a sweep's runs execute: local processes, Ray tasks or Slurm jobs (submitit).

Every executor runs the same command, ``xbench run --config CFG --seed S --quiet``, so a run is the
same run wherever it goes; what differs is who starts it and who schedules it. xbench keeps only
what is its own: the grid, the teacher groups (the runs that share a cached teacher or encoder
pretraining) and the store. Scheduling, resources and retries are the engine's:

- ``local``: ``--jobs`` processes on this machine; each stores its own record.
- ``ray``: each run a Ray task with its CPU/GPU resources (``ray.init()``: a local cluster, or
  ``--ray-address`` of a running one). A run that shares a teacher group with an earlier run takes
  that run's task as a dependency, so Ray starts it once the shared teacher is cached.
- ``slurm``: each run a Slurm job submitted with submitit (``--slurm-partition``, ``--slurm-gpus``,
  ``--slurm-time``); a group's later runs are submitted once its first has finished.

Under ``ray`` and ``slurm`` the run writes its record to ``XBENCH_HOME/sweeps/<suite>/records/``
(``xbench run --record-to``) and the driver stores it, so the store (SQLite) is only ever written
by the driver; a record whose driver died before storing it is stored by the next sweep. The
caches, checkpoints and that folder live under XBENCH_HOME, which must be a path every worker
shares (a local cluster shares the machine's). Cache entries are written atomically under names
of their writer's own.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xbench.errors import ConfigError

EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class ExecutorOptions:
    """What ``xbench sweep --executor ...`` was given."""

    name: str = "local"
    ray_address: str | None = None
    slurm_partition: str | None = None
    slurm_gpus: int = 0
    slurm_time: int = 60
    #: submitit's cluster ("local" runs its jobs as local processes: the tests)
    slurm_cluster: str | None = None
    #: CPUs and GPUs one run asks the engine for
    cpus: int = 1
    gpus: float = 0.0


def arguments(cfg_path: Path, seed: int, record_to: Path | None) -> list[str]:
    """The worker's arguments after the interpreter; ``-P`` so that an ``xbench/`` folder in the
    working directory cannot shadow the installed package."""
    args = ["-P", "-m", "xbench.cli", "run", "--config", str(cfg_path), "--seed", str(seed), "--quiet"]
    return args + (["--record-to", str(record_to)] if record_to is not None else [])


def run_command(args: list[str], env: dict[str, str], log_path: str, *after: Any) -> int:
    """Run ``python ARGS`` with the worker's own interpreter and environment plus ``env`` (xbench's
    settings), its output appended to ``log_path``; its exit status. What a Ray task and a Slurm
    job execute (``after``: the tasks this one waits for, resolved by Ray before it starts)."""
    with open(log_path, "a") as log:
        return subprocess.run([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, **env}, stdin=subprocess.DEVNULL, check=False).returncode


class LocalHandle:
    """A run in a local process (``poll``: its exit status once finished, else None)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self) -> None:
        # the worker is its own process group (start_new_session): SIGTERM stops it and whatever it started
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.signal()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class RayHandle:
    def __init__(self, ray: Any, ref: Any) -> None:
        self.ray, self.ref = ray, ref

    def poll(self) -> int | None:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        return self.ray.get(self.ref) if ready else None

    def stop(self) -> None:
        self.ray.cancel(self.ref, force=True)


class SlurmHandle:
    def __init__(self, job: Any) -> None:
        self.job = job

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return self.job.result()
        except Exception:  # noqa: BLE001 - the job itself failed (killed, node lost): its log says why
            return 1

    def stop(self) -> None:
        self.job.cancel()


class Executor:
    """Starts runs and hands back handles; ``scheduled``: whether the engine orders a group's runs
    itself (Ray's dependencies), so the sweep submits every run at once."""

    scheduled = False

    def start(self, args: list[str], env: dict[str, str], log_path: Path, after: list[Any]) -> Any:
        """Start ``python ARGS`` with ``env`` added to the environment, after the runs ``after``
        (handles) where the engine orders runs."""
        raise NotImplementedError

    def close(self) -> None:
        return None


class Local(Executor):
    def start(self, args: list[str], env: dict[str, str], log_path: Path, after: list[Any]) -> LocalHandle:
        log = log_path.open("a")  # a resumed run's log goes on after the killed one's
        try:
            proc = subprocess.Popen(
                [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our own signal handling stops it
                # the function only calls prctl and getppid (no lock, no import): safe after fork
                preexec_fn=functools.partial(die_with_parent, os.getpid(), prctl()))  # noqa: PLW1509
        finally:
            log.close()  # the child holds its own copy
        return LocalHandle(proc)


class Ray(Executor):
    scheduled = True

    def __init__(self, opts: ExecutorOptions) -> None:
        ray = _engine("ray", "ray")
        if not ray.is_initialized():
            ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.task = ray.remote(num_cpus=opts.cpus, num_gpus=opts.gpus, max_retries=0)(run_command)

    def start(self, args: list[str], env: dict[str, str], log_path: Path, after: list[Any]) -> RayHandle:
        # a dependency is another run's task: Ray starts this one once those have finished
        return RayHandle(self.ray, self.task.remote(args, env, str(log_path), *[h.ref for h in after]))


class Slurm(Executor):
    def __init__(self, opts: ExecutorOptions, folder: Path) -> None:
        submitit = _engine("submitit", "slurm")
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=opts.slurm_cluster)
        params: dict[str, Any] = {"timeout_min": opts.slurm_time, "cpus_per_task": opts.cpus}
        if opts.slurm_partition:
            params["slurm_partition"] = opts.slurm_partition
        if opts.slurm_gpus:
            params["gpus_per_node"] = opts.slurm_gpus
        self.executor.update_parameters(**params)

    def start(self, args: list[str], env: dict[str, str], log_path: Path, after: list[Any]) -> SlurmHandle:
        return SlurmHandle(self.executor.submit(run_command, args, env, str(log_path)))


@functools.cache
def prctl() -> Any:
    """libc's prctl on Linux (looked up in the sweep, before any fork), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent: int, prctl: Any) -> None:
    """In a local worker, before it runs: the kernel sends it SIGTERM when the sweep dies (a sweep
    killed with SIGKILL cannot stop its workers itself; they would run on, and a rerun would start
    the same run beside them). Linux's prctl(PR_SET_PDEATHSIG); elsewhere nothing."""
    if prctl is None:
        return
    prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the sweep died before the call: nothing would signal this worker
        os._exit(1)


def executor(opts: ExecutorOptions, folder: Path) -> Executor:
    if opts.name == "local":
        return Local()
    if opts.name == "ray":
        return Ray(opts)
    if opts.name == "slurm":
        return Slurm(opts, folder)
    raise ConfigError(f"--executor {opts.name}: expected one of {', '.join(EXECUTORS)}")


def _engine(module: str, name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"--executor {name} needs the package {module} (pip install 'xbench[{name}]')") from exc


def read_record(path: Path) -> dict[str, Any] | None:
    """A record a worker handed over (``--record-to``), or None where it wrote none."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
