"""GTA5 (Richter et al. 2016), "Playing for Data", in its own layout:

    <root>/images/NNNNN.png     <root>/labels/NNNNN.png  (palette PNG of Cityscapes label ids)

All 24,966 images are the training split (the UDA papers use them all as source).
An optional <root>/<split>.txt lists image file names (NNNNN.png) for other splits
(SegmentationDataset.read_split).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udalab.datasets.base import SegmentationDataset, map_ids
from udalab.datasets.labels import CLASS_NAMES, ID_TO_TRAIN_ID, MAX_LABEL_ID, NUM_CLASSES, PALETTE


class GTA5(SegmentationDataset):
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    palette = PALETTE

    SPLITS = ("train",)

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True):
        super().__init__(root, split, size, crop, flip, strict)
        self._check_root("images", "labels",
                         hint="Pass the folder that holds images/ and labels/ (the GTA5 'Playing for Data' "
                              "archives unpacked into one folder).")
        images = self.read_split(self.root / f"{split}.txt", lambda name: self.root / "images" / name,
                                 all_images=lambda: sorted((self.root / "images").glob("*.png")))
        self._pair(images, lambda img: self.root / "labels" / img.name)

    @classmethod
    def available_splits(cls, root) -> list[str]:
        root = Path(root)
        return ["train"] + sorted(p.stem for p in root.glob("*.txt") if p.stem != "train")

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return map_ids(raw, ID_TO_TRAIN_ID, MAX_LABEL_ID, path, "Cityscapes label-id (GTA5)")
