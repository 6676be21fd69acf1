"""Stage checkpoints: a run that is killed resumes from its last checkpoint instead of step 0.

``xbench run`` (and every sweep worker, which runs it) gives its run a ``RunCheckpoints``. The
training loop (``xbench.train.fit``) saves the whole state of the stage it trains (every module,
the optimizer, the schedule, the RNG states, the step, the budget meter's entry, the loss terms
since the last evaluation and the val selection with its best state) every ``every`` steps
(``XBENCH_CHECKPOINT_EVERY``; default: at each evaluation, the tier's ``eval_every``) and at the
stage's end, as ``XBENCH_HOME/checkpoints/<key>/<stage>.pt``, written atomically.

``key`` hashes what the run's numbers depend on: its resolved configuration and seed, the xbench
version and source commit, the plugins' versions, the data files (manifest hash) and the numerical
stack. Rerunning the same run (the same command, or a sweep started again) finds the checkpoints:
each stage it reaches is restored at its last checkpoint and goes on from there, and the data
order is replayed to the same position, so on CPU the resumed run's numbers are identical to an
uninterrupted run's. A finished stage's checkpoint restores it without a step (a teacher trained
while its cache is off). A stage's record says where it resumed (``resumed_at``).

The checkpoints are removed once the run's record is stored (``--keep-checkpoints`` keeps them);
``--restart`` discards them first. They are read with ``weights_only=True``; one that does not
read or does not fit the stage is named in one line and the stage starts over. A run under a
time-budget tier (the clock is its budget) is never resumed: its stages would get more time than
one run's. ``XBENCH_CHECKPOINT=off`` turns checkpoints off.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xbench.atomic import atomic_write
from xbench.cache import UNREADABLE
from xbench.config import stable_hash

#: the layout of a checkpoint's payload; one of another layout is not read
VERSION = 1


class RunCheckpoints:
    """The checkpoints of one seed of one run, under ``root/checkpoints/<key>/``. ``identity``
    is what the key hashes besides the data files, which ``bind`` adds once the data are open."""

    def __init__(self, root: Path, identity: dict[str, Any], every: int | None = None,
                 log: Callable[[str], None] = lambda msg: None, restart: bool = False) -> None:
        self.root, self.identity, self.every, self._log = root / "checkpoints", identity, every, log
        #: discard what a killed run of it left (``--restart``) instead of resuming
        self.restart = restart
        self.dir: Path | None = None
        #: the stages restored from a checkpoint: name -> the step they resumed at
        self.resumed: dict[str, int] = {}

    def bind(self, data_hash: str) -> Path:
        """Fix the folder for the run's data (its manifest hash): checkpoints of a changed dataset
        are never read."""
        self.dir = self.root / stable_hash({**self.identity, "data": data_hash})
        if self.restart and self.dir.is_dir():
            self._log(f"--restart: removed the checkpoints of an interrupted run ({self.dir})")
            self.clear()
        return self.dir

    def interval(self, eval_every: int) -> int:
        return self.every or eval_every

    def path(self, name: str) -> Path:
        if self.dir is None:
            raise RuntimeError("RunCheckpoints.bind was not called")  # a harness bug, not the user's
        return self.dir / f"{name}.pt"

    def load(self, name: str) -> dict[str, Any] | None:
        """The stage's last checkpoint, or None: none, or one that does not read (named in one line,
        removed: the stage starts over)."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or payload.get("version") != VERSION or payload.get("name") != name:
                raise ValueError("not a checkpoint of this stage")
        except UNREADABLE as exc:
            self.discard(name, f"checkpoint {path} does not read ({type(exc).__name__}: {exc})")
            return None
        return payload

    def discard(self, name: str, why: str) -> None:
        self._log(f"{why}; {name} starts over")
        self.path(name).unlink(missing_ok=True)

    def save(self, name: str, payload: dict[str, Any]) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save({"version": VERSION, "name": name, **payload}, tmp))

    def clear(self) -> None:
        """Remove the run's checkpoints (once its record is stored)."""
        if self.dir is not None and self.dir.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)


def run_identity(resolved: dict[str, Any], seed: int, plugins: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """What a run's checkpoints are keyed by besides its data: the resolved configuration, the seed,
    the plugins and the environment's numerical stack, version and source commit."""
    return {"config": resolved, "seed": seed, "plugins": plugins, "env": env}
