"""xbench submit --check / xbench import: a record made elsewhere is checked before it enters the
store; tampered records are rejected with the reason."""

from __future__ import annotations

import copy
import json

import pytest

from xbench.cli import main
from xbench.store import ResultStore
from xbench.submit import changed_fields, integrity


@pytest.fixture(scope="module")
def record(tmp_path_factory, data_root):
    """A real smoke-tier kd run, as its result.json."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XBENCH_HOME", str(home))
        mp.setenv("XBENCH_DATA", str(data_root))
        assert main(["run", "--method", "kd", "--task", "recognition", "--budget", "smoke", "--quiet"]) == 0
        [rec] = ResultStore().records()
    return json.loads(json.dumps(rec.to_json()))  # as its result.json holds it


def write(tmp_path, rec, name="r.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rec))
    return path


def resign(rec):
    """What a forger who knows the format does: recompute the content hashes after an edit."""
    rec["integrity"] = integrity(rec)
    return rec


def test_a_record_as_the_run_wrote_it_passes(tmp_path, capsys, record):
    assert changed_fields(record) == []
    path = write(tmp_path, record)
    assert main(["submit", "--check", str(path)]) == 0
    assert capsys.readouterr().out == f"OK {path}: kd on recognition, tier smoke, seed 0\n"


def _tampered():
    def metric(r):
        r["metrics"]["top1"] += 10.0
        return r

    def overspent(r):
        stage = r["budget"]["stages"][-1]
        stage["steps"], stage["samples"] = 60, 960
        return resign(r)

    def config(r):
        r["config"]["method_options"]["T"] = 1.0
        return resign(r)

    def plugin(r):
        r["plugins"]["ghost"] = {"dist": "xbench-ghost", "version": "9.9"}
        return resign(r)

    def version(r):
        r["plugins"]["baselines"]["version"] = "0.0.1"
        return resign(r)

    def selection(r):
        r["selection"]["split"] = "test"
        return resign(r)

    def modality(r):
        r["eval_modalities"] = ["rgb", "audio"]
        return resign(r)

    def schema(r):
        del r["config_hash"]
        return r

    return [
        (metric, ["content: edited after the run: metrics.top1 no longer match(es) the record's hashes"]),
        (overspent, ["budget: stage 'student' took 60 steps, the tier allows student_steps=30",
                     "budget: totals.steps {steps} is not the sum over stages",
                     "budget: totals.samples {samples} is not the sum over stages"]),
        (config, ["config: config_hash {hash} is not the hash of the recorded config ({new})"]),
        (plugin, ["plugins: unknown plugin 'ghost' (xbench-ghost 9.9) is not installed here"]),
        (version, ["plugins: plugin 'baselines' is version 0.1.0 here, 0.0.1 in the record"]),
        (selection, ["selection: model selected on 'test', only val is allowed"]),
        (modality, ["contract: the student was evaluated on ['rgb', 'audio'], task 'recognition' allows ['rgb']"]),
        (schema, ["schema: missing field 'config_hash'"]),
    ]


@pytest.mark.parametrize("tamper, reasons", _tampered(), ids=lambda x: getattr(x, "__name__", ""))
def test_tampered_records_are_rejected_with_the_reason(tmp_path, capsys, record, tamper, reasons):
    from xbench.config import stable_hash

    rec = tamper(copy.deepcopy(record))
    path = write(tmp_path, rec)
    assert main(["submit", "--check", str(path)]) == 1
    totals = record["budget"]["totals"]
    new = stable_hash({k: v for k, v in rec["config"].items() if k != "seed"})
    expected = [r.format(steps=totals["steps"], samples=totals["samples"], hash=record["config_hash"], new=new)
                for r in reasons]
    assert capsys.readouterr().out == f"REJECTED {path}: " + "; ".join(expected) + "\n"


def test_a_record_of_another_tier_or_a_custom_one_is_rejected(tmp_path, capsys, record):
    path = write(tmp_path, record)
    assert main(["submit", "--check", str(path), "--tier", "cpu"]) == 1
    assert capsys.readouterr().out == f"REJECTED {path}: tier: the record is of tier 'smoke', not 'cpu'\n"
    rec = copy.deepcopy(record)
    rec["budget"]["tier"]["student_steps"] = 300  # the run's tier is not the published one
    path = write(tmp_path, resign(rec))
    assert main(["submit", "--check", str(path)]) == 1
    assert capsys.readouterr().out == (f"REJECTED {path}: budget: the record's tier says student_steps=300, "
                                       f"tier 'smoke' says 30\n")


def test_import_adds_only_checked_records(tmp_path, capsys, record):
    good = write(tmp_path, record, "good.json")
    bad = copy.deepcopy(record)
    bad["id"] = "tampered"
    bad["metrics"]["top1"] = 99.0
    bad = write(tmp_path, bad, "bad.json")
    assert main(["import", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"OK {good}: kd on recognition, tier smoke, seed 0"
    assert out[1].startswith(f"REJECTED {bad}: content: edited after the run: id, metrics.top1")
    assert out[2] == "imported 1, rejected 1, already stored 0"
    assert [r.id for r in ResultStore().records()] == [record["id"]]
    assert main(["import", str(good)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "imported 0, rejected 0, already stored 1"
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["import", str(tmp_path / "junk.json")]) == 2
    assert capsys.readouterr().err == f"xbench: error: {tmp_path / 'junk.json'}: not JSON (Expecting property name enclosed in double quotes at line 1)\n"
