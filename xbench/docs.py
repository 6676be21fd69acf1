"""The plugin API reference (``docs/reference.md``), generated from the hook specifications and
the spec dataclasses, so the reference cannot drift from the code:

    python -m xbench.docs > docs/reference.md

A test regenerates it and fails when the committed file differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap

from xbench import hookspecs, specs
from xbench.registry import KINDS

#: the spec types a plugin builds, in the order a reader needs them
SPEC_TYPES = ("MethodSpec", "LossTerm", "LossSpec", "PaperResult", "TeacherSpec", "StudentSpec",
              "TaskSpec", "DatasetSpec", "ModelContext", "ObjectiveContext")


def hooks() -> list[tuple[str, object]]:
    """(name, function) of every hook specification, in the order of the module."""
    return [(name, fn) for name, fn in vars(hookspecs).items()
            if callable(fn) and name.startswith("xbench_") and hasattr(fn, "xbench_spec")]


def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above dataclass fields in the source."""
    out: dict[str, str] = {}
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return out
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:", stripped)
        if m and pending:
            out[m.group(1)] = " ".join(pending)
        pending = []
    return out


def _type(tp: object) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", repr(tp))
    return str(text).replace("typing.", "").replace("collections.abc.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f.default.__name__ if isinstance(f.default, type) else repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "required"


def reference() -> str:
    parts = ["# xbench plugin API reference",
             "",
             ("Generated from `xbench/hookspecs.py` and `xbench/specs.py` by `python -m xbench.docs`; "
             "do not edit by hand. The tutorial is [writing-plugins.md](writing-plugins.md)."),
             "",
             textwrap.dedent(hookspecs.__doc__ or "").strip(),
             "",
             "## Hooks",
             ""]
    kind_of = {hook: kind for kind, (hook, _) in KINDS.items()}
    for name, fn in hooks():
        sig = inspect.signature(fn)
        parts += [f"### `{name}{sig}`".replace("'", ""), "",
                  f"Registry: `{kind_of.get(name, '?')}` (`xbench list {kind_of.get(name, '?')}`).", "",
                  inspect.cleandoc(fn.__doc__ or ""), ""]
    parts += ["## Specs", ""]
    for type_name in SPEC_TYPES:
        cls = getattr(specs, type_name)
        parts += [f"### `{type_name}`", "", inspect.cleandoc(cls.__doc__ or ""), ""]
        parts += _fields_table(cls)
    parts += _contracts()
    parts += _record_fields()
    return "\n".join(parts).rstrip() + "\n"


#: the modules a plugin may import (the import-linter contracts in pyproject.toml hold plugins to them)
PUBLIC_MODULES = {
    "xbench": "`hookimpl`, `XbenchError` and the error classes, `__version__`",
    "xbench.specs": "the spec dataclasses a plugin registers, `ModelContext`, `ObjectiveContext`",
    "xbench.errors": "`XbenchError`, `ConfigError`, `DataError`, `IncompatibleError`, `PluginError`",
    "xbench.hookspecs": "the hook specifications (this page)",
    "xbench.contracts": "the protocols below, and `VideoRecord`, `Segment`, `Examples`",
    "xbench.context": "`Stage` (the stage names) and `RunContext`",
    "xbench.losses": "losses more than one plugin uses (`mmd2`, `GAMMAS`)",
    "xbench.preprocess": "how built-in models read inputs (`rgb_unit`, `log_mel`)",
    "xbench.records": "`RunRecord` (a run record, read by attribute: `RunRecord.from_json`, `to_json`) and "
                      "its parts, `problems` (what breaks the schema)",
    "xbench.testing": "the conformance kit for a plugin's own tests (`check_*`, pytest fixtures)",
}


def _fields_table(cls: type) -> list[str]:
    comments = _field_comments(cls)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        meaning = comments.get(f.name, "").replace("|", "\\|")
        # a | inside a table cell, code span or not, splits the cell unless escaped
        kind, default = (x.replace("|", "\\|") for x in (_type(f.type), _default(f)))
        rows.append(f"| `{f.name}` | `{kind}` | `{default}` | {meaning} |")
    return rows + [""]


def _record_fields() -> list[str]:
    from xbench import records
    from xbench.budget import StageSpend

    parts = ["## The run record", "", textwrap.dedent(records.__doc__ or "").strip(), ""]
    for cls in (records.RunRecord, records.SelectionRecord, records.Budget, StageSpend, records.Totals,
                records.Params, records.DataRecord):
        parts += [f"### `{cls.__name__}`", "", inspect.cleandoc(cls.__doc__ or ""), ""] + _fields_table(cls)
    return parts


def _contracts() -> list[str]:
    from xbench import contracts

    parts = ["## Public modules", "",
             "A plugin imports only these; everything else in `xbench` may change without notice.", "",
             "| module | what it offers |", "|---|---|"]
    parts += [f"| `{m}` | {what} |" for m, what in PUBLIC_MODULES.items()]
    parts += ["", "## Contracts", "", textwrap.dedent(contracts.__doc__ or "").strip(), ""]
    for name in ("Dataset", "Task", "Objective", "MaskedLM", "Pretrainable", "SharedTrunk"):
        cls = getattr(contracts, name)
        parts += [f"### `{name}`", "", inspect.cleandoc(cls.__doc__ or ""), "", "```python"]
        for attr, tp in cls.__annotations__.items():
            parts.append(f"{attr}: {tp}")
        for attr, fn in cls.__dict__.items():
            if callable(fn) and not attr.startswith("_") or attr == "__call__":
                parts.append(f"def {attr}{inspect.signature(fn)}".replace("'", ""))
        parts += ["```", ""]
    return parts


if __name__ == "__main__":
    print(reference(), end="")
