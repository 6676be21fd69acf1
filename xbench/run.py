"""From a RunConfig to a RunRecord: the engine's entry points under their historical module
name (``xbench.engine`` holds the plan, the stages and the record)."""

from __future__ import annotations

from xbench.engine import (
    Plan,
    checkpoints_for,
    execute,
    plan,
    resolve_device,
    resolve_term,
    teacher_config,
)

__all__ = ["Plan", "checkpoints_for", "execute", "plan", "resolve_device", "resolve_term", "teacher_config"]
