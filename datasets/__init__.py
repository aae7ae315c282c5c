"""Dataset loaders in the datasets' own on-disk layouts, and their embedded mini twins."""
from __future__ import annotations

from udalab.datasets.cityscapes import Cityscapes
from udalab.datasets.errors import DatasetError
from udalab.datasets.gta5 import GTA5
from udalab.datasets.mini import mini_root

DATASETS = {"gta5": GTA5, "cityscapes": Cityscapes}

__all__ = ["DATASETS", "DatasetError", "build_dataset", "mini_root", "Cityscapes", "GTA5"]


def build_dataset(name: str, root=None, split: str = "train", size=None, crop=None, flip: bool = False):
    """A dataset by name; root=None means the embedded mini twin (generated on first use)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root if root is not None else mini_root(name), split=split, size=size, crop=crop, flip=flip)
