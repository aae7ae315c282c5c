"""Joint image/label transforms on torchvision.transforms.v2 (tv_tensors keep them aligned).

Resize (bilinear image, nearest mask), random crop and horizontal flip draw from torch's
global RNG, which the training engine seeds per sample (see methods/engine.py).
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(size: tuple[int, int] | None = None, crop: tuple[int, int] | None = None,
                    flip: bool = False) -> v2.Compose:
    """size and crop are (W, H) as the papers write them; torchvision wants (H, W)."""
    steps: list = []
    if size is not None:
        steps.append(v2.Resize((size[1], size[0]), antialias=True))
    if crop is not None:
        steps.append(v2.RandomCrop((crop[1], crop[0]), pad_if_needed=True, fill={tv_tensors.Mask: 255, "others": 0}))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def apply(transform: v2.Compose, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """image uint8 [3,H,W], label uint8/int64 [H,W] -> float image, int64 label."""
    img, mask = transform(tv_tensors.Image(image), tv_tensors.Mask(label))
    return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Normalised float image -> [0, 1] (for figures and mixing in pixel space)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(-1, 1, 1)
    return (image * std + mean).clamp(0, 1)
