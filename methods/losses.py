"""Segmentation losses and entropy maps shared by the methods."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def seg_ce(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy; logits are upsampled to the label size first; 255 is ignored."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)


def self_information(prob: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information map -p·log p / log C, per class (N, C, H, W)."""
    c = prob.shape[1]
    return -prob * torch.log(prob + 1e-30) / math.log(c)


def entropy_map(prob: torch.Tensor) -> torch.Tensor:
    """Normalised entropy per pixel in [0, 1] (N, H, W): the sum over classes of self_information."""
    return self_information(prob).sum(dim=1)


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT MinEnt: mean normalised entropy of the prediction."""
    return entropy_map(F.softmax(logits, dim=1)).mean()
