"""What every segmentation dataset shares: pairing checks, decoding with clear errors,
label-encoding checks, the joint transform and the sample contract."""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_png, read_file

from udalab.datasets.errors import DatasetError

# torchvision 0.29 announces that its image decoders will move to TorchCodec; they work today.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.transforms import apply, build_transform


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
    label does not raise: the pair goes to `missing` (used by `udalab data check`).
    """

    ignore_index = IGNORE_INDEX
    num_classes: int
    class_names: tuple[str, ...]
    eval_classes: tuple[int, ...] | None = None
    EVAL_SUBSETS: dict[str, tuple[int, ...]] = {}
    SPLITS: tuple[str, ...] = ("train", "val")

    def __init__(self, root, split: str, size=None, crop=None, flip: bool = False, strict: bool = True):
        self.root = Path(root)
        self.split = split
        self.strict = strict
        self.transform = build_transform(size, crop, flip)
        self.files: list[tuple[Path, Path]] = []
        self.missing: list[tuple[Path, Path]] = []

    @classmethod
    def available_splits(cls, root) -> list[str]:
        """The splits a folder in this layout holds (for `udalab data check/stats`)."""
        return list(cls.SPLITS)

    def _check_root(self, *required: str, hint: str) -> None:
        if not self.root.is_dir():
            raise DatasetError(f"{type(self).__name__} root {self.root} does not exist. {hint} "
                               f"Or leave --data-root unset to use the embedded mini data.")
        for sub in required:
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{type(self).__name__}: {self.root / sub} is missing. {hint}")

    def _pair(self, images: list[Path], label_of) -> None:
        if not images:
            raise DatasetError(f"{type(self).__name__}: no images for split '{self.split}' under {self.root}; "
                               f"check the split name and that the folder holds the dataset's own layout")
        for img in images:
            lbl = label_of(img)
            if not lbl.is_file():
                if not self.strict:
                    self.missing.append((img, lbl))
                    continue
                raise DatasetError(f"image {img} has no label: expected {lbl}. Restore the label file "
                                   f"or remove the image")
            self.files.append((img, lbl))

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
        return self.encode(self.read_label(path), path).astype(np.uint8)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image [C,H,W] and int64 train-id label [H,W] at the files' own size."""
        img_path, lbl_path = self.files[i]
        image = self.read_image(img_path)
        label = torch.from_numpy(self.encode(self.read_label(lbl_path), lbl_path).astype(np.int64))
        if tuple(image.shape[-2:]) != tuple(label.shape):
            raise DatasetError(f"size mismatch: image {img_path} is {image.shape[2]}x{image.shape[1]} but label "
                               f"{lbl_path} is {label.shape[1]}x{label.shape[0]}; replace the broken pair")
        return image, label

    def __getitem__(self, i: int) -> dict:
        image, label = self.load(i)
        image, label = apply(self.transform, image, label)
        return {"image": image, "label": label, "name": self.files[i][0].name}


def map_ids(raw: np.ndarray, lut: np.ndarray, valid_max: int, path: Path, encoding: str) -> np.ndarray:
    """Map stored ids through `lut`; ids above `valid_max` are an error naming the file."""
    if raw.max(initial=0) > valid_max:
        bad = np.unique(raw[raw > valid_max])[:10].tolist()
        raise DatasetError(f"label {path} holds ids {bad} outside the {encoding} encoding (0..{valid_max}); "
                           f"the file is not a {encoding} label map: regenerate or remove it")
    return lut[raw]
