"""The regime table: methods x regimes, each cell the paired gain over the regime's own student,
starred after Holm's correction over its regime's comparisons (the map-wide correction reported
beside it), and the summary generated from the cells."""

from __future__ import annotations

import json

from fakes import fake

from xbench import regimemap
from xbench.leaderboard import build
from xbench.records import RunRecord
from xbench.stats import seeds_needed

STUDENT = [40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0, 47.0, 48.0, 49.0]


def _in(rec, regime, tests):
    data = rec.to_json()
    data["config"]["regime"] = {"name": regime, "tests": tests, "dataset_options": {}, "budget_scale": {},
                                "budget_options": {}, "tasks": None}
    data["config_hash"] = f"{rec.config_hash}@{regime}"
    data["id"] = f"{rec.id}-{regime}"
    return RunRecord.from_json(data, "fake")


def records():
    out = []
    gains = {"R0-published": [-2.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 0.0, 1.0, -1.0],  # noise
             "R2-labels-10": [3.0, 4.0, 2.5, 3.5, 5.0, 2.0, 3.0, 4.5, 3.0, 2.5]}  # every seed gains
    for regime, kd in gains.items():
        tests = f"what {regime} tests"
        out += [_in(fake("student", s, v, teacher=False), regime, tests) for s, v in enumerate(STUDENT)]
        out += [_in(fake("kd", s, v + g), regime, tests) for s, (v, g) in enumerate(zip(STUDENT, kd))]
        out += [_in(fake("noise-floor", s, v + (0.5 if s % 2 else -0.5), teacher=False), regime, tests)
                for s, v in enumerate(STUDENT)]
    out += [fake("student", s, v, teacher=False) for s, v in enumerate(STUDENT)]  # no regime: not on the map
    return out


def test_the_map_pairs_each_cell_with_its_regimes_student_and_stars_it_as_its_regime_table_does():
    tables = build(records())
    assert [(t.tier, t.regime) for t in tables] == [
        ("cpu", None), ("cpu, regime R0-published", "R0-published"), ("cpu, regime R2-labels-10", "R2-labels-10")]
    (m,) = regimemap.build_maps(tables)
    assert (m.tier, m.task, m.regimes, m.methods) == ("cpu", "recognition", ["R0-published", "R2-labels-10"],
                                                      ["kd", "noise-floor"])
    kd = m.cells[("kd", "R2-labels-10")]
    # all 10 seeds gain: exact sign-flip p = 2 / 2^10; Holm over the regime's 2 comparisons (kd,
    # noise-floor) multiplies it by 2, over the map's 4 cells by 4
    assert (kd.diff, kd.n, kd.p, kd.p_table, kd.p_map, kd.significant, kd.tuned) == (
        3.3, 10, 2 / 1024, 2 * 2 / 1024, 4 * 2 / 1024, True, False)
    r2 = next(t for t in tables if t.regime == "R2-labels-10")
    assert next(r for r in r2.rows if r.method == "kd").versus.p_holm == kd.p_table  # the table's own star
    assert not m.cells[("kd", "R0-published")].significant
    assert m.summary() == [
        ("kd: helps in R2-labels-10 (+3.3); no significant difference in 1 of 2 regime(s); "
         "default settings (not tuned) in R0-published, R2-labels-10."),
        ("noise-floor: no significant difference in 2 of 2 regime(s); default settings (not tuned) in "
         "R0-published, R2-labels-10.")]


def test_the_map_in_every_format():
    maps = regimemap.build_maps(build(records()))
    md = regimemap.markdown(maps)
    assert md.splitlines()[:6] == [
        "### recognition, tier cpu: paired gain in top1 over the student of each regime", "",
        "| method | R0-published | R2-labels-10 |", "|---|---|---|",
        "| kd | -0.2 (d) | +3.3* (d) |", "| noise-floor | +0.0 (d) | +0.0 (d) |"]
    assert "- **R2-labels-10**: what R2-labels-10 tests" in md
    # the note says what a star means and how many seeds the map-wide family would need
    assert md.splitlines()[7] == (
        "Each cell: the method's tuned row minus the student's tuned row of that regime, mean over the seeds "
        "both have; * the exact two-sided sign-flip p, Holm-adjusted over the regime's comparisons with its "
        "student (the star of the regime's own table), is below 0.05: within a regime, the chance of starring "
        "any method that does not help is at most 5%, over the map's 2 regimes at most 10%. Holm over all 4 "
        "cells of the map at once (p_map in the CSV and JSON) needs 8 seeds before any cell can pass. (d): no "
        "tuned row, the default settings against the default student.")
    assert (seeds_needed(25), seeds_needed(26), seeds_needed(40)) == (10, 11, 11)
    data = json.loads(regimemap.to_json(maps))
    assert [(c["method"], c["regime"], c["significant"]) for c in data["maps"][0]["cells"]] == [
        ("kd", "R0-published", False), ("noise-floor", "R0-published", False),
        ("kd", "R2-labels-10", True), ("noise-floor", "R2-labels-10", False)]
    assert regimemap.to_csv(maps).splitlines()[0] == (
        "tier,task,metric,method,regime,tests,diff,p,p_table,p_map,n,tuned,significant")
    tex = regimemap.latex(maps)
    assert r"kd & -0.2 (d) & +3.3* (d) \\" in tex and r"\begin{tabular}{lrr}" in tex
    page = regimemap.to_html(maps)
    assert page.count('<table class="heat">') == 1
    assert '<a href="#t-cpu--regime-R2-labels-10-recognition-title">+3.3* (d)</a>' in page


def test_the_cli_prints_the_map_and_publishing_writes_it(tmp_path, capsys):
    from xbench.cli import main

    folder = tmp_path / "records"
    folder.mkdir()
    recs = records()
    for rec in recs:
        (folder / f"{rec.id}.json").write_text(json.dumps(rec.to_json()))
    maps = regimemap.build_maps(build(recs))
    for fmt in ("md", "latex", "csv", "json"):
        assert main(["leaderboard", "--records", str(folder), "--regimes", "--format", fmt]) == 0
        assert capsys.readouterr().out == regimemap.render(maps, fmt)
    assert main(["leaderboard", "--records", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == f"3 tables of 70 runs written to {tmp_path / 'out'}\n"
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [n for n in written if n.startswith("regimes.")] == ["regimes.csv", "regimes.json", "regimes.md", "regimes.tex"]
    assert '<table class="heat">' in (tmp_path / "out" / "index.html").read_text()
    plain = [r for r in recs if r.regime is None]
    for rec in plain:
        (folder / f"{rec.id}.json").unlink()
    for rec in [r for r in recs if r.method != "student"]:
        (folder / f"{rec.id}.json").unlink()
    assert main(["leaderboard", "--records", str(folder), "--regimes"]) == 2
    assert capsys.readouterr().err == (
        "xbench: error: no regime table: it needs runs with a regime and the student's runs of the same regime "
        "('xbench run --regime', 'xbench sweep SUITE --regimes')\n")
