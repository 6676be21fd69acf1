"""``Examples``: one split of a task as tensors, the form the training loop and the metrics read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Examples:
    """One split as tensors: modality and target name -> tensor with the examples first."""

    #: tensors, or lists for values that are not tensors (the text of the observed steps)
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
            tensors[key] = torch.cat(values) if isinstance(first, torch.Tensor) else [x for v in values for x in v]
        if "index" in tensors:
            tensors["index"] = torch.arange(len(tensors["index"]))
        return Examples(tensors, dict(parts[0].meta))

    def take(self, index: torch.Tensor, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        keys = keys or tuple(self.tensors)
        out = {}
        for k in keys:
            v = self.tensors[k]
            out[k] = v[index] if isinstance(v, torch.Tensor) else [v[i] for i in index.tolist()]
        return out
