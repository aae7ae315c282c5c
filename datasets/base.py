"""What every segmentation dataset shares: the split-file reader, pairing checks, decoding with
clear errors, label-encoding checks, the joint transform and the sample contract.

Split files (GTA5, SYNTHIA, MFNet, VOC) list a split's image names, one a line; one rule holds
for all four (`SegmentationDataset.read_split`):

* a split file the split needs that is missing, or one that lists no names, raises
  DatasetError naming the file and the fix (strict or not: there is nothing to load);
* an image it names that does not exist is treated like an image without label: with
  strict=True (the default) DatasetError naming the first such file, the split file, the fix
  and how many more there are; with strict=False the pair goes to `missing`
  (`udalab data check` reports each one).
"""
from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_png, read_file

from udalab.datasets.errors import DatasetError

# torchvision 0.29 announces that its image decoders will move to TorchCodec; they work today.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
from udalab.datasets.labels import IGNORE_INDEX, colorize
from udalab.datasets.transforms import apply, build_transform

PREDICTIONS_INFO = "predictions.json"  # in a predictions folder: the dataset, split and value encoding


def read_rgb(path: Path) -> torch.Tensor:
    """uint8 [3,H,W] through torchvision.io; a clear error for an unreadable file."""
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"cannot decode image {path} ({e}); the file is corrupt or not an image: "
                           f"re-extract it from the dataset archive") from e


def read_png_unchanged(path: Path, what: str = "label") -> np.ndarray:
    """A PNG's stored values, bit depth kept: uint8 or uint16, [H,W] or [H,W,C].

    PIL opens a 16-bit RGB PNG (SYNTHIA's labels) as 8-bit RGB and keeps only the high
    byte, which turns every class id below 256 into 0; torchvision's decoder does not.
    """
    try:
        t = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED)
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"cannot decode {what} {path} ({e}); the file is corrupt or not a PNG: re-extract it "
                           f"from the dataset archive") from e
    arr = t.permute(1, 2, 0).numpy()
    if arr.dtype != np.uint8:
        arr = arr.astype(np.uint16)
    return arr[..., 0] if arr.shape[2] == 1 else arr


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Write a uint16 array [H,W] (grey), [H,W,3] (RGB) or [H,W,4] (RGBA) as a 16-bit PNG.

    PIL cannot write 16-bit multi-channel PNGs, so the chunks are written here (zlib, filter 0).
    """
    arr = np.asarray(arr)
    if arr.dtype != np.uint16:
        raise ValueError(f"write_png16 wants uint16, got {arr.dtype}")
    H, W = arr.shape[:2]
    C = 1 if arr.ndim == 2 else arr.shape[2]
    color_type = {1: 0, 3: 2, 4: 6}[C]
    raw = np.ascontiguousarray(arr.astype(">u2").reshape(H, W * C)).view(np.uint8)
    rows = np.concatenate([np.zeros((H, 1), np.uint8), raw], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, color_type, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def header_size(path: Path, what: str) -> tuple[int, int]:
    """(W, H) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"cannot read {what} {path} ({e}); the file is corrupt or not an image: re-extract it "
                           f"from the dataset archive") from e


def read_index_png(path: Path) -> np.ndarray:
    """Raw index values of a label PNG (mode L, P or I;16: palette indices, not colours)."""
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot decode label {path} ({e}); the file is corrupt: re-extract it "
                           f"from the dataset archive") from e
    if arr.ndim == 3:  # SYNTHIA-style multi-channel labels keep the class in channel 0
        arr = arr[..., 0]
    return arr


class SegmentationDataset(Dataset):
    """Subclasses set `files` [(image, label)], `num_classes`, `class_names` and `encode(label_raw, path)`.

    `eval_classes`: the train ids a benchmark scores (None: all); `EVAL_SUBSETS` names other
    subsets, selectable as "<dataset>@<subset>" in build_dataset. With strict=False a missing
    image (named by the split file) or label does not raise: the (image, label) pair goes to
    `missing`, and `missing_problem(image, label)` says what is wrong and the fix (used by
    `udalab data check`). `split_file`: the file the split was read from (None: no split file).
    A split of UNLABELLED_SPLITS pairs each image with None: its label is IGNORE_INDEX everywhere.
    """

    ignore_index = IGNORE_INDEX
    num_classes: int
    class_names: tuple[str, ...]
    eval_classes: tuple[int, ...] | None = None
    palette: np.ndarray | None = None          # [num_classes, 3] uint8: the benchmark's colours (labels.colorize)
    EVAL_SUBSETS: dict[str, tuple[int, ...]] = {}
    SPLITS: tuple[str, ...] = ("train", "val")
    UNLABELLED_SPLITS: tuple[str, ...] = ()   # splits of images without labels (Cityscapes' train_extra)
    PREDICTION_VALUES = "class index"          # how a prediction PNG encodes the classes (Cityscapes: "labelid")

    def __init__(self, root, split: str, size=None, crop=None, flip: bool = False, strict: bool = True):
        self.root = Path(root)
        self.split = split
        self.strict = strict
        self.transform = build_transform(size, crop, flip)
        self.files: list[tuple[Path, Path]] = []
        self.missing: list[tuple[Path, Path]] = []
        self.split_file: Path | None = None
        self.labelled = split not in self.UNLABELLED_SPLITS

    @classmethod
    def available_splits(cls, root) -> list[str]:
        """The splits a folder in this layout holds (for `udalab data check/stats`)."""
        return list(cls.SPLITS)

    def with_split(self, split: str) -> "SegmentationDataset":
        """The same dataset (root, transform, evaluated classes) at another split; a DatasetError
        naming what is missing when this root does not hold it."""
        other = type(self)(self.root, split, strict=self.strict)
        other.transform, other.eval_classes = self.transform, self.eval_classes
        return other

    def _check_root(self, *required: str, hint: str) -> None:
        if not self.root.is_dir():
            raise DatasetError(f"{type(self).__name__} root {self.root} does not exist. {hint} "
                               f"Or leave --data-root unset to use the embedded mini data.")
        for sub in required:
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{type(self).__name__}: {self.root / sub} is missing. {hint}")

    def read_split(self, split_file: Path, image_of: Callable[[str], Path], shipped: Sequence[str] = (),
                   all_images: Callable[[], list[Path]] | None = None) -> list[Path]:
        """The images of this split as `split_file` names them (whitespace-separated names).

        image_of(name) -> the image path of a listed name. shipped: the split files the
        dataset's release has (MFNet, VOC), so the fix for a missing one is to restore it.
        all_images: for layouts without split files (GTA5, SYNTHIA), the images of the
        'train' / 'all' split when its file is absent; other splits then need the file.
        A missing or empty file raises DatasetError; images that do not exist are returned
        (`_pair` raises for them, or puts them in `missing` with strict=False).
        """
        name = type(self).__name__
        if not split_file.is_file():
            if all_images is not None and self.split in ("train", "all"):
                return all_images()
            if shipped:
                fix = (f"{name} ships {', '.join(f'{s}.txt' for s in shipped)} (one image name per line): "
                       f"restore it or pick one of those splits")
            else:
                fix = f"use 'train' (all images) or put {split_file} listing the image names, one per line"
            raise DatasetError(f"{name} has no split '{self.split}': split file {split_file} is missing; {fix}")
        names = split_file.read_text().split()
        if not names:
            raise DatasetError(f"{name} split file {split_file} lists no images; write the image names of split "
                               f"'{self.split}' into it, one per line, or pick another split")
        self.split_file = split_file
        return [image_of(n) for n in names]

    def missing_problem(self, image: Path, label: Path) -> str:
        """What is wrong with a pair of `missing` (image or label file absent), naming the file and the fix."""
        if not image.is_file():  # only a split file names images that are not there
            return (f"{self.split_file} lists image {image}, which does not exist; restore the image or remove its "
                    f"name from the split file")
        return f"image {image} has no label: expected {label}. Restore the label file or remove the image"

    def _pair(self, images: list[Path], label_of) -> None:
        """Pair each image with label_of(image) (an unlabelled split: None); a pair with a missing file
        raises (strict) or goes to `missing`."""
        if not images:
            raise DatasetError(f"{type(self).__name__}: no images for split '{self.split}' under {self.root}; "
                               f"check the split name and that the folder holds the dataset's own layout")
        for img in images:
            lbl = label_of(img) if self.labelled else None
            if img.is_file() and (lbl is None or lbl.is_file()):
                self.files.append((img, lbl))
            else:
                self.missing.append((img, lbl))
        if self.missing and self.strict:
            more = len(self.missing) - 1
            raise DatasetError(self.missing_problem(*self.missing[0])
                               + (f" ({more} more missing file{'s' * (more > 1)} in split '{self.split}'; "
                                  f"`udalab data check` lists every one)" if more else ""))

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def read_image(self, path: Path) -> torch.Tensor:
        """uint8 [C,H,W] (C = 3 except for multi-channel views)."""
        return read_rgb(path)

    def read_label(self, path: Path) -> np.ndarray:
        """The stored label values [H,W] (before `encode`)."""
        return read_index_png(path)

    def load_label(self, i: int) -> np.ndarray:
        """Train-id label of sample i at the file's own size (uint8 [H,W]; 255 = ignore)."""
        path = self.files[i][1]
        if path is None:                              # an unlabelled split
            return np.full(self.image_size(i)[::-1], IGNORE_INDEX, np.uint8)
        return self.encode(self.read_label(path), path).astype(np.uint8)

    def image_size(self, i: int) -> tuple[int, int]:
        """(W, H) of sample i's image, from its header."""
        return header_size(self.files[i][0], "image")

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image [C,H,W] and int64 train-id label [H,W] at the files' own size."""
        img_path, lbl_path = self.files[i]
        image = self.read_image(img_path)
        if lbl_path is None:                          # an unlabelled split
            return image, torch.full(image.shape[-2:], IGNORE_INDEX, dtype=torch.int64)
        label = torch.from_numpy(self.encode(self.read_label(lbl_path), lbl_path).astype(np.int64))
        if tuple(image.shape[-2:]) != tuple(label.shape):
            raise DatasetError(f"size mismatch: image {img_path} is {image.shape[2]}x{image.shape[1]} but label "
                               f"{lbl_path} is {label.shape[1]}x{label.shape[0]}; replace the broken pair")
        return image, label

    def __getitem__(self, i: int) -> dict:
        image, label = self.load(i)
        image, label = apply(self.transform, image, label)
        return {"image": image, "label": label, "name": self.files[i][0].name}

    # -- predictions in the benchmark's own format (`udalab predict` writes them, `udalab eval` reads them)
    def prediction_name(self, i: int) -> str:
        """Where sample i's prediction goes under an output folder, named as the benchmark's tools expect."""
        raise DatasetError(f"{type(self).__name__} has no prediction format: predictions are written for the "
                           f"target datasets (Cityscapes, MFNet, VOC)")

    def prediction_image(self, pred: np.ndarray) -> Image.Image:
        """A checked train-id map as the benchmark stores it: here class indices, one 8-bit channel."""
        return Image.fromarray(pred.astype(np.uint8), mode="L")

    def write_prediction(self, i: int, pred, out_dir, colour_dir=None) -> Path:
        """Write sample i's train-id prediction (numpy or torch [H,W] at the label's own size) as
        `out_dir / prediction_name(i)`, in the dataset's own label encoding; with colour_dir, a
        colour picture in the dataset's palette under the same name there. colour_dir may not lie
        inside out_dir: the benchmarks' tools take every PNG there for a prediction."""
        pred = pred.detach().cpu().numpy() if hasattr(pred, "detach") else np.asarray(pred)
        image, label = self.files[i]
        W, H = self.image_size(i) if label is None else header_size(label, "label")
        if pred.shape != (H, W):
            raise ValueError(f"the prediction for {image} has shape {pred.shape}, its label {label} has shape "
                             f"({H}, {W}); upsample the logits to the label's size before the argmax")
        if pred.dtype.kind not in "iu":
            raise ValueError(f"the prediction for {image} holds {pred.dtype} values; pass the argmax (train ids)")
        bad = (pred < 0) | (pred >= self.num_classes)
        if bad.any():
            raise ValueError(f"the prediction for {image} holds {np.unique(pred[bad])[:10].tolist()}, which are no "
                             f"train ids of {type(self).__name__} (0..{self.num_classes - 1}); pass the argmax "
                             f"over its {self.num_classes} classes")
        path = Path(out_dir) / self.prediction_name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.prediction_image(pred).save(path)
        if colour_dir is not None:
            if Path(out_dir).resolve() in (Path(colour_dir).resolve(), *Path(colour_dir).resolve().parents):
                raise ValueError(f"colour folder {colour_dir} lies inside the prediction folder {out_dir}; the "
                                 f"benchmark's tools would take its pictures for predictions: put it beside it")
            picture = Path(colour_dir) / self.prediction_name(i)
            picture.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(colorize(pred, self.palette)).save(picture)
        return path

    def read_prediction(self, path: Path) -> np.ndarray:
        """A prediction PNG in the dataset's label encoding as train ids (uint8 [H,W], 255: no class)."""
        try:
            return self.encode(read_prediction_png(path), path).astype(np.uint8)
        except DatasetError as e:
            raise DatasetError(f"prediction {path} is not in {type(self).__name__}'s label encoding: {e}. Write "
                               f"predictions with `udalab predict`, or in the encoding of the dataset's labels") from e


def read_prediction_png(path: Path, what: str = "prediction") -> np.ndarray:
    """The class indices of a prediction PNG (mode L, P or I;16); a colour picture is refused."""
    try:
        with Image.open(path) as im:
            mode, arr = im.mode, np.array(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read {what} {path} ({e}); write it again as a PNG") from e
    if arr.ndim != 2:
        raise DatasetError(f"{what} {path} is a {mode} image of shape {arr.shape}; expected a single-channel PNG of "
                           f"class indices (PIL mode 'L', 'P' or 'I;16'): a colour picture holds no class indices")
    return arr


def write_predictions_info(dataset: SegmentationDataset, out_dir, name: str, **extra) -> Path:
    """Write PREDICTIONS_INFO into a predictions folder: {"dataset": name, "split", "root", "values",
    "images", **extra (the run, the method, ...)}. `values` (the dataset's PREDICTION_VALUES) tells
    `udalab eval` how the PNGs encode the classes, so that it need not guess."""
    info = {"dataset": name, "split": dataset.split, "root": str(dataset.root), "values": dataset.PREDICTION_VALUES,
            "images": len(dataset), **extra}
    path = Path(out_dir) / PREDICTIONS_INFO
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=1) + "\n")
    return path


def read_predictions_info(pred_dir) -> dict | None:
    """The PREDICTIONS_INFO of a predictions folder, or None where there is none (predictions from elsewhere)."""
    path = Path(pred_dir) / PREDICTIONS_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); delete it, or write the predictions again") from e


def map_ids(raw: np.ndarray, lut: np.ndarray, valid_max: int, path: Path, encoding: str) -> np.ndarray:
    """Map stored ids through `lut`; ids above `valid_max` are an error naming the file."""
    if raw.max(initial=0) > valid_max:
        bad = np.unique(raw[raw > valid_max])[:10].tolist()
        raise DatasetError(f"label {path} holds ids {bad} outside the {encoding} encoding (0..{valid_max}); "
                           f"the file is not a {encoding} label map: regenerate or remove it")
    return lut[raw]
