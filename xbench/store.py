"""The results store: SQLite (WAL, one transaction per record) plus ``runs/<id>/result.json``.

Only finished runs are written, so a failed or interrupted run never appears as a result. The JSON
file is the portable form of a record: it moves between machines and can be imported."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

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
"""


def xbench_home() -> Path:
    return settings().home


class ResultStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or xbench_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "results.sqlite"
        # a generous timeout: parallel sweep workers may write at once
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def run_dir(self, run_id: str) -> Path:
        path = self.home / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, record: dict[str, Any]) -> Path:
        """Write result.json (atomically), then the row, in one transaction."""
        path = self.run_dir(record["id"]) / "result.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(path)
        with self.db:
            self.db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record["id"], record["method"], record["task"], record["dataset"], record["tier"],
                 record["seed"], record["main_metric"], record["metrics"].get(record["main_metric"]),
                 record["config_hash"], record["finished"], json.dumps(record, sort_keys=True)),
            )
        return path

    def records(self, task: str | None = None, tier: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT record FROM runs WHERE 1=1", []
        if task:
            query, args = query + " AND task = ?", args + [task]
        if tier:
            query, args = query + " AND tier = ?", args + [tier]
        rows = self.db.execute(query + " ORDER BY finished, id", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def stored_seeds(self, config_hashes: set[str]) -> dict[str, set[int]]:
        """config hash -> the seeds stored for it (what a sweep skips)."""
        out: dict[str, set[int]] = {}
        for config_hash, seed in self.db.execute("SELECT config_hash, seed FROM runs"):
            if config_hash in config_hashes:
                out.setdefault(config_hash, set()).add(seed)
        return out

    def latest(self, config_hash: str, seed: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT record FROM runs WHERE config_hash = ? AND seed = ? "
                              "ORDER BY finished DESC, id DESC LIMIT 1", (config_hash, seed)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        self.db.close()
