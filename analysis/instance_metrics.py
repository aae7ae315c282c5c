"""iIoU: instance-level IoU, background excluded (the multi-decoder pseudo-depth paper's metric;
Cityscapes' definition).

For a class c, every ground-truth instance i of c contributes its true positives and false
negatives weighted by w_i = s̄_c / s_i (s_i its size in pixels, s̄_c the mean size of c's
instances), so that a small object counts as much as a large one; false positives are not
weighted (they belong to no instance):

    iIoU_c = Σ_i w_i TP_i / (Σ_i w_i TP_i + FP_c + Σ_i w_i FN_i)

iIoU is the mean over the classes that have instances, background (VOC class 0) excluded:
"IoU computed over objects only, without the background" (multidecoder_pseudo_depth, §4).
Instances come from an instance map (VOC's SegmentationObject: 0 background, 255 void) or,
without one, from the 4-connected components of each class in the label.

    m = InstanceIoU(21)                      # background=(0,), ignore_index=255
    m.update(pred, label, instances)         # numpy / torch [H,W]; instances optional
    m.summary(CLASS_NAMES)                   # {"iiou": .., "iiou.<class>": ..} in percent
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["InstanceIoU", "connected_components"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (ids [H,W] with 0 outside, 1..n inside, n)."""
    H, W = mask.shape
    big = np.iinfo(np.int64).max
    lab = np.where(mask, np.arange(H * W, dtype=np.int64).reshape(H, W), big)
    while True:  # propagate the smallest index through each component
        prev = lab
        m = lab.copy()
        m[1:] = np.minimum(m[1:], lab[:-1])
        m[:-1] = np.minimum(m[:-1], lab[1:])
        m[:, 1:] = np.minimum(m[:, 1:], lab[:, :-1])
        m[:, :-1] = np.minimum(m[:, :-1], lab[:, 1:])
        lab = np.where(mask, m, big)
        # pointer jumping: follow each pixel's current root, which speeds up long components
        flat = lab.ravel()
        inside = flat != big
        flat[inside] = np.minimum(flat[inside], lab.ravel()[flat[inside]])
        lab = flat.reshape(H, W)
        if np.array_equal(lab, prev):
            break
    roots, ids = np.unique(lab[mask], return_inverse=True)
    out = np.zeros((H, W), np.int64)
    out[mask] = ids + 1
    return out, len(roots)


class InstanceIoU:
    def __init__(self, num_classes: int, ignore_index: int = 255, background: Sequence[int] = (0,)):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.background = tuple(int(b) for b in background)
        self.fp = np.zeros(self.num_classes, np.float64)
        self.instances: list[tuple[int, int, int]] = []  # (class, size, true positives)

    def update(self, pred, target, instances=None) -> "InstanceIoU":
        pred, target = _np(pred).astype(np.int64), _np(target).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bad.any():
            raise ValueError(f"target holds values {np.unique(target[bad])[:10].tolist()} outside [0, "
                             f"{self.num_classes}) that are not ignore_index={self.ignore_index}")
        for c in range(self.num_classes):
            if c in self.background:
                continue
            self.fp[c] += np.count_nonzero(valid & (pred == c) & (target != c))
        if instances is not None:
            inst = _np(instances).astype(np.int64)
            if inst.shape != target.shape:
                raise ValueError(f"instance map shape {inst.shape} != target shape {target.shape}")
            for k in np.unique(inst[valid]):
                if k == 0 or k == self.ignore_index:
                    continue
                region = valid & (inst == k)
                classes, counts = np.unique(target[region], return_counts=True)
                c = int(classes[np.argmax(counts)])
                if c in self.background:
                    continue
                region &= target == c
                self.instances.append((c, int(region.sum()), int(np.count_nonzero(pred[region] == c))))
        else:
            for c in np.unique(target[valid]):
                if int(c) in self.background:
                    continue
                comps, n = connected_components(valid & (target == c))
                if n == 0:
                    continue
                sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
                tps = np.bincount(comps[pred == c], minlength=n + 1)[1:]
                self.instances += [(int(c), int(s), int(t)) for s, t in zip(sizes, tps)]
        return self

    def iiou(self, avg_sizes: dict | None = None) -> np.ndarray:
        """Per-class iIoU in [0, 1]; NaN for background and for classes without instances.

        avg_sizes {class: mean instance size}: Cityscapes fixes these from its train set;
        by default they are the evaluated instances' own means."""
        out = np.full(self.num_classes, np.nan)
        if not self.instances:
            return out
        arr = np.array(self.instances, np.float64)
        for c in range(self.num_classes):
            if c in self.background:
                continue
            rows = arr[arr[:, 0] == c]
            if len(rows) == 0:
                continue
            mean = float(avg_sizes[c]) if avg_sizes and c in avg_sizes else rows[:, 1].mean()
            w = mean / rows[:, 1]
            itp = float((w * rows[:, 2]).sum())
            ifn = float((w * (rows[:, 1] - rows[:, 2])).sum())
            denom = itp + ifn + self.fp[c]
            out[c] = itp / denom if denom > 0 else np.nan
        return out

    def mean(self, avg_sizes: dict | None = None) -> float:
        v = self.iiou(avg_sizes)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """{"iiou": .., "iiou.<class>": ..} in percent (background left out)."""
        names = class_names or [f"class_{i}" for i in range(self.num_classes)]
        v = self.iiou()
        out = {"iiou": 100.0 * self.mean()}
        for c, name in enumerate(names):
            if c not in self.background:
                out[f"iiou.{name}"] = 100.0 * float(v[c])
        return out
