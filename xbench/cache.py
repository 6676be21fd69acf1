"""The stage caches: what every method of a comparison would compute alike, computed once.

A frozen teacher's training and its forwards on the train split are the same for every method of a
comparison (same teacher, data, tier and seed), and so is the student's encoder pretraining where a
task has one (same student, data, labels, tier and seed). Each is stored under
``XBENCH_HOME/cache/<kind>/<key>/``:

- ``<what>.pt`` (the trained state; a teacher's frozen pretrained weights are left out, they come
  from the teacher's own files) and ``record.json`` (what training it spent and what val selected),
- for a teacher, ``outputs-<split>-<checkpoint sha256>.pt``: its taps on a split, one row per
  example in the split's order, looked up by example index.

The key hashes everything the result depends on (code, plugin, data, configuration, seed, and the
numerical stack that computed it); a teacher's outputs are keyed by the hash of its checkpoint file
as well, so a changed checkpoint invalidates them. A run records the cost of a cached stage either
way, with ``source: cache`` or ``computed``, and its numbers are the same bit for bit.
A frozen encoder's features of the student's clips (frozen-feature mode) are stored as
``features/<key>.pt``, one row per example in the split's order.
``XBENCH_TEACHER_CACHE=0``, ``XBENCH_PRETRAIN_CACHE=0`` and ``XBENCH_FEATURE_CACHE=0`` disable them.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbench import distributed
from xbench.atomic import atomic_write, atomic_write_text
from xbench.data.io import sha256_file
from xbench.settings import settings

#: what reading a damaged entry raises (a 0-byte or garbled torch file: EOFError, UnpicklingError,
#: IndexError, UnicodeDecodeError; a truncated zip: RuntimeError; a wrong layout: KeyError,
#: TypeError, ValueError, AttributeError): a miss, not a traceback, so the entry is computed again
UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, IndexError, AttributeError,
              OverflowError, pickle.UnpicklingError)


#: the entry locks this process holds: entry lock file -> its open file (a run that failed while
#: holding one keeps it until the process ends; a later run of this process computes the entry)
_HELD: dict[Path, Any] = {}


def release_all() -> None:
    """Let go of every entry lock this process holds (a run's end: an entry it claimed and did not
    store, such as a stage the clock cut short, is for the next run to compute)."""
    while _HELD:
        _HELD.popitem()[1].close()


def enabled(kind: str, tier: Any) -> bool:
    """Whether the ``teachers``, ``pretrain`` or ``features`` cache serves a run of ``tier``: its switch is on,
    and the tier's budget is not the clock (under a time budget every run pays its stages against
    its own clock: a cached stage would leave a later method more time than the run that computed
    it)."""
    on = {"teachers": settings().teacher_cache, "pretrain": settings().pretrain_cache,
          "features": settings().feature_cache}[kind]
    return on and not tier.time_budget


class ModelCache:
    """A trained module's state and its ``record.json``, under ``cache/<kind>/<key>/<what>.pt``."""

    def __init__(self, root: Path, key: str, kind: str, what: str, log=lambda msg: None) -> None:
        self.dir = root / "cache" / kind / key
        self.key, self.what = key, what
        self.state_path = self.dir / f"{what}.pt"
        self._log = log
        self._said: set[str] = set()  # claim reads twice (then under the lock): one line a problem

    def load(self, model: nn.Module, needs: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Load the cached trained state into ``model`` (all but its frozen parameters must be in
        it); the record, or None on a miss or a corrupt entry (a record without the keys ``needs``
        is one: then ``model`` is left as it was)."""
        ckpt, rec = self.state_path, self.dir / "record.json"
        if not (ckpt.is_file() and rec.is_file()):
            return None
        try:
            record = json.loads(rec.read_text())
            if not isinstance(record, dict) or any(k not in record for k in needs):
                raise ValueError(f"record.json lacks {', '.join(needs)}")
            state, sha = _load_verified(ckpt)
            # the record names the state it was written with: a state replaced since (another
            # run rebuilding the entry between our two reads, a hand edit) is not this record's
            if record.pop("state_sha256", sha) != sha:
                raise ValueError("its state is not the one its record was written with")
            frozen = {n for n, q in model.named_parameters() if not q.requires_grad}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or not set(missing) <= frozen:
                raise ValueError(f"state does not fit the {self.what} (missing {sorted(missing)[:3]})")
        except UNREADABLE as exc:
            line = f"{self.what} cache: corrupt entry {self.dir} ({exc}); retraining"
            if line not in self._said:
                self._said.add(line)
                self._log(line)
            return None
        return record

    def claim(self, model: nn.Module, needs: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """``load``, and on a miss the entry's lock: where another run is computing this entry
        (a sweep's parallel jobs, Ray or Slurm workers), wait for it and read what it stored, so
        one entry is never computed twice at once. None: a miss, the lock held until ``save``
        or ``release`` (a killed run's lock goes with its process). Under several processes
        every rank follows rank 0's hit or miss."""
        hit = self.load(model, needs)
        if hit is None and distributed.is_main():
            hit = self._locked_load(model, needs)
        if distributed.world() > 1:
            found = distributed.gather_objects(hit is not None)[0]
            if found and hit is None:  # rank 0 read what another run has just stored
                hit = self.load(model, needs)
            elif not found:  # DDP hands rank 0's initial weights to every rank before training
                hit = None
        return hit

    def _locked_load(self, model: nn.Module, needs: tuple[str, ...]) -> dict[str, Any] | None:
        lock = self._lock_path()
        if sys.platform == "win32" or lock in _HELD:  # no flock there; this process holds it already
            return None
        import fcntl

        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - held open across stages: the lock lives with it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._log(f"{self.what} cache: another run is computing entry {self.dir.name}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD[lock] = handle
        hit = self.load(model, needs)
        if hit is not None:
            self.release()
        return hit

    def _lock_path(self) -> Path:
        # beside the kinds' folders, not among the entries: a listing of entries lists entries
        return self.dir.parent.parent / "locks" / f"{self.dir.parent.name}-{self.key}.lock"

    def release(self) -> None:
        """Let go of the entry's lock (``claim``), whether or not the entry was stored."""
        handle = _HELD.pop(self._lock_path(), None)
        if handle is not None:
            handle.close()

    def save(self, model: nn.Module, frozen: set[str], record: dict[str, Any]) -> None:
        def write() -> None:
            self.dir.mkdir(parents=True, exist_ok=True)
            state = {k: v for k, v in model.state_dict().items() if k not in frozen}
            _atomic_save(state, self.state_path)
            # last: an entry without it is a miss; it names the state it goes with
            sha = _digest_path(self.state_path).read_text().strip()
            atomic_write_text(self.dir / "record.json",
                              json.dumps({**record, "state_sha256": sha}, indent=1, sort_keys=True))
            self.release()

        _by_rank0(write)


class TeacherCache(ModelCache):
    """A trained teacher (``ModelCache``) and its outputs on the student's splits."""

    def __init__(self, root: Path, key: str, log=lambda msg: None) -> None:
        super().__init__(root, key, "teachers", "teacher", log)

    def checkpoint_hash(self) -> str:
        return sha256_file(self.state_path)[:16]

    # -- its outputs -------------------------------------------------------------------------
    def _outputs_path(self, split: str) -> Path:
        return self.dir / f"outputs-{split}-{self.checkpoint_hash()}.pt"

    def load_outputs(self, split: str, n: int) -> dict[str, torch.Tensor] | None:
        path = self._outputs_path(split)
        if not path.is_file():
            return None
        try:
            outs = _load_checked(path)
            if any(len(v) != n for v in outs.values()):
                raise ValueError(f"{split} has {n} examples")
        except UNREADABLE as exc:
            self._log(f"teacher cache: corrupt outputs {path} ({exc}); recomputing")
            return None
        return outs

    def save_outputs(self, split: str, outs: dict[str, torch.Tensor]) -> None:
        _by_rank0(lambda: _atomic_save(outs, self._outputs_path(split)))


class FeatureCache:
    """A frozen encoder's features of one split, under ``cache/features/<key>.pt``."""

    def __init__(self, root: Path, key: str, log=lambda msg: None) -> None:
        self.path = root / "cache" / "features" / f"{key}.pt"
        self._log = log

    def load(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        """The features, or None on a miss or an entry whose rows and leading axes are not ``shape``
        (the split's examples and their clip axes) or that does not read."""
        if not self.path.is_file():
            return None
        try:
            value = _load_checked(self.path)["features"]
            if not isinstance(value, torch.Tensor) or tuple(value.shape[:-1]) != shape:
                raise ValueError(f"expected features of shape {shape} + (width,)")
        except UNREADABLE as exc:
            self._log(f"feature cache: corrupt entry {self.path} ({exc}); recomputing")
            return None
        return value

    def save(self, features: torch.Tensor) -> None:
        # rank 0 alone: it computes the features first, the other ranks then read them (the
        # dataset opens rank 0 first: ``distributed.main_first``)
        if distributed.is_main():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save({"features": features}, self.path)


def _by_rank0(write: Any) -> None:
    """Under several processes only rank 0 writes an entry (every rank computed the same) and the
    others wait until it is written, so each rank's next lookup finds the same entries."""
    if distributed.is_main():
        write()
    distributed.barrier()


def _atomic_save(obj: Any, path: Path) -> None:
    """``obj`` saved at ``path``, then its content's sha256 beside it (``<name>.sha256``): an entry
    whose bytes changed after it was written (bit rot, a partial copy, a hand edit) never loads."""
    # a temporary file of the writer's own: two runs filling one entry at once (a sweep's
    # parallel jobs) never write into each other's file
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
    atomic_write_text(_digest_path(path), sha256_file(path) + "\n")


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_checked(path: Path) -> Any:
    """The torch file at ``path`` once its content matches the digest saved with it (ValueError:
    none saved, or another; the caller counts it a corrupt entry and computes it again)."""
    return _load_verified(path)[0]


def _load_verified(path: Path) -> tuple[Any, str]:
    """``_load_checked``, and the digest its content matched. The bytes are read once, then hashed
    and loaded: a file replaced meanwhile (another run rebuilding the entry) is never half of each."""
    digest = _digest_path(path)
    if not digest.is_file():
        raise ValueError("no checksum saved with it")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if digest.read_text().strip() != sha:
        raise ValueError("checksum mismatch: its content changed after it was written")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), sha
