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

    def take(self, index: torch.Tensor, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        keys = keys or tuple(self.tensors)
        out = {}
        for k in keys:
            v = self.tensors[k]
            out[k] = v[index] if isinstance(v, torch.Tensor) else [v[i] for i in index.tolist()]
        return out
