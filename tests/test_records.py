"""The record schema on every read and write path: forged ids never become paths, metrics are
numbers, integers fit the store, edited records are refused, a bad stored row is named and can be
deleted, and nothing already stored is lost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from xbench.cli import main
from xbench.records import problems
from xbench.store import ResultStore, xbench_home

FIXTURE = Path(__file__).parent / "fixtures" / "prerefactor" / "kd-recognition-smoke-s0-20261129T203533-038952.json"


def _record() -> dict:
    return json.loads(FIXTURE.read_text())


def _resealed(rec: dict) -> dict:
    from xbench.submit import integrity

    rec["integrity"] = integrity(rec)
    return rec


def test_a_valid_record_has_no_problem():
    assert problems(_record()) == []


@pytest.mark.parametrize("edit, problem", [
    ({"id": "../../../../outside/pwn"}, "schema: id '../../../../outside/pwn' is not a safe name (letters, digits, . _ + -)"),
    ({"id": "/etc/passwd"}, "schema: id '/etc/passwd' is not a safe name (letters, digits, . _ + -)"),
    ({"seed": 99999999999999999999}, "schema: seed 99999999999999999999 is outside 0..2^63-1"),
    ({"seed": True}, "schema: field 'seed' is bool"),
    ({"metrics": {"top1": "NaN-string"}}, "schema: metric 'top1' is 'NaN-string', not a finite number (or NaN: undefined)"),
    ({"metrics": {"top1": float("inf")}}, "schema: metric 'top1' is inf, not a finite number (or NaN: undefined)"),
    ({"schema": 3}, "schema: version 3 is not one this xbench reads (1, 2)"),
])
def test_forged_records_are_named_by_their_first_problem(edit, problem):
    assert problems({**_record(), **edit})[0] == problem


def test_import_refuses_a_record_whose_id_would_leave_the_store(tmp_path, capsys):
    rec = _resealed({**_record(), "id": "../../../../outside/pwn"})
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(rec))
    assert main(["import", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"REJECTED {path}: schema: id '../../../../outside/pwn' is not a safe name")
    assert not (tmp_path / "outside").exists() and not (xbench_home().parent / "outside").exists()


def test_an_infinite_metric_never_enters_the_store_and_a_bad_row_is_named_then_deleted(capsys):
    store = ResultStore()
    good = _record()
    store.add(good)
    with pytest.raises(Exception, match="metric 'top1' is inf"):
        store.add({**_record(), "id": "bad-run", "metrics": {**good["metrics"], "top1": float("inf")}})
    assert not (xbench_home() / "runs" / "bad-run" / "result.json").exists()
    # a row damaged in the database itself (written by an older version, or by hand)
    db = sqlite3.connect(xbench_home() / "results.sqlite")
    with db:
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("broken-row", "kd", "recognition", "synth", "smoke", 1, "top1", 0.0, "x", "z",
                    json.dumps({**good, "id": "broken-row", "metrics": {"top1": "NaN-string"}})))
    db.close()
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert good["id"] in out and "broken-row" not in out
    assert err == ("xbench: warning: stored run 'broken-row' left out (schema: metric 'top1' is 'NaN-string', "
                   "not a finite number (or NaN: undefined)); 'xbench runs --delete ID' removes it\n")
    assert main(["leaderboard", "--task", "recognition"]) == 0
    capsys.readouterr()
    assert main(["runs", "--delete", "broken-row"]) == 0
    assert capsys.readouterr().out == "deleted broken-row\n"
    assert [r["id"] for r in ResultStore().records()] == [good["id"]]
    assert ResultStore().invalid == []


def test_a_seed_the_store_cannot_hold_fails_before_training(capsys):
    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke",
                 "--seed", "99999999999999999999"]) == 2
    assert capsys.readouterr().err == ("xbench: error: command line: seed 99999999999999999999 is outside "
                                       "0..2^63-1\n")
    assert not (xbench_home() / "runs").exists()


def test_leaderboard_records_refuses_an_edited_metric(tmp_path, capsys):
    folder = tmp_path / "records"
    folder.mkdir()
    rec = _record()
    rec["metrics"]["top1"] = 99.0
    (folder / f"{rec['id']}.json").write_text(json.dumps(rec))
    assert main(["leaderboard", "--records", str(folder)]) == 2
    assert capsys.readouterr().err == (f"xbench: error: {folder / rec['id']}.json: edited after the run: "
                                       f"metrics.top1 no longer match(es) the record's hashes\n")
