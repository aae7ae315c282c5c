"""Rare-class sampling (DAFormer, Hoyer et al. CVPR 2022) and the class statistics it needs.

    stats = class_stats(dataset)                 # per-image per-class pixel counts, cached
    sampler = RareClassSampler(stats, temperature=0.01, min_pixels=3000)
    index, cls = sampler.sample(rng)             # a class by P(c), then an image holding it

P(c) ∝ exp((1 - f_c) / T), f_c the fraction of the split's labelled pixels that belong to
class c; an image is a candidate for c if it holds more than `min_pixels` pixels of c
(DAFormer defaults: T = 0.01, min_pixels = 3000; the strict `>` of lhoyer/DAFormer
mmseg/datasets/uda_dataset.py). Classes with no candidate image get probability 0.

Statistics are counted on the train-id labels at the files' native resolution (no
transform) and cached in <root>/.udalab/ (or ~/.cache/udalab/stats/ when the root is not
writable); the cache key covers the dataset class, split, label encoding and every label
file's path, size and modification time, so a changed dataset is counted again.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from udalab.datasets.errors import DatasetError

STATS_VERSION = 1


@dataclass
class ClassStats:
    counts: np.ndarray  # int64 [num_images, num_classes]: pixels of each class per image
    num_classes: int
    class_names: tuple

    def frequencies(self) -> np.ndarray:
        """Pixel fraction of each class over the whole split (labelled pixels; 255 not counted)."""
        total = self.counts.sum(0).astype(np.float64)
        s = total.sum()
        return total / s if s > 0 else np.zeros(self.num_classes)

    def images_with(self, cls: int, min_pixels: int = 0) -> np.ndarray:
        """Indices of the images holding more than min_pixels pixels of class cls (DAFormer's `>`)."""
        return np.nonzero(self.counts[:, cls] > min_pixels)[0]


def _cache_key(dataset) -> str:
    h = hashlib.sha256()
    meta = {"v": STATS_VERSION, "class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
            "split": dataset.split, "num_classes": dataset.num_classes,
            "label_dir": str(getattr(dataset, "label_dir", ""))}
    h.update(json.dumps(meta, sort_keys=True).encode())
    root = Path(dataset.root)
    for _, lbl in dataset.files:
        st = lbl.stat()
        rel = os.path.relpath(lbl, root)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _cache_dirs(dataset, cache_dir) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    return [Path(dataset.root) / ".udalab", Path.home() / ".cache" / "udalab" / "stats"]


def count_classes(dataset, progress=None) -> np.ndarray:
    """int64 [num_images, num_classes] pixel counts from dataset.load_label (native resolution)."""
    C = dataset.num_classes
    counts = np.zeros((len(dataset), C), np.int64)
    items = range(len(dataset))
    for i in (progress(items) if progress else items):
        label = dataset.load_label(i).ravel()
        counts[i] = np.bincount(label[label < C], minlength=C)[:C]
    return counts


def class_stats(dataset, cache_dir=None, progress=None) -> ClassStats:
    """Per-image per-class pixel counts of `dataset`'s split, from the cache when it is current."""
    if len(dataset) == 0:
        raise DatasetError(f"{type(dataset).__name__} split '{dataset.split}' under {dataset.root} has no images: "
                           f"no class statistics to count")
    key = _cache_key(dataset)
    fname = f"class_stats-{type(dataset).__name__}-{dataset.split}-{key}.npz"
    dirs = _cache_dirs(dataset, cache_dir)
    for d in dirs:
        path = d / fname
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    counts = z["counts"]
                if counts.shape == (len(dataset), dataset.num_classes):
                    return ClassStats(counts.astype(np.int64), dataset.num_classes, tuple(dataset.class_names))
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: count again and overwrite
    counts = count_classes(dataset, progress)
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{fname}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp.npz"
            np.savez(tmp, counts=counts)
            os.replace(tmp, d / fname)  # atomic: concurrent workers never read half a file
            for old in d.glob(f"class_stats-{type(dataset).__name__}-{dataset.split}-*.npz"):
                if old.name != fname:
                    old.unlink(missing_ok=True)  # stale statistics of an earlier version of the files
            break
        except OSError:
            continue  # read-only dataset root: try the user cache
    return ClassStats(counts, dataset.num_classes, tuple(dataset.class_names))


class RareClassSampler:
    """DAFormer's rare-class sampling over one dataset's ClassStats."""

    def __init__(self, stats: ClassStats, temperature: float = 0.01, min_pixels: int = 3000):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.stats, self.temperature, self.min_pixels = stats, float(temperature), int(min_pixels)
        self.candidates = [stats.images_with(c, self.min_pixels) for c in range(stats.num_classes)]
        has = np.array([len(c) > 0 for c in self.candidates])
        if not has.any():
            raise ValueError(f"no image holds more than {self.min_pixels} pixels of any class; lower min_pixels "
                             f"(DAFormer's 3000 is for full-resolution images)")
        self.frequencies = stats.frequencies()
        logits = (1.0 - self.frequencies) / self.temperature
        logits = np.where(has, logits, -np.inf)
        p = np.exp(logits - logits[has].max())
        self.probabilities: np.ndarray = p / p.sum()

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """(dataset index, class id): a class drawn by `probabilities`, then one of its candidate images."""
        cls = int(rng.choice(len(self.probabilities), p=self.probabilities))
        cand = self.candidates[cls]
        return int(cand[rng.integers(len(cand))]), cls
