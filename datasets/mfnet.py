"""MFNet (Ha et al. 2017), RGB-thermal urban scenes, in its own layout:

    <root>/images/<name>.png    4-channel PNG: R, G, B, thermal (640x480)
    <root>/labels/<name>.png    class indices 0..8
    <root>/train.txt, val.txt, test.txt   one name per line (no extension)

Names end in D (day) or N (night): 1569 images, 820 day and 749 night. Classes:
unlabeled, car, person, bicycle, curve, car_stop, guardrail, color_cone, bump (0..8); the
background class "unlabeled" is a class here, as in MFNet/RTFNet's 9-class mIoU. Class 3 is
"bike" in MFNet's code and "bicycle" in the MML / MS-UDA tables: it is named as the tables
name it, so per-class published values line up (iou.bicycle). MML and MS-UDA score car,
person, bicycle only (the classes shared with Cityscapes): the "3" evaluation subset, e.g.
"mfnet_thermal@3".

Views (dataset names, usable as a run config's "source"/"target"; data_root maps the base
name "mfnet" to the folder):

    mfnet_rgb, mfnet_thermal, mfnet_rgbt   RGB (3 channels), thermal replicated to 3 channels,
                                           or both (4 channels: R, G, B, T)
    mfnet_<view>_day, mfnet_<view>_night   only the day (D) / night (N) images of the split
    mfnet                                  = mfnet_rgbt

Predictions (`write_prediction`) take the labels' format: `<out>/<name>.png`, class indices
0..8 in one 8-bit channel.

Pseudo labels (MS-UDA's layout): <root>/pseudo/<expert>/<name>.png, one class-index PNG
per image, 255 = no label, written by `write_pseudo_labels` from an expert's predictions and
read with `label_dir="pseudo/<expert>"`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from udalab.datasets.base import SegmentationDataset, map_ids
from udalab.datasets.errors import DatasetError
from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.transforms import build_transform

CLASS_NAMES = ("unlabeled", "car", "person", "bicycle", "curve", "car_stop", "guardrail", "color_cone", "bump")
NUM_CLASSES = len(CLASS_NAMES)
EVAL_3 = (1, 2, 3)  # car, person, bicycle (MML / MS-UDA tables)
# MFNet class -> Cityscapes train id of the same thing (car, person, bicycle); for experts trained on Cityscapes.
CITYSCAPES_TRAIN_ID = {1: 13, 2: 11, 3: 18}
# A Cityscapes expert's train-id prediction -> MFNet classes (MS-UDA's pseudo labels): car -> car, person and
# rider -> person, bicycle and motorcycle -> bicycle, 255 stays "no label", every other class -> unlabeled (0).
CITYSCAPES_TO_MFNET = np.zeros(256, np.uint8)
CITYSCAPES_TO_MFNET[[13, 11, 12, 18, 17]] = [1, 2, 2, 3, 3]
CITYSCAPES_TO_MFNET[IGNORE_INDEX] = IGNORE_INDEX
PALETTE = np.array([(0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192), (128, 128, 0),
                    (64, 64, 128), (192, 128, 128), (192, 64, 0)], np.uint8)

IDENTITY = np.arange(256, dtype=np.uint8)
MODALITIES = ("rgb", "thermal", "rgbt")
TIMES = (None, "day", "night")


def time_of(name: str) -> str | None:
    """'day' for names ending in D, 'night' for N (MFNet's convention), else None."""
    stem = Path(name).stem
    return {"D": "day", "N": "night"}.get(stem[-1:].upper())


class MFNet(SegmentationDataset):
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    palette = PALETTE
    EVAL_SUBSETS = {"3": EVAL_3, "9": tuple(range(NUM_CLASSES))}
    SPLITS = ("train", "val", "test")
    MODALITY = "rgbt"
    TIME: str | None = None

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True,
                 modality: str | None = None, time: str | None = "", label_dir: str = "labels"):
        super().__init__(root, split, size, crop, flip, strict)
        self.modality = modality or self.MODALITY
        self.time = self.TIME if time == "" else time
        if self.modality not in MODALITIES:
            raise DatasetError(f"MFNet modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.time not in TIMES:
            raise DatasetError(f"MFNet time must be 'day', 'night' or None, got {self.time!r}")
        self.label_dir = label_dir
        self.channels = 4 if self.modality == "rgbt" else 3
        self.transform = build_transform(size, crop, flip, channels=self.channels)
        self._check_root("images", label_dir,
                         hint="Pass the MFNet folder that holds images/, labels/ and train.txt/val.txt/test.txt "
                              "(ir_seg_dataset from the MFNet release, unpacked)." if label_dir == "labels" else
                         f"Write the pseudo labels first (udalab.datasets.mfnet.write_pseudo_labels) into "
                         f"{Path(root) / label_dir}.")
        images = self.read_split(self.root / f"{split}.txt", lambda name: self.root / "images" /
                                 f"{name.removesuffix('.png')}.png", shipped=self.SPLITS)
        if self.time is not None:
            unknown = [p.stem for p in images if time_of(p.name) is None]
            if unknown:
                raise DatasetError(f"{self.split_file}: names {unknown[:3]} end in neither D (day) nor N (night), "
                                   f"so the {self.time} filter cannot tell; rename them or use a view without "
                                   f"_day/_night")
            images = [p for p in images if time_of(p.name) == self.time]
        self._pair(images, lambda img: self.root / label_dir / img.name)

    @classmethod
    def available_splits(cls, root) -> list[str]:
        return [s for s in cls.SPLITS if (Path(root) / f"{s}.txt").is_file()] or list(cls.SPLITS)

    def read_image(self, path: Path) -> torch.Tensor:
        try:
            img = decode_image(str(path), mode=ImageReadMode.UNCHANGED)
        except (RuntimeError, OSError, ValueError) as e:
            raise DatasetError(f"cannot decode image {path} ({e}); the file is corrupt or not an image: "
                               f"re-extract it from the dataset archive") from e
        if img.dtype != torch.uint8 or img.shape[0] != 4:
            raise DatasetError(f"image {path} has {img.shape[0]} channels of {img.dtype}; MFNet images are 8-bit "
                               f"4-channel PNGs (R, G, B, thermal): re-extract it from the MFNet archive")
        if self.modality == "rgb":
            return img[:3]
        if self.modality == "thermal":
            return img[3:4].expand(3, -1, -1).contiguous()
        return img

    def prediction_name(self, i: int) -> str:
        return self.files[i][0].name

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.label_dir != "labels" and raw.dtype == np.uint8:  # pseudo labels: 255 = no label
            bad = (raw >= NUM_CLASSES) & (raw != IGNORE_INDEX)
            if bad.any():
                raise DatasetError(f"pseudo label {path} holds ids {np.unique(raw[bad])[:10].tolist()} outside "
                                   f"0..{NUM_CLASSES - 1} and 255; rewrite it with write_pseudo_labels")
            return raw
        return map_ids(raw, IDENTITY, NUM_CLASSES - 1, path, "MFNet class-index")


def view_class(modality: str, time: str | None) -> type:
    """The dataset class of one view (a subclass, so that DATASETS[name](root, split, ...) works)."""
    name = f"MFNet_{modality}" + (f"_{time}" if time else "")
    return type(name, (MFNet,), {"MODALITY": modality, "TIME": time, "__module__": __name__})


VIEWS: dict[str, type] = {}
for _m in MODALITIES:
    for _t in TIMES:
        _cls = view_class(_m, _t)
        VIEWS[f"mfnet_{_m}" + (f"_{_t}" if _t else "")] = _cls
        globals()[_cls.__name__] = _cls  # a module attribute, so that datasets of a view pickle
VIEWS["mfnet"] = VIEWS["mfnet_rgbt"]


def write_pseudo_labels(dataset: MFNet, predict: Callable[[torch.Tensor], np.ndarray], expert: str,
                        progress=None) -> Path:
    """Write <root>/pseudo/<expert>/<name>.png for every image of `dataset` (MS-UDA's layout).

    predict(uint8 image [C,H,W] of the dataset's view) -> int array [H,W] of MFNet class
    indices, 255 where the expert gives no label. Returns the folder; a pseudo.json beside the
    PNGs records the expert, split and view.
    """
    out = dataset.root / "pseudo" / expert
    out.mkdir(parents=True, exist_ok=True)
    items = range(len(dataset)) if progress is None else progress(range(len(dataset)))
    for i in items:
        img_path = dataset.files[i][0]
        image = dataset.read_image(img_path)
        label = np.asarray(predict(image))
        if label.shape != tuple(image.shape[-2:]):
            raise ValueError(f"the expert's prediction for {img_path} is {label.shape}, the image "
                             f"{tuple(image.shape[-2:])}; upsample it to the image size")
        bad = (label < 0) | ((label >= NUM_CLASSES) & (label != IGNORE_INDEX))
        if bad.any():
            raise ValueError(f"the expert's prediction for {img_path} holds values outside 0..8 and 255")
        Image.fromarray(label.astype(np.uint8), mode="L").save(out / img_path.name)
    (out / "pseudo.json").write_text(json.dumps({"expert": expert, "split": dataset.split,
                                                 "modality": dataset.modality, "time": dataset.time,
                                                 "images": len(dataset)}, indent=1))
    return out
