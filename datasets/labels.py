"""Cityscapes label definitions: label ids, the 19 train ids, names, colours.

Source: cityscapesScripts `helpers/labels.py` (facts only) and
../shared/papers/REFERENCE_FACTS.md. GTA5 stores the same label ids.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255


class Label(NamedTuple):
    name: str
    id: int          # label id as stored in *_gtFine_labelIds.png and GTA5 labels
    train_id: int    # 0..18, or 255 (ignored in training and evaluation)
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
)

MAX_LABEL_ID = max(label.id for label in LABELS)  # 33
NUM_CLASSES = 19
CLASS_NAMES: tuple[str, ...] = tuple(
    label.name for label in sorted((l for l in LABELS if l.train_id != IGNORE_INDEX), key=lambda l: l.train_id)
)
PALETTE: np.ndarray = np.array(
    [next(l.color for l in LABELS if l.train_id == t) for t in range(NUM_CLASSES)], dtype=np.uint8
)

IGNORE_COLOR = (255, 255, 255)   # ignored / void pixels in colour-coded pictures


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """A train-id map [H, W] as an RGB picture [H, W, 3] uint8 in the dataset's own palette
    ([num_classes, 3]); IGNORE_INDEX (and any id beyond the palette) drawn in IGNORE_COLOR."""
    lut = np.full((256, 3), IGNORE_COLOR, dtype=np.uint8)
    lut[:len(palette)] = palette
    return lut[np.asarray(label).astype(np.int64).clip(0, 255)]


# Lookup table label id -> train id, 256 entries so any uint8 indexes it.
ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label in LABELS:
    ID_TO_TRAIN_ID[_label.id] = _label.train_id

# Train id -> label id (for writing predictions in the Cityscapes submission format).
TRAIN_ID_TO_ID = np.zeros(256, dtype=np.uint8)
for _label in LABELS:
    if _label.train_id != IGNORE_INDEX:
        TRAIN_ID_TO_ID[_label.train_id] = _label.id

# Classes DAFormer/HRDA call "things": train ids [6, 7, 11, ..., 18] of the reference's feature
# distance (ImageNet features on thing classes) and the papers' stuff / thing split. Pole is stuff.
THING_CLASSES: tuple[str, ...] = (
    "traffic light", "traffic sign", "person", "rider", "car", "truck", "bus",
    "train", "motorcycle", "bicycle",
)
