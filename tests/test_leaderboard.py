"""Leaderboard tables and their formats: budget columns, the Pareto front, paper values, escaping
in every format, the HTML page in headless Chromium, and the published leaderboard/ folder."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fakes import fake

from xbench import regimemap
from xbench.leaderboard import PaperValue, build, pareto_front, wall_time
from xbench.render import csv_cell, latex, markdown, to_csv, to_html, to_json
from xbench.stats import holm, paired, summarize

REPO = Path(__file__).resolve().parents[1]


STUDENT = [47.7, 48.3, 49.2]
KD = [49.0, 51.3, 50.6]
BIG = [50.0, 52.0, 51.0]


def board_records():
    recs = [fake("student", s, v, teacher=False, flops=5 * 10**11, seconds=3.0, start=10 * s) for s, v in enumerate(STUDENT)]
    recs += [fake("kd", s, v, cached=s > 0, start=40 + 10 * s) for s, v in enumerate(KD)]
    recs += [fake("big", s, v, flops=9 * 10**12, heads=500, start=80 + 10 * s) for s, v in enumerate(BIG)]
    recs += [fake("teacher", s, 70.0 + s, evaluated="teacher", start=120 + s) for s in range(3)]
    return recs


def test_rows_carry_statistics_budget_and_the_pareto_front():
    [table] = build(board_records(), {("kd", "recognition"): PaperValue("36.1 vs 34.87 (+3.5%), EGTEA top-1", 3.5, "Table 4")})
    rows = {r.label: r for r in table.rows}
    assert sorted(rows) == ["big", "kd", "student", "teacher [audio input]"]
    kd, big, student, teacher = rows["kd"], rows["big"], rows["student"], rows["teacher [audio input]"]
    assert kd.summary == summarize(KD)
    # three comparisons with the student (kd, big, the teacher reference): Holm over three
    raw = {r.label: r.versus.p for r in table.rows if r.versus}
    assert kd.versus == dataclasses.replace(paired(dict(enumerate(KD)), dict(enumerate(STUDENT))),
                                            p_holm=holm(list(raw.values()))[list(raw).index("kd")], comparisons=3)
    assert (kd.versus.p, kd.versus.p_holm, kd.versus.reachable) == (0.25, 0.75, False)
    assert kd.relative_gain == pytest.approx(100 * (sum(KD) / sum(STUDENT) - 1))
    # the teacher's cost is counted for every run; who paid it is recorded
    assert (kd.teacher_seconds, kd.teacher_forwards, kd.teacher_source) == (5.0, 100, "mixed")
    assert (student.teacher_source, student.teacher_seconds) == ("-", 0.0)
    assert (big.params, big.params_heads, big.peak_memory_mb) == (1500, 500, 1000.0)
    assert (kd.gflops, big.gflops, student.gflops) == (1200.0, 9200.0, 500.0)
    assert (kd.seconds, student.seconds) == (15.0, 3.0)
    # kd beats student for more compute; big scores higher for much more: all three on the front
    assert [(r.label, r.pareto, r.best) for r in table.rows] == [
        ("big", True, True), ("kd", True, False), ("student", True, False), ("teacher [audio input]", False, False)]
    assert teacher.is_reference and kd.paper.relative_gain == 3.5 and big.paper is None
    assert kd.selection == "val" and kd.git_shas == ["abc123"]


def test_pareto_front_and_wall_time():
    assert pareto_front([(1, 10), (2, 12), (2, 11), (3, 12), (1, 10)]) == [True, True, False, False, True]
    recs = [fake("a", 0, 1.0, start=0), fake("a", 1, 1.0, start=5), fake("a", 2, 1.0, start=30)]
    # [0, 10] and [5, 15] overlap: 15 s; [30, 40]: 10 s more; summed 30 s
    assert wall_time(recs) == (25.0, 30.0)


def test_latex_is_booktabs_with_the_best_in_bold():
    [table] = build(board_records())
    text = latex([table])
    kd = paired(dict(enumerate(KD)), dict(enumerate(STUDENT)))
    big = paired(dict(enumerate(BIG)), dict(enumerate(STUDENT)))
    s = summarize(BIG)
    lines = text.splitlines()
    assert lines[:10] == [
        r"\begin{table}[t]", r"\centering", r"\small",
        (r"\caption{recognition, tier cpu: test top1 of the val-selected model. Mean $\pm$ std over seeds; "
         r"vs student: mean paired difference and its 95\% paired-bootstrap interval; * exact sign-flip p < 0.05 "
         r"after Holm's correction over the table's 3 comparisons; $^{\dagger}$ too few seeds to reach it "
         r"(7 needed). Code abc123; torch 2.14.1, python 3.11.7, 2 thread(s), cpu:x86\_64.}"),
        r"\label{tab:xbench-recognition-cpu}", r"\begin{tabular}{lrrclrrrrr}", r"\toprule",
        r"Method & $n$ & top1 & 95\% CI & $\Delta$ vs student & Params & Teacher & GFLOPs & Device-s & Peak MB \\",
        r"\midrule",
        rf"big & 3 & $\mathbf{{{s.mean:.2f} \pm {s.std:.2f}}}$ & [{s.low:.2f}, {s.high:.2f}] & "
        + f"${big.diff:+.2f}$ [${big.low:+.2f}$, ${big.high:+.2f}$]$^{{\\dagger}}$ & 1,500 & 5 s, 100 fwd & 9,200 & 15 & "
        + "1,000 \\\\"]
    assert lines[10].startswith(rf"kd & 3 & ${sum(KD) / 3:.2f} \pm ") and f"${kd.diff:+.2f}$" in lines[10]
    assert lines[12:] == [r"\midrule", lines[13], r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    assert lines[13].startswith(r"teacher [audio input] & 3 & $71.00 \pm 1.00$")


NASTY = ["<script>alert(1)</script>", "a_b&c%", "=HYPERLINK(1)", "x|y*z$#{}~^\\"]


def nasty_records():
    recs = [fake("student", s, v, teacher=False) for s, v in enumerate(STUDENT)]
    for i, name in enumerate(NASTY):
        recs += [fake(name, s, 40.0 + i + s) for s in range(2)]
    return recs


def test_every_format_escapes_names_from_plugins_and_configs():
    tables = build(nasty_records())
    md = markdown(tables)
    assert "| &lt;script&gt;alert(1)&lt;/script&gt; " in md and "<script>" not in md
    assert "| a\\_b&amp;c% " in md and "| x\\|y\\*z$\\#{}\\~^\\\\ " in md
    tex = latex(tables)
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{} & 2" in tex
    assert r"a\_b\&c\% & 2" in tex
    assert r"x\textbar{}y*z\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{} & 2" in tex
    rows = list(csv.DictReader(io.StringIO(to_csv(tables))))
    # a spreadsheet would run a cell starting with = : it is quoted as text
    assert sorted(r["label"] for r in rows) == sorted(["'=HYPERLINK(1)", *NASTY[:2], NASTY[3], "student"])
    data = json.loads(to_json(tables))
    assert sorted(r["method"] for r in data["tables"][0]["rows"]) == sorted([*NASTY, "student"])
    page = to_html(tables)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a_b&amp;c%" in page


def test_no_csv_cell_of_any_column_opens_as_a_formula():
    """Every text column is guarded (a commit a record claims, its device, a method's name), in
    the leaderboard's CSV and the regime map's; numbers written as text and "-" are not formulas."""
    recs = [fake("student", s, 30.0 + s, teacher=False, sha="=cmd|' /C calc'!A0") for s in range(2)]
    recs += [fake("@SUM(A1)", s, 40.0 + s, sha="+1-2") for s in range(2)]
    tables = build(recs)
    cells = [(k, v) for text in (to_csv(tables), regimemap.to_csv(regimemap.build_maps(tables)))
             for row in csv.DictReader(io.StringIO(text)) for k, v in row.items()]
    assert ("git_shas", "'=cmd|' /C calc'!A0") in cells and ("method", "'@SUM(A1)") in cells
    for key, cell in cells:
        assert cell[:1] not in ("=", "+", "@", "\t", "\r") and (cell[:1] != "-" or cell == "-" or _number(cell)), key
    assert [csv_cell(v) for v in ("-0.5", "-", "+x", "\tA", 3.0)] == ["-0.5", "-", "'+x", "'\tA", 3.0]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Rows(HTMLParser):
    """The first cell of each row of each ``table.board``, and the body's attributes."""

    def __init__(self):
        super().__init__()
        self.tables, self.body, self._cell, self._text = {}, {}, None, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "table" and "board" in (a.get("class") or ""):
            self.tables[a["id"]] = self._rows = []
        elif tag == "tr":
            self._first = True
        elif tag == "td" and self._first:
            self._cell, self._text, self._first = True, "", False

    def handle_data(self, data):
        if self._cell:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell:
            self._rows.append(self._text)
            self._cell = None


def chromium_dom(url: str, tmp_path: Path) -> _Rows:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI: Debian's chromium is not installed (the test set-up installs it)")
        pytest.skip("no chromium (tests/setup-browser.sh installs Debian's package)")
    # the flags a root, offline, headless machine needs; --virtual-time-budget lets the page's
    # scripts and image loads finish before the DOM is dumped
    out = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True)
    parser = _Rows()
    parser.feed(out.stdout)
    return parser


def test_html_page_sorts_and_loads_its_plots_in_headless_chromium(tmp_path):
    from xbench.publish import render_records

    recs = board_records() + [fake("<img src=x onerror=\"document.body.dataset.pwned=1\">", s, 10.0 + s)
                              for s in range(3)]
    tables = render_records(recs, {"suite": "t"}, tmp_path / "board")
    page = (tmp_path / "board" / "index.html").resolve()
    dom = chromium_dom(page.as_uri(), tmp_path)
    labels = [r.label for r in tables[0].rows if not r.is_reference] + ["teacher [audio input]"]
    assert dom.tables == {"t-cpu-recognition": labels}
    # both plots (score vs compute, per-seed) are images that loaded from disk; the name that
    # tries to run code as a tag is text
    assert (dom.body.get("data-plots"), dom.body.get("data-plots-loaded")) == ("2", "2")
    assert "data-pwned" not in dom.body
    # sorted on load by the address: top1 (column 2) descending; the reference row stays last
    dom = chromium_dom(page.as_uri() + "#sort=t-cpu-recognition:2:desc", tmp_path)
    assert dom.tables["t-cpu-recognition"] == ["big", "kd", "student", labels[0], "teacher [audio input]"]
    dom = chromium_dom(page.as_uri() + "#sort=t-cpu-recognition:8:asc", tmp_path)  # GFLOPs
    assert dom.tables["t-cpu-recognition"][:2] == ["student", labels[0]]


def test_paper_values_come_from_the_plugins(registry):
    from xbench.leaderboard import paper_values

    values = paper_values(registry)
    assert values[("lmkd", "anticipation")].relative_gain == pytest.approx(100 * (36.10 / 34.87 - 1))
    [table] = build([fake("student", s, v, task="anticipation", teacher=False) for s, v in enumerate(STUDENT)]
                    + [fake("lmkd", s, v, task="anticipation") for s, v in enumerate(KD)], values)
    md = markdown([table], paper=True).splitlines()
    assert [c.strip() for c in md[2].split("|")[-4:-1]] == ["paper", "paper gain %", "ours %"]
    lmkd = [c.strip() for c in md[4].split("|")[1:-1]]
    # the records' cm_recall1 is not set: the reproduction's gain on the paper's metric is unknown
    assert lmkd[0] == "lmkd" and lmkd[-3:] == ["36.1 vs 34.87 (+3.5%), EGTEA Gaze+ class-mean top-1", "+3.5", "-"]
    recs = [fake("student", s, v, task="anticipation", teacher=False) for s, v in enumerate(STUDENT)]
    recs += [fake("lmkd", s, v, task="anticipation") for s, v in enumerate(KD)]
    for rec, v in zip(recs, [10.0, 11.0, 12.0, 12.0, 11.0, 13.0]):
        rec.metrics["cm_recall1"] = v
    [table] = build(recs, values)
    lmkd = next(r for r in table.rows if r.method == "lmkd")
    assert lmkd.paper_ours == pytest.approx(100 * (36 / 33 - 1))
    assert markdown([table], paper=True).splitlines()[4].split("|")[-2].strip() == "+9.1 (cm\\_recall1)"


@pytest.mark.parametrize("where", ["leaderboard", "leaderboard/regimes"])
def test_published_leaderboard_rerenders_to_the_committed_files(tmp_path, registry, where):
    """leaderboard/ (the synth-cpu suite) and leaderboard/regimes/ (the regime map) hold records
    and the formats rendered from them: rendering the committed records again must give the
    committed files, byte for byte (plots: present, not compared)."""
    from xbench.publish import RENDERED, render_dir

    folder = REPO / where
    render_dir(folder, tmp_path, registry)
    regimes = ("regimes.md", "regimes.tex", "regimes.csv", "regimes.json") if where.endswith("regimes") else ()
    for name in (*RENDERED, *regimes):
        assert (tmp_path / name).read_text() == (folder / name).read_text(), f"{where}/{name} is stale"
    committed = sorted(p.name for p in (folder / "plots").glob("*.png"))
    assert committed == sorted(p.name for p in (tmp_path / "plots").glob("*.png")) and committed
    records = list((folder / "records").glob("*.json"))
    assert re.search(r": (\d+) runs", (folder / "README.md").read_text()).group(1) == str(len(records))


def test_cli_renders_records_from_a_folder_in_every_format(tmp_path, capsys):
    from xbench.cli import main
    from xbench.render import render

    folder = tmp_path / "records"
    folder.mkdir()
    recs = board_records()
    for rec in recs:
        (folder / f"{rec.id}.json").write_text(json.dumps(rec.to_json()))
    tables = build(recs)
    for fmt in ("md", "plain", "latex", "csv", "json", "html"):
        assert main(["leaderboard", "--records", str(folder), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert out == render(tables, fmt) + ("\n" if fmt in ("md", "plain") else "")
    assert main(["leaderboard", "--records", str(folder), "--task", "detection"]) == 0
    assert capsys.readouterr().out == "no runs\n"
    assert main(["leaderboard", "--records", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == f"1 tables of {len(recs)} runs written to {tmp_path / 'out'}\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".xbench-leaderboard", "README.md", "index.html", "leaderboard.csv", "leaderboard.json", "leaderboard.tex",
        "plots"]
    # a folder xbench did not write is never written into (its README.md would be overwritten)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    assert main(["leaderboard", "--records", str(folder), "--out", str(mine)]) == 2
    assert capsys.readouterr().err == (f"xbench: error: {mine}: the folder holds files xbench did not write "
                                       "(README.md): give an empty folder or one xbench wrote\n")
    assert [p.name for p in mine.iterdir()] == ["README.md"] and (mine / "README.md").read_text() == "my notes\n"
    # a file that is no run record is named
    (folder / "notes.json").write_text("[1, 2]")
    assert main(["leaderboard", "--records", str(folder)]) == 2
    assert capsys.readouterr().err == (f"xbench: error: {folder / 'notes.json'}: not a valid run record: schema: "
                                       f"a record is a JSON object, not list\n")


def test_the_preface_escapes_what_records_and_meta_say(tmp_path, registry):
    """A device name, a commit or a suite name from a record or meta cannot inject markup into
    the README or the page, nor end a code span early."""
    from xbench.publish import render_records

    recs = [fake("student", s, v, teacher=False, sha="<b>x</b>") for s, v in enumerate(STUDENT)]
    for rec in recs:
        rec.env["device"] = "<img src=x onerror=alert(1)>"
    render_records(recs, {"suite": "a`b", "suite_file": "*f*"}, tmp_path / "out", registry)
    readme = (tmp_path / "out" / "README.md").read_text().splitlines()
    assert readme[2] == f"Suite `a'b` (\\*f\\*), tier `?`: {len(recs)} runs in 1 cells.  "
    assert readme[3].endswith("summed; &lt;img src=x onerror=alert(1)&gt;.  ")
    assert readme[4] == "Code: &lt;b&gt;x&lt;/b&gt; (git sha of each run, in its record).  "
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "<b>x</b>" not in page


def test_publish_removes_only_the_records_it_published_before(tmp_path, registry):
    """--publish replaces its own stale records and leaves every other file in records/ alone."""
    from xbench.publish import publish

    folder = tmp_path / "board"
    first = [fake("student", s, v, teacher=False) for s, v in enumerate(STUDENT)]
    publish(first + [fake("kd", s, v) for s, v in enumerate(KD)], {}, folder, registry, min_seeds=2)
    (folder / "records" / "notes.json").write_text("{}")  # not xbench's
    publish(first, {}, folder, registry, min_seeds=2)
    assert sorted(p.name for p in (folder / "records").iterdir()) == sorted(
        ["notes.json", *(f"{r.id}.json" for r in first)])
    assert json.loads((folder / ".xbench-leaderboard").read_text())["records"] == sorted(f"{r.id}.json" for r in first)


def test_an_undefined_metric_is_no_score():
    recs = [fake("student", s, v) for s, v in enumerate(STUDENT)]
    recs += [fake("teacher", s, float("nan"), evaluated="teacher") for s in range(2)]
    [table] = build(recs)
    teacher = next(r for r in table.rows if r.is_reference)
    assert teacher.scores == {} and teacher.summary is None and teacher.versus is None
    assert "| teacher \\[audio input\\] | 0   | -" in markdown([table])
    assert json.loads(to_json([table]))["tables"][0]["rows"][-1]["mean"] is None


def test_a_table_of_mixed_commits_says_so_and_is_never_published(tmp_path):
    from xbench.errors import ConfigError
    from xbench.publish import publish

    recs = board_records()[:3] + [fake("kd", s, v, sha="def456", start=40 + 10 * s) for s, v in enumerate(KD)]
    [table] = build(recs)
    assert markdown([table]).splitlines()[-3].endswith(
        "Mixed: 2 commit(s) (abc123, def456) and 1 environment(s): not one experiment (xbench publishes a "
        "table from one commit and one environment only).")
    with pytest.raises(ConfigError, match=r"^--publish: a table mixes commits or environments .*: recognition "
                                          r"\(cpu\): commits abc123, def456; environments torch 2.14.1"):
        publish(recs, {}, tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_the_publishing_environment_is_pinned_and_another_is_refused_or_named(monkeypatch):
    import importlib.metadata

    from xbench.errors import ConfigError
    from xbench.publish import environment_line, pins, unpinned

    assert list(pins()) == ["torch", "numpy", "scipy"]
    numpy = importlib.metadata.version("numpy")
    assert unpinned({"numpy": numpy, "scipy": "0.0.1"}) == [
        f"scipy {importlib.metadata.version('scipy')} installed, 0.0.1 pinned"]
    monkeypatch.setattr("xbench.publish.unpinned", lambda: ["torch 9.9 installed, 2.14.1 pinned"])
    with pytest.raises(ConfigError, match=r"^--publish: not the pinned environment .*torch 9.9 installed, "
                                          r"2.14.1 pinned; install it, or pass --unpinned"):
        environment_line(allow_unpinned=False)
    assert environment_line(allow_unpinned=True) == "NOT the pinned one (torch 9.9 installed, 2.14.1 pinned)"


def test_publishing_needs_the_minimum_of_seeds_from_every_compared_row_not_the_teacher():
    """The teacher row is a ceiling compared with nothing; on anticipation it has no sentence
    decoder, so no BLEU-4 at all: 0 scores must not block a table whose compared rows have 10."""
    from xbench.leaderboard import build
    from xbench.publish import too_few_seeds

    recs = [fake(m, s, 50.0 + s, start=s) for m in ("student", "kd") for s in range(10)]
    teacher = [fake("teacher", s, float("nan"), evaluated="teacher", start=s) for s in range(10)]
    assert too_few_seeds(build(recs + teacher)) == []
    assert too_few_seeds(build(recs[:9] + recs[10:] + teacher)) == ["recognition (cpu): student (9)"]


def test_plots_of_tables_no_longer_there_are_removed_and_nothing_else(tmp_path):
    """A re-published folder with fewer tables must not keep the old tables' plots (the page
    would not link them and the re-render test would not match); other files stay."""
    from xbench.leaderboard import build
    from xbench.plots import write_plots

    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("cpu-detection-pareto.png", "cpu-detection-seeds.png", "notes.png"):
        (plots / name).write_bytes(b"x")
    write_plots(build([fake(m, s, 50.0 + s, start=s) for m in ("student", "kd") for s in range(3)]), tmp_path)
    assert sorted(p.name for p in plots.iterdir()) == ["cpu-recognition-pareto.png", "cpu-recognition-seeds.png",
                                                       "notes.png"]


def test_mean_std_skips_runs_where_a_metric_is_undefined():
    """Clean-audio top-1 is NaN on data that does not annotate audio relevance: the summary of a
    multi-seed run printed a traceback (statistics.stdev of NaNs) instead of a dash."""
    from xbench.leaderboard import mean_std

    nan = float("nan")
    assert (mean_std([nan, nan, nan]), mean_std([1.0, nan, 3.0]), mean_std([])) == ("-", "2.00 ± 1.41", "-")
