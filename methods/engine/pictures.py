"""Pictures of what a model predicts, kept with the trial's results for the report.

At the final evaluation `fit` records the predictions the shared evaluator makes for a fixed set
of validation images (`chosen`: the same images in every trial of a study, picked once per
dataset from its sorted file list) and stores them, colour-coded in the dataset's own palette, as
small PNGs in the trial's last checkpoint (`pictures/`), beside history.json:

    pictures/<k>_image.png     the input (de-normalised; thermal drawn grey)
    pictures/<k>_label.png     its ground truth
    pictures/<k>_pred.png      the model's prediction
    pictures/<k>_<name>.png    a method's own pictures (Step.pictures: pseudo labels, depth, ...)
    pictures/index.json        {"images": [names], "dataset": ..., "pictures": {name: caption}}

`analysis.store.load_pictures` reads them back (after a resume too: they travel with the
checkpoint) and the report lays them out in a grid.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from udalab.core import layout
from udalab.datasets.labels import IGNORE_INDEX, colorize
from udalab.datasets.transforms import denormalize

NUM_PICTURES = 4      # images per study: a row each in the report's grid
MAX_WIDTH = 192       # px: pictures are shrunk to this width (the report's size budget, docs/architecture.md)
DIR = layout.PICTURES_DIR


def chosen(dataset, k: int = NUM_PICTURES) -> list[int]:
    """Indices of `k` images spread evenly over the dataset's files sorted by name: the same
    images whatever the trial, seed or method ([] for a dataset without `files`: no pictures)."""
    names = [str(f[0]) for f in getattr(dataset, "files", ())]
    order = sorted(range(len(names)), key=names.__getitem__)
    if not order:
        return []
    picks = np.linspace(0, len(order) - 1, min(k, len(order))).round().astype(int)
    return [order[i] for i in dict.fromkeys(picks.tolist())]


class Recording:
    """The predictions [H, W] the shared evaluator makes for `indices` of `dataset` (that very object:
    the day/night subsets MML scores apart are not recorded). fit hands one to Step.evaluate for the
    final evaluation; the Step passes it on to `evaluate(..., record=...)`."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, set(indices)
        self.predictions: dict[int, np.ndarray] = {}

    def add(self, dataset, first: int, pred: torch.Tensor) -> None:
        """A batch of predictions [N, H, W] of `dataset` starting at sample `first`."""
        if dataset is not self.dataset:
            return
        for j in range(pred.shape[0]):
            if first + j in self.indices:
                self.predictions[first + j] = pred[j].to(torch.uint8).cpu().numpy()


@torch.no_grad()
def outputs(fn, dataset, indices: Sequence[int], device, input_size: tuple[int, int] | None = None
            ) -> dict[int, torch.Tensor]:
    """{index: fn(image)[0] upsampled (bilinear) to the sample's label size}, the image resized to
    input_size (W, H) first, as the evaluator does: for a method's own pictures (Step.pictures)."""
    out = {}
    for i in indices:
        sample = dataset[i]
        x = sample["image"][None].to(device)
        if input_size is not None:
            x = F.interpolate(x, size=(input_size[1], input_size[0]), mode="bilinear", align_corners=False)
        y = fn(x).float()
        out[i] = F.interpolate(y, size=sample["label"].shape[-2:], mode="bilinear", align_corners=False)[0].cpu()
    return out


def confident_labels(logits: torch.Tensor, tau: float) -> np.ndarray:
    """Argmax labels [H, W] of logits [C, H, W], IGNORE_INDEX where the softmax confidence is below τ."""
    conf, label = F.softmax(logits, dim=0).max(0)
    return torch.where(conf >= tau, label, torch.full_like(label, IGNORE_INDEX)).to(torch.uint8).numpy()


def grey(values: torch.Tensor, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A map [H, W] (or [1, H, W]) as a grey RGB picture, lo black and hi white (default: stretched
    to its own range; depth: far is light)."""
    v = values.reshape(values.shape[-2:]).float()
    lo = v.min() if lo is None else torch.tensor(lo)
    hi = v.max() if hi is None else torch.tensor(hi)
    v = ((v - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return (v * 255).round().to(torch.uint8)[..., None].expand(-1, -1, 3).numpy()


def shrink(picture: np.ndarray, nearest: bool) -> np.ndarray:
    """[H, W, 3] uint8 scaled to at most MAX_WIDTH wide (labels: nearest neighbour)."""
    h, w = picture.shape[:2]
    if w <= MAX_WIDTH:
        return picture
    t = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
    size = (max(1, round(h * MAX_WIDTH / w)), MAX_WIDTH)
    t = F.interpolate(t, size=size, mode="nearest") if nearest else F.interpolate(t, size=size, mode="area")
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def png(picture: np.ndarray) -> bytes:
    """[H, W, 3] (or [H, W]) uint8 as PNG bytes (torchvision's encoder)."""
    from torchvision.io import encode_png

    t = torch.from_numpy(np.ascontiguousarray(picture))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return encode_png(t.contiguous()).numpy().tobytes()


def image_picture(image: torch.Tensor) -> np.ndarray:
    """A dataset sample's normalised image [C, H, W] as RGB uint8 (1 channel: grey; 4 (RGB-T): its RGB)."""
    img = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    if image.shape[0] >= 3:
        img = denormalize(img[None])[0]
    else:   # a thermal channel: stretch to its own range
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def palette_of(dataset) -> np.ndarray:
    """The dataset's benchmark colours [num_classes, 3]; evenly spread hues for one without."""
    palette = getattr(dataset, "palette", None)
    if palette is not None:
        return np.asarray(palette, np.uint8)
    import colorsys

    n = dataset.num_classes
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(i / n, 0.7, 0.9)] for i in range(n)], np.uint8)


def label_picture(label: np.ndarray, dataset) -> np.ndarray:
    return colorize(label, palette_of(dataset))


def picture_files(dataset, predictions: dict[int, np.ndarray], extra: dict[str, dict[int, np.ndarray]] | None = None,
                  captions: dict[str, str] | None = None) -> dict[str, bytes]:
    """{"pictures/<file>": PNG bytes} of the recorded predictions (and a method's `extra` pictures
    {name: {index: RGB or label map}}), with their index.json."""
    files: dict[str, bytes] = {}
    names = []
    for k, i in enumerate(sorted(predictions)):
        sample = dataset[i]
        names.append(sample["name"])
        label = sample["label"].numpy()
        pred = predictions[i]
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} of {sample['name']} differ in size")
        files[f"{DIR}/{k}_image.png"] = png(shrink(image_picture(sample["image"]), nearest=False))
        files[f"{DIR}/{k}_label.png"] = png(shrink(label_picture(label, dataset), nearest=True))
        files[f"{DIR}/{k}_pred.png"] = png(shrink(label_picture(pred, dataset), nearest=True))
        for name, pics in (extra or {}).items():
            if i in pics:
                p = pics[i]
                files[f"{DIR}/{k}_{name}.png"] = png(shrink(p if p.ndim == 3 else label_picture(p, dataset),
                                                            nearest=p.ndim == 2))
    palette = palette_of(dataset)
    index = {"dataset": type(dataset).__name__, "images": names,
             "pictures": {"pred": "prediction", **(captions or {})},
             "legend": [[name, palette[c].tolist()] for c, name in enumerate(dataset.class_names)]}
    files[f"{DIR}/{layout.PICTURES_INDEX}"] = json.dumps(index).encode()
    return files


def at_iteration(files: dict[str, bytes], iteration: int) -> dict[str, bytes]:
    """`picture_files` moved under pictures/iteration-<n>/: one evaluation's pictures beside the others."""
    return {f"{DIR}/{layout.pictures_of_iteration(iteration)}/{name.split('/', 1)[1]}": data for name, data in files.items()}


def paired_sources(dataset, indices: Sequence[int], source) -> dict[int, int]:
    """{chosen index of `dataset`: an index of `source`}: the k-th chosen image of the dataset is
    paired with the k-th chosen image of the source, so every trial of a study shows the same pairs."""
    return dict(zip(indices, chosen(source, len(indices))))
