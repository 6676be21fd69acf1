"""Leaderboard tables (``xbench.leaderboard.Table``) in every published format: markdown, plain
text, LaTeX (booktabs), CSV, JSON and a static HTML page.

Every text that comes from a plugin or a config (method labels, task and metric names, teacher
names, paper settings) is escaped for the format it lands in, so a method named ``<script>`` or
``a_b&c%`` renders as that text. Numbers are formatted once, in :func:`_cells`, so the formats
cannot disagree.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from typing import Any

from tabulate import tabulate

from xbench.leaderboard import Row, Table
from xbench.stats import seeds_needed

FORMATS = ("md", "plain", "latex", "csv", "json", "html")

#: what the columns mean, printed under markdown and HTML tables
LEGEND = (
    "n: seeds. 95% CI: percentile bootstrap of the mean over seeds. vs student: mean paired "
    "difference with `student` on the same seeds (same data order and initialisation), its 95% "
    "paired-bootstrap interval (an interval, not a test) and p: the exact two-sided sign-flip test "
    "over all sign patterns, Holm-adjusted over the table's comparisons with `student`; * where "
    "that p < 0.05 (the table's family-wise error rate); † where the seeds are too few for any p "
    "to reach 0.05 (n seeds give at least 2/2^n, times the number of comparisons). "
    "params: student + the method's extra heads. teacher: seconds of the teacher's training and "
    "inference stages and its forward passes, counted for every run also when a cache spared "
    "them (cached). steps: every stage that trained the evaluated model (xkd: self-supervised + "
    "fine-tuning; anticipation: encoder pretraining + the method's stage); (still improving: k/n) where k of n seeds "
    "kept their last evaluated state, val still rising when the budget ended. (tuned): the "
    "configuration a seeded random search chose on val (the same number of trials for every "
    "method, trial 0 the defaults), compared with the tuned `student`; search: its trials and their steps, a cost on top of the row's own. GFLOPs, device-s (seconds) and peak MB: all stages of a run, mean over "
    "seeds. Pareto: no other method scores higher for fewer FLOPs. paper: what the method's "
    "paper reports on its own dataset; paper gain %: its gain over its student without KD; ours %: "
    "the reproduction's gain over `student` on the same metric. Model selection: val split only, "
    "test evaluated once (from the records)."
)


def _has_paper(table: Table) -> bool:
    return any(r.paper for r in table.rows)


def _cells(row: Row, table: Table, paper: bool) -> dict[str, str]:
    """The text of each column of a row; formats escape and decorate these."""
    s, v = row.summary, row.versus
    out = {
        "method": row.label,
        "n": str(len(row.scores)),
        table.metric: f"{s.mean:.2f} ± {s.std:.2f}" if s else "-",
        "95% CI": f"[{s.low:.2f}, {s.high:.2f}]" if s and s.n > 1 else "-",
        # the seeds both have, where the baseline lacks some of this row's
        "vs student": (f"{v.diff:+.2f} [{v.low:+.2f}, {v.high:+.2f}] p={v.p_holm:.3f}"
                       + (f" n={v.n}" if v.n != len(row.scores) else "") + (" *" if v.significant else "")
                       + ("" if v.reachable else " †"))
        if v else "-",
        "steps": row.steps,
        # a tuned row's search: its cost on top of its own runs (only in tables that have one)
        **({"search": row.search or "-"} if any(r.search for r in table.rows) else {}),
        "params": f"{row.params:,}",
        "teacher": "-" if row.teacher_source == "-" else
        f"{row.teacher_seconds:.0f} s, {row.teacher_forwards:,} fwd" + (" (cached)" if row.teacher_source == "cache" else ""),
        "GFLOPs": f"{row.gflops:,.0f}",
        "device-s": f"{row.seconds:.0f}",
        "peak MB": f"{row.peak_memory_mb:,.0f}",
        "Pareto": "yes" if row.pareto else "",
    }
    if paper:
        pv = row.paper
        out["paper"] = pv.text if pv else "-"
        out["paper gain %"] = f"{pv.relative_gain:+.1f}" if pv and pv.relative_gain is not None else "-"
        out["ours %"] = f"{row.paper_ours:+.1f}" + (f" ({pv.metric})" if pv.metric else "") \
            if pv and row.paper_ours is not None else "-"
    if row.selection not in ("val", "none"):  # never expected: say it where it shows
        out["method"] += f" (selected on {row.selection}!)"
    if row.stopped_by:
        out["steps"] += f" ({row.stopped_by})"
    if row.last_selected:  # the budget ended while val was still rising: more steps might score higher
        out["steps"] += f" (still improving: {row.last_selected}/{len(row.scores)})"
    return out


def _star_note(table: Table, latex: bool = False) -> str:
    """What the star means in this table, and how many seeds it needs."""
    m = table.comparisons
    pm = r"$\pm$" if latex else "±"
    dagger = r"$^{\dagger}$" if latex else "†"
    pct = r"\%" if latex else "%"
    text = (f"Mean {pm} std over seeds; vs student: mean paired difference and its 95{pct} "
            f"paired-bootstrap interval; * exact sign-flip p < 0.05 after Holm's correction over the "
            f"table's {m} comparisons")
    if any(r.versus and not r.versus.reachable for r in table.rows):
        text += f"; {dagger} too few seeds to reach it ({seeds_needed(m)} needed)"
    return text + ". " + (tex_escape(_provenance(table)) if latex else _provenance(table))


def _provenance(table: Table) -> str:
    """The commit and environment the table's runs share, or a warning that they do not: runs
    of other commits or numerical stacks are not one experiment."""
    commits, envs = table.commits, table.environments
    if len(commits) == 1 and len(envs) == 1:
        return f"Code {commits[0][:12]}; {envs[0]}."
    return (f"Mixed: {len(commits)} commit(s) ({', '.join(c[:12] for c in commits[:4])}"
            f"{', ...' if len(commits) > 4 else ''}) and {len(envs)} environment(s): not one experiment "
            f"(xbench publishes a table from one commit and one environment only).")


def _title(table: Table) -> str:
    return f"{table.task}, tier {table.tier}: test {table.metric} of the val-selected model"


def _rows_ordered(table: Table) -> list[Row]:
    """Competitors by label, then the reference rows (the privileged-modality teacher)."""
    return [r for r in table.rows if not r.is_reference] + [r for r in table.rows if r.is_reference]


# ----------------------------------------------------------------------------- markdown, plain

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def md_escape(text: str) -> str:
    """Text for a GitHub-markdown table cell: HTML special characters as entities (GitHub
    renders inline HTML), markdown punctuation backslash-escaped, the cell separator too."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def markdown(tables: list[Table], paper: bool = False) -> str:
    parts = []
    for table in tables:
        show_paper = paper and _has_paper(table)
        lines = []
        for row in _rows_ordered(table):
            cells = {k: md_escape(v) for k, v in _cells(row, table, show_paper).items()}
            if row.best:
                cells[table.metric] = f"**{cells[table.metric]}**"
            lines.append(cells)
        parts.append(f"### {md_escape(_title(table))}\n\n"
                     + tabulate(lines, headers="keys", tablefmt="github", disable_numparse=True)
                     + f"\n\n{md_escape(_star_note(table))}")
    return "\n\n".join(parts) + ("\n\n" + md_escape(LEGEND) if tables else "")


def plain(tables: list[Table], paper: bool = False) -> str:
    parts = []
    for table in tables:
        show_paper = paper and _has_paper(table)
        lines = [_cells(r, table, show_paper) for r in _rows_ordered(table)]
        parts.append(f"{_title(table)}\n" + tabulate(lines, headers="keys", tablefmt="simple",
                                                     disable_numparse=True) + f"\n{_star_note(table)}")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- LaTeX

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "|": r"\textbar{}"}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX))


def tex_escape(text: str) -> str:
    return _TEX_RE.sub(lambda m: _TEX[m.group()], text)


def latex(tables: list[Table], paper: bool = False) -> str:
    """One booktabs ``table`` per leaderboard table: mean ± std (best in bold), n, 95% CI, the
    paired difference with the student (* significant), params, teacher cost, GFLOPs, device-s,
    peak memory; reference rows (the teacher) below a rule. Needs ``\\usepackage{booktabs}``."""
    out = []
    for table in tables:
        show_paper = paper and _has_paper(table)
        head = ["Method", "$n$", tex_escape(table.metric), r"95\% CI", r"$\Delta$ vs student", "Params",
                "Teacher", "GFLOPs", "Device-s", "Peak MB"]
        if show_paper:
            head += ["Paper", r"Paper gain \%", r"Ours \%"]
        spec = "l" + "r" * 2 + "c" + "l" + "r" * 5 + ("lrr" if show_paper else "")
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 rf"\caption{{{tex_escape(_title(table))}. {_star_note(table, latex=True)}}}",
                 rf"\label{{tab:xbench-{re.sub(r'[^A-Za-z0-9-]', '-', table.task)}-{re.sub(r'[^A-Za-z0-9-]', '-', table.tier)}}}",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
        rows = _rows_ordered(table)
        for i, row in enumerate(rows):
            c = _cells(row, table, show_paper)
            s = row.summary
            score = f"{s.mean:.2f} \\pm {s.std:.2f}" if s else "-"
            score = f"$\\mathbf{{{score}}}$" if row.best else f"${score}$"
            v = row.versus
            delta = (f"${v.diff:+.2f}$ [${v.low:+.2f}$, ${v.high:+.2f}$]" + ("$^{*}$" if v.significant else "")
                     + ("" if v.reachable else r"$^{\dagger}$")) if v else "-"
            cells = [tex_escape(c["method"]), c["n"], score, tex_escape(c["95% CI"]), delta,
                     tex_escape(c["params"]), tex_escape(c["teacher"]), tex_escape(c["GFLOPs"]),
                     c["device-s"], tex_escape(c["peak MB"])]
            if show_paper:
                cells += [tex_escape(c["paper"]), tex_escape(c["paper gain %"]), tex_escape(c["ours %"])]
            if row.is_reference and (i == 0 or not rows[i - 1].is_reference):
                lines.append(r"\midrule")
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- CSV and JSON


def _record(row: Row, table: Table) -> dict[str, Any]:
    """A row as plain data (JSON and CSV): every number unrounded."""
    s, v = row.summary, row.versus
    return {
        "tier": table.tier, "task": table.task, "metric": table.metric, "method": row.method,
        "label": row.label, "config_hash": row.config_hash, "evaluated": row.evaluated,
        "n": len(row.scores), "scores": {str(k): x for k, x in sorted(row.scores.items())},
        "mean": s.mean if s else None, "std": s.std if s else None,
        "ci_low": s.low if s else None, "ci_high": s.high if s else None,
        "diff": v.diff if v else None, "diff_low": v.low if v else None, "diff_high": v.high if v else None,
        "p": v.p if v else None, "p_holm": v.p_holm if v else None,
        "comparisons": v.comparisons if v else None, "paired_n": v.n if v else None,
        "significant": v.significant if v else None, "reachable": v.reachable if v else None,
        "relative_gain": row.relative_gain,
        "steps": row.steps, "search": row.search, "params": row.params, "params_heads": row.params_heads,
        "teacher": row.teacher, "teacher_seconds": row.teacher_seconds,
        "teacher_forwards": row.teacher_forwards, "teacher_source": row.teacher_source,
        "gflops": row.gflops, "device_seconds": row.seconds, "peak_memory_mb": row.peak_memory_mb,
        "memory_kind": row.memory_kind, "selection": row.selection, "stopped_by": row.stopped_by,
        "last_selected": row.last_selected,
        "pareto": row.pareto, "best": row.best,
        "paper": row.paper.text if row.paper else None,
        "paper_relative_gain": row.paper.relative_gain if row.paper else None,
        "paper_source": row.paper.source if row.paper else None,
        "paper_metric": row.paper.metric if row.paper else None,
        "paper_ours": row.paper_ours,
        "git_shas": row.git_shas,
    }


def to_json(tables: list[Table]) -> str:
    return json.dumps({"schema": 1, "tables": [
        {"tier": t.tier, "task": t.task, "metric": t.metric, "seeds": t.seeds,
         "rows": [_record(r, t) for r in _rows_ordered(t)]} for t in tables]}, indent=1, sort_keys=True) + "\n"


def csv_cell(value: Any) -> Any:
    """A spreadsheet opens a cell starting with = + - @ (or a tab or carriage return) as a formula:
    every text cell that would be one (a name, a commit, a limit's stage) is prefixed with '.
    Numbers written as text ("-0.5") and the placeholder "-" are not formulas and stay."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != "-":
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def to_csv(tables: list[Table]) -> str:
    buf = io.StringIO()
    writer = None
    for table in tables:
        for row in _rows_ordered(table):
            rec = _record(row, table)
            rec["scores"] = ";".join(f"{k}:{x!r}" for k, x in rec["scores"].items())
            rec["git_shas"] = ";".join(rec["git_shas"])
            if writer is None:
                writer = csv.DictWriter(buf, fieldnames=list(rec), lineterminator="\n")
                writer.writeheader()
            writer.writerow({k: csv_cell(x) for k, x in rec.items()})
    return buf.getvalue()


# ----------------------------------------------------------------------------- HTML


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


_SCRIPT = """
// sort a table by a column: click a header (again: the other direction); #sort=TABLE:COLUMN:asc|desc
// in the address sorts on load, so a sorted view can be linked
function sortTable(table, col, dir) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).filter(r => !r.classList.contains('reference'));
  const refs = Array.from(body.rows).filter(r => r.classList.contains('reference'));
  const key = r => { const c = r.cells[col]; const v = c.dataset.sort;
                     return v === undefined ? c.textContent : (v === '' ? NaN : parseFloat(v)); };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (typeof x === 'number' || typeof y === 'number') {
      if (isNaN(x)) return 1; if (isNaN(y)) return -1; return dir * (x - y); }
    return dir * String(x).localeCompare(String(y)); });
  rows.concat(refs).forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) =>
    th.setAttribute('aria-sort', i === col ? (dir > 0 ? 'ascending' : 'descending') : 'none'));
}
document.querySelectorAll('table.board').forEach(table => {
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => th.addEventListener('click', () =>
    sortTable(table, col, th.getAttribute('aria-sort') === 'descending' ? 1 : -1)));
});
const m = /^#sort=([^:]+):(\\d+):(asc|desc)$/.exec(decodeURIComponent(location.hash));
if (m) { const t = document.getElementById(m[1]); if (t) sortTable(t, +m[2], m[3] === 'asc' ? 1 : -1); }
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.dataset.plotsLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.plots = imgs.length;
});
"""

_STYLE = """
table.heat td { text-align: center; min-width: 5.5em; }
table.heat a { color: inherit; text-decoration: none; }
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.board { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.5em; }
table.board th, table.board td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
table.board th { cursor: pointer; user-select: none; background: #f4f4f4; }
table.board th[aria-sort=ascending]::after { content: " \\25B2"; }
table.board th[aria-sort=descending]::after { content: " \\25BC"; }
table.board td:first-child, table.board th:first-child { text-align: left; }
tr.reference td { color: #777; font-style: italic; }
td.best { font-weight: bold; }
td.gain { color: #05662b; }
td.loss { color: #a3161b; }
.plots img { max-width: 48%; margin-right: 1%; }
.legend { font-size: 0.85em; color: #555; max-width: 60em; }
"""


def sparkline(row: Row, width: int = 90, height: int = 24) -> str:
    """The row's val curves as an inline SVG: one line per seed (step -> val metric, the
    selecting stage), the loss terms' first and last window in its tooltip; "" without a curve."""
    curves = [c for c in row.curves.values() if len(c) > 1]
    if not curves:
        return ""
    steps = [s for c in curves for s, _ in c]
    values = [v for c in curves for _, v in c]
    x0, x1, y0, y1 = min(steps), max(steps), min(values), max(values)

    def xy(s: int, v: float) -> str:
        x = (s - x0) / ((x1 - x0) or 1) * (width - 2) + 1
        y = height - 1 - (v - y0) / ((y1 - y0) or 1) * (height - 2)
        return f"{x:.1f},{y:.1f}"

    lines = "".join(f'<polyline fill="none" stroke="#4a7ab5" stroke-opacity="0.6" stroke-width="1" '
                    f'points="{" ".join(xy(s, v) for s, v in c)}"/>' for c in curves)
    terms = "; ".join(f"{k} {a:.3g} -> {b:.3g}" for k, (a, b) in row.terms.items())
    tip = f"val {y0:.2f}-{y1:.2f} over steps {x0}-{x1}" + (f"; loss terms (first -> last window): {terms}" if terms else "")
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{_esc(tip)}">'
            f"<title>{_esc(tip)}</title>{lines}</svg>")


def table_id(table: Table) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{table.tier}-{table.task}")


def to_html(tables: list[Table], plots: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
            title: str = "xbench leaderboard", preface: str = "", paper: bool = False) -> str:
    """A static page, opening from disk with no server: the tables (click a header to sort) and
    the plots, ``plots[(tier, task)]`` = [(relative path, caption)]."""
    body = [f"<h1>{_esc(title)}</h1>"]
    if preface:
        body.append(f"<p>{_esc(preface)}</p>")
    if len(tables) > 1:
        body.append("<nav>Tables: " + " · ".join(
            f'<a href="#{_esc(table_id(t))}-title">{_esc(t.task)} ({_esc(t.tier)})</a>' for t in tables) + "</nav>")
    if any(t.regime for t in tables):  # the map first: each cell links to its regime's table below
        from xbench import regimemap

        body.append(regimemap.to_html(regimemap.build_maps(tables)))
    for table in tables:
        show_paper = paper and _has_paper(table)
        tid = table_id(table)
        body.append(f'<h2 id="{_esc(tid)}-title">{_esc(_title(table))}</h2>')
        rows = _rows_ordered(table)
        headers = list(_cells(rows[0], table, show_paper)) + ["curve"] if rows else []
        head = "".join(f'<th scope="col">{_esc(h)}</th>' for h in headers)
        lines = []
        for row in rows:
            c = _cells(row, table, show_paper)
            rec = _record(row, table)
            sort_keys = {table.metric: rec["mean"], "n": rec["n"], "95% CI": rec["ci_low"],
                         "vs student": rec["diff"], "params": rec["params"], "teacher": rec["teacher_seconds"],
                         "GFLOPs": rec["gflops"], "device-s": rec["device_seconds"],
                         "peak MB": rec["peak_memory_mb"],
                         "paper gain %": rec["paper_relative_gain"], "ours %": rec["paper_ours"]}
            tds = []
            for h in headers:
                cls = []
                if h == table.metric and row.best:
                    cls.append("best")
                if h == "vs student" and row.versus and row.versus.significant:
                    cls.append("gain" if row.versus.diff > 0 else "loss")
                attrs = f' class="{" ".join(cls)}"' if cls else ""
                if h in sort_keys:
                    v = sort_keys[h]
                    attrs += f' data-sort="{"" if v is None else repr(float(v))}"'
                tds.append(f"<td{attrs}>{sparkline(row)}</td>" if h == "curve" else f"<td{attrs}>{_esc(c[h])}</td>")
            cls = ' class="reference"' if row.is_reference else ""
            lines.append(f"<tr{cls} data-config=\"{_esc(row.config_hash)}\">{''.join(tds)}</tr>")
        body.append(f'<table class="board" id="{_esc(tid)}"><thead><tr>{head}</tr></thead>'
                    f"<tbody>\n{chr(10).join(lines)}\n</tbody></table>")
        body.append(f'<p class="note">{_esc(_star_note(table))}</p>')
        images = (plots or {}).get((table.tier, table.task), [])
        if images:
            body.append('<div class="plots">' + "".join(
                f'<img src="{_esc(src)}" alt="{_esc(cap)}" title="{_esc(cap)}">' for src, cap in images) + "</div>")
    body.append(f'<p class="legend">{_esc(LEGEND)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def render(tables: list[Table], fmt: str, paper: bool = False) -> str:
    if fmt == "md":
        return markdown(tables, paper)
    if fmt == "plain":
        return plain(tables, paper)
    if fmt == "latex":
        return latex(tables, paper)
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "json":
        return to_json(tables)
    if fmt == "html":
        return to_html(tables, paper=paper)
    raise ValueError(f"unknown format {fmt!r}")
