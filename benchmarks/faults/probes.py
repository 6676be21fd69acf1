"""Every fault and hostile input of issue 25's probe, run as a user meets it, with what is
expected, what is observed and a verdict.

Each probe runs the installed ``xbench`` (``python -m xbench.cli``) in fresh folders under one
temporary root, on the ``tiny`` synthetic data at the ``smoke`` tier; a probe's observation is
what the command printed (its first error line, exit code) and what it left (files, records).
It prints one row a probe and exits 1 if any verdict is not ``ok``. ``tests/faults/`` runs it.

    python benchmarks/faults/probes.py [--only NAME ...] [--skip NAME ...] [--json FILE]

The same probes show how an older commit behaved when its package and plugins come first on
``PYTHONPATH`` (the installed entry points stay; a probe of something that commit lacks fails):

    git worktree add /tmp/old COMMIT
    PYTHONPATH=/tmp/old$(printf ':%s' /tmp/old/plugins/*/) python benchmarks/faults/probes.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SMOKE = ["--task", "recognition", "--tier", "smoke"]
#: run argv[2:] with files capped at argv[1] bytes
CAPPED = ("import os, resource, sys\nn = int(sys.argv[1])\nresource.setrlimit(resource.RLIMIT_FSIZE, (n, n))\n"
          "os.execv(sys.argv[2], sys.argv[2:])\n")


@dataclass
class Out:
    """A finished command: exit code, stdout, stderr, seconds and its peak memory (MiB)."""

    rc: int
    out: str
    err: str
    seconds: float
    mib: float

    @property
    def line(self) -> str:
        """The error line (the last line on stderr), shortened for the table."""
        lines = self.err.strip().splitlines()
        return lines[-1][:150] if lines else ""

    @property
    def one_line_error(self) -> bool:
        """Exit 2 and exactly one line on stderr, ``xbench: error: ...``."""
        return self.rc == 2 and self.err.count("\n") == 1 and self.err.startswith("xbench: error: ")


class Bench:
    """The folders and commands the probes share: a data folder generated once and a home a
    probe gets fresh with ``home(name)``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.damaged: dict[Path, bytes] = {}  # shared data files a probe damaged: their bytes

    def damage(self, path: Path, content: bytes, keep_stat: bool = False) -> None:
        """Replace a shared data file's bytes (its size and mtime kept where asked); ``restore``
        puts them back after the probe, so an xbench that does not repair it spoils no other probe."""
        st = path.stat()
        self.damaged.setdefault(path, path.read_bytes())
        path.write_bytes(content)
        if keep_stat:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def restore(self) -> None:
        for path, content in self.damaged.items():
            path.write_bytes(content)
        self.damaged.clear()

    def home(self, name: str) -> Path:
        path = self.root / "homes" / name
        path.mkdir(parents=True)
        return path

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        return dict(os.environ, XBENCH_HOME=str(home), XBENCH_DATA=str(self.data), **extra)

    def xbench(self, home: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               limit_bytes: int | None = None, timeout: float = 900) -> Out:
        """``xbench ARGS`` in ``home``, with its seconds and peak memory (its own rusage, from
        wait4); ``limit_bytes`` caps the size of any file it writes (a full disk as the process
        meets it: a write past it fails with EFBIG)."""
        cmd = [sys.executable, "-P", "-m", "xbench.cli", *args]
        if limit_bytes is not None:  # set in the child, then exec'd: the limit binds xbench alone
            cmd = [sys.executable, "-c", CAPPED, str(limit_bytes), *cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env or self.env(home), cwd=cwd or self.root)
        streams: dict[str, str] = {}
        readers = [threading.Thread(target=lambda k=k, f=f: streams.__setitem__(k, f.read()))
                   for k, f in (("out", proc.stdout), ("err", proc.stderr))]
        for t in readers:
            t.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # its own peak memory, not the largest child's so far
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join()
        return Out(proc.returncode, streams["out"], streams["err"], time.perf_counter() - t0, usage.ru_maxrss / 1024)


#: name -> (group, expected, function(bench) -> (observed, ok))
PROBES: dict[str, tuple[str, str, Callable[[Bench], tuple[str, bool]]]] = {}


def probe(group: str, expected: str):
    def register(fn):
        PROBES[fn.__name__.replace("_", "-")] = (group, expected, fn)
        return fn
    return register


def records(home: Path) -> list[dict]:
    """The records of ``home``'s store, by its database (what a leaderboard counts)."""
    db = home / "results.sqlite"
    if not db.is_file():
        return []
    with sqlite3.connect(db) as con:
        return [json.loads((home / "runs" / rid / "result.json").read_text())
                for (rid,) in con.execute("SELECT id FROM runs ORDER BY rowid")]


def result_files(home: Path) -> int:
    return len(list(home.glob("runs/*/result.json")))


# -- caches ----------------------------------------------------------------------------------

def _cached_kd(b: Bench, name: str) -> tuple[Path, Path, dict]:
    """A home where kd ran once (its teacher cached): the home, the teacher's entry, the record."""
    home = b.home(name)
    out = b.xbench(home, "run", "--method", "kd", *SMOKE, "--quiet")
    if out.rc != 0:
        raise RuntimeError(f"kd on smoke failed: {out.line}")
    (entry,) = (home / "cache" / "teachers").iterdir()
    return home, entry, records(home)[-1]


def _rerun_after(b: Bench, name: str, damage: Callable[[Path], Path]) -> tuple[str, bool]:
    home, entry, first = _cached_kd(b, name)
    damaged = damage(entry)
    out = b.xbench(home, "run", "--method", "kd", *SMOKE)
    named = [ln for ln in out.err.splitlines() if "corrupt" in ln]
    again = records(home)[-1] if out.rc == 0 else None
    same = again is not None and again["metrics"] == first["metrics"]
    rebuilt = damaged.is_file() and damaged.stat().st_size > 1000
    observed = (f"exit {out.rc}; {len(named)} line(s): {named[0].strip() if named else 'none names it'}; "
                f"{'rebuilt' if rebuilt else 'not rebuilt'}; "
                + ("no new record" if again is None else
                   f"metrics {'equal to' if same else 'differ from'} the clean run's"))
    ok = out.rc == 0 and len(named) == 1 and str(damaged.parent) in named[0] and rebuilt and same
    return observed, ok


@probe("cache", "one line names the entry, it is computed again, the metrics are the clean run's")
def cache_0_byte_teacher(b: Bench):
    def damage(entry: Path) -> Path:
        (entry / "teacher.pt").write_bytes(b"")
        return entry / "teacher.pt"
    return _rerun_after(b, "cache-0-byte", damage)


@probe("cache", "one line names the entry, it is computed again, the metrics are the clean run's")
def cache_garbled_teacher(b: Bench):
    def damage(entry: Path) -> Path:
        path = entry / "teacher.pt"
        path.write_bytes(os.urandom(path.stat().st_size))
        return path
    return _rerun_after(b, "cache-garbled", damage)


@probe("cache", "a well-formed outputs file that is not the one written: named and computed again")
def cache_wrong_outputs(b: Bench):
    import torch

    def damage(entry: Path) -> Path:
        (path,) = entry.glob("outputs-train-*.pt")
        outs = torch.load(path, weights_only=True)
        torch.save({k: torch.zeros_like(v) for k, v in outs.items()}, path)
        return path
    return _rerun_after(b, "cache-wrong-outputs", damage)


@probe("cache", "4 processes x 150 claims of one key: 0 errors, 0 torn reads")
def cache_race(b: Bench):
    script = Path(__file__).with_name("cache_race.py")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script), "--procs", "4", "--iters", "150"], capture_output=True,
                         text=True, env=b.env(b.home("cache-race")), check=False, timeout=1800)
    lines = (out.stdout.strip() or out.stderr.strip()).splitlines()
    line = lines[-1] if lines else ""
    ok = out.returncode == 0 and " 0 errors, 0 torn reads" in line
    return f"{line} ({time.perf_counter() - t0:.0f} s)", ok


# -- data ------------------------------------------------------------------------------------

def _garble_keeping_stat(b: Bench, path: Path, keep: int = 0) -> None:
    """Random bytes in place after the first ``keep``, size and mtime kept (what a bad disk or a
    careless copy leaves)."""
    head = path.read_bytes()[:keep]
    b.damage(path, head + os.urandom(path.stat().st_size - len(head)), keep_stat=True)


def _synth_files(b: Bench, suffix: str, split: str) -> list[Path]:
    """The generated tiny set's files of a split (``synth/<set>/<modality>/<split>/``), generated
    first where no probe before this one did (a run of the smoke tier generates them)."""
    if not (b.data / "synth").is_dir():
        out = b.xbench(b.home("generate"), "run", "--method", "student", *SMOKE, "--quiet")
        if out.rc != 0:
            raise RuntimeError(f"generating the tiny data failed: {out.line}")
    return sorted(b.data.glob(f"synth/*/*/{split}/*{suffix}"))


@probe("data", "12 train .wav garbled past their header, size and mtime kept: each named and generated again")
def data_garbled_wav(b: Bench):
    home = b.home("data-wav")
    task = ["--task", "audio-tagging", "--tier", "smoke"]
    first = b.xbench(home, "run", "--method", "student", *task, "--quiet")
    if first.rc != 0:
        return f"clean run failed: {first.line}", False
    wavs = _synth_files(b, ".wav", "train")[:12]
    for path in wavs:
        _garble_keeping_stat(b, path, keep=44)  # the samples, not the RIFF header: every reader opens it
    out = b.xbench(home, "run", "--method", "student", *task)
    named = [ln for ln in out.err.splitlines() if "corrupt" in ln]
    recs = records(home)
    same = out.rc == 0 and recs[-1]["metrics"] == recs[0]["metrics"]
    top1 = f"top-1 {recs[0]['metrics'].get('top1')} -> {recs[-1]['metrics'].get('top1')}"
    observed = (f"{len(wavs)} garbled; exit {out.rc}{': ' + out.line if out.rc else ''}; {len(named)} lines name them; "
                + ("no new record" if len(recs) < 2 else f"metrics {'equal' if same else 'differ'} ({top1})"))
    return observed, len(wavs) == 12 and len(named) == 12 and same


@probe("data", "xbench data check synth names each garbled file; --set repairs them")
def data_check(b: Bench):
    home = b.home("data-check")
    wavs = _synth_files(b, ".wav", "val")[:3]
    for path in wavs:
        _garble_keeping_stat(b, path)
    out = b.xbench(home, "data", "check", "synth")
    named = sum(str(p) in out.out + out.err for p in wavs)
    again = b.xbench(home, "data", "check", "synth")
    observed = f"exit {out.rc}; {named} of {len(wavs)} named; then exit {again.rc}"
    return observed, len(wavs) == 3 and named == 3 and out.rc != 0 and again.rc == 0


@probe("data", "a garbled .mp4 with the decode cache off: named and generated again")
def data_garbled_mp4_no_decode_cache(b: Bench):
    home = b.home("data-mp4")
    (video,) = _synth_files(b, ".mp4", "test")[3:4]
    b.damage(video, b"garbage")
    out = b.xbench(home, "run", "--method", "student", *SMOKE, env=b.env(home, XBENCH_DECODE_CACHE="off"))
    named = [ln for ln in out.err.splitlines() if str(video) in ln]
    again = b.xbench(home, "run", "--method", "student", *SMOKE, "--seed", "1",
                     env=b.env(home, XBENCH_DECODE_CACHE="off"))
    observed = f"exit {out.rc}; {named[0] if named else 'not named'}; next run exit {again.rc}, {'silent' if 'corrupt' not in again.err else 'names it again'}"
    return observed, out.rc == 0 and len(named) == 1 and again.rc == 0 and "corrupt" not in again.err


# -- the store -------------------------------------------------------------------------------

def _stored(b: Bench, name: str, seeds: int = 2) -> Path:
    home = b.home(name)
    out = b.xbench(home, "run", "--method", "student", *SMOKE, "--seed", *map(str, range(seeds)), "--quiet")
    if out.rc != 0:
        raise RuntimeError(f"student on smoke failed: {out.line}")
    return home


def _damaged_db(b: Bench, name: str, content: bytes) -> tuple[str, bool]:
    home = _stored(b, name)
    db = home / "results.sqlite"
    db.write_bytes(content)
    out = b.xbench(home, "leaderboard", "--task", "recognition")
    mend = b.xbench(home, "runs", "--rebuild")
    after = b.xbench(home, "leaderboard", "--task", "recognition")
    n = len(records(home)) if after.rc == 0 else 0
    observed = f"exit {out.rc}: {out.line}; runs --rebuild exit {mend.rc}, {n} of 2 records back"
    return observed, out.one_line_error and str(db) in out.line and mend.rc == 0 and n == 2


@probe("store", "a 0-byte database beside 2 records: one line naming it; runs --rebuild brings both back")
def store_0_byte_db(b: Bench):
    return _damaged_db(b, "store-0-byte", b"")


@probe("store", "a garbage database: one line naming it; runs --rebuild brings both records back")
def store_garbage_db(b: Bench):
    return _damaged_db(b, "store-garbage", os.urandom(4096))


@probe("store", "an orphan result.json (no database row): the leaderboard leaves it out and says so")
def store_orphan(b: Bench):
    home = _stored(b, "store-orphan", seeds=1)
    (src,) = home.glob("runs/*/result.json")
    record = json.loads(src.read_text())
    orphan = home / "runs" / (record["id"] + "x") / "result.json"
    orphan.parent.mkdir()
    orphan.write_text(src.read_text())
    out = b.xbench(home, "leaderboard", "--records", str(home / "runs"), "--task", "recognition")
    table = [ln for ln in out.out.splitlines() if ln.startswith("| student")]
    n = table[0].split("|")[2].strip() if table else "?"
    warned = [ln for ln in out.err.splitlines() if "orphan" in ln or "not in" in ln]
    observed = f"exit {out.rc}; student n = {n}; {warned[0][:110] if warned else 'no warning'}"
    return observed, out.rc == 0 and n == "1" and len(warned) == 1


@probe("store", "a disk that fills under a run (files capped at 32 kB): one line naming the file, nothing lost")
def store_full_disk(b: Bench):
    home = _stored(b, "store-full-disk", seeds=1)  # the data exists and one record is stored
    out = b.xbench(home, "run", "--method", "kd", *SMOKE, "--quiet", limit_bytes=32 * 1024)
    kept = len(records(home)) == 1 and result_files(home) == 1
    observed = f"exit {out.rc}: {out.line}; store {'kept as it was' if kept else 'changed'}"
    return observed, out.one_line_error and "cannot write" in out.line and str(home) in out.line and kept


# -- sweeps ----------------------------------------------------------------------------------

def _suite(home: Path, text: str) -> Path:
    path = home / "suite.yaml"
    path.write_text(text)
    return path


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` alive now (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, q in parents.items() if q == p]
        out.update(kids)
        todo.extend(kids)
    return out


@probe("sweep", "kill -9 of a sweep: no worker left running; the rerun stores each cell once")
def sweep_kill(b: Bench):
    home = b.home("sweep-kill")
    suite = _suite(home, "name: killed\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [kd]\n")
    cmd = [sys.executable, "-P", "-m", "xbench.cli", "sweep", str(suite), "--jobs", "1", "--quiet"]
    sweep = subprocess.Popen(cmd, env=b.env(home), cwd=b.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    for _ in range(600):
        workers = _children(sweep.pid)
        if workers:
            break
        time.sleep(0.1)
    time.sleep(2)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    time.sleep(3)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    rerun = b.xbench(home, "sweep", str(suite), "--jobs", "1", "--quiet")
    n = len(records(home))
    observed = f"{len(workers)} workers, {len(alive)} alive after the kill; rerun exit {rerun.rc}, {n} record(s) for 1 cell"
    return observed, bool(workers) and not alive and rerun.rc == 0 and n == 1 and result_files(home) == 1


@probe("sweep", "a sweep started beside a folder named xbench/ runs as anywhere else")
def sweep_shadow(b: Bench):
    home = b.home("sweep-shadow")
    (home / "xbench").mkdir()
    (home / "xbench" / "__init__.py").write_text("raise ImportError('the wrong xbench')\n")
    suite = _suite(home, "name: shadow\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n")
    out = b.xbench(home, "sweep", str(suite), "--jobs", "1", cwd=home)
    return f"exit {out.rc}: {out.line}", out.rc == 0 and len(records(home)) == 1


@probe("sweep", "a suite named ../../x: one line naming it; nothing written outside XBENCH_HOME")
def sweep_name_path(b: Bench):
    home = b.home("sweep-name") / "a" / "b"
    home.mkdir(parents=True)
    suite = _suite(home, "name: ../../x\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n")
    before = set(b.root.rglob("*"))
    out = b.xbench(home, "sweep", str(suite), "--jobs", "1")
    outside = [p for p in set(b.root.rglob("*")) - before if home not in p.parents]
    return f"exit {out.rc}: {out.line}; {len(outside)} paths outside", out.one_line_error and not outside


HOLDER = ("import sys, time\nfrom xbench.store import ResultStore\n"
          "assert ResultStore().claim(sys.argv[1], int(sys.argv[2])) is None\nprint('held', flush=True)\n"
          "time.sleep(600)\n")


@probe("sweep", "a run of a cell another process runs: one line naming the holder, exit 4, nothing stored")
def sweep_live_cell(b: Bench):
    home = b.home("sweep-lease")
    suite = _suite(home, "name: lease\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n")
    plan = ("import sys\nfrom pathlib import Path\nfrom xbench.registry import build_registry\n"
            "from xbench.store import ResultStore\n"
            "from xbench.sweep import load_suite, plan_sweep\n"
            "print(plan_sweep(load_suite(Path(sys.argv[1])), build_registry(), ResultStore()).runs[0].config_hash)\n")
    config_hash = subprocess.run([sys.executable, "-P", "-c", plan, str(suite)], env=b.env(home), capture_output=True,
                                 text=True, check=True).stdout.strip()
    holder = subprocess.Popen([sys.executable, "-P", "-c", HOLDER, config_hash, "0"], env=b.env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        held = holder.stdout.readline() == "held\n"
        out = b.xbench(home, "run", "--method", "student", *SMOKE, "--quiet")
    finally:
        holder.kill()
        holder.wait()
    ok = held and out.rc == 4 and out.err.count("\n") == 1 and f"pid {holder.pid}" in out.err and not records(home)
    return f"exit {out.rc}: {out.line}", ok


# -- bounded input ---------------------------------------------------------------------------

def _config(b: Bench, name: str, text: str | bytes, file: str = "c.yaml") -> tuple[Path, Path]:
    home = b.home(name)
    path = home / file
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return home, path


def _refused_file(b: Bench, name: str, text: str | bytes, *args: str, file: str = "c.yaml") -> tuple[str, bool]:
    home, path = _config(b, name, text, file)
    argv = [a.replace("{file}", str(path)) for a in args] or ["run", "--config", str(path), "--quiet"]
    out = b.xbench(home, *argv, timeout=120)  # an alias bomb read unbounded would run for minutes
    observed = f"exit {out.rc} in {out.seconds:.1f} s, peak {out.mib:.0f} MiB: {out.line}"
    # seconds and memory are shown, not judged (the machine's speed): a hang is the timeout's
    return observed, out.one_line_error and str(path) in out.line and not records(home)


#: a billion laughs under a key a run reads (an option's error would show the value it expands to)
LAUGHS = "method: kd\nmethod_options:\n  T: [&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"&{chr(98 + i)} [{','.join('*' + chr(97 + i) for _ in range(10))}]" for i in range(8)) + "]\n"


@probe("input", "a 347-byte billion laughs under method_options: one line naming the file, at once, in little memory")
def input_billion_laughs(b: Bench):
    return _refused_file(b, "laughs", LAUGHS)


@probe("input", "a 50 MB config: one line naming the file, without reading it")
def input_50mb(b: Bench):
    return _refused_file(b, "big", "method: kd\nmethod_options:\n  T: " + "a" * 50_000_000 + "\n")


@probe("input", "lists nested 20,000 deep: one line naming the file")
def input_deep(b: Bench):
    return _refused_file(b, "deep", "x: " + "[" * 20000 + "]" * 20000 + "\n")


@probe("input", "a config, a suite and a record that are not UTF-8: one line each naming the file")
def input_not_utf8(b: Bench):
    bad = "method: kd\ntask: recognition  # caf\xe9\n".encode("latin-1")
    outs = [_refused_file(b, "utf8-config", bad),
            _refused_file(b, "utf8-suite", b"name: s\ntier: smoke\nmethods: [kd]  # caf\xe9\n", "sweep", "{file}"),
            _refused_file(b, "utf8-record", b'{"id": "caf\xe9"}', "reproduce", "{file}", file="r.json")]
    return "; ".join(o for o, _ in outs), all(ok for _, ok in outs)


def _refused_option(b: Bench, name: str, *sets: str, key: str) -> tuple[str, bool]:
    home = b.home(name)
    # a billion procedures generated unbounded would run for hours: stopped at 2 minutes
    out = b.xbench(home, "run", "--method", "kd", *SMOKE, "--quiet", *(a for s in sets for a in ("--set", s)),
                   timeout=120)
    observed = f"exit {out.rc} in {out.seconds:.0f} s: {out.line}"
    return observed, out.one_line_error and key in out.line and "plugin" not in out.line and not records(home)


@probe("input", "--set dataset.procedures=1000000000: one line naming the option, before generating")
def input_procedures(b: Bench):
    return _refused_option(b, "procedures", "dataset.procedures=1000000000", key="procedures")


@probe("input", "budget.max_seconds=.nan: one line naming the option (the safety limit never turned off)")
def input_max_seconds_nan(b: Bench):
    return _refused_option(b, "max-seconds", "budget.max_seconds=.nan", key="max_seconds")


def _refused_tier(b: Bench, name: str, section: str, key: str, value: float) -> tuple[str, bool]:
    """A budgets file (XBENCH_BUDGETS) whose smoke tier has ``section.key = value``."""
    import yaml

    home = b.home(name)
    # the tiers of the xbench on the path (found, not imported: an older one's under PYTHONPATH)
    package = importlib.util.find_spec("xbench").submodule_search_locations[0]
    tiers = yaml.safe_load((Path(package) / "benchmarks" / "budgets.yaml").read_text())
    tiers["smoke"][section] = {**tiers["smoke"][section], key: value}
    path = home / "budgets.yaml"
    path.write_text(yaml.safe_dump(tiers))
    out = b.xbench(home, "run", "--method", "kd", *SMOKE, "--quiet", env=b.env(home, XBENCH_BUDGETS=str(path)))
    ok = out.one_line_error and str(path) in out.line and section in out.line and not records(home)
    return f"exit {out.rc}: {out.line}", ok


@probe("input", "a tier's schedule.warmup_steps = -1: one line naming the file and the key")
def input_warmup_negative(b: Bench):
    return _refused_tier(b, "warmup", "schedule", "warmup_steps", -1)


@probe("input", "a tier's optimizer lr = -1, lr = .nan, weight_decay = -1: one line each naming the file and the key")
def input_optimizer(b: Bench):
    outs = [_refused_tier(b, f"opt{i}", "optimizer", key, value)
            for i, (key, value) in enumerate([("lr", -1), ("lr", float("nan")), ("weight_decay", -1)])]
    return "; ".join(o for o, _ in outs), all(ok for _, ok in outs)


@probe("input", "method.T=.nan: one line naming the option, not blamed on the plugin")
def input_temperature_nan(b: Bench):
    return _refused_option(b, "temperature", "method.T=.nan", key="T")


@probe("input", "budget.max_seconds=1e308 (finite, YAML 1.2 style) is accepted and the run stored")
def input_1e308(b: Bench):
    home = b.home("1e308")
    out = b.xbench(home, "run", "--method", "student", *SMOKE, "--quiet", "--set", "budget.max_seconds=1e308")
    return f"exit {out.rc}{': ' + out.line if out.rc else ''}; {len(records(home))} stored", out.rc == 0 and len(records(home)) == 1


# -- publishing and the terminal -------------------------------------------------------------

@probe("publish", "leaderboard --out DIR holding a README.md of yours: refused in one line, README kept")
def publish_out_foreign(b: Bench):
    home = _stored(b, "out-foreign", seeds=1)
    out_dir = home / "mine"
    out_dir.mkdir()
    (out_dir / "README.md").write_text("my notes\n")
    out = b.xbench(home, "leaderboard", "--task", "recognition", "--out", str(out_dir))
    kept = (out_dir / "README.md").read_text() == "my notes\n"
    return f"exit {out.rc}: {out.line}; README {'kept' if kept else 'overwritten'}", out.one_line_error and kept


@probe("publish", "sweep --publish DIR whose records/ holds JSON of yours: refused in one line, files kept")
def publish_foreign_records(b: Bench):
    home = b.home("publish-foreign")
    suite = _suite(home, "name: pub\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n")
    pub = home / "pub"
    (pub / "records").mkdir(parents=True)
    (pub / "records" / "mine.json").write_text("{}\n")
    out = b.xbench(home, "sweep", str(suite), "--jobs", "1", "--quiet", "--publish", str(pub), "--min-seeds", "1",
                   "--unpinned")
    kept = (pub / "records" / "mine.json").is_file()
    return f"exit {out.rc}: {out.line}; mine.json {'kept' if kept else 'deleted'}", out.rc == 2 and kept


def _hostile_record(b: Bench, name: str) -> tuple[Path, Path]:
    """A home with one stored run, and a folder holding that record with hostile strings in
    the fields a table shows (a run's stop reason, its commit, its device), its integrity
    hashes computed anew as anyone can: what an untrusted contributed record may say."""
    home = _stored(b, name, seeds=1)
    (src,) = home.glob("runs/*/result.json")
    seal = ("import json, sys\nfrom xbench.submit import integrity\nr = json.loads(open(sys.argv[1]).read())\n"
            "r['budget']['totals']['stopped_by'] = '=HYPERLINK(\"http://x\")'\n"
            "r['env']['git_sha'] = \"+cmd|' /C calc'!A0\"\n"
            "r['env']['device'] = '@SUM(1)<script>alert(1)</script>'\n"
            "r['integrity'] = integrity(r)\nprint(json.dumps(r))\n")
    folder = home / "contributed"
    folder.mkdir()
    text = subprocess.run([sys.executable, "-P", "-c", seal, str(src)], capture_output=True, text=True,
                          check=True).stdout
    (folder / "r.json").write_text(text)
    return home, folder


@probe("publish", "CSV: no cell of any column opens as a formula, whatever a record says")
def publish_csv_formulas(b: Bench):
    import csv
    import io

    home, folder = _hostile_record(b, "csv")
    out = b.xbench(home, "leaderboard", "--records", str(folder), "--task", "recognition", "--format", "csv")
    cells = [c for row in csv.reader(io.StringIO(out.out)) for c in row]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(c) and c != "-"]
    guarded = sum(c[:2] in ("'=", "'+", "'@") for c in cells)
    observed = f"exit {out.rc}{': ' + out.line if out.rc else ''}; {len(cells)} cells, {guarded} guarded, " \
               f"{len(risky)} open as formulas {risky[:2]}"
    hostile = [c for c in cells if "HYPERLINK" in c or "cmd|" in c]  # the stop reason and the commit
    return observed, out.rc == 0 and len(hostile) == 2 and all(c[:1] == "'" for c in hostile) and not risky


@probe("publish", "leaderboard --out: the README preface escapes what a record says (no raw HTML)")
def publish_preface_escaped(b: Bench):
    home, folder = _hostile_record(b, "preface")
    target = home / "board"
    out = b.xbench(home, "leaderboard", "--records", str(folder), "--task", "recognition", "--out", str(target))
    readme = (target / "README.md").read_text() if (target / "README.md").is_file() else ""
    raw = "<script>" in readme
    observed = f"exit {out.rc}{': ' + out.line if out.rc else ''}; README.md {len(readme)} chars, " \
               f"{'raw <script>' if raw else 'no raw HTML'}; device shown: {'SUM' in readme}"
    return observed, out.rc == 0 and bool(readme) and not raw and "SUM" in readme


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


@probe("terminal", "a name with control characters is echoed escaped, in one line")
def terminal_control_chars(b: Bench):
    home = b.home("terminal")
    out = b.xbench(home, "run", "--method", "kd\x1b[2J\rkd", *SMOKE)
    raw = any(c in out.err.rstrip("\n") for c in "\x1b\r")
    return f"exit {out.rc}: {out.line!r}", out.one_line_error and not raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these probes only (default: all)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[])
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = ap.parse_args()
    names = [n for n in (args.only or PROBES) if n not in args.skip]
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        ap.error(f"unknown probe {unknown[0]} (known: {', '.join(PROBES)})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        for name in names:
            group, expected, fn = PROBES[name]
            try:
                observed, ok = fn(bench)
            except Exception as exc:  # noqa: BLE001 -- a probe that cannot run (an older xbench) is a row, not the end
                observed, ok = f"probe failed: {type(exc).__name__}: {exc}"[:200], False
            finally:
                bench.restore()
            rows.append({"probe": name, "group": group, "expected": expected, "observed": observed,
                         "verdict": "ok" if ok else "FAILED"})
            print(f"{name:34} {rows[-1]['verdict']:6}  {observed}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    sys.exit(0 if all(r["verdict"] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()
