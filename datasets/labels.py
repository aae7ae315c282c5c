"""Cityscapes label definitions: label ids, the 19 train ids, names, categories, colours, and the
facts cityscapesScripts scores with (categories, instance classes, mean instance sizes).

Source: cityscapesScripts `helpers/labels.py` and `evaluation/evalPixelLevelSemanticLabeling.py`
(facts only). GTA5 stores the same label ids.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255


class Label(NamedTuple):
    name: str
    id: int              # label id as stored in *_gtFine_labelIds.png and GTA5 labels
    train_id: int        # 0..18, or 255 (ignored in training and evaluation)
    category: str        # the coarse group cityscapesScripts also scores (category IoU and iIoU)
    has_instances: bool  # annotated as instances in *_gtFine_instanceIds.png (id = label id * 1000 + k)
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    #     name                  id  train  category       inst    colour
    Label("unlabeled",             0, 255, "void",         False, (  0,   0,   0)),
    Label("ego vehicle",           1, 255, "void",         False, (  0,   0,   0)),
    Label("rectification border",  2, 255, "void",         False, (  0,   0,   0)),
    Label("out of roi",            3, 255, "void",         False, (  0,   0,   0)),
    Label("static",                4, 255, "void",         False, (  0,   0,   0)),
    Label("dynamic",               5, 255, "void",         False, (111,  74,   0)),
    Label("ground",                6, 255, "void",         False, ( 81,   0,  81)),
    Label("road",                  7,   0, "flat",         False, (128,  64, 128)),
    Label("sidewalk",              8,   1, "flat",         False, (244,  35, 232)),
    Label("parking",               9, 255, "flat",         False, (250, 170, 160)),
    Label("rail track",           10, 255, "flat",         False, (230, 150, 140)),
    Label("building",             11,   2, "construction", False, ( 70,  70,  70)),
    Label("wall",                 12,   3, "construction", False, (102, 102, 156)),
    Label("fence",                13,   4, "construction", False, (190, 153, 153)),
    Label("guard rail",           14, 255, "construction", False, (180, 165, 180)),
    Label("bridge",               15, 255, "construction", False, (150, 100, 100)),
    Label("tunnel",               16, 255, "construction", False, (150, 120,  90)),
    Label("pole",                 17,   5, "object",       False, (153, 153, 153)),
    Label("polegroup",            18, 255, "object",       False, (153, 153, 153)),
    Label("traffic light",        19,   6, "object",       False, (250, 170,  30)),
    Label("traffic sign",         20,   7, "object",       False, (220, 220,   0)),
    Label("vegetation",           21,   8, "nature",       False, (107, 142,  35)),
    Label("terrain",              22,   9, "nature",       False, (152, 251, 152)),
    Label("sky",                  23,  10, "sky",          False, ( 70, 130, 180)),
    Label("person",               24,  11, "human",        True,  (220,  20,  60)),
    Label("rider",                25,  12, "human",        True,  (255,   0,   0)),
    Label("car",                  26,  13, "vehicle",      True,  (  0,   0, 142)),
    Label("truck",                27,  14, "vehicle",      True,  (  0,   0,  70)),
    Label("bus",                  28,  15, "vehicle",      True,  (  0,  60, 100)),
    Label("caravan",              29, 255, "vehicle",      True,  (  0,   0,  90)),
    Label("trailer",              30, 255, "vehicle",      True,  (  0,   0, 110)),
    Label("train",                31,  16, "vehicle",      True,  (  0,  80, 100)),
    Label("motorcycle",           32,  17, "vehicle",      True,  (  0,   0, 230)),
    Label("bicycle",              33,  18, "vehicle",      True,  (119,  11,  32)),
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

# cityscapesScripts' categories with at least one evaluated class ("void" has none), in its order,
# each with its train ids: what the category IoU and category iIoU score.
CATEGORIES: dict[str, tuple[int, ...]] = {}
for _label in LABELS:
    if _label.train_id != IGNORE_INDEX:
        CATEGORIES[_label.category] = CATEGORIES.get(_label.category, ()) + (_label.train_id,)
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)

# Label id -> index into CATEGORY_NAMES for every label of those categories, evaluated or not
# (255: void). cityscapesScripts' category iIoU counts a predicted caravan or trailer (label ids
# 29, 30, no evaluated class) as a vehicle; its category IoU does not.
ID_TO_CATEGORY = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label in LABELS:
    if _label.category in CATEGORIES:
        ID_TO_CATEGORY[_label.id] = CATEGORY_NAMES.index(_label.category)

# Train ids of the evaluated classes annotated as instances (person ... bicycle): the classes iIoU scores.
INSTANCE_CLASSES: tuple[int, ...] = tuple(l.train_id for l in LABELS if l.has_instances and l.train_id != IGNORE_INDEX)

# iIoU's weights: the mean instance size in pixels of each instance class over Cityscapes train
# (cityscapesScripts evaluation/evalPixelLevelSemanticLabeling.py, args.avgClassSize), by train id.
AVG_INSTANCE_SIZE: dict[int, float] = {
    11: 3462.4756337644,    # person
    12: 3930.4788056518,    # rider
    13: 12794.0202738185,   # car
    14: 27855.1264367816,   # truck
    15: 35732.1511111111,   # bus
    16: 67583.7075812274,   # train
    17: 6298.7200839748,    # motorcycle
    18: 4672.3249222261,    # bicycle
}

# Classes DAFormer/HRDA call "things": train ids [6, 7, 11, ..., 18] of the reference's feature
# distance (ImageNet features on thing classes) and the papers' stuff / thing split. Pole is stuff.
THING_CLASSES: tuple[str, ...] = (
    "traffic light", "traffic sign", "person", "rider", "car", "truck", "bus",
    "train", "motorcycle", "bicycle",
)
