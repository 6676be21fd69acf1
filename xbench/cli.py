"""The ``xbench`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from xbench.errors import ConfigError, XbenchError

LIST_KINDS = ("methods", "tasks", "datasets", "losses", "teachers", "students")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xbench", description="Benchmark harness for cross-modal KD on video")
    p.add_argument("--traceback", action="store_true", help="show tracebacks of xbench errors")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train and evaluate one method on one task")
    r.add_argument("--method")
    r.add_argument("--task")
    r.add_argument("--dataset")
    r.add_argument("--teacher", help="the teacher (default: the method's, else the task's)")
    r.add_argument("--budget", help="budget tier from benchmarks/budgets.yaml (default: cpu)")
    r.add_argument("--seed", type=int, nargs="+", help="one or more seeds (default: 0)")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"))
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override an option: dataset.*, task.*, method.*, budget.*, teacher.* (repeatable)")
    r.add_argument("--config", type=Path, help="a run config YAML file (CLI flags win)")
    r.add_argument("--quiet", action="store_true", help="no progress bars or log lines")

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("kind", choices=LIST_KINDS)

    sub.add_parser("plugins", help="show loaded plugins and what each registers")

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--task")
    runs.add_argument("--limit", type=int, default=50)

    lb = sub.add_parser("leaderboard", help="a table of stored runs of one task")
    lb.add_argument("--task", required=True)
    lb.add_argument("--budget", help="only this tier")
    lb.add_argument("--format", choices=("md", "plain"), default="md")

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
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except XbenchError as exc:
        if args.traceback or os.environ.get("XBENCH_TRACEBACK"):
            raise
        print(f"xbench: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xbench: interrupted; nothing of the unfinished run was stored", file=sys.stderr)
        return 130


def cmd_list(args) -> int:
    from tabulate import tabulate

    from xbench.registry import build_registry

    reg = build_registry()
    rows = [(name, reg.get(args.kind, name).description, reg.entry(args.kind, name).plugin)
            for name in reg.names(args.kind)]
    print(tabulate(rows, headers=("name", "description", "plugin"), tablefmt="simple"))
    return 0


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
                       ("teacher", args.teacher),
                       ("budget", args.budget), ("seeds", args.seed), ("device", args.device)):
        if value is not None:
            raw[key] = value
    for section, values in parse_set(args.overrides).items():
        raw[section] = {**raw.get(section, {}), **values}
    for key in ("method", "task"):
        if key not in raw:
            raise ConfigError(f"no {key} given: pass --{key} or set '{key}' in --config")
    return from_mapping(RunConfig, raw, str(args.config) if args.config else "command line")


def cmd_run(args) -> int:
    from tabulate import tabulate

    from xbench.config import load_tiers
    from xbench.leaderboard import mean_std, method_stage
    from xbench.registry import build_registry
    from xbench.run import execute, plan, resolve_device
    from xbench.store import ResultStore

    cfg = _run_config(args)
    reg = build_registry()
    p = plan(reg, cfg, load_tiers())
    device = resolve_device(cfg.device)
    store = ResultStore()
    progress = not args.quiet and sys.stderr.isatty()
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    records = []
    for seed in cfg.seeds:
        say(f"xbench: {p.method.name} on {p.task.name}/{p.dataset_name}, tier {p.tier.name}, seed {seed}")
        lines: list[str] = []

        def log(msg: str, lines: list[str] = lines) -> None:
            lines.append(msg)
            say(f"  {msg}")

        rec = execute(p, seed, device=device, progress=progress, log=log)
        path = store.add(rec)
        (path.parent / "log.txt").write_text("\n".join(lines) + "\n")
        records.append(rec)
        say(f"  stored {rec['id']} -> {path}")
    metric = p.task.main_metric
    keys = list(records[0]["metrics"])
    table = [[r["seed"], *(f"{r['metrics'].get(k, float('nan')):.2f}" for k in keys),
              method_stage(r)["steps"], method_stage(r)["samples"],
              r["budget"]["totals"]["teacher_forwards"], f"{r['budget']['totals']['seconds']:.1f}",
              r["budget"]["totals"]["stopped_by"] or "-"] for r in records]
    if len(records) > 1:
        table.append(["mean ± std", *(mean_std([r["metrics"][k] for r in records]) for k in keys),
                      "", "", "", "", ""])
    if p.method.evaluates == "teacher":
        evaluated = "the val-selected teacher (privileged input)"
    elif records[0]["selection"]["split"] is None:  # self-supervised, no fine-tuning
        evaluated = "the student's last state (self-supervised, nothing selected)"
    else:
        evaluated = "the val-selected student"
    if getattr(p.task_options, "protocol", None) == "linear":
        evaluated += " through a linear probe"
    print(f"{p.method.name} on {p.task.name} ({p.dataset_name}), tier {p.tier.name}, "
          f"test metrics of {evaluated}; main metric: {metric}")
    print(tabulate(table, headers=["seed", *keys, "steps", "samples", "teacher fwd", "seconds",
                                   "limit hit"], tablefmt="simple", disable_numparse=True))
    return 0


def cmd_runs(args) -> int:
    from tabulate import tabulate

    from xbench.store import ResultStore

    recs = ResultStore().records(task=args.task)[-args.limit:]
    rows = [(r["id"], r["method"], r["task"], r["tier"], r["seed"],
             f"{r['metrics'][r['main_metric']]:.2f} {r['main_metric']}", r["finished"][:19])
            for r in recs]
    print(tabulate(rows, headers=("id", "method", "task", "tier", "seed", "score", "finished"),
                   tablefmt="simple") if rows else "no runs")
    return 0


def cmd_leaderboard(args) -> int:
    from xbench.leaderboard import render
    from xbench.store import ResultStore

    recs = ResultStore().records(task=args.task, tier=args.budget)
    print(render(recs, args.format))
    return 0


def cmd_data(args) -> int:
    from xbench.data.flow import FarnebackOptions, prepare_flow

    if args.pool < 1 or args.winsize < 3:
        raise ConfigError(f"need --pool >= 1 and --winsize >= 3, not {args.pool} and {args.winsize}")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    done = prepare_flow(args.src, args.out, pool=args.pool, opts=FarnebackOptions(winsize=args.winsize),
                        overwrite=args.overwrite, log=log)
    print(f"flow: {done['written']} written, {done['kept']} already there, in {args.out}")
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "runs": cmd_runs,
            "leaderboard": cmd_leaderboard, "data": cmd_data}

if __name__ == "__main__":
    sys.exit(main())
