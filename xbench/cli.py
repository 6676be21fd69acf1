"""The ``xbench`` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from xbench.errors import ConfigError, XbenchError
from xbench.settings import settings

LIST_KINDS = ("methods", "tasks", "datasets", "losses", "teachers", "students", "regimes")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xbench", description="Benchmark harness for cross-modal KD on video")
    p.add_argument("--traceback", action="store_true", help="show tracebacks of xbench errors")
    p.add_argument("-v", "--verbose", action="store_true", help="debug detail on stderr")
    sub = p.add_subparsers(dest="command", required=True)
    _run_parsers(sub)
    _result_parsers(sub)
    _plugin_parsers(sub)
    _data_parsers(sub)
    return p


def _run_parsers(sub) -> None:
    r = sub.add_parser("run", help="train and evaluate one method on one task")
    r.add_argument("--method")
    r.add_argument("--task")
    r.add_argument("--dataset")
    r.add_argument("--teacher", help="the teacher (default: the method's, else the task's)")
    r.add_argument("--student", help="the student, the same for every method compared (default: the task's)")
    r.add_argument("--tier", "--budget", dest="budget",
                   help="the budget tier (xbench/benchmarks/budgets.yaml; default: cpu); --budget is an alias")
    r.add_argument("--seed", type=int, nargs="+", help="one or more seeds (default: 0)")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"))
    r.add_argument("--regime", help="run in a regime: a shipped one's name (xbench list regimes) or a regime YAML file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override an option: dataset.*, task.*, method.*, budget.*, teacher.* (repeatable)")
    r.add_argument("--config", type=Path, help="a run config YAML file (CLI flags win)")
    r.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    r.add_argument("--restart", action="store_true",
                   help="discard the checkpoints a killed run of this config left and start from step 0 "
                        "(default: resume from them)")
    r.add_argument("--record-to", type=Path, metavar="FILE",
                   help="write the record to FILE (JSON) instead of the store: how a sweep's Ray or Slurm worker "
                        "hands it to the sweep, which stores it")
    r.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the run's stage checkpoints in XBENCH_HOME/checkpoints after its record is stored")
    r.add_argument("--verify-data", action="store_true",
                   help="hash every data file's content against its manifest before using it, not only the files "
                        "whose stat changed: a generated file that fails is generated again, a file of yours is "
                        "named and the run stops")
    r.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="run over N processes on this machine with torchrun (one per GPU, or gloo on CPU): the tier's "
                        "batch is split over them, so the run trains on the same batches as one process")


def _result_parsers(sub) -> None:
    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("kind", choices=LIST_KINDS)
    ls.add_argument("-v", "--verbose", action="store_true",
                    help="datasets: each one's expected files, the tasks it fits and the protocol it implements; "
                         "students, teachers: the inputs each reads and the taps it returns")

    sub.add_parser("plugins", help="show loaded plugins and what each registers")

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--task")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--delete", metavar="ID", nargs="+", help="remove these stored runs (row and folder)")
    runs.add_argument("--rebuild", action="store_true",
                      help="mend the store: a database that does not read is moved aside and made anew, records in "
                           "runs/ that are not in it are imported once they verify, and stored runs get back a "
                           "missing result.json")

    lb = sub.add_parser("leaderboard", help="tables of stored runs, one per tier and task")
    lb.add_argument("--task", help="only this task")
    lb.add_argument("--tier", "--budget", dest="budget", help="only this tier (--budget: an alias)")
    lb.add_argument("--format", choices=("md", "plain", "latex", "csv", "json", "html"), default="md")
    lb.add_argument("--regimes", action="store_true",
                    help="the regime tables: per task, methods x regimes, each cell the paired gain over "
                         "the regime's student (runs made with --regime / sweep --regimes)")
    lb.add_argument("--include-incomplete", action="store_true",
                    help="also rank runs the wall-clock limit stopped before their budget (marked)")
    lb.add_argument("--paper", action="store_true",
                    help="show the value each method's paper reports beside the reproduction")
    lb.add_argument("--records", type=Path, metavar="DIR",
                    help="read result records (*.json) from DIR instead of the store")
    lb.add_argument("--out", type=Path, metavar="DIR",
                    help="write every format and the plots into DIR (as the published leaderboard/)")


def _plugin_parsers(sub) -> None:
    sw = sub.add_parser("sweep", help="run a suite: methods x tasks x seeds at one tier, skipping "
                                      "runs already stored (an interrupted sweep resumes)")
    sw.add_argument("suite", type=Path, help="a suite YAML file, or the name of a shipped one (synth-cpu)")
    sw.add_argument("--jobs", type=int, default=1,
                    help="runs in parallel, each its own process (executor local; slurm: jobs submitted at once)")
    sw.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                    help="where the runs execute: local processes, Ray tasks (ray.init(), or --ray-address), or "
                         "Slurm jobs through submitit; XBENCH_HOME must be a path every worker shares")
    sw.add_argument("--ray-address", metavar="ADDR", help="executor ray: a running cluster's address (default: "
                                                          "a local one)")
    sw.add_argument("--slurm-partition", metavar="NAME", help="executor slurm: the partition")
    sw.add_argument("--slurm-gpus", type=int, default=0, metavar="N", help="executor slurm: GPUs per job")
    sw.add_argument("--slurm-time", type=int, default=60, metavar="MIN", help="executor slurm: a job's time limit")
    sw.add_argument("--slurm-cluster", metavar="NAME",
                    help="executor slurm: submitit's cluster (default: slurm where sbatch exists; `local` runs "
                         "the jobs as local processes, as the tests do)")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, metavar="N",
                    help="executor ray: GPUs each run asks for (its CPUs: 1)")
    sw.add_argument("--dry-run", action="store_true", help="show the grid and what is stored; run nothing")
    sw.add_argument("--regimes", metavar="R0,R2",
                    help="cross the suite with these regimes (a family name such as R2 stands for R2-*; "
                         "default: the suite's own regimes, else none)")
    sw.add_argument("--min-seeds", type=int, default=10, metavar="N",
                    help="--publish refuses a row with fewer seeds (default 10: fewer cannot reach p < 0.05 "
                         "after Holm's correction over a table of many comparisons)")
    sw.add_argument("--unpinned", action="store_true",
                    help="with --publish: allow another numerical stack than the pinned one (the tables say so)")
    sw.add_argument("--publish", type=Path, metavar="DIR",
                    help="then write the suite's records and every rendered format into DIR")
    sw.add_argument("--quiet", action="store_true")

    ck = sub.add_parser("check", help="run the conformance checks on tiny data, one line per check")
    ck.add_argument("--method", help="only this method (on every task it fits, or --task)")
    ck.add_argument("--plugin", help="only what this plugin registers")
    ck.add_argument("--task", help="run methods on this task only")
    ck.add_argument("--failed-only", action="store_true", help="print failed checks only")

    npl = sub.add_parser("new-plugin", help="write a plugin distribution (method, tests, README) to start from")
    npl.add_argument("name", help="the method's name, e.g. my-kd (lowercase, digits, dashes)")
    npl.add_argument("--dir", type=Path, default=Path("."), help="where xbench-NAME/ is written (default: here)")

    sm = sub.add_parser("submit", help="check run records made elsewhere before they enter a leaderboard")
    sm.add_argument("--check", dest="files", type=Path, nargs="+", required=True, metavar="RESULT.json")
    sm.add_argument("--tier", help="the tier the records must be of (default: each record's own)")

    im = sub.add_parser("import", help="check run records and add those that pass to the store")
    im.add_argument("files", type=Path, nargs="+", metavar="RESULT.json")
    im.add_argument("--tier", help="the tier the records must be of (default: each record's own)")


def _data_parsers(sub) -> None:
    rp = sub.add_parser("reproduce", help="run a stored or published record again and compare its metrics "
                                          "(exit 0: identical, 1: some differ)")
    rp.add_argument("record", help="a result JSON file, or the id of a run in the store")
    rp.add_argument("--records", type=Path, metavar="DIR",
                    help="the records of the record's cell, for the seed spread (default: the store)")
    rp.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    rp.add_argument("--quiet", action="store_true", help="no log lines of the re-run")

    data = sub.add_parser("data", help="prepare dataset files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fl = data_sub.add_parser("flow", help="optical flow (Farneback) of every video under a folder, "
                                          "stored as .npy for flow teachers")
    fl.add_argument("src", type=Path, help="a video file or a folder searched recursively")
    fl.add_argument("--out", type=Path, required=True, help="folder the .npy files mirror SRC into")
    fl.add_argument("--pool", type=int, default=2, help="average the flow over POOL x POOL pixel blocks")
    fl.add_argument("--winsize", type=int, default=15,
                    help="Farneback averaging window in pixels (15 suits ~224 px video; 7 for synth's 32 px)")
    fl.add_argument("--overwrite", action="store_true", help="recompute files that exist")
    fl.add_argument("--quiet", action="store_true")
    for name, helptext in (("prepare", ("describe a dataset's files (manifest, probe, problems) and decode its "
                                        "clips into the cache; resumes where it stopped")),
                           ("check", ("compare a dataset's files with its manifest and print what changed "
                                      "(exit 1 if anything did); a generated dataset (synth): hash every file of "
                                      "each option set generated and generate again what fails"))):
        dp = data_sub.add_parser(name, help=helptext)
        dp.add_argument("name", help="a dataset of your files: folder, list, or a plugin's")
        dp.add_argument("--root", type=Path, required=name == "prepare",
                        help="the dataset's folder (check of a generated dataset: the data folder it is under, "
                             "default XBENCH_DATA)")
        dp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset option (as dataset.KEY in runs): annotations, sampling, short_side, ...")
        if name == "prepare":
            dp.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                            help="processes that probe and decode (default: up to 4)")
            dp.add_argument("--quiet", action="store_true", help="no progress bar")
        else:
            dp.add_argument("--verify", action="store_true", help="hash every file's content (sha256), not "
                                                                  "only the files whose stat changed")
    dc = data_sub.add_parser("cache", help="the decode-once cache of video frames (under XBENCH_DATA)")
    what = dc.add_mutually_exclusive_group(required=True)
    what.add_argument("--info", action="store_true", help="list the caches: key, what it hashes, size")
    what.add_argument("--clear", action="store_true", help="remove every cache (the next runs decode again)")


def _one_line(exc: BaseException) -> str:
    return _printable(" ".join(str(exc).split()))


def _printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): a name from a file or the command
    line cannot move the cursor, recolour or hide part of a message on the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal

    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc hands to torchrun
    # SIGTERM (a scheduler, a sweep stopping its workers) stops a run or a sweep as Ctrl-C does:
    # the unfinished run stores nothing (the caller's handler is put back afterwards)
    stoppable = args.command in ("run", "sweep")
    previous = signal.signal(signal.SIGTERM, _terminate) if stoppable else None
    try:
        return _main(args)
    finally:
        if stoppable:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def configure_output(quiet: bool, verbose: bool) -> None:
    """The one reporter: messages of xbench's modules (the "xbench" logger) go to stderr as plain
    lines; --quiet leaves errors only, -v adds debug detail."""
    import logging

    logger = logging.getLogger("xbench")
    handler = logging.StreamHandler(sys.stderr)  # the stderr of now (a test may have replaced it)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _main(args) -> int:
    configure_output(getattr(args, "quiet", False), args.verbose)
    if args.command in ("run", "check", "reproduce"):
        from xbench.alloc import configure

        configure()  # before torch allocates: a steady allocator for the run (XBENCH_ALLOCATOR=default: off)
    try:
        return COMMANDS[args.command](args)
    except XbenchError as exc:
        if args.traceback or settings().traceback:
            raise
        from xbench import distributed

        # under torchrun every rank may fail: say which one
        where = f"rank {distributed.rank()}: " if distributed.requested() > 1 else ""
        print(f"xbench: error: {where}{_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("xbench: interrupted; nothing of the unfinished run was stored", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        from xbench.atomic import write_error

        err = write_error(exc)
        if err is None or args.traceback or settings().traceback:
            raise
        print(f"xbench: error: {_one_line(err)}", file=sys.stderr)
        return 2


def cmd_list(args) -> int:
    from tabulate import tabulate

    from xbench.registry import build_registry

    if args.kind == "regimes":  # data shipped with xbench, not registered by plugins
        from xbench.regimes import shipped

        print(tabulate([(r.name, r.tests) for r in shipped()], headers=("name", "tests"), tablefmt="simple"))
        return 0
    reg = build_registry()
    if args.kind == "datasets" and args.verbose:
        print("\n\n".join(_dataset_card(reg, name) for name in reg.names("datasets")))
        return 0
    if args.kind in ("students", "teachers") and args.verbose:
        print("\n\n".join(_model_card(reg, args.kind, name) for name in reg.names(args.kind)))
        return 0
    rows = [(name, reg.get(args.kind, name).description, reg.entry(args.kind, name).plugin)
            for name in reg.names(args.kind)]
    print(tabulate(rows, headers=("name", "description", "plugin"), tablefmt="simple"))
    return 0


def _model_card(reg: Any, kind: str, name: str) -> str:
    """A student or teacher as ``list students|teachers -v`` shows it: the inputs it reads and the
    taps it returns (what losses can read of it)."""
    m = reg.get(kind, name)
    lines = [f"{name} ({reg.entry(kind, name).plugin})", f"  {m.description}",
             f"  {'reads:':<9} {', '.join(m.modalities)}", f"  {'taps:':<9} {', '.join(m.taps)}"]
    if not m.sample:
        return "\n".join(lines)
    from xbench.specs import NoOptions
    from xbench.taps import sample_shapes

    on = ", ".join(f"{k} {v}" for k, v in m.sample.items())
    try:
        options = None if getattr(m, "options", NoOptions) is NoOptions else m.options()
        taps, modules = sample_shapes(m.factory, m.sample, options)
    except Exception as exc:  # noqa: BLE001 - a card is still shown; the reason is one line of it
        return "\n".join([*lines, f"  shapes:   not shown ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"])
    width = max(map(len, [*taps, *modules]))
    return "\n".join([*lines, f"  shapes on {on}, batch 2:",
                      *(f"    {k:<{width}}  {v}" for k, v in taps.items()),
                      "  modules (tap any as module:<path>[:feature|tokens|spatial]):",
                      *(f"    {k:<{width}}  {v}" for k, v in list(modules.items())[:MODULES_SHOWN]),
                      *([f"    ... {len(modules) - MODULES_SHOWN} more"] if len(modules) > MODULES_SHOWN else [])])


#: top modules a model card lists
MODULES_SHOWN = 32


def _dataset_card(reg: Any, name: str) -> str:
    """A dataset as ``list datasets -v`` shows it: what it is, the files it expects, the tasks
    it fits (those whose annotations and student inputs it has) and the protocol it implements."""
    d = reg.get("datasets", name)
    tasks = [t for t in reg.names("tasks") if set(reg.get("tasks", t).annotations) <= set(d.annotations)
             and set(reg.get("tasks", t).student_modalities) <= set(d.modalities)]
    lines = [f"{name} ({reg.entry('datasets', name).plugin})", f"  {d.description}"]
    lines += [f"  {k:<9} {v}" for k, v in (("layout:", d.layout or "generated; no files"),
                                          ("tasks:", ", ".join(tasks) or "none"),
                                          ("protocol:", d.protocol or "-"))]
    return "\n".join(lines)


def cmd_plugins(args) -> int:
    from tabulate import tabulate

    from xbench.registry import build_registry

    reg = build_registry()
    rows = []
    for name, info in sorted(reg.plugins.items()):
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in reg.registered_by(name).items())
        rows.append((name, info.dist, info.version, what or "-"))
    print(tabulate(rows, headers=("plugin", "distribution", "version", "registers"), tablefmt="simple"))
    return 0


def _run_config(args) -> Any:
    from xbench.config import RunConfig, from_mapping, load_run_config, parse_set

    raw: dict[str, Any] = load_run_config(args.config) if args.config else {}
    for key, value in (("method", args.method), ("task", args.task), ("dataset", args.dataset),
                       ("teacher", args.teacher), ("student", args.student),
                       ("budget", args.budget), ("seeds", args.seed), ("device", args.device),
                       ("regime", args.regime)):
        if value is not None:
            raw[key] = value
    for section, values in parse_set(args.overrides).items():
        raw[section] = {**raw.get(section, {}), **values}
    for key in ("method", "task"):
        if key not in raw:
            raise ConfigError(f"no {key} given: pass --{key} or set '{key}' in --config")
    return from_mapping(RunConfig, raw, str(args.config) if args.config else "command line")


def _process_age() -> float | None:
    """Seconds since this process started (Linux's /proc; None elsewhere): the interpreter's start
    and the imports before ``main``, the first part of a run's time profile."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def cmd_run(args) -> int:
    from xbench import distributed

    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: need at least 1 process")
    if args.nproc > 1 and distributed.requested() == 1:
        from xbench.config import load_tiers
        from xbench.registry import build_registry
        from xbench.run import plan, resolve_device

        cfg = _run_config(args)
        tier = plan(build_registry(), cfg, load_tiers()).tier
        if tier.batch_size % args.nproc:  # said before any process starts
            raise ConfigError(f"--nproc {args.nproc}: tier {tier.name}'s batch of {tier.batch_size} does not split "
                              f"over {args.nproc} processes")
        if resolve_device(cfg.device).type == "cuda" and args.nproc > _cuda_count():
            raise ConfigError(f"--nproc {args.nproc}: one process per GPU, and this machine has "
                              f"{_cuda_count()}")
        return _launch(args)
    from xbench.data import io

    try:
        with io.verifying(args.verify_data):
            return _run(args)
    finally:
        distributed.shutdown()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _launch(args) -> int:
    """``xbench run --nproc N``: the same command under torchrun's launcher, N processes on this
    machine; a rank that fails ends the run, named in one line (its own error is printed above)."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from xbench.records import EXIT_INCOMPLETE

    n = args.nproc
    argv, skip = [], False
    for a in args.argv:  # the run's own arguments, without --nproc
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    if "OMP_NUM_THREADS" not in os.environ:  # the machine's cores shared out, as torchrun does
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure report is ours
    # DDP's one-off C++ notes (unused-parameter search) are not the user's concern; errors still show
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=f"xbench-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    try:
        elastic_launch(config, sys.executable)("-P", "-m", "xbench.cli", *argv)
    except ChildFailedError as exc:
        codes = {f.exitcode for f in exc.failures.values()}
        if codes == {EXIT_INCOMPLETE}:  # every rank stored nothing more than rank 0 said
            return EXIT_INCOMPLETE
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = f"exit {code}" if code >= 0 else f"signal {-code}"
        print(f"xbench: error: rank {rank} of {n} failed ({how}); the run stopped on every rank", file=sys.stderr)
        return code if code > 0 else 1
    return 0


def _run(args) -> int:
    from xbench import distributed

    age = _process_age()
    t_imports = time.perf_counter()
    from tabulate import tabulate  # noqa: F401 - imported here, timed as the run's imports

    from xbench.config import load_tiers
    from xbench.context import Clock
    from xbench.hashing import stable_hash
    from xbench.leaderboard import mean_std  # noqa: F401 - as above
    from xbench.records import EXIT_INCOMPLETE
    from xbench.registry import build_registry
    from xbench.run import checkpoints_for, execute, plan, resolve_device
    from xbench.store import ResultStore

    imports = time.perf_counter() - t_imports

    cfg = _run_config(args)
    reg = build_registry()
    p = plan(reg, cfg, load_tiers())
    device = resolve_device(cfg.device)
    if args.record_to is not None and len(cfg.seeds) > 1:
        raise ConfigError(f"--record-to {args.record_to}: one seed only (given {len(cfg.seeds)})")
    device = distributed.init(device.type) or device  # under torchrun: join its process group
    main = distributed.is_main()
    if not main:  # rank 0 reports and writes; the others train and evaluate alongside it
        args.quiet = True
    # a worker that hands its record over never opens the store: the sweep's driver writes it
    store = ResultStore() if args.record_to is None and main else None
    config_hash = stable_hash(p.resolved())
    progress = not args.quiet and sys.stderr.isatty()
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    records = []
    for seed in cfg.seeds:
        say(f"xbench: {p.method.name} on {p.task.name}/{p.dataset_name}, tier {p.tier.name}, seed {seed}")
        lines: list[str] = []

        def log(msg: str, lines: list[str] = lines) -> None:
            lines.append(msg)
            say(f"  {msg}")

        clock = Clock()
        if not records:  # the process's fixed part, paid once for all its seeds
            if age is not None:
                clock.add("startup", age)
            clock.add("imports", imports)
        # the cell (config, seed) is claimed in the store first: a second sweep or a rerun started
        # meanwhile never runs it at once (a worker handing its record over runs under its driver)
        with store.lease(config_hash, seed) if store is not None else contextlib.nullcontext():
            ckpts = checkpoints_for(p, seed, device, log=log, restart=args.restart and main)
            rec = execute(p, seed, device=device, progress=progress, log=log, clock=clock, checkpoints=ckpts)
            records.append(rec)
            if not main:
                continue
            with clock.part("record"):
                path = _keep(rec, store, args.record_to)
        if ckpts is not None and not args.keep_checkpoints:  # the record holds what they were for
            ckpts.clear()
        log(f"time: {clock.summary()}")
        if args.record_to is None:
            (path.parent / "log.txt").write_text("\n".join(lines) + "\n")
        say(f"  stored {rec.id} -> {path}")
    if not main:
        return EXIT_INCOMPLETE if any(not r.complete for r in records) else 0
    return _print_runs(p, records)


def _print_runs(p: Any, records: list[Any]) -> int:
    """``xbench run``'s summary: the test metrics of each seed (and their mean), what each spent,
    and a last line for each run the clock cut short; the exit status."""
    from tabulate import tabulate

    from xbench.leaderboard import mean_std
    from xbench.records import EXIT_INCOMPLETE

    metric = p.task.main_metric
    keys = list(records[0].metrics)
    table = [[r.seed, *(f"{r.metrics.get(k, float('nan')):.2f}" for k in keys),
              r.method_stage.steps, r.method_stage.samples, r.budget.totals.teacher_forwards,
              f"{r.budget.totals.seconds:.1f}", r.budget.totals.stopped_by or "-"] for r in records]
    if len(records) > 1:
        table.append(["mean ± std", *(mean_std([r.metrics[k] for r in records]) for k in keys),
                      "", "", "", "", ""])
    if p.method.evaluates == "teacher":
        evaluated = "the val-selected teacher (privileged input)"
    elif records[0].selection.split is None:  # self-supervised, no fine-tuning
        evaluated = "the student's last state (self-supervised, nothing selected)"
    else:
        evaluated = "the val-selected student"
    if getattr(p.task_options, "protocol", None) == "linear":
        evaluated += " through a linear probe"
    print(f"{p.method.name} on {p.task.name} ({p.dataset_name}), tier {p.tier.name}, "
          f"test metrics of {evaluated}; main metric: {metric}")
    print(tabulate(table, headers=["seed", *keys, "steps", "samples", "teacher fwd", "seconds",
                                   "limit hit"], tablefmt="simple", disable_numparse=True))
    short = [r for r in records if not r.complete]
    for r in short:  # the last lines: a number the clock cut short must not pass for a result
        stage = next(s for s in r.budget.stages if s.stopped_by == "max_seconds")
        print(f"xbench: incomplete: seed {r.seed}: the wall-clock limit (max_seconds={p.tier.max_seconds:g}) "
              f"stopped {stage.stage} at step {stage.steps} of {stage.max_steps}; stored as incomplete "
              f"({r.id}), left out of leaderboards", file=sys.stderr)
    return EXIT_INCOMPLETE if short else 0


def _keep(rec: Any, store: Any, record_to: Path | None) -> Path:
    """Store the record, or write it to ``record_to`` (atomically) for the sweep that started
    this run to store; where it went."""
    if record_to is None:
        return store.add(rec)
    import json

    from xbench.atomic import atomic_write_text

    record_to.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_to, json.dumps(rec.to_json(), indent=1, sort_keys=True))
    return record_to


def cmd_runs(args) -> int:
    from tabulate import tabulate

    from xbench.store import ResultStore

    if args.rebuild:
        done = ResultStore.rebuild()
        for aside in done["moved"]:
            print(f"moved the unreadable database aside: {aside}")
        for run_id, why in done["rejected"]:
            print(f"not imported: {_printable(run_id)}: {why}")
        print(f"rebuilt the store: {len(done['imported'])} record(s) imported, {len(done['rejected'])} rejected, "
              f"{len(done['restored'])} result.json restored")
        return 0
    store = ResultStore()
    if args.delete:
        for run_id in args.delete:
            if not store.delete(run_id):
                raise ConfigError(f"no stored run '{run_id}'")
            print(f"deleted {run_id}")
        return 0
    recs = store.records(task=args.task)[-args.limit:]
    _warn_invalid(store)
    rows = [(r.id, r.method, r.task, r.tier, r.seed, f"{r.main_score:.2f} {r.main_metric}", r.finished[:19])
            for r in recs]
    print(tabulate(rows, headers=("id", "method", "task", "tier", "seed", "score", "finished"),
                   tablefmt="simple") if rows else "no runs")
    return 0


def _warn_invalid(store) -> None:
    """Name the stored runs a read left out because they break the record schema."""
    for run_id, problem in store.invalid:
        print(f"xbench: warning: stored run {run_id[:80]!r} left out ({problem}); "
              f"'xbench runs --delete ID' removes it", file=sys.stderr)


def cmd_leaderboard(args) -> int:
    from xbench.leaderboard import build, incomplete_note, paper_values
    from xbench.registry import build_registry
    from xbench.render import render

    if args.records:
        from xbench.publish import load_records

        recs = [r for r in load_records(args.records)
                if (not args.task or r.task == args.task) and (not args.budget or r.tier == args.budget)]
    else:
        from xbench.store import ResultStore

        store = ResultStore()
        recs = store.records(task=args.task, tier=args.budget)
        _warn_invalid(store)
    note = None if args.include_incomplete else incomplete_note(recs)
    if note:
        print(f"xbench: {note}", file=sys.stderr)
    if args.out:
        import json

        from xbench.publish import render_records

        meta_path = (args.records.parent if args.records else args.out) / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        tables = render_records(recs, meta, args.out, include_incomplete=args.include_incomplete)
        print(f"{len(tables)} tables of {len(recs)} runs written to {args.out}", file=sys.stderr)
        return 0
    if not any(r.complete or args.include_incomplete for r in recs):
        print("no runs")
        return 0
    reg = build_registry()
    tables = build(recs, paper_values(reg), include_incomplete=args.include_incomplete)
    if args.regimes:
        from xbench import regimemap

        maps = regimemap.build_maps(tables)
        if not maps:
            raise ConfigError("no regime table: it needs runs with a regime and the student's runs of the same "
                              "regime ('xbench run --regime', 'xbench sweep SUITE --regimes')")
        print(regimemap.render(maps, args.format), end="")
        return 0
    print(render(tables, args.format, paper=args.paper), end="" if args.format in ("latex", "csv", "json", "html") else "\n")
    return 0


def cmd_sweep(args) -> int:
    import time

    from xbench.records import EXIT_INCOMPLETE
    from xbench.registry import build_registry
    from xbench.store import ResultStore
    from xbench.sweep import (
        EXIT_BUSY,
        adopt_handed,
        append_history,
        describe,
        history_line,
        load_suite,
        plan_sweep,
        refresh,
        run_phases,
        with_regimes,
    )

    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: need at least 1")
    suite = load_suite(args.suite)
    if args.regimes:
        suite = with_regimes(suite, args.regimes)
    store = ResultStore()
    reg = build_registry()
    adopted = adopt_handed(store, suite)
    if adopted:
        print(f"stored {adopted} records that Ray or Slurm workers had handed over to a sweep that stopped "
              "before storing them", file=sys.stderr)
    sp = plan_sweep(suite, reg, store, str(args.suite))
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    print(describe(sp), file=sys.stderr)
    if args.dry_run:
        if args.publish:  # what is stored so far, without running anything
            _publish(args, sp, store, reg)
        return 0

    t0 = time.perf_counter()
    outcomes: list = []
    try:
        # the history and the summary count from the plan the sitting started with; the search's
        # tuned runs join it as they become known
        final = run_phases(sp, reg, store, str(args.suite), jobs=args.jobs, say=say, executor=_executor(args),
                           progress=not args.quiet and sys.stderr.isatty(), outcomes=outcomes)
    except KeyboardInterrupt:
        # counted from the store: a run that finished as the signal came is stored and counts
        stored = len(refresh(sp, store).done)
        append_history(store, sp, history_line(sp, stored - len(sp.done),
                                                sum(o.returncode != 0 for o in outcomes),
                                                time.perf_counter() - t0, True))
        print(f"xbench: sweep interrupted; {stored} of {len(sp.runs)} runs are stored, and "
              f"'xbench sweep {args.suite}' resumes from there", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - t0
    failed = [o for o in outcomes if o.returncode not in (0, EXIT_INCOMPLETE, EXIT_BUSY)]
    short = [o for o in outcomes if o.returncode == EXIT_INCOMPLETE]
    elsewhere = [o for o in outcomes if o.returncode == EXIT_BUSY]
    finished = len(outcomes) - len(failed) - len(short) - len(elsewhere)
    append_history(store, sp, history_line(sp, finished, len(failed) + len(short), seconds, False))
    print(f"sweep '{suite.name}': {finished} runs finished, {len(short)} incomplete, {len(failed)} failed, "
          + (f"{len(elsewhere)} running elsewhere (a rerun stores what they leave), " if elsewhere else "")
          + f"{len(sp.done)} already stored, in {seconds:.0f} s", file=sys.stderr)
    for o in short:
        print(f"  incomplete (the clock stopped it; run again next time): {o.run.task} {o.run.label} "
              f"seed {o.run.seed} (log: {o.log})", file=sys.stderr)
    for o in failed:
        print(f"  failed: {o.run.task} {o.run.label} seed {o.run.seed} (log: {o.log})", file=sys.stderr)
    if args.publish:
        _publish(args, refresh(final, store), store, reg)
    return 1 if failed or short or elsewhere else 0


def _executor(args) -> Any:
    from xbench.executors import ExecutorOptions

    return ExecutorOptions(name=args.executor, ray_address=args.ray_address, slurm_partition=args.slurm_partition,
                           slurm_gpus=args.slurm_gpus, slurm_time=args.slurm_time, slurm_cluster=args.slurm_cluster,
                           gpus=args.gpus_per_run)


def _publish(args, done, store, reg) -> None:
    """Write the suite's stored records and every format into --publish (``done``: the sweep's
    plan as the store holds it now)."""
    from xbench.publish import environment_line, publish
    from xbench.sweep import suite_records

    environment = environment_line(args.unpinned)  # before anything is written
    suite = done.suite
    records = suite_records(done, store)
    folder = str(args.publish).rstrip("/")
    meta = {"suite": suite.name, "suite_file": str(args.suite), "tier": suite.tier,
            "expected_runs": len(done.runs), "missing": [f"{r.task} {r.label} seed {r.seed}" for r in done.todo],
            "folder": folder, "command": f"xbench sweep {args.suite} --publish {folder}",
            "environment": environment}
    publish(records, meta, args.publish, reg, min_seeds=args.min_seeds)
    print(f"published {len(records)} runs into {folder}", file=sys.stderr)


def cmd_check(args) -> int:
    from xbench.data.io import data_home
    from xbench.registry import build_registry
    from xbench.testing import plugin_checks

    if args.method and args.plugin:
        raise ConfigError("give --method or --plugin, not both")
    reg = build_registry()

    def say(result) -> None:
        if result.ok is not True or not args.failed_only:
            print(result.line(), flush=True)

    results = plugin_checks(reg, data_home(), plugin=args.plugin, method=args.method, task=args.task, say=say)
    failed = sum(r.ok is False for r in results)
    skipped = sum(r.ok is None for r in results)
    print(f"{len(results) - failed - skipped} passed, {failed} failed" + (f", {skipped} not run" if skipped else ""))
    return 1 if failed else 0


def _data_cache(args) -> int:
    from xbench.data import decoded
    from xbench.data.io import data_home

    home = data_home()
    if args.clear:
        print(f"removed {decoded.clear(home)} decode caches from {home / 'decoded'}")
        return 0
    caches = decoded.info(home)
    if not caches:
        print(f"no decode cache in {home / 'decoded'}")
    for c in caches:
        p = c["params"]
        print(f"{c['key']}: {c['entries']} videos, {c['bytes'] / 2**20:.1f} MiB, manifest {p.get('manifest')}, "
              f"{p.get('reader')} {p.get('version')}, frames {p.get('frames')}, size {p.get('size')} ({c['path']})")
    return 0


def cmd_new_plugin(args) -> int:
    from xbench.registry import build_registry
    from xbench.scaffold import module_name, new_plugin

    folder = new_plugin(args.name, args.dir, build_registry())
    print(f"wrote {folder}/: pyproject.toml, {module_name(args.name)}/__init__.py, "
          f"tests/test_{module_name(args.name)}.py, README.md\n"
          f"next: cd {folder} && pip install -e '.[test]' && python -m pytest -q && "
          f"xbench run --method {args.name} --task recognition --budget smoke")
    return 0


def _checked(args) -> list[tuple[Path, Any, list[str]]]:
    """(file, its record: None when rejected, its problems) for each file given."""
    from xbench.config import load_tiers
    from xbench.records import RunRecord
    from xbench.registry import build_registry
    from xbench.submit import check_record, load

    reg, tiers = build_registry(), load_tiers()
    out = []
    for path in args.files:
        data = load(path)
        problems = check_record(data, reg, tiers, args.tier)
        record = None
        if problems:
            print(f"REJECTED {path}: " + "; ".join(problems))
        else:
            record = RunRecord.from_checked(data)  # check_record passed its schema
            print(f"OK {path}: {record.method} on {record.task}, tier {record.tier}, seed {record.seed}")
        out.append((path, record, problems))
    return out


def cmd_submit(args) -> int:
    results = _checked(args)
    return 1 if any(problems for _, _, problems in results) else 0


def cmd_import(args) -> int:
    from xbench.store import ResultStore

    results = _checked(args)
    store = ResultStore()
    have = {r.id for r in store.records()}
    added = 0
    for _, record, problems in results:
        if problems or record.id in have:  # unchecked records never enter the store
            continue
        store.add(record)
        have.add(record.id)
        added += 1
    rejected = sum(bool(p) for _, _, p in results)
    print(f"imported {added}, rejected {rejected}, already stored {len(results) - added - rejected}")
    return 1 if rejected else 0


def _dataset_for_files(args) -> tuple[Any, Any]:
    """The spec and options of ``xbench data prepare|check NAME --root PATH --set KEY=VALUE``."""
    from xbench.config import from_mapping, parse_set
    from xbench.data.real import ClipOptions
    from xbench.registry import build_registry

    spec = build_registry().get("datasets", args.name)
    generated = not (isinstance(spec.options, type) and issubclass(spec.options, ClipOptions))
    if generated and args.data_command == "prepare":
        raise ConfigError(f"dataset '{args.name}' is not read from your files (it is generated on first use): "
                          "nothing to prepare")
    if not generated and args.root is None:
        raise ConfigError(f"dataset '{args.name}' is read from your files: say where with --root")
    # the run's --set parser, its section implied (dataset.KEY or plain KEY)
    values = parse_set([s if s.startswith("dataset.") else f"dataset.{s}" for s in args.sets]).get("dataset_options", {})
    if generated:
        return spec, from_mapping(spec.options, values, f"dataset '{args.name}' options") if args.sets else None
    return spec, from_mapping(spec.options, {**values, "root": str(args.root)}, f"dataset '{args.name}' options")


def _progress(quiet: bool) -> Any:
    """The progress callback of ``data prepare``: the reporter's bar (tqdm: rate and ETA)."""
    from xbench.context import Reporter

    bars: list[Any] = []

    def show(done: int, total: int) -> None:
        if not bars:
            bars.append(Reporter(progress=not quiet).bar(total, "describing files", unit="file", leave=True))
        bars[0].update(done - bars[0].n)
        if done == total:
            bars[0].close()

    return show


def _data_files(args) -> int:
    from xbench.data import real
    from xbench.data.io import data_home

    spec, opts = _dataset_for_files(args)
    if args.data_command == "check" and not isinstance(opts, real.ClipOptions):
        return _check_generated(args, spec, opts)
    if args.data_command == "check":
        changes, problems = real.check(spec.factory, opts, data_home(), verify=args.verify)
        for line in changes:
            print(f"changed: {line}")
        for rel, why in problems.items():
            print(f"problem: {rel}: {why}")
        print(f"{args.name} at {args.root}: {len(changes)} changed, {len(problems)} problem files"
              + ("" if args.verify else " (by stat; --verify hashes every file)"))
        return 1 if changes else 0
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: need at least 1")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    s = real.prepare(spec.factory, opts, data_home(), jobs=args.jobs, progress=_progress(args.quiet), log=log)
    for rel, why in s["problems"].items():
        print(f"problem: {rel}: {why}")
    print(f"{args.name} at {args.root}: {s['files']} files ({s['videos']} videos), {len(s['problems'])} problem "
          f"files, described in {s['described_s']:.1f} s; {s['clips']} clips in the decode cache ({s['decoded']} "
          f"decoded now, {s['cached']} already there), {s['cache_bytes'] / 2**20:.1f} MiB for "
          f"{s['video_bytes'] / 2**20:.1f} MiB of video, in {s['seconds']:.1f} s ({s['cache']})")
    return 1 if s["problems"] else 0


def _check_generated(args, spec, opts) -> int:
    """``xbench data check synth``: every file of each generated option set hashed, what fails
    generated again and named; exit 1 if anything was."""
    from xbench.data.io import data_home
    from xbench.data.synth import SynthDataset, SynthOptions

    if not (isinstance(spec.options, type) and issubclass(spec.options, SynthOptions)):
        raise ConfigError(f"dataset '{args.name}' keeps no manifest of its files: nothing to check")
    home = args.root or data_home()
    sets, skipped = SynthDataset.check(home, opts)
    for ds in sets:
        for rel, why in ds.repaired.items():
            print(f"regenerated: {_printable(str(ds.root / rel))}: {why}")
    for folder, why in skipped.items():
        print(f"not checked: {_printable(folder)}: {why}")
    repaired = sum(len(ds.repaired) for ds in sets)
    print(f"{args.name} under {_printable(str(home / 'synth'))}: {len(sets)} generated sets, "
          f"{sum(ds.verified for ds in sets)} files verified (sha256), {repaired} regenerated")
    return 1 if repaired else 0


def cmd_data(args) -> int:
    if args.data_command == "cache":
        return _data_cache(args)
    if args.data_command in ("prepare", "check"):
        return _data_files(args)
    from xbench.data.flow import FarnebackOptions, prepare_flow

    if args.pool < 1 or args.winsize < 3:
        raise ConfigError(f"need --pool >= 1 and --winsize >= 3, not {args.pool} and {args.winsize}")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    done = prepare_flow(args.src, args.out, pool=args.pool, opts=FarnebackOptions(winsize=args.winsize),
                        overwrite=args.overwrite, log=log)
    print(f"flow: {done['written']} written, {done['kept']} already there, in {args.out}")
    return 0


def _record_arg(arg: str):
    """A record from a file, else from the store by id."""
    from xbench.records import RunRecord
    from xbench.submit import load

    path = Path(arg)
    if path.suffix == ".json" or path.exists():
        return RunRecord.from_json(load(path), str(path))
    from xbench.store import ResultStore

    found = ResultStore().get(arg)
    if found is None:
        raise ConfigError(f"no record file and no stored run '{arg}'")
    return found


def cmd_reproduce(args) -> int:
    from xbench.registry import build_registry
    from xbench.reproduce import report, reproduce, seed_spread

    record = _record_arg(args.record)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr))
    outcome = reproduce(record, build_registry(), device=args.device, log=say)
    spread = {}
    if outcome.differs:
        if args.records:
            from xbench.publish import load_records

            peers = load_records(args.records)
        else:
            from xbench.store import ResultStore

            peers = ResultStore().records(task=record.task, tier=record.tier)
        spread = seed_spread(record, peers)
    print("\n".join(report(outcome, spread)))
    return 0 if outcome.identical else 1


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "runs": cmd_runs,
            "leaderboard": cmd_leaderboard, "sweep": cmd_sweep, "check": cmd_check, "new-plugin": cmd_new_plugin,
            "submit": cmd_submit, "import": cmd_import,
            "data": cmd_data, "reproduce": cmd_reproduce}

if __name__ == "__main__":
    sys.exit(main())
