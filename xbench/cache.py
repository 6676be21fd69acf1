"""The teacher cache: a trained teacher and its outputs, shared by every method that uses it.

A frozen teacher's training and its forwards on the train split are the same for every method of a
comparison (same teacher, data, tier and seed), so they are computed once and stored under
``XBENCH_HOME/cache/teachers/<key>/``:

- ``teacher.pt`` (the trained state; frozen pretrained weights are left out, they come from the
  teacher's own files) and ``record.json`` (what training it spent and what val selected),
- ``outputs-<split>-<checkpoint sha256>.pt``: the frozen teacher's taps on a split, one row per
  example in the split's order, looked up by example index.

The key hashes everything the teacher's result depends on; the outputs are keyed by the hash of
the checkpoint file as well, so a changed checkpoint invalidates them. A run records its teacher
cost either way, with ``source: cache`` or ``computed``. ``XBENCH_TEACHER_CACHE=0`` disables it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbench.data.io import sha256_file
from xbench.settings import settings


def enabled() -> bool:
    return settings().teacher_cache


class TeacherCache:
    def __init__(self, root: Path, key: str, log=lambda msg: None) -> None:
        self.dir = root / "cache" / "teachers" / key
        self.key = key
        self._log = log

    # -- the trained teacher -----------------------------------------------------------------
    def load_teacher(self, model: nn.Module) -> dict[str, Any] | None:
        """Load the cached trained state into ``model``; None on a miss or a corrupt entry."""
        ckpt, rec = self.dir / "teacher.pt", self.dir / "record.json"
        if not (ckpt.is_file() and rec.is_file()):
            return None
        try:
            record = json.loads(rec.read_text())
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            frozen = {n for n, q in model.named_parameters() if not q.requires_grad}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or not set(missing) <= frozen:
                raise ValueError(f"state does not fit the teacher (missing {sorted(missing)[:3]})")
        except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            self._log(f"teacher cache: corrupt entry {self.dir} ({exc}); retraining")
            return None
        return record

    def save_teacher(self, model: nn.Module, frozen: set[str], record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in model.state_dict().items() if k not in frozen}
        _atomic_save(state, self.dir / "teacher.pt")
        tmp = self.dir / "record.json.tmp"
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(self.dir / "record.json")  # last: an entry without it is a miss

    def checkpoint_hash(self) -> str:
        return sha256_file(self.dir / "teacher.pt")[:16]

    # -- its outputs -------------------------------------------------------------------------
    def _outputs_path(self, split: str) -> Path:
        return self.dir / f"outputs-{split}-{self.checkpoint_hash()}.pt"

    def load_outputs(self, split: str, n: int) -> dict[str, torch.Tensor] | None:
        path = self._outputs_path(split)
        if not path.is_file():
            return None
        try:
            outs = torch.load(path, map_location="cpu", weights_only=True)
            if any(len(v) != n for v in outs.values()):
                raise ValueError(f"{split} has {n} examples")
        except (OSError, ValueError, RuntimeError) as exc:
            self._log(f"teacher cache: corrupt outputs {path} ({exc}); recomputing")
            return None
        return outs

    def save_outputs(self, split: str, outs: dict[str, torch.Tensor]) -> None:
        _atomic_save(outs, self._outputs_path(split))


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
