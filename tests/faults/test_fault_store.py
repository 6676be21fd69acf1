"""The results store under damage: an empty or garbage database is a one-line error naming the
file, never a silently empty store; the store says where its database and runs/ disagree; and
``xbench runs --rebuild`` mends both from what is there, importing only records that verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xbench.cli import configure_output, main
from xbench.errors import StoreError
from xbench.records import RunRecord
from xbench.store import ResultStore

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "prerefactor").glob("*.json"))


def _filled(home: Path, n: int) -> list[str]:
    """A store at ``home`` holding the first ``n`` fixture records; their ids."""
    store = ResultStore(home)
    ids = [store.add(RunRecord.from_json(json.loads(p.read_text()), str(p))).parent.name for p in FIXTURES[:n]]
    store.close()
    return ids


@pytest.mark.parametrize(("damage", "message"), [
    (b"", r"^{db} is empty \(0 bytes\) but {runs} holds 3 record\(s\): 'xbench runs --rebuild' re-imports them$"),
    (b"\x00garbage" * 200, (r"^{db} is not a readable SQLite database \(file is not a database\): 'xbench runs "
                           r"--rebuild' re-imports the records in {runs}$")),
])
def test_a_damaged_database_is_an_error_and_rebuild_reimports_every_record(tmp_path, monkeypatch, capsys,
                                                                           damage, message):
    home = tmp_path / "home"
    ids = _filled(home, 3)
    db = home / "results.sqlite"
    db.write_bytes(damage)
    with pytest.raises(StoreError, match=message.format(db=db, runs=home / "runs")):
        ResultStore(home)
    monkeypatch.setenv("XBENCH_HOME", str(home))
    assert main(["runs"]) == 2  # one line, exit 2, nothing touched
    assert capsys.readouterr().err.startswith(f"xbench: error: {db} is ")
    assert db.read_bytes() == damage
    assert main(["runs", "--rebuild"]) == 0
    (aside,) = home.glob("results.sqlite.broken-*")
    assert capsys.readouterr().out == (f"moved the unreadable database aside: {aside}\n"
                                       "rebuilt the store: 3 record(s) imported, 0 rejected, 0 result.json restored\n")
    assert aside.read_bytes() == damage
    assert sorted(r.id for r in ResultStore(home).records()) == sorted(ids)


def test_the_store_says_where_it_disagrees_with_its_runs_and_rebuild_mends_it(tmp_path, monkeypatch, capsys):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    ids = _filled(home, 2)
    orphans = _filled(elsewhere, 4)[2:]
    for run_id in orphans:  # files whose rows a crash never wrote
        shutil.copytree(elsewhere / "runs" / run_id, home / "runs" / run_id)
    tampered = home / "runs" / orphans[1] / "result.json"
    data = json.loads(tampered.read_text())
    data["metrics"] = {k: v + 1 for k, v in data["metrics"].items()}
    tampered.write_text(json.dumps(data))
    (home / "runs" / ids[0] / "result.json").unlink()  # a row whose file was removed
    configure_output(quiet=False, verbose=False)  # the one reporter, as the CLI sets it up
    ResultStore(home)
    assert capsys.readouterr().err.splitlines() == [(f"xbench: warning: store {home}: 2 record(s) in runs/ not in the database (e.g. {min(orphans)}); "
                               f"1 stored run(s) without their result.json (e.g. {ids[0]}); 'xbench runs --rebuild' "
                               "mends both")]
    monkeypatch.setenv("XBENCH_HOME", str(home))
    assert main(["runs", "--rebuild"]) == 0
    assert capsys.readouterr().out == (f"not imported: {orphans[1]}: its content no longer matches its hashes\n"
                                       "rebuilt the store: 1 record(s) imported, 1 rejected, 1 result.json restored\n")
    store = ResultStore(home)
    assert sorted(r.id for r in store.records()) == sorted([*ids, orphans[0]])
    assert json.loads((home / "runs" / ids[0] / "result.json").read_text()) == store.get(ids[0]).to_json()
