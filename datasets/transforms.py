"""Joint image/label transforms on torchvision.transforms.v2 (tv_tensors keep them aligned).

Resize (bilinear image, nearest mask), random crop and horizontal flip draw from torch's
global RNG, which the training engine seeds per sample (see methods/engine/__init__.py).
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from udalab.datasets.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# 4-channel RGB-T input (MFNet): ImageNet statistics for RGB, a mid-grey spread for thermal.
THERMAL_MEAN, THERMAL_STD = 0.5, 0.25


class Depth(tv_tensors.Mask):
    """A dense float target (pseudo depth) that moves with the label: nearest resize, same crop
    and flip, padded with 0 (not the label's 255), never normalised."""


def build_transform(size: tuple[int, int] | None = None, crop: tuple[int, int] | None = None,
                    flip: bool = False, channels: int = 3) -> v2.Compose:
    """size and crop are (W, H) as the papers write them; torchvision wants (H, W).
    channels=4: RGB + thermal (the thermal channel gets THERMAL_MEAN/STD)."""
    steps: list = []
    if size is not None:
        steps.append(v2.Resize((size[1], size[0]), antialias=True))
    if crop is not None:
        steps.append(v2.RandomCrop((crop[1], crop[0]), pad_if_needed=True,
                                   fill={Depth: 0, tv_tensors.Mask: IGNORE_INDEX, "others": 0}))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if channels == 4:
        mean, std = mean + (THERMAL_MEAN,), std + (THERMAL_STD,)
    elif channels != 3:
        raise ValueError(f"channels must be 3 or 4, got {channels}")
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def apply(transform: v2.Compose, image: torch.Tensor, label: torch.Tensor, depth: torch.Tensor | None = None):
    """image uint8 [C,H,W], label uint8/int64 [H,W] -> float image, int64 label;
    with depth (float [1,H,W]) also the depth, transformed with the label."""
    if depth is None:
        img, mask = transform(tv_tensors.Image(image), tv_tensors.Mask(label))
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()
    img, mask, dep = transform(tv_tensors.Image(image), tv_tensors.Mask(label), Depth(depth))
    return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long(), dep.as_subclass(torch.Tensor)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] image -> normalised (the inverse of `denormalize` on [0, 1]; differentiable)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(-1, 1, 1)
    return (image - mean) / std


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Normalised float image -> [0, 1] (for figures and mixing in pixel space)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(-1, 1, 1)
    return (image * std + mean).clamp(0, 1)
