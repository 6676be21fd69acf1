"""``xbench sweep SUITE.yaml``: a grid of methods x tasks x seeds at one tier, run as separate
``xbench run`` processes and stored in the usual results store.

A run (one cell, one seed) is identified by its config hash and seed, exactly as the store keys
it, so a run already stored is never run again: an interrupted sweep resumes where it stopped, and
a suite that grows (a new method, more seeds) runs only what is new. Workers are separate
processes (``--jobs N``): a crash or an out-of-memory kill loses one run, never the sweep, and
SQLite's transactions make their writes to the one store safe. Runs that share a trained teacher
(same task, data, teacher and seed) or a pretrained encoder wait for the first of them, which
fills the cache, so no teacher or encoder is trained twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from xbench.atomic import atomic_write_text
from xbench.config import (
    RunConfig,
    Tier,
    from_mapping,
    load_tiers,
    load_yaml,
    shipped_or_path,
    stable_hash,
)
from xbench.context import Reporter
from xbench.errors import CellBusy, ConfigError, IncompatibleError
from xbench.executors import ExecutorOptions, arguments, read_record
from xbench.executors import executor as make_executor
from xbench.records import EXIT_INCOMPLETE, RunRecord

#: a worker that found its cell claimed by another live process (not a failure)
EXIT_BUSY = CellBusy.exit_code
from xbench.store import ResultStore

#: keys a suite entry may set for its runs (the RunConfig keys but the grid's own)
ENTRY_KEYS = ("teacher", "dataset", "dataset_options", "task_options", "method_options", "teacher_options")


@dataclass(frozen=True)
class Entry:
    """One method of a suite, with the options its runs get. ``tasks`` restricts it to some of
    the suite's tasks; by default it runs on every task of the suite it fits."""

    method: str
    tasks: list[str] | None = None
    teacher: str | None = None
    dataset: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    teacher_options: dict[str, Any] = field(default_factory=dict)


#: what a suite may be called: its name names its folder under XBENCH_HOME/sweeps
SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Suite:
    """A grid of runs. ``methods`` lists method names, mappings (an :class:`Entry`: a method with
    options) and ``all``: every registered method but those in ``exclude`` (resolved when the
    sweep starts, so a newly installed plugin joins the grid); ``tasks: all`` every registered
    task. A method that does not fit a task (``IncompatibleError``) is left
    out of that task, and the sweep lists it."""

    name: str
    tier: str
    seeds: list[int]
    description: str = ""
    tasks: Any = "all"
    methods: Any = "all"
    exclude: list[str] = field(default_factory=list)
    device: str = "cpu"
    #: which rows each cell gets: "default+tuned" (the defaults on the suite's seeds, and the
    #: tuned configuration), or "tuned" alone (a regime map's cells are tuned rows: the defaults
    #: still run, as the search's trial 0)
    rows: Literal["default+tuned", "tuned"] = "default+tuned"
    #: regimes the grid is crossed with (``xbench.regimes``; a family name such as R2 stands for
    #: R2-*); none: the tier's own conditions, with no regime named
    regimes: list[str] = field(default_factory=list)
    #: search trials per cell (None: the tier's ``trials``); every method of the suite gets as many,
    #: and trial k is the same draw whatever the number (trials 0..3 of 4 are those of 8)
    trials: int | None = None
    #: the student every run of the suite trains (default: each task's), and its harness options
    #: (``checkpoint``): one for the whole grid, so no method gets another student
    student: str | None = None
    student_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the name is a folder under XBENCH_HOME/sweeps: a path ("../../x") would write outside it
        if not SUITE_NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} is not a slug (letters, digits, '.', '_', '-'; "
                             "starting with a letter or digit; at most 100 characters)")

    def search_trials(self, tier: Tier) -> int:
        return tier.trials if self.trials is None else self.trials


@dataclass(frozen=True)
class Run:
    """One cell and one seed: what ``xbench run`` is given, and what the store knows it by."""

    task: str
    label: str
    config: dict[str, Any]
    config_hash: str
    seed: int
    #: runs with the same group train the same teacher (None: no teacher)
    teacher_group: str | None
    #: runs with the same group pretrain the same student encoder (None: no pretraining stage)
    pretrain_group: str | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        """The cached stages this run shares with others: their first run fills the caches."""
        return tuple(g for g in (self.teacher_group, self.pretrain_group) if g)


@dataclass
class SweepPlan:
    suite: Suite
    runs: list[Run]
    done: list[Run]
    #: (task, method) pairs left out because the method does not fit the task, with the reason
    unfit: list[tuple[str, str, str]]

    @property
    def todo(self) -> list[Run]:
        stored = {(r.config_hash, r.seed) for r in self.done}
        return [r for r in self.runs if (r.config_hash, r.seed) not in stored]


def load_suite(path: Path) -> Suite:
    """A suite from a YAML file, or one shipped with xbench by name (``synth-cpu``)."""
    path = shipped_or_path(path, "suites")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, tier, seeds, tasks, methods")
    # unnamed: the file's name, as a slug ("my suite.yaml" -> my-suite)
    raw.setdefault("name", re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("._-") or "suite")
    suite = from_mapping(Suite, raw, str(path))
    if not suite.seeds or len(set(suite.seeds)) != len(suite.seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of distinct integers")
    if suite.trials is not None and suite.trials < 0:
        raise ConfigError(f"{path}: trials must be >= 0 (or left out: the tier's)")
    return with_regimes(suite, ",".join(suite.regimes)) if suite.regimes else suite


def with_regimes(suite: Suite, spec: str) -> Suite:
    """The suite crossed with the regimes ``spec`` names (``R0,R2``), family names expanded."""
    from xbench.regimes import select

    return dataclasses.replace(suite, regimes=[r.name for r in select(spec)])


def _entries(suite: Suite, reg, where: str) -> list[Entry]:
    items = suite.methods if isinstance(suite.methods, list) else [suite.methods]
    for name in suite.exclude:
        reg.get("methods", name)  # an excluded name must exist: a typo would exclude nothing
    out = []
    for item in items:
        if item == "all":
            out += [Entry(m) for m in reg.names("methods") if m not in suite.exclude]
            continue
        if not isinstance(item, (str, dict)):
            raise ConfigError(f"{where}: methods must be 'all', method names or mappings, not {item!r}")
        entry = from_mapping(Entry, {"method": item} if isinstance(item, str) else item,
                             f"{where}: methods entry {item!r}")
        reg.get("methods", entry.method)
        out.append(entry)
    return out


def _tasks(suite: Suite, reg, where: str) -> list[str]:
    if suite.tasks == "all":
        return list(reg.names("tasks"))
    if not isinstance(suite.tasks, list) or not suite.tasks:
        raise ConfigError(f"{where}: tasks must be 'all' or a non-empty list of task names")
    for t in suite.tasks:
        reg.get("tasks", t)
    return list(suite.tasks)


def _teacher_group(p, seed: int) -> str | None:
    """Runs equal here share one trained teacher (``run.teacher_config``: also across tasks with
    the same teacher view, such as recognition and retrieval)."""
    from xbench.run import teacher_config

    if p.teacher is None:
        return None
    return stable_hash([p.teacher.name, teacher_config(p, p.task.factory(p.task_options), seed)])


def _pretrain_group(p, seed: int) -> str | None:
    """Runs equal here start from the same pretrained encoder (``pretrain_config``)."""
    from xbench.engine import Stage, stages_of
    from xbench.engine.student import pretrain_config

    return stable_hash(pretrain_config(p, seed)) if Stage.PRETRAIN in stages_of(p) else None


def _runs(task: str, label: str, mapping: dict[str, Any], p, seeds: list[int], config_hash: str | None = None) -> list[Run]:
    """A planned configuration's runs on ``seeds`` (its hash computed once, unless given)."""
    config_hash = config_hash or stable_hash(p.resolved())
    return [Run(task, label, mapping, config_hash, seed, _teacher_group(p, seed), _pretrain_group(p, seed))
            for seed in seeds]


def plan_sweep(suite: Suite, reg, store: ResultStore, where: str = "suite") -> SweepPlan:
    """Every run of the suite, checked as ``xbench run`` would check it (a bad name or option
    fails here, before anything runs), and which of them the store already has."""
    from xbench.run import plan

    tiers = load_tiers()
    runs: list[Run] = []
    unfit: list[tuple[str, str, str]] = []
    labels: dict[str, str] = {}
    for regime, task, entry in _cells(suite, reg, where):
        if entry.tasks is not None and task not in entry.tasks:
            continue
        mapping = {"method": entry.method, "task": task, "budget": suite.tier, "device": suite.device,
                   **{k: getattr(entry, k) for k in ENTRY_KEYS if getattr(entry, k)},
                   **({"regime": regime} if regime else {}),
                   **{k: v for k in ("student", "student_options") if (v := getattr(suite, k))}}
        cfg = from_mapping(RunConfig, mapping, f"{where}: {entry.method} on {task}")
        try:
            p = plan(reg, cfg, tiers)
        except IncompatibleError as exc:
            if entry.tasks is not None:  # asked for by name: not fitting is an error
                raise
            if (task, entry.method, str(exc)) not in unfit:  # once, not once per regime
                unfit.append((task, entry.method, str(exc)))
            continue
        config_hash = stable_hash(p.resolved())
        label = _entry_label(entry) + (f" @ {regime}" if regime else "")
        if config_hash in labels:
            raise ConfigError(f"{where}: entries '{labels[config_hash]}' and '{label}' are the "
                              f"same configuration on task '{task}'")
        labels[config_hash] = label
        if suite.rows == "tuned" and not suite.search_trials(p.tier):
            why = f"tier '{suite.tier}' has trials: 0" if suite.trials is None else "the suite has trials: 0"
            raise ConfigError(f"{where}: rows: tuned needs a search ({why})")
        if suite.rows != "tuned":
            runs += _runs(task, label, mapping, p, suite.seeds, config_hash)
        if suite.search_trials(p.tier):
            runs += _search(reg, tiers, store, suite, entry, mapping, label, where)
    return refresh(SweepPlan(suite, runs, [], unfit), store)


def _cells(suite: Suite, reg, where: str) -> list[tuple[str | None, str, Entry]]:
    """(regime, task, entry) for every cell of the grid, regime by regime; a regime that names its
    tasks crosses only those."""
    from xbench.regimes import load_regime

    tasks, entries = _tasks(suite, reg, where), _entries(suite, reg, where)
    regimes = {name: load_regime(name).tasks for name in suite.regimes}
    return [(regime, task, entry) for regime in (suite.regimes or [None]) for task in tasks
            if regime is None or regimes[regime] is None or task in regimes[regime] for entry in entries]


def _planned(reg, tiers, mapping: dict[str, Any], where: str):
    from xbench.run import plan

    return plan(reg, from_mapping(RunConfig, mapping, where), tiers)


def _with_trial(mapping: dict[str, Any], entry: Entry, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A cell's mapping with a trial's settings over the entry's own options."""
    out = {**mapping, "method_options": {**entry.method_options, **settings["method_options"]}}
    if settings["hparams"]:
        out["hparams"] = settings["hparams"]
    if not out["method_options"]:
        del out["method_options"]
    return out


def _search(reg, tiers, store: ResultStore, suite: Suite, entry: Entry, mapping: dict[str, Any], label: str,
            where: str) -> list[Run]:
    """The tier's search for one cell (``xbench.search``): its trials on the tuning seed and, once
    every trial is stored complete, the configuration that won on val run on the suite's seeds
    (its record says how it was chosen and what the search cost)."""
    from xbench import search

    spec, tier = reg.get("methods", entry.method), tiers[suite.tier]
    trials: list[Run] = []
    for k in range(suite.search_trials(tier)):
        m = {**_with_trial(mapping, entry, search.trial(spec, mapping["task"], tier.name, k)), "trial": k}
        p = _planned(reg, tiers, m, f"{where}: {entry.method} search trial {k}")  # a bad draw fails here
        trials += _runs(mapping["task"], f"{label} [trial {k}]", m, p, [tier.tuning_seed])
    found = [store.latest(r.config_hash, r.seed) for r in trials]
    if any(rec is None or not rec.complete for rec in found):
        return trials  # the tuned runs are planned once the whole search is stored
    scores = {k: rec.selection.value if rec.selection.value is not None else math.nan for k, rec in enumerate(found)}
    best = search.best_trial(scores)
    tuning = {"trials": suite.search_trials(tier), "selected": best, "seed": tier.tuning_seed,
              "steps": sum(rec.trained_steps for rec in found),
              "val": {str(k): v for k, v in scores.items()}}
    m = {**_with_trial(mapping, entry, search.trial(spec, mapping["task"], tier.name, best)), "tuning": tuning}
    p = _planned(reg, tiers, m, f"{where}: {entry.method} tuned")
    return trials + _runs(mapping["task"], f"{label} (tuned)", m, p, suite.seeds)


def run_phases(sp: SweepPlan, reg, store: ResultStore, where: str, **kwargs: Any) -> SweepPlan:
    """``run_sweep``, then once more for the runs its results made known (the tuned configurations
    a finished search chose); returns the sweep as planned after both."""
    outcomes = kwargs.setdefault("outcomes", [])
    run_sweep(sp, store, **kwargs)
    tried = {(o.run.config_hash, o.run.seed) for o in outcomes}
    again = plan_sweep(sp.suite, reg, store, where)
    new = [r for r in again.todo if (r.config_hash, r.seed) not in tried]
    if new:
        run_sweep(SweepPlan(again.suite, new, [], again.unfit), store, **kwargs)
    return again


def refresh(sp: SweepPlan, store: ResultStore) -> SweepPlan:
    """The same grid with what the store holds now (after a sitting), without planning again."""
    stored = store.stored_seeds({r.config_hash for r in sp.runs})
    done = [r for r in sp.runs if r.seed in stored.get(r.config_hash, set())]
    return SweepPlan(sp.suite, sp.runs, done, sp.unfit)


def _entry_label(entry: Entry) -> str:
    extras = [f"{k}={v}" for k in ENTRY_KEYS if (v := getattr(entry, k))]
    return entry.method + (f" [{'; '.join(extras)}]" if extras else "")


# ----------------------------------------------------------------------------- running


@dataclass
class Outcome:
    run: Run
    returncode: int
    seconds: float
    log: Path
    score: str = ""


def _fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Estimator:
    """Seconds a run will take: the mean of finished runs of the same task in this sweep, else of
    stored runs of the same task and tier, else of every finished run. ETA = remaining / jobs."""

    def __init__(self, store: ResultStore, tier: str) -> None:
        self.prior: dict[str, list[float]] = {}
        for rec in store.records(tier=tier):
            try:
                took = (dt.datetime.fromisoformat(rec.finished)
                        - dt.datetime.fromisoformat(rec.started)).total_seconds()
            except ValueError:
                continue
            self.prior.setdefault(rec.task, []).append(took)
        self.seen: dict[str, list[float]] = {}

    def add(self, task: str, seconds: float) -> None:
        self.seen.setdefault(task, []).append(seconds)

    def guess(self, task: str) -> float | None:
        for source in (self.seen.get(task), self.prior.get(task),
                       [s for v in self.seen.values() for s in v]):
            if source:
                return sum(source) / len(source)
        return None

    def eta(self, remaining: list[Run], jobs: int) -> str:
        guesses = [self.guess(r.task) for r in remaining]
        if any(g is None for g in guesses):
            return "?"
        return _fmt_duration(sum(guesses) / max(1, jobs))


def sweep_dir(store: ResultStore, suite: Suite) -> Path:
    return store.home / "sweeps" / suite.name


def run_sweep(sp: SweepPlan, store: ResultStore, jobs: int = 1,
            say: Callable[[str], None] = lambda m: None, progress: bool = False,
            outcomes: list[Outcome] | None = None, executor: ExecutorOptions | None = None) -> list[Outcome]:
    """Run what the store lacks on ``executor`` (default: ``jobs`` local processes at a time); the
    finished runs' outcomes are appended to ``outcomes`` (also when interrupted) and returned.
    KeyboardInterrupt stops the workers (their unfinished runs store nothing) and propagates."""
    outcomes = [] if outcomes is None else outcomes
    if not sp.todo:
        return []
    pool = _Workers(sp, store, jobs, say, progress, outcomes, executor or ExecutorOptions())
    try:
        # the leases the driver holds for an engine's workers are renewed while it runs
        with store.beating() if pool.hand_over else nullcontext():
            while pool.pending or pool.running:
                pool.fill()
                finished = pool.finished()
                if not finished:
                    time.sleep(0.2)
                    continue
                for handle in finished:
                    pool.collect(handle)
    except BaseException:
        pool.stop_all()
        raise
    finally:
        pool.close()
    return outcomes


class _Workers:
    """The runs of one sitting on an executor (``xbench.executors``): which runs wait, which run,
    and the progress shown."""

    def __init__(self, sp: SweepPlan, store: ResultStore, jobs: int, say: Callable[[str], None],
                 progress: bool, outcomes: list[Outcome], executor: ExecutorOptions) -> None:
        self.sp, self.store, self.jobs, self.say, self.outcomes = sp, store, jobs, say, outcomes
        self.todo = sp.todo
        self.base = sweep_dir(store, sp.suite)
        for sub in ("configs", "logs", "records"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # xbench's settings travel to a worker of an engine (a local one inherits them anyway); the
        # store's home wins over the environment's
        self.env = {**{k: v for k, v in os.environ.items() if k.startswith("XBENCH_")},
                    "XBENCH_HOME": str(store.home.resolve())}
        # one thread per run, whatever --jobs: the thread count changes a run's bits (the order of
        # its reductions), so a sweep resumed with another --jobs must not mix two environments in
        # one table; parallelism comes from the jobs (a thread count the user set stands)
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env[key] = os.environ.get(key, "1")
        self.exec = make_executor(executor, self.base / "slurm")
        # the local workers store their records; an engine's hand them to the driver
        self.hand_over = executor.name != "local"
        self.estimator = Estimator(store, sp.suite.tier)
        self.pending = list(self.todo)
        self.running: dict[Any, tuple[Run, float, Path]] = {}
        self.trained: set[str] = set()  # teacher groups whose first run finished (the cache is filled)
        self.first: dict[str, Any] = {}  # each teacher group's first run (Ray: the others depend on it)
        self.bar = None
        if progress:  # the one reporter's bar, as a run's stages draw theirs
            self.bar = Reporter(log=say, progress=True).bar(
                len(self.todo), "sweep", unit="run", file=sys.stderr, dynamic_ncols=True, leave=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
            self.bar.set_postfix_str(f"ETA {self.estimator.eta(self.todo, jobs)}")  # from stored runs

    def ready(self, run: Run) -> bool:
        # the first run of a teacher (pretrain) group trains the teacher (encoder); the others
        # wait for its cache (under Ray, as a dependency of its task)
        if self.exec.scheduled:
            return True
        busy = {g for r, *_ in self.running.values() for g in r.groups}
        return all(g in self.trained or g not in busy for g in run.groups)

    def fill(self) -> None:
        while self.exec.scheduled or len(self.running) < self.jobs:
            nxt = next((r for r in self.pending if self.ready(r)), None)
            if nxt is None:
                return
            self.pending.remove(nxt)
            self.start(nxt)

    def record_path(self, run: Run) -> Path:
        return self.base / "records" / f"{run.config_hash}_s{run.seed}.json"

    def start(self, run: Run) -> None:
        log_path = self.base / "logs" / f"{run.task}_{run.config_hash}_s{run.seed}.log"
        # a local worker claims its cell itself; an engine's worker has no store, so the driver
        # holds the cell's lease for it until its record is stored (renewed while the sweep runs)
        held = self.store.claim(run.config_hash, run.seed) if self.hand_over else \
            self.store.holder(run.config_hash, run.seed)
        if held is not None:  # another sweep's (or a run's) live worker has this cell: left to it
            out = Outcome(run, EXIT_BUSY, 0.0, log_path, score=held)
            self.outcomes.append(out)
            self.report(out, log_path)
            return
        cfg_path = self.base / "configs" / f"{run.config_hash}.yaml"
        # written whole every time: a file a killed sweep left half written is never read
        atomic_write_text(cfg_path, yaml.safe_dump(run.config, sort_keys=True))
        args = arguments(cfg_path, run.seed, self.record_path(run) if self.hand_over else None)
        after = [self.first[g] for g in run.groups if g in self.first and g not in self.trained]
        handle = self.exec.start(args, self.env, log_path, after)
        for g in run.groups:
            self.first.setdefault(g, handle)
        self.running[handle] = (run, time.perf_counter(), log_path)

    def finished(self) -> list[Any]:
        return [h for h in self.running if h.poll() is not None]

    def collect(self, handle: Any) -> None:
        """A finished worker: its outcome, the teacher group it unblocks, a progress line."""
        run, t0, log_path = self.running.pop(handle)
        took = time.perf_counter() - t0
        code = handle.poll()
        if self.hand_over and code in (0, EXIT_INCOMPLETE) and not store_handed(self.store, self.record_path(run)):
            code = 1  # it said it finished but handed over no record
        if self.hand_over:
            self.store.release(run.config_hash, run.seed)
        out = Outcome(run, code, took, log_path)
        if code == 0:
            self.estimator.add(run.task, took)
            out.score = _stored_score(self.store, run)
        self.trained.update(run.groups)  # after a failure too: let the others try (and train) themselves
        self.outcomes.append(out)
        self.report(out, log_path)

    def report(self, out: Outcome, log_path: Path) -> None:
        run = out.run
        eta = self.estimator.eta(self.pending + [r for r, *_ in self.running.values()], self.jobs)
        status = (out.score if out.returncode == 0 else
                  f"RUNNING ELSEWHERE ({out.score or 'another process holds its lease'}); left to it"
                  if out.returncode == EXIT_BUSY else
                  f"INCOMPLETE (the wall-clock limit stopped it; a rerun runs it again; log {log_path})"
                  if out.returncode == EXIT_INCOMPLETE else f"FAILED (exit {out.returncode}; log {log_path})")
        line = (f"[{len(self.outcomes)}/{len(self.todo)}] {run.task} {run.label} seed {run.seed}: {status} "
                f"in {_fmt_duration(out.seconds)}; ETA {eta}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"ETA {eta}", refresh=False)
            self.bar.update(1)
            if out.returncode != 0:
                self.bar.write(line, file=sys.stderr)
        else:
            self.say(line)

    def stop_all(self) -> None:
        # SIGTERM, not SIGINT: a sweep started in the background (nohup, &) ignores SIGINT and so
        # do the workers it starts; `xbench run` stops on SIGTERM without storing anything
        for handle in self.running:  # every worker signalled first, then each waited for
            getattr(handle, "signal", lambda: None)()
        for handle in self.running:
            handle.stop()

    def close(self) -> None:
        self.exec.close()
        if self.hand_over:  # cells of workers stopped with the sweep: free for a rerun at once
            for run, *_ in self.running.values():
                self.store.release(run.config_hash, run.seed)
        if self.bar is not None:
            self.bar.close()


def store_handed(store: ResultStore, path: Path) -> bool:
    """Store the record a worker of an engine handed over (``xbench run --record-to``) and remove
    the file; whether there was one."""
    data = read_record(path)
    if data is None:
        return False
    record = RunRecord.from_json(data, str(path))
    latest = store.latest(record.config_hash, record.seed)
    if latest is None or latest.id != record.id:  # else stored already, by a sweep that died before removing it
        store.add(record)
    path.unlink()
    return True


def adopt_handed(store: ResultStore, suite: Suite) -> int:
    """Store the records an engine's workers handed over to a sweep that died before storing them;
    how many."""
    folder = sweep_dir(store, suite) / "records"
    return sum(store_handed(store, p) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else 0


def _stored_score(store: ResultStore, run: Run) -> str:
    rec = store.latest(run.config_hash, run.seed)
    if rec is None:
        return "finished, but no record was stored"
    score = rec.main_score
    return f"{rec.main_metric} {float('nan') if score is None else score:.2f}"


def history_line(sp: SweepPlan, finished: int, failed: int, seconds: float, interrupted: bool) -> dict:
    """One sitting of a sweep, for ``sweeps/<name>/history.jsonl``; ``finished`` counts the runs it
    stored."""
    return {"suite": sp.suite.name, "runs": len(sp.runs), "already_stored": len(sp.done),
            "finished": finished, "failed": failed, "wall_seconds": round(seconds, 1),
            "interrupted": interrupted, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def append_history(store: ResultStore, sp: SweepPlan, entry: dict) -> None:
    path = sweep_dir(store, sp.suite) / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def suite_records(sp: SweepPlan, store: ResultStore) -> list[RunRecord]:
    """The stored records of the suite's runs: the latest record of each (config hash, seed)."""
    wanted = {(r.config_hash, r.seed) for r in sp.runs}
    latest: dict[tuple[str, int], RunRecord] = {}
    for rec in store.records(tier=sp.suite.tier):
        key = (rec.config_hash, rec.seed)
        if key in wanted:
            latest[key] = rec  # records come in finishing order: the last one wins
    return sorted(latest.values(), key=lambda r: (r.task, r.method, r.config_hash, r.seed))


def describe(sp: SweepPlan) -> str:
    """The grid in words: cells, runs, what is stored, what does not fit."""
    trials = [r for r in sp.runs if "trial" in r.config]
    cells = {(r.task, r.config_hash) for r in sp.runs if "trial" not in r.config}
    lines = [(f"suite '{sp.suite.name}': tier {sp.suite.tier}, {len(cells)} cells x "
             f"{len(sp.suite.seeds)} seeds" + (f" + {len(trials)} search trials" if trials else "")
             + f" = {len(sp.runs)} runs; "
             f"{len(sp.done)} already stored, {len(sp.todo)} to run")]
    if trials:
        k = max(r.config["trial"] for r in trials) + 1
        searched = len({r.label.rsplit(" [trial", 1)[0] + r.task for r in trials})
        lines.append(f"search: {k} trials per method on seed {trials[0].seed}; each method's tuned runs "
                     f"start once its trials are stored ({searched} searches: "
                     f"{searched * len(sp.suite.seeds)} tuned runs in all"
                     + (", and no default rows: rows: tuned)" if sp.suite.rows == "tuned" else ")"))
    if sp.unfit:
        pairs = sorted({f"{m} on {t}" for t, m, _ in sp.unfit})
        lines.append(f"left out (the method does not fit the task): {', '.join(pairs)}")
    return "\n".join(lines)
