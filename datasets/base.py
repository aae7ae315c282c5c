"""What every segmentation dataset shares: pairing checks, decoding with clear errors,
label-encoding checks, the joint transform and the sample contract."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

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
    """Subclasses set `files` [(image, label)], `num_classes`, `class_names` and `encode(label_raw, path)`."""

    ignore_index = IGNORE_INDEX
    num_classes: int
    class_names: tuple[str, ...]

    def __init__(self, root, split: str, size=None, crop=None, flip: bool = False):
        self.root = Path(root)
        self.split = split
        self.transform = build_transform(size, crop, flip)
        self.files: list[tuple[Path, Path]] = []

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
                raise DatasetError(f"image {img} has no label: expected {lbl}. Restore the label file "
                                   f"or remove the image")
            self.files.append((img, lbl))

    def encode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image [3,H,W] and int64 train-id label [H,W] at the files' own size."""
        img_path, lbl_path = self.files[i]
        image = read_rgb(img_path)
        label = torch.from_numpy(self.encode(read_index_png(lbl_path), lbl_path).astype(np.int64))
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
