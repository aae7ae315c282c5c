"""Cityscapes (Cordts et al. 2016) in its own layout:

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label ids 0..33 map to the 19 train ids (cityscapesScripts' table); the rest is 255.

Splits: train (2975), val (500) and test (1525); train_extra (19,998 images,
leftImg8bit_trainextra.zip) holds images without fine labels: an unlabelled split whose labels read
as 255 everywhere (its coarse labels, gtCoarse/, are not read), the unlabelled pool UDAS self-trains
on. The public test labels are withheld (the benchmark server scores test predictions): every gtFine
test label is void, which maps to 255 everywhere, so split "test" of the real dataset raises a
DatasetError naming the file and the fix (hold out part of val: move a few val cities to
leftImg8bit/test and gtFine/test). A "test" folder with real labels, such as the mini twin's
held-out split, loads like val. The check reads up to three labels of the split (first, middle,
last), not all of them.

Predictions (`write_prediction`) are written as the benchmark and cityscapesScripts'
evalPixelLevelSemanticLabeling read them: label ids (not train ids), one 8-bit PNG per image,
`<out>/<city>/<city>_<seq>_<frame>_leftImg8bit.png` (the evaluation finds a prediction by the
`<city>_<seq>_<frame>` its file name starts with, anywhere under the results folder).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from udalab.datasets.base import SegmentationDataset, map_ids
from udalab.datasets.errors import DatasetError
from udalab.datasets.labels import CLASS_NAMES, ID_TO_TRAIN_ID, MAX_LABEL_ID, NUM_CLASSES, PALETTE, TRAIN_ID_TO_ID

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(SegmentationDataset):
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    palette = PALETTE
    SPLITS = ("train", "val", "test")
    UNLABELLED_SPLITS = ("train_extra",)
    PREDICTION_VALUES = "labelid"

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True):
        super().__init__(root, split, size, crop, flip, strict)
        self._check_root(f"leftImg8bit/{split}", *([f"gtFine/{split}"] if self.labelled else []),
                         hint="Pass the folder that holds leftImg8bit/ and gtFine/ (leftImg8bit_trainvaltest.zip "
                              "and gtFine_trainvaltest.zip from cityscapes-dataset.com, unpacked"
                              + ("; leftImg8bit_trainextra.zip for train_extra)." if not self.labelled else ")."))
        images = sorted((self.root / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
        self._pair(images, self.label_path)
        if split == "test":
            self._check_test_labels()

    def _check_test_labels(self) -> None:
        """Real Cityscapes' test labels are all void: refuse to score on them."""
        sample = [self.files[k][1] for k in sorted({0, len(self.files) // 2, len(self.files) - 1})] if self.files else []
        if sample and all((self.encode(self.read_label(p), p) == self.ignore_index).all() for p in sample):
            more = f" (and the {len(sample) - 1} other test labels read)" if len(sample) > 1 else ""
            raise DatasetError(f"Cityscapes split 'test' under {self.root} has no labels: {sample[0]}{more} is "
                               f"void/ignore everywhere, as every public Cityscapes test label is (the test labels "
                               f"are withheld for the benchmark server). Score on 'val', or hold out part of val as "
                               f"a labelled test split: move some val cities' folders from leftImg8bit/val and "
                               f"gtFine/val to leftImg8bit/test and gtFine/test")

    @classmethod
    def available_splits(cls, root) -> list[str]:
        found = sorted(p.name for p in (Path(root) / "leftImg8bit").glob("*") if p.is_dir())
        return found or list(cls.SPLITS)

    def label_path(self, image: Path) -> Path:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        return self.root / "gtFine" / self.split / image.parent.name / f"{stem}{LABEL_SUFFIX}"

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return map_ids(raw, ID_TO_TRAIN_ID, MAX_LABEL_ID, path, "Cityscapes label-id")

    def prediction_name(self, i: int) -> str:
        image = self.files[i][0]
        return f"{image.parent.name}/{image.name}"

    def prediction_image(self, pred: np.ndarray) -> Image.Image:
        return Image.fromarray(TRAIN_ID_TO_ID[pred], mode="L")
