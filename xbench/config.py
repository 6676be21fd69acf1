"""Typed configuration: budget tiers, run configs and ``--set`` overrides.

Everything is read with ``yaml.safe_load`` and checked against dataclasses: an unknown key or a
value of the wrong type is a :class:`ConfigError` naming the file, the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from xbench.errors import ConfigError
from xbench.hashing import stable_hash, to_plain  # noqa: F401 - re-exported: configs are hashed with them

REPO_ROOT = Path(__file__).resolve().parents[1]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


#: a float as YAML 1.2 writes it (1e-3, 1E5, -.5): YAML 1.1, which PyYAML reads, needs a dot
YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


class _Bad:
    """A type mismatch, made a ConfigError only when raised."""

    def __init__(self, where: str, tp: Any, value: Any) -> None:
        self.where, self.tp, self.value = where, tp, value

    def error(self) -> ConfigError:
        text = repr(self.value)
        text = text if len(text) <= 80 else text[:77] + "..."
        return ConfigError(f"{self.where}: expected {_type_name(self.tp)}, got {text}")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats); return it
    converted (lists to tuples where a tuple is expected, mappings to nested dataclasses)."""
    origin = typing.get_origin(tp)
    bad = _Bad(where, tp, value)  # the message is built only when raised, and kept short
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad.error()
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise bad.error()
    if tp is type(None):
        if value is None:
            return None
        raise bad.error()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad.error()
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad.error()
        return dict(value)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad.error()
        return from_mapping(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad.error()
    if tp is float:
        if isinstance(value, str) and YAML12_FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; YAML 1.2 and users mean a number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # .nan would pass every range check: max_seconds=.nan, no limit
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise bad.error()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad.error()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad.error()
    raise ConfigError(f"{where}: unsupported option type {tp!r}")


def from_mapping(cls: type, mapping: dict[str, Any], where: str) -> Any:
    """Build the dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    kwargs = {}
    for key, value in mapping.items():
        if key not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"{where}: unknown key '{key}' (known: {choices})")
        kwargs[key] = coerce(value, hints[key], f"{where}: key '{key}'")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from exc
    except ValueError as exc:  # the dataclass's own __post_init__ validation
        raise ConfigError(f"{where}: {exc}") from exc


def replace_options(obj: Any, updates: dict[str, Any], where: str) -> Any:
    """A copy of the dataclass ``obj`` with ``updates`` applied, type-checked."""
    merged = {**dataclasses.asdict(obj), **updates} if updates else None
    return obj if merged is None else from_mapping(type(obj), merged, where)


#: bounds on a YAML file xbench reads (configs, suites, tiers, regimes are a few KB): its size, its
#: nodes once aliases are expanded (a 558-byte "billion laughs" file expands to 10^9), its nesting
YAML_LIMITS = {"bytes": 1 << 20, "nodes": 100_000, "depth": 64}


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a document whose aliases expand it past
    ``YAML_LIMITS["nodes"]`` nodes or that nests deeper than ``YAML_LIMITS["depth"]``, before
    anything is built from it."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            sizes: dict[int, int] = {}

            def expanded(n: Any, depth: int) -> int:
                if depth > YAML_LIMITS["depth"]:
                    raise ConfigError(f"nested deeper than {YAML_LIMITS['depth']} levels")
                if id(n) in sizes:  # an alias: the same node again, as large as the first time
                    return sizes[id(n)]
                children = ([c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode)
                            else n.value if isinstance(n, yaml.SequenceNode) else [])
                total = 1
                for child in children:
                    total += expanded(child, depth + 1)
                    if total > YAML_LIMITS["nodes"]:
                        raise ConfigError(f"more than {YAML_LIMITS['nodes']:,} values once its aliases are expanded")
                sizes[id(n)] = total
                return total

            expanded(node, 0)
        return node


def parse_yaml(text: str, where: str) -> Any:
    """``text`` read as YAML by the safe loader, within ``YAML_LIMITS``; a ConfigError naming
    ``where`` for text that is not YAML or is out of bounds."""
    if len(text.encode()) > YAML_LIMITS["bytes"]:
        raise ConfigError(f"{where}: larger than {YAML_LIMITS['bytes'] >> 20} MiB: not a config")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no Python tags
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except RecursionError as exc:  # the composer recurses before any bound can see the depth
        raise ConfigError(f"{where}: nested deeper than {YAML_LIMITS['depth']} levels") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: bad YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: bad YAML: {exc}") from exc


def load_yaml(path: Path) -> Any:
    try:
        if path.is_file() and path.stat().st_size > YAML_LIMITS["bytes"]:  # not read into memory at all
            raise ConfigError(f"{path}: larger than {YAML_LIMITS['bytes'] >> 20} MiB: not a config")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return parse_yaml(text, str(path))


# ----------------------------------------------------------------------------- budget tiers


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("need lr > 0, weight_decay >= 0 and 0 <= momentum < 1")


@dataclass(frozen=True)
class ScheduleConfig:
    name: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")


@dataclass(frozen=True)
class Tier:
    """A compute budget. Every method in a comparison gets exactly this."""

    name: str
    description: str
    batch_size: int
    student_steps: int
    teacher_steps: int
    max_seconds: float
    eval_every: int
    #: steps of the encoder-pretraining stage, for tasks that have one (the same for every method)
    pretrain_steps: int = 0
    #: steps of the linear probe (``protocol=linear``): a linear classifier on frozen features
    probe_steps: int = 0
    #: steps of supervised fine-tuning after a self-supervised method's stage (``protocol=finetune``)
    finetune_steps: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    #: dataset option defaults for this tier (e.g. the synth size)
    dataset: dict[str, Any] = field(default_factory=dict)
    #: trials of the random search a sweep gives every method (``xbench.search``); 0: no search
    trials: int = 0
    #: the seed the search's trials run on: none of the seeds a table reports
    tuning_seed: int = 1000
    #: a time-based budget ("one GPU-hour"): ``max_seconds`` is the budget, not a safety net; a
    #: run the clock ends is complete, its result depends on the device, and a leaderboard keeps
    #: each device's runs in a table of its own
    time_budget: bool = False

    def __post_init__(self) -> None:
        for key in ("batch_size", "student_steps", "eval_every"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")
        if self.teacher_steps < 0 or self.max_seconds <= 0:
            raise ValueError("teacher_steps must be >= 0 and max_seconds > 0")
        if min(self.pretrain_steps, self.probe_steps, self.finetune_steps) < 0:
            raise ValueError("pretrain_steps, probe_steps and finetune_steps must be >= 0")
        if self.trials < 0 or self.tuning_seed < 0:
            raise ValueError("trials and tuning_seed must be >= 0")


def packaged(*parts: str) -> Path:
    """A file shipped with xbench (tiers, suites, paper configs), wherever xbench is installed."""
    from importlib.resources import files

    return Path(str(files("xbench").joinpath("benchmarks", *parts)))


def shipped_or_path(arg: Path, folder: str) -> Path:
    """``arg`` as a path where such a file exists, else the file of that name shipped with xbench in
    ``folder`` (``synth-cpu`` -> the packaged ``suites/synth-cpu.yaml``)."""
    if arg.exists():
        return arg
    shipped = packaged(folder, arg.name if arg.suffix else f"{arg.name}.yaml")
    return shipped if shipped.is_file() else arg


def budgets_path() -> Path:
    """The tiers: ``XBENCH_BUDGETS`` where it is set, else the ones shipped with xbench."""
    from xbench.settings import settings

    return settings().budgets or packaged("budgets.yaml")


def load_tiers(path: Path | None = None) -> dict[str, Tier]:
    path = path or budgets_path()
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of tier name -> tier")
    tiers = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: tier '{name}': expected a mapping")
        tiers[name] = from_mapping(Tier, {"name": name, **body}, f"{path}: tier '{name}'")
    return tiers


# ----------------------------------------------------------------------------- run configs


@dataclass(frozen=True)
class RunConfig:
    """What ``xbench run`` runs. Options of the dataset, task and method are checked later against
    the option types their specs declare."""

    method: str
    task: str
    dataset: str | None = None
    #: the teacher, for methods that use one (default: the method's choice, else the task's)
    teacher: str | None = None
    #: the student every method of the comparison trains (default: the task's)
    student: str | None = None
    budget: str = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0])
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    budget_options: dict[str, Any] = field(default_factory=dict)
    teacher_options: dict[str, Any] = field(default_factory=dict)
    #: the harness's options of the student (``checkpoint``: a local file of weights to start from)
    student_options: dict[str, Any] = field(default_factory=dict)
    #: the shared knobs of the method's own stage (``xbench.search.SHARED``): ``lr_scale`` times
    #: the tier's learning rate, ``weight_decay``; set by a search's trial or by hand
    hparams: dict[str, float] = field(default_factory=dict)
    #: the search trial this run is (a sweep's tuning run): leaderboards leave trials out
    trial: int | None = None
    #: how a tuned configuration was chosen (the search's trials, winner and cost), set by the
    #: sweep: the leaderboard shows the run as the method's tuned row
    tuning: dict[str, Any] = field(default_factory=dict)
    #: the regime the run is in (``xbench.regimes``): a shipped regime's name or a regime file
    regime: str | None = None

    def __post_init__(self) -> None:
        # a seed is stored as a 64-bit integer: one that is not fails here, before any training
        bad = [s for s in self.seeds if not 0 <= s < 2 ** 63]
        if bad:
            raise ValueError(f"seed {bad[0]} is outside 0..2^63-1")
        unknown = sorted(set(self.hparams) - set(HPARAMS))
        if unknown:
            raise ValueError(f"hparams: unknown knob '{unknown[0]}' (known: {', '.join(HPARAMS)})")
        if any(not isinstance(v, (int, float)) or v < 0 or (k == "lr_scale" and v == 0)
               for k, v in self.hparams.items()):
            raise ValueError("hparams: lr_scale must be > 0 and weight_decay >= 0")


#: the shared knobs every method's stage has (``RunConfig.hparams``)
HPARAMS = ("lr_scale", "weight_decay")

SET_SECTIONS = {"dataset": "dataset_options", "task": "task_options", "method": "method_options",
                "budget": "budget_options", "teacher": "teacher_options", "student": "student_options",
                "hparams": "hparams"}


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--set section.key=value`` -> {field: {key: value}}; values are parsed as YAML scalars."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item}: expected SECTION.KEY=VALUE with SECTION one of "
                              f"{', '.join(SET_SECTIONS)}")
        if section not in SET_SECTIONS:
            raise ConfigError(f"--set {item}: unknown section '{section}' "
                              f"(known: {', '.join(SET_SECTIONS)})")
        value = parse_yaml(raw, f"--set {item}") if raw else ""
        out.setdefault(SET_SECTIONS[section], {})[name] = value
    return out


def load_run_config(path: Path) -> dict[str, Any]:
    """A run config from a YAML file, or a paper config shipped with xbench by name (``xkd``)."""
    path = shipped_or_path(path, "paper")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    from_mapping(RunConfig, {"method": "?", "task": "?", **raw}, str(path))  # key/type check
    return raw
