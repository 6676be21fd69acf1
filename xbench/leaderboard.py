"""Leaderboard tables from stored run records (never hand-edited).

:func:`build` turns records into :class:`Table` s, one per tier and task: a :class:`Row` per
configuration (a method with its options), its seeds aggregated. Rows of different tiers are never
in one table. Renderers (``xbench.render``) only format what is here, so every format shows the
same numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from xbench.context import Stage
from xbench.errors import ConfigError
from xbench.records import RunRecord
from xbench.stats import Paired, Summary, holm, paired, summarize

#: stages that train or run the teacher: its cost, whether this run paid it or a cache did
TEACHER_STAGES = (Stage.TEACHER, Stage.TEACHER_PRETRAIN, Stage.TEACHER_INFERENCE)


def mean_std(values: list[float]) -> str:
    """"mean ± std" over the values a metric has (NaN: undefined for that run, e.g. clean-audio
    accuracy on data that does not annotate which clips' audio carries the action)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


@dataclass(frozen=True)
class PaperValue:
    """What the method's paper reports for this task (kept with the plugin, see
    ``MethodSpec.paper``), shown beside the reproduction."""

    text: str
    relative_gain: float | None
    source: str
    #: the metric the reproduction's gain is computed on (None: the table's main metric)
    metric: str | None = None


@dataclass
class Row:
    """One configuration over its seeds, with the spend of its runs (means over seeds)."""

    label: str
    method: str
    #: a run of the baseline the other rows are paired with
    baseline: bool
    config_hash: str
    evaluated: str
    scores: dict[int, float]
    summary: Summary | None
    versus: Paired | None
    #: relative gain over the student in percent (mean of the method / mean of the student - 1)
    relative_gain: float | None
    steps: str
    params: int
    params_heads: int
    teacher: str | None
    teacher_seconds: float
    teacher_forwards: int
    #: "computed" (this run trained/ran its teacher), "cache" (a run before it did), or "-"
    teacher_source: str
    gflops: float
    seconds: float
    peak_memory_mb: float
    memory_kind: str
    #: the split model selection used: "val", or "none" (self-supervised: the last state)
    selection: str
    stopped_by: str | None
    #: seeds whose selected state was their last evaluated one (still improving at the budget's end)
    last_selected: int = 0
    pareto: bool = False
    best: bool = False
    paper: PaperValue | None = None
    #: the reproduction's relative gain over the student (%) on the paper's metric
    paper_ours: float | None = None
    git_shas: list[str] = field(default_factory=list)
    #: the environments its runs ran in (:func:`environment_label`)
    environments: list[str] = field(default_factory=list)
    #: what sets the row's configuration apart from the method's other rows of the table
    #: (another teacher, protocol or options: :func:`_variant`); "" for the method's own
    variant: str = ""
    #: how a tuned row's configuration was chosen (the record's ``tuning``: trials, selected
    #: trial, steps); {} for a default row
    tuning: dict[str, Any] = field(default_factory=dict)
    #: per seed, the selecting stage's val curve [(step, value)] (the HTML page draws it)
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    #: each loss term's weighted mean over the seeds in the stage's first and last window
    terms: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def search(self) -> str:
        """A tuned row's search, "N trials, S steps (trial k)": its cost besides its own runs."""
        t = self.tuning
        return f"{t['trials']} trials, {t['steps']} steps (trial {t['selected']})" if t else ""

    @property
    def is_reference(self) -> bool:
        """The teacher row: evaluated on a privileged modality, a ceiling, not a competitor."""
        return self.evaluated != "student"


@dataclass
class Table:
    #: the table's heading: the tier, and the regime (``xbench.regimes``) where its runs had one
    tier: str
    task: str
    metric: str
    rows: list[Row]
    #: the regime's name and what it tests (None: no regime), and the tier's own name
    regime: str | None = None
    regime_tests: str = ""
    base_tier: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted({s for r in self.rows for s in r.scores})

    @property
    def commits(self) -> list[str]:
        return sorted({sha for r in self.rows for sha in r.git_shas})

    @property
    def environments(self) -> list[str]:
        return sorted({env for r in self.rows for env in r.environments})

    @property
    def comparisons(self) -> int:
        """How many rows are compared with the baseline: the family Holm corrects over."""
        return sum(r.versus is not None for r in self.rows)


def _label(rec: RunRecord, variant: str = "") -> str:
    """The method, what sets its configuration apart in this table (``variant``, :func:`_variant`),
    and what it is: an oracle, the teacher on its input, a self-supervised encoder scored as it is."""
    config = rec.config
    label = rec.method + variant
    if config.get("privileged"):  # an upper bound no real method reaches: never read as a method
        label += f" (oracle: {', '.join(config['privileged'])})"
    if rec.evaluated == "teacher":
        label += f" [{', '.join(rec.eval_modalities)} input]"
    elif rec.selection.split is None:  # a self-supervised encoder scored as it is (retrieval)
        label += " (self-supervised features)"
    return label


def _variant(rec: RunRecord, differing: tuple[str, ...] = ()) -> str:
    """What sets a run's configuration apart from the method's other rows in its table: another
    teacher, an evaluation protocol other than the default, the values of the options that differ
    between them. "" for the method's own configuration."""
    config = rec.config
    out = ""
    if config.get("teacher") and rec.evaluated == "student" and "teacher" in differing:
        out += f" <- {config['teacher']}"
    protocol = config.get("task_options", {}).get("protocol")
    if protocol and protocol != "finetune":
        out += f" ({protocol} probe)" if protocol == "linear" else f" ({protocol})"
    opts = config.get("method_options", {})
    data = config.get("dataset_options", {})
    shown = [f"{k}={_short(opts[k])}" for k in differing if k in opts]
    shown += [f"{k}={data[k[8:]]}" for k in differing if k.startswith("dataset.") and k[8:] in data]
    return out + (f" [{', '.join(shown)}]" if shown else "")


def _short(value: Any) -> str:
    """An option value in a label: lists of mappings (a combination's terms) by their names."""
    if isinstance(value, list) and all(isinstance(v, dict) and "loss" in v for v in value):
        return "+".join(str(v["loss"]) for v in value)
    return str(value)


def _differing(configs: list[dict[str, Any]]) -> tuple[str, ...]:
    """Method options, dataset options (``dataset.KEY``) and the teacher whose values are not the
    same in every configuration."""
    def varying(section: str) -> list[str]:
        keys = sorted({k for c in configs for k in c.get(section, {})})
        return [k for k in keys if len({repr(c.get(section, {}).get(k)) for c in configs}) > 1]

    # runs on other data (fewer labels, another noise rate) are other rows, labelled so
    out = varying("method_options") + [f"dataset.{k}" for k in varying("dataset_options")]
    if len({c.get("teacher") for c in configs}) > 1:
        out.append("teacher")
    return tuple(out)


def _setting(rec: RunRecord) -> str:
    """What a run's baseline must share with it: tier, task, dataset and their options (the
    same data, labels and protocol) and whether it was tuned (the same tuning effort); the
    method and its options are what is compared."""
    c = rec.config
    return json.dumps([_tier(rec), rec.task, c.get("dataset"), c.get("task_options"),
                       c.get("dataset_options")] + (["tuned"] if rec.tuning else []), sort_keys=True)


def _teacher_cost(recs: list[RunRecord]) -> tuple[float, int, str]:
    """Mean seconds of the teacher's stages, mean teacher forwards, and who paid: every run
    records its teacher's cost, also when a cache spared it (``source: cache``)."""
    stages = [[s for s in r.budget.stages if s.stage in TEACHER_STAGES] for r in recs]
    if not any(stages):
        return 0.0, 0, "-"
    seconds = statistics.fmean(sum(s.seconds for s in st) for st in stages)
    forwards = round(statistics.fmean(r.budget.totals.teacher_forwards for r in recs))
    sources = {s.source for st in stages for s in st}
    return seconds, forwards, sources.pop() if len(sources) == 1 else "mixed"


def _selection(recs: list[RunRecord]) -> str:
    splits = {r.selection.split for r in recs}
    names = sorted("none" if s is None else str(s) for s in splits)
    return "/".join(names)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, score) points: True where no other point costs no more and scores no less,
    and is better in one of the two (lower cost, higher score)."""
    out = []
    for i, (c, s) in enumerate(points):
        dominated = any(c2 <= c and s2 >= s and (c2 < c or s2 > s)
                        for j, (c2, s2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def _relative_gain(recs: list[RunRecord], base: dict[int, RunRecord] | None, metric: str) -> float | None:
    """100 * (mean / student mean - 1) over the seeds both have, on ``metric``."""
    if not base:
        return None
    mine = {r.seed: r.metrics[metric] for r in recs if metric in r.metrics}
    theirs = {s: x.metrics[metric] for s, x in base.items() if metric in x.metrics}
    common = sorted(set(mine) & set(theirs))
    if not common:
        return None
    base_mean = statistics.fmean(theirs[s] for s in common)
    return 100 * (statistics.fmean(mine[s] for s in common) / base_mean - 1) if base_mean else None


def build(records: list[RunRecord], paper: dict[tuple[str, str], PaperValue] | None = None,
          include_incomplete: bool = False) -> list[Table]:
    """Records -> tables, one per (tier, task), rows sorted by label. The latest record of a
    (configuration, seed) wins. Runs of one method with other options (the linear-probe protocol,
    an ablation, another teacher, fewer labels) are other rows, labelled by what differs, never
    averaged together; a tuned configuration (a sweep's search chose it) is the method's tuned
    row, beside its default row. A search's trials are no rows. ``paper`` maps (method, task)
    to the paper's value for that setting. Incomplete runs (the clock stopped them short of
    their budget) are left out unless ``include_incomplete``; then their rows say so."""
    records = [r for r in records if r.trial is None and (include_incomplete or r.complete)]
    by: dict[tuple[str, str, str, str], dict[int, RunRecord]] = defaultdict(dict)
    for rec in sorted(records, key=lambda r: (r.finished, r.id)):
        by[(_tier(rec), rec.task, rec.method, rec.config_hash)][rec.seed] = rec
    configs: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for (tier, task, method, _), seeds in by.items():
        first = next(iter(seeds.values()))
        if not first.tuning:  # a tuned row is labelled as such, not by the values it chose
            configs[(tier, task, method)].append(first.config)
    # a tuned row is paired with the tuned baseline, a default row with the default one: the
    # same tuning effort on both sides of every comparison
    baselines = {_setting(next(iter(seeds.values()))): seeds
                 for seeds in by.values() if next(iter(seeds.values())).baseline}
    tables: dict[tuple[str, str], Table] = {}
    for (tier, task, method, config_hash), seeds in sorted(by.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        first = recs[0]
        table = tables.setdefault((tier, task), Table(tier, task, first.main_metric, [], first.regime,
                                                      (first.config.get("regime") or {}).get("tests", ""), first.tier))
        base = baselines.get(_setting(recs[0])) if not recs[0].baseline else None
        table.rows.append(_row(recs, config_hash, _differing(configs[(tier, task, method)]), base,
                               (paper or {}).get((method, task)), table.metric))
    out = []
    for key in sorted(tables):
        table = tables[key]
        _check_equal_tuning(table)
        table.rows.sort(key=lambda r: r.label)
        _adjust(table)
        competitors = [r for r in table.rows if not r.is_reference and r.summary]
        for row, front in zip(competitors, pareto_front([(r.gflops, r.summary.mean) for r in competitors])):
            row.pareto = front
        if competitors:
            best = max(r.summary.mean for r in competitors)
            for row in competitors:
                row.best = row.summary.mean == best
        out.append(table)
    return out


def _row(recs: list[RunRecord], config_hash: str, differing: tuple[str, ...], base: dict[int, RunRecord] | None,
         pv: PaperValue | None, metric: str) -> Row:
    """One configuration's row: its seeds' scores, the paired comparison with the baseline's
    runs of its setting, and the spend of its runs."""
    # a metric a run could not define (NaN: the teacher reference generates no sentences)
    # is no score: the row shows "-" rather than nan
    scores = {r.seed: r.metrics[metric] for r in recs if metric in r.metrics and not math.isnan(r.metrics[metric])}
    versus = paired(scores, {s: x.metrics[metric] for s, x in base.items() if metric in x.metrics}) if base else None
    totals = [r.budget.totals for r in recs]
    t_seconds, t_forwards, t_source = _teacher_cost(recs)
    first = recs[0]
    evaluated = first.evaluated
    incomplete = sum(not r.complete for r in recs)
    tuning = first.tuning
    variant = _variant(first, differing)
    return Row(
        label=_label(first, variant) + (" (tuned)" if tuning else "")
        + (f" [{incomplete} incomplete]" if incomplete else ""),
        method=first.method, baseline=first.baseline, config_hash=config_hash, evaluated=evaluated, scores=scores,
        summary=summarize(list(scores.values())) if scores else None, versus=versus,
        relative_gain=_relative_gain(recs, base, metric),
        # every stage that trained the evaluated model (xkd: self-supervised + fine-tuning)
        steps="/".join(sorted({str(r.trained_steps) for r in recs})),
        params=first.params.student + first.params.heads if evaluated == "student" else first.params.teacher,
        params_heads=first.params.heads if evaluated == "student" else 0,
        teacher=first.config.get("teacher"),
        teacher_seconds=t_seconds, teacher_forwards=t_forwards, teacher_source=t_source,
        gflops=statistics.fmean(t.flops for t in totals) / 1e9,
        seconds=statistics.fmean(t.seconds for t in totals),
        peak_memory_mb=max(t.peak_memory_mb for t in totals),
        memory_kind=first.method_stage.memory_kind,
        selection=_selection(recs), last_selected=sum(r.still_improving for r in recs),
        stopped_by=next((t.stopped_by for t in totals if t.stopped_by), None),
        paper=pv, paper_ours=_relative_gain(recs, base, pv.metric or metric) if pv else None,
        git_shas=sorted({r.git_sha or "?" for r in recs}),
        environments=sorted({environment_label(r) for r in recs}),
        variant=variant.strip(),
        tuning=tuning,
        curves={r.seed: [(c.step, c.value) for c in (r.selecting_stage or r.method_stage).curve
                         if c.value is not None] for r in recs},
        terms=_term_ends(recs),
    )


def _term_ends(recs: list[RunRecord]) -> dict[str, tuple[float, float]]:
    """Each loss term of the method's stage: its mean over seeds in the first and the last window."""
    curves = [r.method_stage.curve for r in recs if r.method_stage.curve]
    if not curves:
        return {}
    names = sorted({k for c in curves for k in c[0].terms})
    return {k: (statistics.fmean(c[0].terms.get(k, 0.0) for c in curves),
                statistics.fmean(c[-1].terms.get(k, 0.0) for c in curves)) for k in names}


def _tier(rec: RunRecord) -> str:
    """The table a run belongs to: its tier and regime, and under a time-based tier its device
    too (what a fixed time buys depends on the device: such tables never mix devices)."""
    if isinstance(rec.config.get("tier"), dict) and rec.config["tier"].get("time_budget"):
        return f"{rec.tier} on {rec.env.get('device', '?')}"
    # each regime is a table of its own: its runs are compared with its own student
    return f"{rec.tier}, regime {rec.regime}" if rec.regime else rec.tier


def _check_equal_tuning(table: Table) -> None:
    """A method cannot get more trials than another in one table: tuned rows with different
    search budgets are not comparable."""
    budgets = sorted({str(r.tuning["trials"]) for r in table.rows if r.tuning})
    if len(budgets) > 1:
        raise ConfigError(f"table {table.tier}/{table.task} mixes tuned rows searched with "
                          f"{' and '.join(budgets)} trials: every method gets the same tuning budget "
                          f"(rerun the search at one budget)")


def _adjust(table: Table) -> None:
    """Holm's correction over the table's comparisons with its baseline: the star's p."""
    compared = [r for r in table.rows if r.versus is not None]
    for row, p in zip(compared, holm([r.versus.p for r in compared])):
        row.versus = dataclasses.replace(row.versus, p_holm=p, comparisons=len(compared))


def environment_label(rec: RunRecord) -> str:
    """What a run's numbers depend on besides its configuration, seed and commit: the numerical
    stack, the thread count and the device (records before version 2 name fewer)."""
    env = rec.env
    parts = [f"torch {env.get('torch', '?')}"] + ([f"numpy {env['numpy']}"] if "numpy" in env else [])
    return ", ".join(parts + [f"python {env.get('python', '?')}", f"{env.get('threads', '?')} thread(s)",
                              str(env.get("device", "?"))])


def incomplete_note(records: list[RunRecord]) -> str | None:
    """The line that names the incomplete runs a table leaves out, or None when there are none."""
    left = [r.id for r in records if not r.complete]
    if not left:
        return None
    return (f"left out {len(left)} incomplete run(s) (the wall-clock limit stopped them before their "
            f"budget): {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}; --include-incomplete shows them")


def paper_values(reg) -> dict[tuple[str, str], PaperValue]:
    """(method, task) -> the paper's reported result, from each method plugin's ``paper``."""
    out = {}
    for name in reg.names("methods"):
        for res in reg.get("methods", name).paper:
            out[(name, res.task)] = PaperValue(res.describe(), res.relative_gain, res.source, res.compares_to)
    return out


def wall_time(records: list[RunRecord]) -> tuple[float, float]:
    """(wall seconds while any run was going, summed run seconds) of a set of records: the union
    of their [started, finished] intervals, so a sweep resumed over several sittings counts only
    the time it ran, however many workers it had."""
    spans = sorted((dt.datetime.fromisoformat(r.started).timestamp(),
                    dt.datetime.fromisoformat(r.finished).timestamp()) for r in records)
    wall = total = 0.0
    end = float("-inf")
    for a, b in spans:
        total += b - a
        if a > end:
            wall += b - a
            end = b
        elif b > end:
            wall += b - end
            end = b
    return wall, total
