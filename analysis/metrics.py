"""Confusion matrix, IoU, mIoU and pixel accuracy, scored the way cityscapesScripts does.

    cm = ConfusionMatrix(19)            # ignore_index=255
    cm.update(pred, target)             # torch tensors (any device) or numpy arrays, same shape
    cm.iou()                            # np.ndarray [C], NaN where TP + FP + FN == 0
    cm.miou()                           # nanmean of iou(): classes present in GT or prediction
    cm.summary(CLASS_NAMES)             # {"miou": .., "pixel_acc": .., "iou.road": .., ...} in percent

Rows of `matrix` are ground-truth classes, columns predictions. The matrix has C + 1 columns:
the last one counts predictions outside [0, C) (e.g. a label id that maps to no train id,
or 255 in a saved prediction). Such a pixel is a false negative of its ground-truth class
and a false positive of no class, as in cityscapesScripts where a prediction of a
non-evaluated label is simply wrong. Pixels whose target is `ignore_index` are skipped.

Accumulation is a single bincount on the inputs' device (no host sync per update for torch
tensors); `merge()` / `+` add matrices of several workers, `all_reduce()` sums them over a
torch.distributed process group.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["ConfusionMatrix"]


def _check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    out = [int(c) for c in classes]
    if not out or any(c < 0 or c >= num_classes for c in out) or len(set(out)) != len(out):
        raise ValueError(f"eval_classes {list(classes)} must be distinct class indices in [0, {num_classes})")
    return out


def _as_tensor(x, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        if x.dtype.kind == "u" and x.dtype.itemsize > 1:  # uint16/32 (16-bit PNGs): torch has few ops for them
            x = x.astype(np.int64)
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        t = torch.as_tensor(np.asarray(x))
    if device is not None and t.device != device:
        t = t.to(device)
    return t


class ConfusionMatrix:
    """Accumulates a (C, C + 1) int64 confusion matrix: rows ground truth, columns prediction.

    Column C collects predictions outside [0, C) (counted as wrong: FN of the true class).
    Targets must be in [0, C) or `ignore_index`; anything else raises ValueError.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._mat: torch.Tensor | None = None  # created on the device of the first update

    # -- accumulation ---------------------------------------------------------------------
    def _zeros(self, device) -> torch.Tensor:
        return torch.zeros((self.num_classes, self.num_classes + 1), dtype=torch.int64, device=device)

    @property
    def matrix(self) -> torch.Tensor:
        """The (C, C + 1) int64 counts (a torch tensor; `np.asarray(cm.matrix.cpu())` for numpy).

        `matrix[:, :C]` is the classic square confusion matrix; `matrix[:, C]` the predictions
        outside [0, C).
        """
        if self._mat is None:
            self._mat = self._zeros("cpu")
        return self._mat

    def reset(self) -> None:
        self._mat = None

    def update(self, pred, target) -> "ConfusionMatrix":
        """Add one batch. `pred` and `target` hold class indices and have the same shape."""
        target_t = _as_tensor(target)
        pred_t = _as_tensor(pred, target_t.device)
        if tuple(pred_t.shape) != tuple(target_t.shape):
            raise ValueError(f"prediction shape {tuple(pred_t.shape)} != target shape {tuple(target_t.shape)}; "
                             "argmax the logits and resize them to the label's size first")
        if pred_t.is_floating_point() or target_t.is_floating_point():
            raise ValueError("pred and target must hold integer class indices (argmax the logits first)")
        C = self.num_classes
        target_t = target_t.reshape(-1).long()
        pred_t = pred_t.reshape(-1).long()
        keep = target_t != self.ignore_index
        target_t, pred_t = target_t[keep], pred_t[keep]
        bad = (target_t < 0) | (target_t >= C)
        if bool(bad.any()):
            values = torch.unique(target_t[bad]).tolist()[:10]
            raise ValueError(f"target holds values {values} outside [0, {C}) that are not ignore_index="
                             f"{self.ignore_index}; map label ids to train ids (e.g. ID_TO_TRAIN_ID) first")
        pred_t = torch.where((pred_t < 0) | (pred_t >= C), torch.full_like(pred_t, C), pred_t)
        counts = torch.bincount(target_t * (C + 1) + pred_t, minlength=C * (C + 1)).reshape(C, C + 1)
        if self._mat is None:
            self._mat = counts.to(torch.int64)
        else:
            self._mat += counts.to(self._mat.device)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add `other`'s counts to this one (in place); returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, not {type(other).__name__}")
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) "
                             f"into a {self.num_classes}-class one (ignore {self.ignore_index})")
        if other._mat is not None:
            if self._mat is None:
                self._mat = other._mat.clone()
            else:
                self._mat += other._mat.to(self._mat.device)
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out.merge(self)
        return out.merge(other)

    def __radd__(self, other):
        if other == 0:  # sum([...]) starts at 0
            return ConfusionMatrix(self.num_classes, self.ignore_index).merge(self)
        return NotImplemented

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def all_reduce(self, group=None) -> "ConfusionMatrix":
        """Sum the counts over a torch.distributed process group (no-op when not initialised).

        Every rank must call it; the matrix must live on a device the backend supports
        (CUDA for NCCL).
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            mat = self.matrix
            if dist.get_backend(group) == "nccl" and mat.device.type != "cuda":
                mat = mat.cuda()
            dist.all_reduce(mat, op=dist.ReduceOp.SUM, group=group)
            self._mat = mat
        return self

    # -- scores ---------------------------------------------------------------------------
    def _counts(self) -> np.ndarray:
        return self.matrix.detach().cpu().numpy().astype(np.float64)

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN where TP + FP + FN == 0 (class absent from GT and prediction)."""
        m = self._counts()
        C = self.num_classes
        tp = np.diag(m[:, :C])
        fp = m[:, :C].sum(0) - tp
        fn = m.sum(1) - tp
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)

    def miou(self, eval_classes: Sequence[int] | None = None) -> float:
        """Mean IoU over the classes present in GT or prediction (Cityscapes convention); NaN if none.

        eval_classes: average over these class indices only (e.g. SYNTHIA's 16 of the 19
        Cityscapes classes, MFNet's car/person/bike); IoUs still come from the full matrix.
        """
        iou = self.iou()
        if eval_classes is not None:
            iou = iou[_check_classes(eval_classes, self.num_classes)]
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / evaluated (non-ignored) pixels; NaN before any pixel was counted."""
        m = self._counts()
        total = m.sum()
        return float(np.trace(m[:, : self.num_classes]) / total) if total > 0 else float("nan")

    @property
    def total(self) -> int:
        """Number of evaluated (non-ignored) pixels."""
        return int(self.matrix.sum())

    def summary(self, class_names: Sequence[str] | None = None, eval_classes: Sequence[int] | None = None) -> dict:
        """The reported metrics of the contract, in percent.

        {"miou": .., "pixel_acc": .., "iou.<class name>": ..}; absent classes are NaN.
        class_names defaults to the Cityscapes train-id names for 19 classes, else class_<i>.
        eval_classes: score only these class indices (mIoU over them, iou.* for them only;
        pixel accuracy stays over all evaluated pixels).
        """
        if class_names is None:
            if self.num_classes == 19:
                from udalab.datasets.labels import CLASS_NAMES as class_names
            else:
                class_names = [f"class_{i}" for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        keep = range(self.num_classes) if eval_classes is None else _check_classes(eval_classes, self.num_classes)
        out = {"miou": 100.0 * self.miou(eval_classes), "pixel_acc": 100.0 * self.pixel_accuracy()}
        iou = self.iou()
        for c in keep:
            out[f"iou.{class_names[c]}"] = 100.0 * float(iou[c])
        return out

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={self.total}, miou={100 * self.miou():.2f})")
