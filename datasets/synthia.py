"""SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016) in its own layout:

    <root>/RGB/NNNNNNN.png          8-bit RGB, 1280x760
    <root>/GT/LABELS/NNNNNNN.png    16-bit PNG; channel 0 = SYNTHIA class id, channel 1 = instance id

The class sits in the first channel of a 16-bit PNG: it must be read unchanged (PIL's
default mode keeps the high byte only, which makes every class 0). SYNTHIA ids map to the
Cityscapes train ids (as DAFormer's tools/convert_datasets/synthia.py maps them); terrain, truck and train do not exist in
SYNTHIA, so the UDA papers score SYNTHIA->Cityscapes over 16 classes (and 13, without
wall, fence and pole). All 9,400 images are the training split; an optional
<root>/<split>.txt lists image file names for other splits (SegmentationDataset.read_split).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udalab.datasets.base import SegmentationDataset, map_ids, read_png_unchanged
from udalab.datasets.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE

# SYNTHIA class ids (SYNTHIA-RAND-CITYSCAPES README): 0 void, 1 sky, 2 building, 3 road, 4 sidewalk,
# 5 fence, 6 vegetation, 7 pole, 8 car, 9 traffic sign, 10 pedestrian, 11 bicycle, 12 motorcycle,
# 13 parking-slot, 14 road-work, 15 traffic light, 16 terrain, 17 rider, 18 truck, 19 bus, 20 train,
# 21 wall, 22 lanemarking.
SYNTHIA_NAMES = ("void", "sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "car",
                 "traffic sign", "pedestrian", "bicycle", "motorcycle", "parking-slot", "road-work",
                 "traffic light", "terrain", "rider", "truck", "bus", "train", "wall", "lanemarking")
MAX_SYNTHIA_ID = len(SYNTHIA_NAMES) - 1  # 22
# SYNTHIA id -> Cityscapes train id (lhoyer/DAFormer tools/convert_datasets/synthia.py); everything else 255.
SYNTHIA_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
                    19: 15, 12: 17, 11: 18}
ID_TO_TRAIN_ID = np.full(65536, IGNORE_INDEX, dtype=np.uint8)
for _sid, _tid in SYNTHIA_TO_TRAIN.items():
    ID_TO_TRAIN_ID[_sid] = _tid
TRAIN_TO_SYNTHIA = {t: s for s, t in SYNTHIA_TO_TRAIN.items()}

EVAL_16 = tuple(sorted(SYNTHIA_TO_TRAIN.values()))                    # no terrain (9), truck (14), train (16)
EVAL_13 = tuple(c for c in EVAL_16 if c not in (3, 4, 5))            # also no wall, fence, pole


class SYNTHIA(SegmentationDataset):
    num_classes = NUM_CLASSES          # the Cityscapes train ids: the target's label space
    class_names = CLASS_NAMES
    palette = PALETTE
    eval_classes = EVAL_16
    EVAL_SUBSETS = {"16": EVAL_16, "13": EVAL_13}
    SPLITS = ("train",)

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True):
        super().__init__(root, split, size, crop, flip, strict)
        self._check_root("RGB", "GT/LABELS",
                         hint="Pass the RAND_CITYSCAPES folder that holds RGB/ and GT/LABELS/ "
                              "(SYNTHIA-RAND-CITYSCAPES.rar, unpacked).")
        images = self.read_split(self.root / f"{split}.txt", lambda name: self.root / "RGB" / name,
                                 all_images=lambda: sorted((self.root / "RGB").glob("*.png")))
        self._pair(images, lambda img: self.root / "GT" / "LABELS" / img.name)

    @classmethod
    def available_splits(cls, root) -> list[str]:
        return ["train"] + sorted(p.stem for p in Path(root).glob("*.txt") if p.stem != "train")

    def read_label(self, path: Path) -> np.ndarray:
        arr = read_png_unchanged(path)
        return arr[..., 0] if arr.ndim == 3 else arr  # class id; channel 1 is the instance id

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return map_ids(raw, ID_TO_TRAIN_ID, MAX_SYNTHIA_ID, path, "SYNTHIA class-id")
