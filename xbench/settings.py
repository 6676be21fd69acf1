"""Every ``XBENCH_*`` environment variable, read here and nowhere else, with one rule for booleans:
``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off`` (any case); anything else is an
error naming the variable. Read on each call, so a test or a sweep worker that sets a variable is
seen at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xbench.errors import ConfigError

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")

#: name -> (default, meaning): the README's table
VARIABLES = {
    "XBENCH_HOME": (".xbench", "the results store, run folders, the teacher cache and sweep logs"),
    "XBENCH_DATA": ("the user cache dir", ("where datasets are generated, manifests of your datasets kept and "
                                           "decoded frames cached")),
    "XBENCH_BUDGETS": ("the packaged tiers", "a budgets YAML file to read the tiers from instead"),
    "XBENCH_DISABLE_PLUGINS": ("", "comma-separated plugin names not to load"),
    "XBENCH_TRACEBACK": ("off", "show the traceback of an xbench error (as --traceback)"),
    "XBENCH_TEACHER_CACHE": ("on", "reuse trained teachers and their outputs from XBENCH_HOME/cache"),
    "XBENCH_PRETRAIN_CACHE": ("on", ("reuse the student's encoder pretraining (the same for every method) from "
                                      "XBENCH_HOME/cache")),
    "XBENCH_FEATURE_CACHE": ("on", ("reuse a frozen encoder's features of the student's clips (student.encoder) "
                                     "from XBENCH_HOME/cache")),
    "XBENCH_DECODE_CACHE": ("on", "decode each video once into a memory-mapped uint8 cache"),
    "XBENCH_DECODE_WORKERS": ("0", ("processes that decode a cold cache of real video (0: one per core, up to 4); "
                                     "results never depend on it")),
    "XBENCH_CLOCK_LIMIT": ("on", ("stop a run at its tier's max_seconds and store it as incomplete (off: no "
                                  "limit; a complete run's numbers never depend on it)")),
    "XBENCH_CHECKPOINT": ("on", ("`xbench run` saves each stage's state to XBENCH_HOME/checkpoints and a killed run "
                                 "resumes from it (removed once the record is stored)")),
    "XBENCH_CHECKPOINT_EVERY": ("the tier's eval_every", "steps between a stage's checkpoints (its end is always one)"),
    "XBENCH_ALLOCATOR": ("steady", "`default` leaves glibc's allocator as it is (see the run record's env)"),
}


def flag(name: str, default: bool) -> bool:
    """A boolean variable by the one rule; unset or empty is ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(TRUE)} or {', '.join(FALSE)}")


def _count(name: str) -> int:
    raw = os.environ.get(name, "").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= 0")
    return int(raw)


def _path(name: str) -> Path | None:
    raw = os.environ.get(name, "").strip()
    return Path(raw).expanduser() if raw else None


@dataclass(frozen=True)
class Settings:
    home: Path
    data: Path | None
    budgets: Path | None
    disable_plugins: frozenset[str]
    traceback: bool
    teacher_cache: bool
    pretrain_cache: bool
    feature_cache: bool
    decode_cache: bool
    #: processes decoding a cold cache of real video (0: one per core, up to 4)
    decode_workers: int
    #: whether a tier's max_seconds stops a run (a safety net, never a budget)
    clock_limit: bool
    #: "steady" (large mmap and trim thresholds) or "default" (glibc as it is)
    allocator: str
    #: whether `xbench run` checkpoints its stages and resumes a killed run
    checkpoint: bool = True
    #: steps between checkpoints (0: at each evaluation)
    checkpoint_every: int = 0


def settings() -> Settings:
    """The settings the environment gives now."""
    allocator = os.environ.get("XBENCH_ALLOCATOR", "").strip().lower() or "steady"
    # the boolean words by the one rule: on is the steady allocator, off glibc's default
    allocator = "steady" if allocator in TRUE else "default" if allocator in FALSE else allocator
    if allocator not in ("steady", "default"):
        raise ConfigError(f"XBENCH_ALLOCATOR={allocator!r}: expected steady or default (or on/off)")
    return Settings(
        home=_path("XBENCH_HOME") or Path(".xbench"),
        data=_path("XBENCH_DATA"),
        budgets=_path("XBENCH_BUDGETS"),
        disable_plugins=frozenset(p.strip() for p in os.environ.get("XBENCH_DISABLE_PLUGINS", "").split(",")
                                  if p.strip()),
        traceback=flag("XBENCH_TRACEBACK", False),
        teacher_cache=flag("XBENCH_TEACHER_CACHE", True),
        pretrain_cache=flag("XBENCH_PRETRAIN_CACHE", True),
        feature_cache=flag("XBENCH_FEATURE_CACHE", True),
        decode_cache=flag("XBENCH_DECODE_CACHE", True),
        decode_workers=_count("XBENCH_DECODE_WORKERS"),
        clock_limit=flag("XBENCH_CLOCK_LIMIT", True),
        allocator=allocator,
        checkpoint=flag("XBENCH_CHECKPOINT", True),
        checkpoint_every=_count("XBENCH_CHECKPOINT_EVERY"),
    )
