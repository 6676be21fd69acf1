"""The record schema on every read and write path: forged ids never become paths, metrics are
numbers, integers fit the store, edited records are refused, a bad stored row is named and can be
deleted, and nothing already stored is lost."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from xbench.cli import main
from xbench.errors import DataError
from xbench.records import RunRecord, problems
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
    ({"schema": 4}, "schema: version 4 is not one this xbench reads (1, 2, 3)"),
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
    store.add(RunRecord.from_json(good, "fixture"))
    # a record built in code (a plugin's, a future engine's) is checked again before it is stored
    bad = dataclasses.replace(RunRecord.from_json(_record(), "fixture"), id="bad-run",
                              metrics={**good["metrics"], "top1": float("inf")})
    with pytest.raises(DataError, match="run: not a valid run record: schema: metric 'top1' is inf"):
        store.add(bad)
    assert not (xbench_home() / "runs" / "bad-run" / "result.json").exists()
    # a row damaged in the database itself (written by an older version, or by hand)
    broken = json.dumps({**good, "id": "broken-row", "metrics": {"top1": "NaN-string"}})
    (xbench_home() / "runs" / "broken-row").mkdir()
    (xbench_home() / "runs" / "broken-row" / "result.json").write_text(broken)  # row and file agree
    db = sqlite3.connect(xbench_home() / "results.sqlite")
    with db:
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("broken-row", "kd", "recognition", "synth", "smoke", 1, "top1", 0.0, "x", "z", broken))
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
    assert [r.id for r in ResultStore().records()] == [good["id"]]
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


PUBLISHED = Path(__file__).parents[1] / "leaderboard" / "records"


def test_every_published_and_fixture_record_reads_typed_and_writes_back_unchanged():
    paths = sorted(PUBLISHED.glob("*.json")) + sorted(FIXTURE.parent.glob("*.json"))
    assert len(paths) == 597
    for path in paths:
        data = json.loads(path.read_text())
        assert RunRecord.from_json(data, str(path)).to_json() == data, path


def test_a_version_1_record_is_migrated_on_reading_and_left_as_it_was_on_writing():
    data = _record()
    rec = RunRecord.from_json(data, "fixture")
    assert (data["schema"], "baseline" in data) == (1, False)
    assert (rec.baseline, rec.method_stage.stage, rec.method_stage.steps, rec.main_score) == (
        False, "student", 30, data["metrics"]["top1"])
    student = RunRecord.from_json({**data, "method": "student", "config": {**data["config"], "method": "student"}}, "x")
    assert student.baseline is True
    assert "baseline" not in rec.to_json()


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r["budget"]["stages"][1].update(steps="30"), "schema: field 'budget.stages[1].steps' is str"),
    (lambda r: r["budget"]["totals"].pop("flops"), "schema: missing field 'budget.totals.flops'"),
    (lambda r: r["selection"].update(split=3), "schema: field 'selection.split' is int"),
    (lambda r: r["data"]["sizes"].update(train=1.5), "schema: field 'data.sizes.train' is float"),
    (lambda r: r.update(schema=2), "schema: missing field 'baseline'"),
    (lambda r: r.update(schema=2, baseline=False, integrity=None), "schema: field 'integrity' is NoneType"),
])
def test_nested_fields_are_checked_by_their_types(edit, problem):
    data = _record()
    edit(data)
    assert problems(data) == [problem]


def test_status_is_migrated_from_what_stopped_a_run_and_a_sweep_reruns_an_incomplete_one():
    complete = _record()
    short = _resealed({**_record(), "id": "short-run", "seed": 1})
    short["budget"]["totals"]["stopped_by"] = "student:max_seconds"
    assert (RunRecord.from_json(complete, "a").status, RunRecord.from_json(short, "b").status) == (
        "complete", "incomplete")
    assert "status" not in RunRecord.from_json(short, "b").to_json()  # version 1, written back as it was
    v3 = {**complete, "schema": 3, "baseline": False, "status": "partial", "integrity": {}}
    assert problems(v3)[0] == "schema: missing field 'budget.stages[0].curve'"  # version 3 keeps curves
    v3["budget"] = {**v3["budget"], "stages": [{**s, "curve": []} for s in v3["budget"]["stages"]]}
    assert problems(v3) == ["schema: status 'partial' is not complete or incomplete"]
    store = ResultStore()
    store.add(RunRecord.from_json(complete, "a"))
    store.add(RunRecord.from_json(short, "b"))
    # seed 1 is stored, incomplete: a sweep runs it again
    assert store.stored_seeds({complete["config_hash"]}) == {complete["config_hash"]: {0}}


def test_a_record_holding_nan_does_not_stop_a_sweep_from_reading_the_store():
    """A run the clock stopped before its first evaluation selects NaN, which json.dumps writes as
    NaN: not JSON to SQLite, whose json_extract failed every later sweep's plan ('malformed JSON')."""
    complete = _record()
    stopped = _resealed({**_record(), "id": "stopped-at-once", "seed": 1})
    stopped["budget"]["totals"]["stopped_by"] = "student:max_seconds"
    stopped["selection"] = {**stopped["selection"], "value": float("nan"), "metrics": {}}
    nan_but_complete = _resealed({**_record(), "id": "nan-complete", "seed": 2})
    nan_but_complete["selection"] = {**nan_but_complete["selection"], "value": float("nan")}
    store = ResultStore()
    for i, data in enumerate((complete, stopped, nan_but_complete)):
        store.add(RunRecord.from_json(data, str(i)))
    assert store.stored_seeds({complete["config_hash"]}) == {complete["config_hash"]: {0, 2}}
