"""A split's video clips read on demand from decoded frame files, never held whole in memory.

Real datasets decode each clip once into a uint8 file of resized frames (``xbench.data.decoded``).
``Clips`` is the ``rgb`` column of such a split's ``Examples``: indexing it with a batch of example
indices reads those clips' frames with ``pread`` (no mapping stays open, so the process's memory
does not grow with the split), takes the clip's frames and crops them:

- evaluation splits: the centre crop and, for ``window`` clips, the centred window;
- the train split, read for a training step: a random crop (and a random window start), drawn
  from a generator seeded by the run's seed, the example and how many times the example was read
  before. The harness's data order is seeded, so a run's crops are the same on every machine.
  Read under inference mode (the harness's predictions: a retrieval gallery, probe features, the
  teacher's outputs on train), it gives the centre, as evaluation does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class FrameFile:
    """Decoded frames of one clip: uint8 (frames, height, width, 3), C order, in ``path``."""

    path: Path
    shape: tuple[int, int, int, int]

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The frames at ``indices`` (each read with one ``pread``)."""
        _, h, w, c = self.shape
        size = h * w * c
        out = np.empty((len(indices), h, w, c), dtype=np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for j, i in enumerate(indices.tolist()):
                buf = os.pread(fd, size, i * size)
                if len(buf) != size:  # the file shrank after it was checked
                    raise OSError(f"{self.path}: short read at frame {i}")
                out[j] = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, c)
        finally:
            os.close(fd)
        return out


class Clips:
    """The ``rgb`` column of a split: ``clips[index]`` -> uint8 (B, T, 3, crop, crop)."""

    def __init__(self, files: list[FrameFile], spans: list[tuple[int, int, int]], frames: int, crop: int,
                 temporal: Literal["uniform", "window"], train: bool, seed: int,
                 frame_map: list[np.ndarray] | None = None) -> None:
        #: per example: (file, first frame, end frame) in its frame file
        self.files, self.spans = files, spans
        self.frames, self.crop, self.temporal = frames, crop, temporal
        self.train, self.seed = train, seed
        #: per example, the exact frames to read in the layout they are returned in (detection's
        #: snippets: (snippets, frames per snippet)); -1 is padding, returned as zeros
        self.frame_map = frame_map
        self._draws = np.zeros(len(spans), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def shape(self) -> tuple[int, ...]:
        lead = self.frame_map[0].shape if self.frame_map else (self.frames,)
        return (len(self.spans), *lead, 3, self.crop, self.crop)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        lead = self.shape[1:-3]
        out = np.empty((len(idx), *lead, self.crop, self.crop, 3), dtype=np.uint8)
        for j, i in enumerate(idx):
            out[j] = self._clip(i).reshape(*lead, self.crop, self.crop, 3)
        return torch.from_numpy(out).movedim(-1, -3).contiguous()  # (..., H, W, 3) -> (..., 3, H, W)

    def skip(self, index: torch.Tensor) -> None:
        """Count the clips at ``index`` as drawn, unread (``Examples.skip``)."""
        if self.train and not torch.is_inference_mode_enabled():
            idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
            np.add.at(self._draws, np.asarray(idx, dtype=np.int64), 1)

    def _clip(self, i: int) -> np.ndarray:
        f, start, end = self.spans[i]
        file = self.files[f]
        rng = None
        # random only for training batches: predictions (galleries, probe features, teacher
        # outputs) run under inference mode and read the centre, as evaluation does
        if self.train and not torch.is_inference_mode_enabled():
            key = f"{self.seed}:{i}:{self._draws[i]}".encode()
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
            self._draws[i] += 1
        frames = self._frames(start, end, rng) if self.frame_map is None else self.frame_map[i].reshape(-1)
        _, h, w, _ = file.shape
        y = (h - self.crop) // 2 if rng is None else int(rng.integers(0, h - self.crop + 1))
        x = (w - self.crop) // 2 if rng is None else int(rng.integers(0, w - self.crop + 1))
        real = frames >= 0
        out = np.zeros((len(frames), self.crop, self.crop, 3), dtype=np.uint8)
        out[real] = file.read(frames[real])[:, y: y + self.crop, x: x + self.crop]
        return out

    def _frames(self, start: int, end: int, rng: np.random.Generator | None) -> np.ndarray:
        if self.temporal == "uniform":
            return np.linspace(start, end - 1, self.frames).round().astype(np.int64)
        room = end - start - self.frames  # >= 0: the dataset refuses clips shorter than this
        first = start + (room // 2 if rng is None else int(rng.integers(0, room + 1)))
        return np.arange(first, first + self.frames, dtype=np.int64)

    @staticmethod
    def concat(parts: list[Clips]) -> Clips:
        """Splits as one column (the first part's crop policy)."""
        files: list[FrameFile] = []
        spans: list[tuple[int, int, int]] = []
        for p in parts:
            spans += [(f + len(files), s, e) for f, s, e in p.spans]
            files += p.files
        head = parts[0]
        maps = [m for p in parts for m in p.frame_map] if head.frame_map is not None else None
        return Clips(files, spans, head.frames, head.crop, head.temporal, head.train, head.seed, maps)
