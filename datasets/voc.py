"""PASCAL VOC 2012 segmentation (Everingham et al.) in its own layout, plus a pseudo-depth folder:

    <root>/VOCdevkit/VOC2012/JPEGImages/<name>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<name>.png    palette PNG: 0 background, 1..20, 255 void
    <root>/VOCdevkit/VOC2012/SegmentationObject/<name>.png   palette PNG: instance index, 255 void
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    <root>/VOCdevkit/VOC2012/PseudoDepth/<name>.png          16-bit depth, value = depth * scale
    <root>/VOCdevkit/VOC2012/PseudoDepth/depth.json          {"model", "kind", "scales": {name: scale}}

`root` may also be the VOC2012 folder itself. 1464 train / 1449 val images, 21 classes.
VOC 2012 publishes no test labels; a `test.txt` beside them (the mini twin's labelled
held-out split, or part of val held out) is read like the others.
Predictions (`write_prediction`) are written as VOCdevkit's evaluation reads its results
(results/VOC2012/Segmentation/<comp>_<split>_cls/<name>.png): `<out>/<name>.png`, a palette
PNG of class indices 0..20 in the VOC colours.
The pseudo-depth folder is filled by `udalab data pseudo-depth` (datasets/pseudo_depth.py)
from a monocular depth model; the "voc_depth" view adds sample["depth"] (float [1,H,W],
moved with the label by the joint transforms, 0 in padding).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from udalab.datasets.base import SegmentationDataset, read_index_png, read_png_unchanged
from udalab.datasets.errors import DatasetError
from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.transforms import apply

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
NUM_CLASSES = len(CLASS_NAMES)
DEPTH_DIR = "PseudoDepth"
DEPTH_META = "depth.json"


def voc_palette() -> np.ndarray:
    """The VOC colour map (bit-interleaved, as VOCdevkit's labelcolormap); index 255 is void (224,224,192)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


PALETTE = voc_palette()


def voc_dir(root) -> Path:
    """The VOC2012 folder under `root` (root itself if it already is one)."""
    root = Path(root)
    if (root / "JPEGImages").is_dir() or (root / "SegmentationClass").is_dir():
        return root
    return root / "VOCdevkit" / "VOC2012"


class VOC(SegmentationDataset):
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    palette = PALETTE
    EVAL_SUBSETS = {"objects": tuple(range(1, NUM_CLASSES))}
    SPLITS = ("train", "val")
    WITH_DEPTH = False

    def __init__(self, root, split: str = "train", size=None, crop=None, flip: bool = False, strict: bool = True,
                 depth: bool | None = None):
        super().__init__(root, split, size, crop, flip, strict)
        self.with_depth = self.WITH_DEPTH if depth is None else depth
        self.voc = voc_dir(root)
        hint = ("Pass the folder that holds VOCdevkit/VOC2012/ (VOCtrainval_11-May-2012.tar, unpacked) "
                "or the VOC2012 folder itself.")
        if not self.voc.is_dir():
            raise DatasetError(f"VOC root {self.root} holds no VOCdevkit/VOC2012 folder. {hint} "
                               f"Or leave --data-root unset to use the embedded mini data.")
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            if not (self.voc / sub).is_dir():
                raise DatasetError(f"VOC: {self.voc / sub} is missing. {hint}")
        images = self.read_split(self.voc / "ImageSets" / "Segmentation" / f"{split}.txt",
                                 lambda name: self.voc / "JPEGImages" / f"{name}.jpg",
                                 shipped=("train", "val", "trainval"))
        self._pair(images, lambda img: self.voc / "SegmentationClass" / f"{img.stem}.png")
        self._depth_meta: dict | None = None

    @classmethod
    def available_splits(cls, root) -> list[str]:
        sets = voc_dir(root) / "ImageSets" / "Segmentation"
        return [s for s in ("train", "val", "test") if (sets / f"{s}.txt").is_file()] or list(cls.SPLITS)

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        bad = (raw >= NUM_CLASSES) & (raw != IGNORE_INDEX)
        if bad.any():
            raise DatasetError(f"label {path} holds ids {np.unique(raw[bad])[:10].tolist()} outside the VOC encoding "
                               f"(0..20 and 255 = void); it is not a SegmentationClass palette PNG: restore it from "
                               f"the VOC archive")
        return raw

    def prediction_name(self, i: int) -> str:
        return f"{self.files[i][0].stem}.png"

    def prediction_image(self, pred: np.ndarray) -> Image.Image:
        im = Image.fromarray(pred.astype(np.uint8), mode="P")
        im.putpalette(PALETTE.ravel().tolist())
        return im

    # -- instances (iIoU) and pseudo depth -------------------------------------------------
    def instance_path(self, i: int) -> Path:
        return self.voc / "SegmentationObject" / self.files[i][1].name

    def load_instances(self, i: int) -> np.ndarray | None:
        """Instance index map [H,W] (0 background, 255 void) or None if SegmentationObject/ lacks it."""
        path = self.instance_path(i)
        return read_index_png(path) if path.is_file() else None

    @property
    def depth_dir(self) -> Path:
        return self.voc / DEPTH_DIR

    def depth_meta(self) -> dict:
        if self._depth_meta is None:
            meta = self.depth_dir / DEPTH_META
            if not meta.is_file():
                raise DatasetError(f"no pseudo depth at {self.depth_dir} ({DEPTH_META} is missing): fill it with "
                                   f"`udalab data pseudo-depth --root {self.root} --model PATH_OR_HF_ID`")
            try:
                self._depth_meta = json.loads(meta.read_text())
            except ValueError as e:
                raise DatasetError(f"{meta} is not valid JSON ({e}); re-run `udalab data pseudo-depth`") from e
        return self._depth_meta

    def load_depth(self, i: int) -> np.ndarray:
        """Pseudo depth of sample i, float32 [H,W] in the model's units (PNG value / recorded scale)."""
        name = self.files[i][0].stem
        path = self.depth_dir / f"{name}.png"
        scales = self.depth_meta().get("scales", {})
        if not path.is_file() or name not in scales:
            raise DatasetError(f"no pseudo depth for {self.files[i][0]}: expected {path} and its scale in "
                               f"{self.depth_dir / DEPTH_META}; fill them with `udalab data pseudo-depth --root "
                               f"{self.root} --model PATH_OR_HF_ID`")
        raw = read_png_unchanged(path, what="pseudo depth")
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise DatasetError(f"pseudo depth {path} is not a 16-bit single-channel PNG; re-run "
                               f"`udalab data pseudo-depth`")
        return raw.astype(np.float32) / float(scales[name])

    def __getitem__(self, i: int) -> dict:
        if not self.with_depth:
            return super().__getitem__(i)
        image, label = self.load(i)
        depth = torch.from_numpy(self.load_depth(i))[None]
        if tuple(depth.shape[-2:]) != tuple(label.shape):
            raise DatasetError(f"size mismatch: pseudo depth {self.depth_dir / (self.files[i][0].stem + '.png')} is "
                               f"{depth.shape[2]}x{depth.shape[1]} but label {self.files[i][1]} is "
                               f"{label.shape[1]}x{label.shape[0]}; re-run `udalab data pseudo-depth`")
        image, label, depth = apply(self.transform, image, label, depth)
        return {"image": image, "label": label, "depth": depth, "name": self.files[i][0].name}


class VOCDepth(VOC):
    WITH_DEPTH = True
