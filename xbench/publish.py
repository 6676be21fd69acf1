"""A published leaderboard folder: the result records it is made of and every rendered format.

::

    DIR/records/<run id>.json   the records (the store's result.json of each run)
    DIR/meta.json               the suite: name, tier, runs expected, runs missing
    DIR/README.md               markdown tables, with how they were made
    DIR/leaderboard.{tex,csv,json}, DIR/index.html, DIR/plots/*.png

Everything but the records and meta.json is rendered from them (:func:`render_dir`), so a test
can re-render the committed records and compare.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from xbench.errors import ConfigError
from xbench.leaderboard import (
    Table,
    build,
    incomplete_note,
    paper_values,
    wall_time,
)
from xbench.records import RunRecord, safe_id, validate
from xbench.render import markdown, md_escape, to_csv, to_html, to_json
from xbench.submit import changed_fields

#: the rendered files of a published folder (plots besides), compared by the re-render test
RENDERED = ("README.md", "leaderboard.tex", "leaderboard.csv", "leaderboard.json", "index.html")
#: the file that marks a folder as one xbench renders into (--out, --publish): xbench writes only
#: into an empty folder or one that has it, and it lists the records xbench put there (the only
#: ones a later --publish may remove)
MARKER = ".xbench-leaderboard"


def load_records(folder: Path) -> list[RunRecord]:
    """Every ``*.json`` record under ``folder`` (a published ``records/`` folder or a store's
    ``runs/``), in a stable order."""
    if not folder.is_dir():
        raise ConfigError(f"--records {folder}: no such folder")
    out, orphans = [], []
    stored = _stored_ids(folder)
    for path in sorted(folder.rglob("*.json")):
        if stored is not None and path.parent.name not in stored:
            orphans.append(path.parent.name)  # a write a crash cut short: not a stored run
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable run record ({exc})") from exc
        record = RunRecord.from_json(rec, str(path))
        # a record edited after its run is not shown: its numbers are not the run's (records made
        # before content hashes were kept have none to check)
        changed = changed_fields(rec) if "integrity" in rec else []
        if changed:
            raise ConfigError(f"{path}: edited after the run: {', '.join(changed)} no longer match(es) "
                              f"the record's hashes")
        out.append(record)
    if orphans:
        logging.getLogger("xbench").warning(
            f"xbench: warning: {len(orphans)} record(s) in {folder} are not in its store's database (e.g. "
            f"{orphans[0]}): left out; 'xbench runs --rebuild' imports them once they verify")
    return out


def _stored_ids(folder: Path) -> set[str] | None:
    """Where ``folder`` is a store's ``runs/``: the ids its database holds (a record beside them is
    an orphan, not a run); None for any other folder of records."""
    if folder.name != "runs" or not (folder.parent / "results.sqlite").is_file():
        return None
    from xbench.store import ResultStore

    store = ResultStore(folder.parent, reconcile=False)
    try:
        return store.ids()
    finally:
        store.close()


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _preface(records: list[RunRecord], meta: dict[str, Any], markdown_text: bool = True) -> list[str]:
    """The lines above the tables: markdown (values from records and meta escaped, code spans
    unable to close early), or plain text for the HTML page, which escapes it itself."""
    def t(value: Any) -> str:  # text from a record or meta
        return md_escape(str(value)) if markdown_text else str(value)

    def c(value: Any) -> str:  # a code span's content: a backtick would end it
        return str(value).replace("`", "'")

    q = "`" if markdown_text else ""
    wall, total = wall_time(records) if records else (0.0, 0.0)
    shas = sorted({r.git_sha or "?" for r in records})
    cells = {(r.task, r.config_hash) for r in records}
    expected = meta.get("expected_runs")
    lines = [
        f"Suite {q}{c(meta.get('suite', '?'))}{q} ({t(meta.get('suite_file', '?'))}), tier "
        f"{q}{c(meta.get('tier', '?'))}{q}: {len(records)} runs" + (f" of {t(expected)}" if expected else "")
        + f" in {len(cells)} cells.",
        (f"Wall time {_hours(wall)} while any run was going (union of the runs' start-finish "
         f"intervals), {_hours(total)} of runs summed; {t(records[0].env['device']) if records else '-'}."),
        f"Code: {', '.join(t(s[:12]) for s in shas)} (git sha of each run, in its record).",
    ]
    if meta.get("environment"):
        lines.append(f"Environment: {t(meta['environment'])}.")
    if meta.get("missing"):
        lines.append(f"Incomplete: {len(meta['missing'])} runs are not done yet; rerunning the "
                     f"command below resumes the sweep.")
    if meta.get("command"):
        folder = c(meta.get("folder", "DIR"))
        lines.append(f"Made by {q}{c(meta['command'])}{q}; re-rendered from {q}records/{q} by "
                     f"{q}xbench leaderboard --records {folder}/records --out {folder}{q}.")
    return lines


def render_dir(folder: Path, target: Path | None = None, reg=None) -> list[Table]:
    """Render ``folder``'s records into ``target`` (default: the folder itself)."""
    target = target or folder
    records = load_records(folder / "records")
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return render_records(records, meta, target, reg)


def _tables(records: list[RunRecord], reg, include_incomplete: bool = False) -> list[Table]:
    if reg is None:
        from xbench.registry import build_registry

        reg = build_registry()
    return build(records, paper_values(reg), include_incomplete=include_incomplete)


def render_records(records: list[RunRecord], meta: dict[str, Any], target: Path, reg=None,
                   include_incomplete: bool = False) -> list[Table]:
    tables = _tables(records, reg, include_incomplete)
    _write(tables, records, meta, target, include_incomplete)
    return tables


def _write(tables: list[Table], records: list[RunRecord], meta: dict[str, Any], target: Path,
           include_incomplete: bool) -> None:
    """Every rendered format of ``tables`` (made of ``records``) into ``target``."""
    from xbench.plots import write_plots

    claim(target)
    preface, plain = _preface(records, meta), _preface(records, meta, markdown_text=False)
    note = None if include_incomplete else incomplete_note(records)
    if note:
        preface.append(note[0].upper() + note[1:] + ".")
        plain.append(note[0].upper() + note[1:] + ".")
    title = f"xbench leaderboard: {meta.get('suite', 'runs')}"
    (target / "README.md").write_text(
        f"# {title}\n\n" + "\n".join(f"{line}  " for line in preface) + "\n\n"
        "Other formats: [LaTeX](leaderboard.tex) (booktabs), [CSV](leaderboard.csv), "
        "[JSON](leaderboard.json), [HTML](index.html) (sortable tables and plots). The paper "
        "column is the method's paper on its own dataset; compare gains in %, not absolute "
        "values.\n\n" + markdown(tables, paper=True) + "\n")
    (target / "leaderboard.tex").write_text(latex_doc(tables))
    (target / "leaderboard.csv").write_text(to_csv(tables))
    (target / "leaderboard.json").write_text(to_json(tables))
    _write_regime_maps(tables, target)
    plots = write_plots(tables, target)
    (target / "index.html").write_text(to_html(tables, plots, title=title, preface=" ".join(plain), paper=True))


def claim(target: Path, published: list[str] | None = None) -> list[str]:
    """Make ``target`` a folder xbench renders into, refusing one that holds anything xbench did
    not write (an unrelated README.md would be overwritten): it must be new, empty or carry
    ``MARKER``. ``published``: the record files now published there, kept in the marker. The
    record files the marker listed before (what xbench may remove)."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: not a folder: leaderboards are written into a folder")
    marker = target / MARKER
    before: list[str] = []
    if marker.is_file():
        try:
            before = list(json.loads(marker.read_text()).get("records", []))
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            before = []  # a damaged marker: xbench owns the folder still, but removes no record
    elif target.is_dir() and any(target.iterdir()):
        held = sorted(p.name for p in target.iterdir())
        raise ConfigError(f"{target}: the folder holds files xbench did not write ({', '.join(held[:3])}"
                          f"{', ...' if len(held) > 3 else ''}): give an empty folder or one xbench wrote")
    target.mkdir(parents=True, exist_ok=True)
    if published is not None or not marker.is_file():
        marker.write_text(json.dumps({"written_by": "xbench leaderboard (--out, --publish)",
                                      "records": sorted(published if published is not None else before)},
                                     indent=1) + "\n")
    return before


def _write_regime_maps(tables: list[Table], target: Path) -> None:
    """The regime tables (methods x regimes) where the runs have regimes, in every format; the
    HTML page draws them as heat maps."""
    from xbench import regimemap

    maps = regimemap.build_maps(tables)
    if not maps:
        return
    (target / "regimes.md").write_text("# Where each method helps and where it hurts\n\n" + regimemap.markdown(maps))
    (target / "regimes.tex").write_text("% xbench regime tables (booktabs)\n" + regimemap.latex(maps))
    (target / "regimes.csv").write_text(regimemap.to_csv(maps))
    (target / "regimes.json").write_text(regimemap.to_json(maps))


def latex_doc(tables: list[Table]) -> str:
    from xbench.render import latex

    return ("% xbench leaderboard: \\input{} into a document with \\usepackage{booktabs}\n"
            + latex(tables, paper=True))


#: the pinned numerical stack of a published leaderboard (shipped with xbench)
CONSTRAINTS = "publish-constraints.txt"


def pins() -> dict[str, str]:
    """package -> the version the constraints file pins."""
    from xbench.config import packaged

    out = {}
    for line in packaged(CONSTRAINTS).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.strip()] = version.strip()
    return out


def unpinned(pinned: dict[str, str] | None = None) -> list[str]:
    """How the installed numerical stack differs from the pinned one (local build tags such as
    ``+cu130`` aside): empty in the publishing environment."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name, want in (pins() if pinned is None else pinned).items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "none"
        if have.split("+", 1)[0] != want:
            out.append(f"{name} {have} installed, {want} pinned")
    return out


def environment_line(allow_unpinned: bool) -> str:
    """What a published folder says of its environment; a ConfigError where it is not the pinned
    one and that was not allowed."""
    diffs = unpinned()
    if diffs and not allow_unpinned:
        raise ConfigError(f"--publish: not the pinned environment (xbench/benchmarks/{CONSTRAINTS}): "
                          f"{'; '.join(diffs)}; install it, or pass --unpinned (the tables then say so)")
    pinned = ", ".join(f"{k}=={v}" for k, v in pins().items())
    return (f"pinned ({CONSTRAINTS}: {pinned})" if not diffs
            else f"NOT the pinned one ({'; '.join(diffs)})")


def mixed(tables: list[Table]) -> list[str]:
    """Each table whose runs come from more than one commit or environment, named."""
    return [f"{t.task} ({t.tier}): commits {', '.join(s[:12] for s in t.commits)}; environments "
            f"{' | '.join(t.environments)}" for t in tables if len(t.commits) > 1 or len(t.environments) > 1]


#: the fewest seeds a published row may have: with fewer, Holm's correction over a table of many
#: comparisons leaves no method able to reach p < 0.05 (stats.seeds_needed)
MIN_SEEDS = 10


def too_few_seeds(tables: list[Table], min_seeds: int = MIN_SEEDS) -> list[str]:
    """Each table with a row of fewer than ``min_seeds`` seeds, named with those rows. The teacher
    row is a ceiling compared with nothing (and on anticipation has no sentence decoder, so no
    BLEU-4 at all): it needs none."""
    out = []
    for t in tables:
        short = [f"{r.label} ({len(r.scores)})" for r in t.rows if len(r.scores) < min_seeds and not r.is_reference]
        if short:
            out.append(f"{t.task} ({t.tier}): {', '.join(short)}")
    return out


def publish(records: list[RunRecord], meta: dict[str, Any], folder: Path, reg=None, min_seeds: int = MIN_SEEDS) -> int:
    """Write the records (and only these: stale ones are removed) and render every format. A
    table is published from one commit and one environment only, with at least ``min_seeds``
    seeds a row: mixed runs and short rows are refused."""
    tables = _tables(records, reg)
    problems = mixed(tables)
    if problems:
        raise ConfigError("--publish: a table mixes commits or environments (rerun its cells at one "
                          "commit, in one environment): " + "; ".join(problems))
    short = too_few_seeds(tables, min_seeds)
    if short:
        raise ConfigError(f"--publish: a published row needs at least {min_seeds} seeds (fewer cannot reach "
                          "significance after Holm's correction; --min-seeds N to publish fewer): "
                          + "; ".join(short))
    for rec in records:
        validate(rec.to_json(), "--publish")  # a safe id: the file is named by it
    keep = sorted(f"{rec.id}.json" for rec in records)
    before = claim(folder, keep)
    rec_dir = folder / "records"
    rec_dir.mkdir(parents=True, exist_ok=True)
    for rec in records:
        (rec_dir / f"{rec.id}.json").write_text(json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n")
    for name in set(before) - set(keep):  # stale: only records an earlier --publish put there
        if name.endswith(".json") and safe_id(name[:-5]):  # a name, never a path out of the folder
            (rec_dir / name).unlink(missing_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    _write(tables, records, meta, folder, include_incomplete=False)
    return len(records)
