"""Cityscapes (Cordts et al. 2016) in its own layout:

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label ids 0..33 map to the 19 train ids (cityscapesScripts' table); the rest is 255.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udalab.datasets.base import SegmentationDataset, map_ids
from udalab.datasets.labels import CLASS_NAMES, ID_TO_TRAIN_ID, MAX_LABEL_ID, NUM_CLASSES

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(SegmentationDataset):
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True):
        super().__init__(root, split, size, crop, flip, strict)
        self._check_root(f"leftImg8bit/{split}", f"gtFine/{split}",
                         hint="Pass the folder that holds leftImg8bit/ and gtFine/ (leftImg8bit_trainvaltest.zip "
                              "and gtFine_trainvaltest.zip from cityscapes-dataset.com, unpacked).")
        images = sorted((self.root / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
        self._pair(images, self.label_path)

    @classmethod
    def available_splits(cls, root) -> list[str]:
        found = sorted(p.name for p in (Path(root) / "leftImg8bit").glob("*") if p.is_dir())
        return found or list(cls.SPLITS)

    def label_path(self, image: Path) -> Path:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        return self.root / "gtFine" / self.split / image.parent.name / f"{stem}{LABEL_SUFFIX}"

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return map_ids(raw, ID_TO_TRAIN_ID, MAX_LABEL_ID, path, "Cityscapes label-id")
