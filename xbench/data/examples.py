"""``Examples``: one split of a task as tensors, the form the training loop and the metrics read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Examples:
    """One split as tensors: modality and target name -> tensor with the examples first."""

    #: tensors, lists for values that are not tensors (the text of the observed steps), or lazy
    #: columns indexed like a tensor (``xbench.data.clips.Clips``: frames read on demand)
    tensors: dict[str, Any]
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        """Splits as one: the examples of each in order, ``index`` renumbered over the whole (the
        first part's meta)."""
        if len(parts) == 1:
            return parts[0]
        tensors: dict[str, Any] = {}
        for key, first in parts[0].tensors.items():
            values = [p.tensors[key] for p in parts]
            if isinstance(first, torch.Tensor):
                tensors[key] = torch.cat(values)
            elif isinstance(first, list):
                tensors[key] = [x for v in values for x in v]
            else:  # a lazy column (``Clips``) joins its own way
                tensors[key] = type(first).concat(values)
        if "index" in tensors:
            tensors["index"] = torch.arange(len(tensors["index"]))
        return Examples(tensors, dict(parts[0].meta))

    def take(self, index: torch.Tensor, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        keys = keys or tuple(self.tensors)
        out = {}
        for k in keys:
            v = self.tensors[k]
            # tensors and lazy columns (``Clips``) index with the tensor; lists item by item
            out[k] = [v[i] for i in index.tolist()] if isinstance(v, list) else v[index]
        return out

    def skip(self, index: torch.Tensor, keys: tuple[str, ...] | None = None) -> None:
        """Count the examples at ``index`` as taken for training without reading them: a lazy
        column that draws per-example randomness (``Clips``' random crops, keyed by how often
        the example was drawn) stays where ``take`` would have left it. For the batches a
        resumed stage replays and the other ranks' share of a batch under several processes."""
        for k in keys or tuple(self.tensors):
            if hasattr(self.tensors[k], "skip"):
                self.tensors[k].skip(index)

    def subset(self, index: torch.Tensor) -> Examples:
        """The examples at ``index`` as a split of their own (``index`` renumbered); lazy columns
        stay lazy, and per-example meta lists are cut too."""
        n, rows = len(self), index.tolist()
        tensors: dict[str, Any] = {}
        for k, v in self.tensors.items():
            if isinstance(v, torch.Tensor):
                tensors[k] = v[index]
            elif isinstance(v, list):
                tensors[k] = [v[i] for i in rows]
            else:
                tensors[k] = Rows(v, index)
        if "index" in tensors:
            tensors["index"] = torch.arange(len(rows))
        meta = {k: [v[i] for i in rows] if isinstance(v, list) and len(v) == n else v for k, v in self.meta.items()}
        return Examples(tensors, meta)


class Rows:
    """Some rows of a lazy column (``xbench.data.clips.Clips``), read on demand like it."""

    def __init__(self, column: Any, index: torch.Tensor) -> None:
        self.column, self.index = column, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.column.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.column.dtype

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self.column[self.index[index]]

    def skip(self, index: torch.Tensor) -> None:
        if hasattr(self.column, "skip"):
            self.column.skip(self.index[index])
