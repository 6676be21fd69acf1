"""The regime table: per task, methods x regimes, each cell a method's paired gain over the
student of its regime (its tuned row where the sweep tuned it), starred where the exact sign-flip
test, Holm-adjusted over its regime's comparisons, is below 0.05; and a generated summary of where
each method helps and where it hurts. Built from the per-regime leaderboard tables
(``xbench.leaderboard.build``), so a cell is exactly the "vs student" entry of its regime's table,
star included.

Why the regime's family and not the whole map: a regime is one experiment with its own student,
and its table already corrects over its comparisons. Holm over every cell of a map of K cells
needs K * 2 / 2^n < 0.05 before any cell can be starred, which 10 seeds reach only for K <= 25: a
methods x regimes map is larger, so a map-wide family would star nothing whatever the data. The
map-wide adjusted p is still given (``p_map``) for a reader who wants that family, and the note
says how far apart the two families are (at most the number of regimes times 5% for a false star
somewhere on the map)."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from xbench.leaderboard import Row, Table
from xbench.render import csv_cell
from xbench.stats import ALPHA, holm, seeds_needed


@dataclass(frozen=True)
class Cell:
    method: str
    regime: str
    #: mean paired difference method - student over the seeds both have, and its raw exact p
    diff: float
    p: float
    n: int
    #: the method's tuned row (False: no tuned row in this regime, the default one is shown)
    tuned: bool
    #: the regime table's id on the HTML page (the cell links to its runs there)
    table_id: str
    #: Holm-adjusted over the regime's comparisons with its student (its table's star)
    p_table: float = math.nan
    #: Holm-adjusted over every cell of the map (a stricter family, reported, not starred)
    p_map: float = math.nan

    @property
    def significant(self) -> bool:
        return self.p_table < ALPHA


@dataclass
class RegimeMap:
    tier: str
    task: str
    metric: str
    regimes: list[str]
    tests: dict[str, str]
    methods: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    @property
    def comparisons(self) -> int:
        return len(self.cells)

    def summary(self) -> list[str]:
        """Per method, the regimes where it helps and where it hurts (significant cells only), from
        the cells alone."""
        lines = []
        for m in self.methods:
            mine = [self.cells[(m, r)] for r in self.regimes if (m, r) in self.cells]
            helps = [c for c in mine if c.significant and c.diff > 0]
            hurts = [c for c in mine if c.significant and c.diff < 0]
            parts = []
            if helps:
                parts.append("helps in " + ", ".join(f"{c.regime} ({c.diff:+.1f})" for c in helps))
            if hurts:
                parts.append("hurts in " + ", ".join(f"{c.regime} ({c.diff:+.1f})" for c in hurts))
            rest = len(mine) - len(helps) - len(hurts)
            if rest:
                parts.append(f"no significant difference in {rest} of {len(mine)} regime(s)")
            untuned = [c.regime for c in mine if not c.tuned]
            if untuned:
                parts.append(f"default settings (not tuned) in {', '.join(untuned)}")
            lines.append(f"{m}: " + "; ".join(parts) + ".")
        return lines


def _pick(rows: list[Row], method: str) -> Row | None:
    """A method's row of a regime table: its tuned row, else its default one (a row with other
    options, an ablation, is not the method's cell)."""
    own = [r for r in rows if r.method == method and r.versus is not None and not r.variant]
    tuned = [r for r in own if r.tuning]
    return (tuned or own or [None])[0]


def build_maps(tables: list[Table]) -> list[RegimeMap]:
    """One map per (tier, task) of the tables that have a regime, regimes in their R-number order."""
    from xbench.regimes import order_key
    from xbench.render import table_id

    groups: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        if t.regime:
            groups[(t.base_tier, t.task)].append(t)
    maps = []
    for (tier, task), group in sorted(groups.items()):
        group.sort(key=lambda t: order_key(t.regime or ""))
        methods = sorted({r.method for t in group for r in t.rows if r.versus is not None})
        m = RegimeMap(tier, task, group[0].metric, [t.regime for t in group],
                      {t.regime: t.regime_tests for t in group}, methods)
        for t in group:
            for method in methods:
                row = _pick(t.rows, method)
                if row is not None:
                    m.cells[(method, t.regime)] = Cell(method, t.regime, row.versus.diff, row.versus.p,
                                                       row.versus.n, bool(row.tuning), table_id(t),
                                                       p_table=row.versus.p_holm)
        if not m.cells:  # no regime has its student's runs: nothing is compared
            continue
        keys = list(m.cells)
        for key, p in zip(keys, holm([m.cells[k].p for k in keys])):
            m.cells[key] = dataclasses.replace(m.cells[key], p_map=p)
        maps.append(m)
    return maps


def _text(c: Cell | None) -> str:
    if c is None:
        return "-"
    return f"{c.diff:+.1f}{'*' if c.significant else ''}{'' if c.tuned else ' (d)'}"


def _title(m: RegimeMap) -> str:
    return f"{m.task}, tier {m.tier}: paired gain in {m.metric} over the student of each regime"


def _note(m: RegimeMap) -> str:
    return (f"Each cell: the method's tuned row minus the student's tuned row of that regime, mean over the "
            f"seeds both have; * the exact two-sided sign-flip p, Holm-adjusted over the regime's comparisons "
            f"with its student (the star of the regime's own table), is below {ALPHA}: within a regime, the "
            f"chance of starring any method that does not help is at most {ALPHA:.0%}, over the map's "
            f"{len(m.regimes)} regimes at most {min(1.0, ALPHA * len(m.regimes)):.0%}. Holm over all "
            f"{m.comparisons} cells of the map at once (p_map in the CSV and JSON) needs "
            f"{seeds_needed(m.comparisons)} seeds before any cell can pass. (d): no tuned row, the default "
            f"settings against the default student.")



def markdown(maps: list[RegimeMap]) -> str:
    out = []
    for m in maps:
        out += [f"### {_title(m)}", "", "| method | " + " | ".join(m.regimes) + " |",
                "|---|" + "---|" * len(m.regimes)]
        out += ["| " + m_ + " | " + " | ".join(_text(m.cells.get((m_, r))) for r in m.regimes) + " |"
                for m_ in m.methods]
        out += ["", _note(m), "", "Regimes:", ""] + [f"- **{r}**: {m.tests[r]}" for r in m.regimes]
        out += ["", "Summary (generated from the cells):", ""] + [f"- {line}" for line in m.summary()] + [""]
    return "\n".join(out)


def latex(maps: list[RegimeMap]) -> str:
    from xbench.render import tex_escape

    out = []
    for m in maps:
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                r"\begin{tabular}{l" + "r" * len(m.regimes) + "}", r"\toprule",
                "method & " + " & ".join(tex_escape(r) for r in m.regimes) + r" \\", r"\midrule"]
        out += [tex_escape(m_) + " & " + " & ".join(tex_escape(_text(m.cells.get((m_, r)))) for r in m.regimes)
                + r" \\" for m_ in m.methods]
        out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{tex_escape(_title(m) + '. ' + _note(m))}}}",
                r"\end{table}", ""]
    return "\n".join(out)


def _records(m: RegimeMap) -> list[dict]:
    return [{"tier": m.tier, "task": m.task, "metric": m.metric, "method": c.method, "regime": c.regime,
             "tests": m.tests[c.regime], "diff": c.diff, "p": c.p, "p_table": c.p_table, "p_map": c.p_map,
             "n": c.n, "tuned": c.tuned,
             "significant": c.significant} for c in m.cells.values()]


def to_json(maps: list[RegimeMap]) -> str:
    return json.dumps({"schema": 1, "maps": [
        {"tier": m.tier, "task": m.task, "metric": m.metric, "regimes": m.regimes, "tests": m.tests,
         "comparisons": m.comparisons, "cells": _records(m), "summary": m.summary()} for m in maps]},
        indent=1, sort_keys=True) + "\n"


def to_csv(maps: list[RegimeMap]) -> str:
    buf = io.StringIO()
    rows = [r for m in maps for r in _records(m)]
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def _colour(c: Cell, scale: float) -> str:
    """A diverging heat: blue for gains, red for losses, by size; pale where not significant."""
    a = min(1.0, abs(c.diff) / scale) * (0.85 if c.significant else 0.3)
    rgb = "33, 102, 172" if c.diff > 0 else "178, 24, 43"
    return f"background: rgba({rgb}, {a:.2f})"


def to_html(maps: list[RegimeMap]) -> str:
    """The heat maps, for the leaderboard page (each cell links to its regime table's rows)."""
    esc = html.escape
    out = []
    for m in maps:
        scale = max((abs(c.diff) for c in m.cells.values()), default=1.0) or 1.0
        out.append(f"<h2>{esc(_title(m))}</h2>")
        head = "".join(f'<th scope="col" title="{esc(m.tests[r])}">{esc(r)}</th>' for r in m.regimes)
        lines = []
        for method in m.methods:
            tds = []
            for r in m.regimes:
                c = m.cells.get((method, r))
                if c is None:
                    tds.append("<td>-</td>")
                    continue
                tip = (f"{method} in {r}: {c.diff:+.2f} over {c.n} seeds, p {c.p:.3g}, Holm over the regime "
                       f"{c.p_table:.3g}, over the map {c.p_map:.3g}")
                tds.append(f'<td style="{_colour(c, scale)}" title="{esc(tip)}">'
                           f'<a href="#{esc(c.table_id)}-title">{esc(_text(c))}</a></td>')
            lines.append(f"<tr><th scope=\"row\">{esc(method)}</th>{''.join(tds)}</tr>")
        out.append(f'<table class="heat"><thead><tr><th>method</th>{head}</tr></thead><tbody>'
                   + "\n".join(lines) + "</tbody></table>")
        out.append(f'<p class="note">{esc(_note(m))}</p><ul class="summary">'
                   + "".join(f"<li>{esc(line)}</li>" for line in m.summary()) + "</ul>")
    return "\n".join(out)


def render(maps: list[RegimeMap], fmt: str) -> str:
    if fmt in ("md", "plain"):
        return markdown(maps)
    if fmt == "latex":
        return latex(maps)
    if fmt == "csv":
        return to_csv(maps)
    if fmt == "json":
        return to_json(maps)
    if fmt == "html":
        return to_html(maps)
    raise ValueError(f"unknown format {fmt!r}")
