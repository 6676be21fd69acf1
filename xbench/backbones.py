"""Students from the field's libraries: torchvision's video networks, built randomly initialised
(nothing is downloaded; weights come from a local checkpoint, never a URL).

Each takes the clip's uint8 frames (B, T, 3, H, W), normalises them with the statistics its
published Kinetics-400 weights were trained with, and returns the taps the generic losses read:
``logits``; ``feature`` (B, D) the pooled embedding; ``tokens`` (B, T', D) the last block's map
averaged over space, one token per remaining time step; ``spatial`` (B, T', D, h, w) that map.
At 16 frames of 112 px: ``r3d-18`` and ``r2plus1d-18`` (Tran et al. 2018) halve time three times
and space four: 2 tokens of 512 channels on a 7 x 7 map; ``mc3-18`` convolves in 3D in its first
block only and keeps time: 16 tokens; S3D (Xie et al. 2018) halves time three times and space five:
2 tokens of 1024 channels on 3 x 3.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from xbench.specs import ModelContext

#: the normalisation torchvision's Kinetics-400 video weights expect (their transforms' mean, std)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class VideoBackbone(nn.Module):
    """A torchvision video network as a student: ``body`` maps (B, 3, T, H, W) to its last
    feature map (B, D, T', h, w); a linear head over the pooled map gives the logits."""

    def __init__(self, ctx: ModelContext, body: nn.Module, dim: int) -> None:
        super().__init__()
        self.body, self.dim = body, dim
        self.head = nn.Linear(dim, ctx.num_classes)
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["rgb"].movedim(2, 1).float().div_(255.0)  # (B, T, 3, H, W) uint8 -> (B, 3, T, H, W)
        spatial = self.body((x - self.mean) / self.std)  # (B, D, T', h, w)
        tokens = spatial.mean(dim=(3, 4)).transpose(1, 2)
        feature = tokens.mean(dim=1)
        return {"logits": self.head(feature), "feature": feature, "tokens": tokens,
                "spatial": spatial.transpose(1, 2)}


def _resnet3d(build: Callable[..., nn.Module]) -> Callable[[ModelContext], VideoBackbone]:
    def factory(ctx: ModelContext) -> VideoBackbone:
        net = build(weights=None)
        body = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
        return VideoBackbone(ctx, body, net.fc.in_features)

    return factory


def _s3d(ctx: ModelContext) -> VideoBackbone:
    from torchvision.models.video import s3d

    return VideoBackbone(ctx, s3d(weights=None).features, 1024)


def video_students() -> list[tuple[str, str, Callable[[ModelContext], nn.Module]]]:
    """(name, description, factory) of each torchvision video student."""
    from torchvision.models.video import mc3_18, r2plus1d_18, r3d_18

    return [
        ("r3d-18", "torchvision's 3D ResNet-18 (Tran et al. 2018), random init (33M params)", _resnet3d(r3d_18)),
        ("mc3-18", "torchvision's mixed-convolution ResNet-18 (3D then 2D blocks), random init (12M)",
         _resnet3d(mc3_18)),
        ("r2plus1d-18", "torchvision's R(2+1)D-18, the factorised 3D ResNet (Tran et al. 2018), random init (31M)",
         _resnet3d(r2plus1d_18)),
        ("s3d", "torchvision's S3D (Xie et al. 2018), separable 3D Inception, random init (8M)", _s3d),
    ]
