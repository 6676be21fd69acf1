"""How the harness's models read raw inputs (part of the public API plugins may import): a model a
plugin adds beside the task's student (another modality's encoder, a view of the input) reads
frames on the same scale as the student does."""

from __future__ import annotations

import torch


def rgb_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 rgb frames as float in [-0.5, 0.5], the scale every built-in video model reads."""
    return frames.float().div(255.0).sub(0.5)
