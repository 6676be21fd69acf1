"""The results store: SQLite (WAL) plus ``runs/<id>/result.json``, written together in one
transaction after the record passes the schema (``xbench.records``).

Only finished runs are written, so a failed or interrupted run never appears as a result. The JSON
file is the portable form of a record: it moves between machines and can be imported."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from xbench.atomic import atomic_write_text
from xbench.errors import CellBusy, StoreError
from xbench.records import COMPLETE, RunRecord, problems, run_dir, safe_id, status_of, validate
from xbench.settings import settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    task TEXT NOT NULL,
    dataset TEXT NOT NULL,
    tier TEXT NOT NULL,
    seed INTEGER NOT NULL,
    main_metric TEXT NOT NULL,
    score REAL,
    config_hash TEXT NOT NULL,
    finished TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_task ON runs (task, tier, method);
CREATE INDEX IF NOT EXISTS runs_config ON runs (config_hash, seed);
CREATE TABLE IF NOT EXISTS leases (
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    born REAL NOT NULL,
    since REAL NOT NULL,
    beat REAL NOT NULL,
    PRIMARY KEY (config_hash, seed)
);
"""

#: a lease held from another host is stale once its holder has not renewed it for this long
#: (a run renews its leases every ``BEAT`` seconds; on its own host a holder is checked directly)
STALE_SECONDS = 600.0
BEAT = 60.0


def _born(pid: int) -> float | None:
    """When process ``pid`` started (seconds since boot, /proc), or None where it cannot be told:
    with the pid it tells a live holder from a new process that reuses a dead one's pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, born: float) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    now = _born(pid)
    return now is None or born < 0 or abs(now - born) < 0.05


def xbench_home() -> Path:
    return settings().home


class ResultStore:
    def __init__(self, home: Path | None = None, *, reconcile: bool = True) -> None:
        self.home = home or xbench_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "results.sqlite"
        files = self._files()
        if self.path.is_file() and self.path.stat().st_size == 0 and files:
            # SQLite would take it for a new, empty store: the records would silently vanish
            raise StoreError(f"{self.path} is empty (0 bytes) but {self.home / 'runs'} holds {len(files)} "
                             "record(s): 'xbench runs --rebuild' re-imports them")
        try:
            # a generous timeout: parallel sweep workers may write at once
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable SQLite database ({exc}): 'xbench runs --rebuild' "
                             f"re-imports the records in {self.home / 'runs'}") from exc
        self.invalid: list[tuple[str, str]] = []
        if reconcile:
            self._reconcile(files)

    def _files(self) -> dict[str, Path]:
        """run id -> its result.json, for every run folder that has one."""
        return {p.parent.name: p for p in (self.home / "runs").glob("*/result.json")}

    def ids(self) -> set[str]:
        """The ids of the stored runs."""
        return {row[0] for row in self.db.execute("SELECT id FROM runs")}

    def _reconcile(self, files: dict[str, Path]) -> None:
        """Say where the database and ``runs/`` disagree (a write a crash cut between the file and
        the row, a folder removed by hand): what ``xbench runs --rebuild`` would mend."""
        ids = self.ids()
        unlisted, fileless = sorted(set(files) - ids), sorted(ids - set(files))
        if unlisted or fileless:
            found = [f"{len(unlisted)} record(s) in runs/ not in the database (e.g. {unlisted[0]})"] if unlisted else []
            found += [f"{len(fileless)} stored run(s) without their result.json (e.g. {fileless[0]})"] if fileless else []
            logging.getLogger("xbench").warning(f"xbench: warning: store {self.home}: {'; '.join(found)}; "
                                                "'xbench runs --rebuild' mends both")

    @classmethod
    def rebuild(cls, home: Path | None = None) -> dict[str, list]:
        """Mend the store from what it holds: a database that does not read (or is empty while
        records exist) is moved aside and made anew; every ``runs/*/result.json`` not in it is
        imported once it verifies (schema, and its content hashes where it has them); a stored
        run without its file gets it back from its row. What was done: imported ids, rejected
        (id, why), restored ids, and the database moved aside (if any)."""
        from xbench.submit import changed_fields, integrity

        home = home or xbench_home()
        path, moved = home / "results.sqlite", []
        try:
            store = cls(home, reconcile=False)
            store.db.execute("SELECT count(*) FROM runs").fetchone()
        except (StoreError, sqlite3.DatabaseError):
            aside = path.with_name(f"results.sqlite.broken-{os.getpid()}")
            path.replace(aside)
            for extra in ("-wal", "-shm"):
                path.with_name(path.name + extra).unlink(missing_ok=True)
            moved.append(str(aside))
            store = cls(home, reconcile=False)
        imported, rejected, restored = [], [], []
        ids, files = store.ids(), store._files()
        for run_id in sorted(set(files) - ids):
            try:
                data = json.loads(files[run_id].read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                rejected.append((run_id, f"does not read ({exc})"))
                continue
            found = problems(data)
            if not found and "integrity" in data and (changed_fields(data)
                                                      or integrity(data)["sha256"] != data["integrity"].get("sha256")):
                found = ["its content no longer matches its hashes"]
            if found or data.get("id") != run_id:
                rejected.append((run_id, found[0] if found else f"its id is {data.get('id')!r}"))
                continue
            store.add(RunRecord.from_checked(data))
            imported.append(run_id)
        for run_id in sorted(ids - set(files)):
            (text,) = store.db.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
            if safe_id(run_id):
                store.run_dir(run_id)
                atomic_write_text(run_dir(home, run_id) / "result.json",
                                  json.dumps(json.loads(text), indent=1, sort_keys=True))
                restored.append(run_id)
        store.close()
        return {"imported": imported, "rejected": rejected, "restored": restored, "moved": moved}

    def run_dir(self, run_id: str) -> Path:
        path = run_dir(self.home, run_id)  # a safe id only: never a path of the record's making
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, record: RunRecord) -> Path:
        """Validate the record, then write its row and result.json in one transaction: the row is
        committed only once the file is in place, and a file whose row fails is removed, so
        neither is ever left without the other."""
        data = record.to_json()
        validate(data, "run")  # built in code, it may still break the schema
        path = self.run_dir(record.id) / "result.json"
        written = False
        try:
            with self._writing(f"run {record.id}"), self.db:
                self.db.execute(
                    "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (record.id, record.method, record.task, record.dataset, record.tier, record.seed,
                     record.main_metric, record.main_score, record.config_hash, record.finished,
                     json.dumps(data, sort_keys=True)),
                )
                atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))  # fsync'd, renamed
                written = True
        except BaseException:
            if written:  # the row did not commit: the file must not outlive it
                path.unlink(missing_ok=True)
            raise
        return path

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A database write that fails ("disk I/O error" on a full disk, "database or disk is
        full", a lock held past the timeout) is a StoreError naming the database; its
        transaction (inside this block) is rolled back."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write {what} to {self.path}: {exc}; nothing of it was written") from exc

    # -- leases: a cell (config hash, seed) claimed by the process running it ------------------
    def claim(self, config_hash: str, seed: int) -> str | None:
        """Claim the cell for this process: None once claimed (a lease held by a dead process, or
        one not renewed for ``STALE_SECONDS`` from another host, is taken over), else who holds
        it, in words. So two sweeps, or a sweep and its rerun, never run one cell at once."""
        host, pid = socket.gethostname(), os.getpid()
        now = time.time()
        with self._writing(f"the lease of seed {seed} of {config_hash}"), self.db:
            self.db.execute("BEGIN IMMEDIATE")  # the check and the claim as one step
            held = self._held_by(config_hash, seed)
            if held is not None and held[0] != (host, pid):
                return held[1]
            me = _born(pid)
            self.db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?)",
                            (config_hash, seed, host, pid, -1.0 if me is None else me, now, now))
        return None

    @contextmanager
    def lease(self, config_hash: str, seed: int) -> Iterator[None]:
        """Hold the cell's lease while the block runs (renewed every ``BEAT`` seconds from a
        thread of its own connection); CellBusy where a live process holds it."""
        held = self.claim(config_hash, seed)
        if held is not None:
            raise CellBusy(f"seed {seed} of this config ({config_hash}) is running already ({held}): a rerun "
                           "never runs one cell twice at once; wait for it, or stop it")
        try:
            with self.beating():
                yield
        except BaseException:
            # the run's own error says more than a failed release; a lease left behind is taken
            # over once this process is gone
            with suppress(StoreError):
                self.release(config_hash, seed)
            raise
        self.release(config_hash, seed)

    @contextmanager
    def beating(self) -> Iterator[None]:
        """Renew this process's leases every ``BEAT`` seconds while the block runs, from a thread
        of its own connection (a run holding its cell; a sweep driver holding the cells its Ray or
        Slurm workers run)."""
        stop = threading.Event()

        def renew() -> None:
            other = ResultStore(self.home, reconcile=False)
            try:
                while not stop.wait(BEAT):
                    # a beat missed (a full disk) only ages the lease; the run meets the disk itself
                    with suppress(StoreError):
                        other.renew()
            finally:
                other.close()

        beat = threading.Thread(target=renew, name="xbench-lease", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def renew(self) -> None:
        """Renew this process's leases (a holder on another host is stale without it)."""
        with self._writing("the leases of this process"), self.db:
            self.db.execute("UPDATE leases SET beat = ? WHERE host = ? AND pid = ?",
                            (time.time(), socket.gethostname(), os.getpid()))

    def release(self, config_hash: str, seed: int) -> None:
        """Let go of this process's lease on the cell (stored, failed or stopped alike)."""
        with self._writing(f"the lease of seed {seed} of {config_hash}"), self.db:
            self.db.execute("DELETE FROM leases WHERE config_hash = ? AND seed = ? AND host = ? AND pid = ?",
                            (config_hash, seed, socket.gethostname(), os.getpid()))

    def holder(self, config_hash: str, seed: int) -> str | None:
        """Who runs the cell now, in words (a live lease), or None."""
        held = self._held_by(config_hash, seed)
        return None if held is None else held[1]

    def _held_by(self, config_hash: str, seed: int) -> tuple[tuple[str, int], str] | None:
        """The live holder of the cell's lease ((host, pid), in words), or None: no lease, or a
        stale one (its process gone on this host; not renewed for ``STALE_SECONDS`` elsewhere)."""
        row = self.db.execute("SELECT host, pid, born, since, beat FROM leases WHERE config_hash = ? AND seed = ?",
                              (config_hash, seed)).fetchone()
        if row is None:
            return None
        host, pid, born, since, beat = row
        if not (_alive(pid, born) if host == socket.gethostname() else time.time() - beat < STALE_SECONDS):
            return None
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        return (host, pid), f"pid {pid} on {host} since {started}"

    def records(self, task: str | None = None, tier: str | None = None) -> list[RunRecord]:
        """The stored records that pass the schema; the others are left out and listed in
        ``self.invalid`` as (id, problem), for the CLI to name."""
        query, args = "SELECT id, record FROM runs WHERE 1=1", []
        if task:
            query, args = query + " AND task = ?", args + [task]
        if tier:
            query, args = query + " AND tier = ?", args + [tier]
        rows = self.db.execute(query + " ORDER BY finished, id", args).fetchall()
        out, self.invalid = [], []
        for run_id, text in rows:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                self.invalid.append((run_id, f"not JSON ({exc.msg})"))
                continue
            found = problems(data)
            if found:
                self.invalid.append((run_id, found[0]))
            else:
                out.append(RunRecord.from_checked(data))
        return out

    def delete(self, run_id: str) -> bool:
        """Remove a stored run: its row and its folder. False when no such run is stored."""
        with self._writing(f"the removal of run {run_id}"), self.db:
            gone = self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        if safe_id(run_id):
            folder = self.home / "runs" / run_id
            if folder.is_dir():
                shutil.rmtree(folder)
        return bool(gone)

    def stored_seeds(self, config_hashes: set[str]) -> dict[str, set[int]]:
        """config hash -> the seeds stored complete for it (what a sweep skips; an incomplete run,
        stopped short by the clock, is run again)."""
        out: dict[str, set[int]] = {}
        # every record version says what stopped it in its totals, which gives its status
        # a record holding NaN (a run the clock stopped before its first evaluation selects a
        # NaN) is not JSON to SQLite, whose json_extract then fails the whole query: those rows
        # are read by Python's parser instead
        for config_hash, seed, stopped_by, other in self.db.execute(
                "SELECT config_hash, seed, CASE WHEN json_valid(record) THEN "
                "json_extract(record, '$.budget.totals.stopped_by') END, "
                "CASE WHEN json_valid(record) THEN NULL ELSE record END FROM runs"):
            if other is not None and config_hash in config_hashes:
                stopped_by = json.loads(other).get("budget", {}).get("totals", {}).get("stopped_by")
            if config_hash in config_hashes and status_of(stopped_by) == COMPLETE:
                out.setdefault(config_hash, set()).add(seed)
        return out

    def get(self, run_id: str) -> RunRecord | None:
        """The stored run of that id, or None."""
        row = self.db.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunRecord.from_json(json.loads(row[0]), run_id) if row else None

    def latest(self, config_hash: str, seed: int) -> RunRecord | None:
        row = self.db.execute("SELECT id, record FROM runs WHERE config_hash = ? AND seed = ? "
                              "ORDER BY finished DESC, id DESC LIMIT 1", (config_hash, seed)).fetchone()
        return RunRecord.from_json(json.loads(row[1]), row[0]) if row else None

    def close(self) -> None:
        self.db.close()
