"""Stable hashes of plain values: how configurations, caches and records are keyed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from typing import Any

__all__ = ["stable_hash", "to_plain"]


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> JSON-able plain values. A field declared with
    ``metadata={"omit_default": True}`` is left out at its default: an option added later keeps
    the configurations (and hashes) made before it existed as they were."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)
                if not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(to_plain(obj), sort_keys=True).encode()).hexdigest()[:16]
