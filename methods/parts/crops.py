"""Random crops done on the device, inside the training loop, from a seeded generator.

The loaders return whole (resized) images; the loop crops them. That lets a crop box be
shared between source and target (HRDA's synchronized-crop ablation) and re-drawn until no
class dominates it (mmseg's RandomCrop with cat_max_ratio, used on the source by DAFormer and
HRDA).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from udalab.datasets.labels import IGNORE_INDEX


class Box(NamedTuple):
    y: int
    x: int
    h: int
    w: int


def random_box(height: int, width: int, h: int, w: int, gen: torch.Generator) -> Box:
    """A uniformly random h x w box inside height x width (mmseg's RandomCrop: any pixel offset)."""
    if h > height or w > width:
        raise ValueError(f"crop {w}x{h} does not fit in a {width}x{height} image")
    y = int(torch.randint(height - h + 1, (), generator=gen))
    x = int(torch.randint(width - w + 1, (), generator=gen))
    return Box(y, x, h, w)


def balanced_box(label: torch.Tensor, h: int, w: int, gen: torch.Generator, cat_max_ratio: float = 1.0,
                 tries: int = 10, extent: tuple[int, int] | None = None) -> Box:
    """random_box re-drawn (up to `tries` times) while one class covers more than
    cat_max_ratio of the box's labelled pixels (mmseg RandomCrop)."""
    height, width = extent or label.shape[-2:]
    box = random_box(height, width, h, w, gen)
    if cat_max_ratio >= 1.0:
        return box
    for _ in range(tries):
        counts = torch.bincount(crop(label, box).flatten(), minlength=256)[:IGNORE_INDEX]
        if (counts > 0).sum() > 1 and counts.max() < cat_max_ratio * counts.sum():
            break
        box = random_box(height, width, h, w, gen)
    return box


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    """The box of the last two dimensions."""
    return x[..., box.y:box.y + box.h, box.x:box.x + box.w]


def crop_batch(images: torch.Tensor, labels: torch.Tensor | None, boxes: list[Box],
               flips: list[bool]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop (and horizontally flip) each sample of a batch with its own box."""
    def one(t, b, f):
        t = crop(t, b)
        return t.flip(-1) if f else t
    imgs = torch.stack([one(i, b, f) for i, b, f in zip(images, boxes, flips)])
    lbls = None if labels is None else torch.stack([one(lb, b, f) for lb, b, f in zip(labels, boxes, flips)])
    return imgs, lbls
