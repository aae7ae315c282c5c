"""Scoring, below methods: the confusion matrix (IoU, mIoU, pixel accuracy, label subsets)
and instance-level IoU (iIoU). Methods evaluate with it, `udalab eval`
(analysis/score_predictions.py) scores saved prediction PNGs with it, analysis reads the numbers.

Confusion matrix, scored the way cityscapesScripts does:

    cm = ConfusionMatrix(19)            # ignore_index=IGNORE_INDEX (255)
    cm.update(pred, target)             # torch tensors (any device) or numpy arrays, same shape
    cm.iou()                            # np.ndarray [C], NaN where TP + FP + FN == 0
    cm.miou()                           # nanmean of iou(): classes present in GT or prediction
    cm.miou(eval_classes)               # over a label subset only (SYNTHIA's 16, MFNet's 3)
    cm.summary(CLASS_NAMES)             # {"miou": .., "pixel_acc": .., "iou.road": .., ...} in percent

Rows of `matrix` are ground-truth classes, columns predictions. The matrix has C + 1 columns:
the last one counts predictions outside [0, C) (e.g. a label id that maps to no train id,
or 255 in a saved prediction). Such a pixel is a false negative of its ground-truth class
and a false positive of no class, as in cityscapesScripts where a prediction of a
non-evaluated label is simply wrong. Pixels whose target is `ignore_index` are skipped.

Accumulation is a single bincount on the inputs' device (no host sync per update for torch
tensors); `merge()` / `+` add matrices of several workers, `all_reduce()` sums them over a
torch.distributed process group. `cm.grouped(groups)` is the matrix over groups of classes;
`cm.category_summary(CATEGORIES)` its IoU over Cityscapes' categories, cityscapesScripts'
category IoU ({"category_miou": .., "category_iou.flat": ..}).

iIoU: instance-level IoU, background excluded (the multi-decoder pseudo-depth paper's metric;
Cityscapes' definition). For a class c, every ground-truth instance i of c contributes its
true positives and false negatives weighted by w_i = s̄_c / s_i (s_i its size in pixels, s̄_c
the mean size of c's instances), so that a small object counts as much as a large one; false
positives are not weighted (they belong to no instance):

    iIoU_c = Σ_i w_i TP_i / (Σ_i w_i TP_i + FP_c + Σ_i w_i FN_i)

iIoU is the mean over the classes that have instances, background (VOC class 0) excluded:
"IoU computed over objects only, without the background" (multidecoder_pseudo_depth, §4).
Instances come from an instance map (VOC's SegmentationObject: 0 background, 255 void) or,
without one, from the 4-connected components of each class in the label.

    m = InstanceIoU(21)                      # background=(0,), ignore_index=IGNORE_INDEX (255)
    m.update(pred, label, instances)         # numpy / torch [H,W]; instances optional
    m.summary(CLASS_NAMES)                   # {"iiou": .., "iiou.<class>": ..} in percent

Cityscapes, as cityscapesScripts' evalPixelLevelSemanticLabeling scores it: no background, the
8 instance classes only (each scored even without instances: 0 where it was predicted), weights
from the train set's mean instance sizes, and the category iIoU of human and vehicle (an
instance is hit where the prediction falls in its category):

    m = InstanceIoU(19, background=(), instance_classes=INSTANCE_CLASSES, avg_sizes=AVG_INSTANCE_SIZE,
                    categories=CATEGORIES)
    m.update(pred, label, instances)         # + {"category_iiou": .., "category_iiou.vehicle": ..}
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from udalab.datasets.labels import CLASS_NAMES, IGNORE_INDEX

__all__ = ["ConfusionMatrix", "InstanceIoU", "connected_components"]


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

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
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
        Cityscapes classes, MFNet's car/person/bicycle); IoUs still come from the full matrix.
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
            if self.num_classes == len(CLASS_NAMES):
                class_names = CLASS_NAMES
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

    def grouped(self, groups: Sequence[Sequence[int]]) -> "ConfusionMatrix":
        """The matrix over groups of classes (Cityscapes' categories): group g's row and column sum
        its classes' rows and columns; the "outside" column stays. The groups must partition the
        classes. Its IoU is cityscapesScripts' category IoU: a pixel predicted as another class of
        its own category is right, one of another category is a false positive there."""
        members = [_check_classes(g, self.num_classes) for g in groups]
        flat = sorted(c for g in members for c in g)
        if flat != list(range(self.num_classes)):
            raise ValueError(f"groups {[list(g) for g in groups]} must partition the classes 0..{self.num_classes - 1}")
        C = self.num_classes
        onehot = torch.zeros((len(members), C), dtype=torch.int64)
        for g, classes in enumerate(members):
            onehot[g, classes] = 1
        m = self.matrix.detach().cpu()
        out = ConfusionMatrix(len(members), self.ignore_index)
        out._mat = torch.cat([onehot @ m[:, :C] @ onehot.T, onehot @ m[:, C:]], dim=1)
        return out

    def category_summary(self, categories: dict[str, Sequence[int]]) -> dict:
        """{"category_miou": .., "category_iou.<name>": ..} in percent: the IoU of `grouped` over
        categories {name: class indices}, averaged over the categories present."""
        cat = self.grouped(list(categories.values()))
        out = {"category_miou": 100.0 * cat.miou()}
        for name, v in zip(categories, cat.iou()):
            out[f"category_iou.{name}"] = 100.0 * float(v)
        return out

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={self.total}, miou={100 * self.miou():.2f})")


# -- instance-level IoU ------------------------------------------------------------------


def _np(x) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
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
    """Accumulates per-instance sizes and true positives (and false positives per class and per
    category) for iIoU.

    instance_classes: the classes annotated as instances (Cityscapes: person ... bicycle). Each
    is scored even where the data holds none of its instances (0 if predicted there, NaN if not),
    as cityscapesScripts scores them; the other classes are NaN. None: every class but the
    background, scored where instances occur.
    avg_sizes {class: mean instance size}: fixed weights (Cityscapes fixes them from its train
    set); None: the evaluated instances' own means.
    categories {name: classes}: also score category iIoU for the categories whose classes are all
    instance classes (Cityscapes: human, vehicle). An instance counts as hit where the prediction
    falls in its category; each instance is weighted by its class's mean size.
    Targets must be in [0, C) or `ignore_index`; anything else raises ValueError.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, background: Sequence[int] = (0,),
                 instance_classes: Sequence[int] | None = None, avg_sizes: dict | None = None,
                 categories: dict[str, Sequence[int]] | None = None):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.background = tuple(int(b) for b in background)
        self.always = instance_classes is not None  # classes without instances are scored too
        self.scored = (_check_classes(instance_classes, self.num_classes) if instance_classes is not None
                       else [c for c in range(self.num_classes) if c not in self.background])
        self.avg_sizes = avg_sizes
        self.categories = {name: _check_classes(cs, self.num_classes) for name, cs in (categories or {}).items()}
        self.category_of = np.full(self.num_classes + 1, IGNORE_INDEX, np.int64)  # class -> category; last: none
        for g, classes in enumerate(self.categories.values()):
            self.category_of[classes] = g
        self.instance_categories = [g for g, cs in enumerate(self.categories.values()) if set(cs) <= set(self.scored)]
        self.fp = np.zeros(self.num_classes, np.float64)
        self.category_fp = np.zeros(len(self.categories), np.float64)
        self.instances: list[tuple[int, int, int, int]] = []  # (class, size, true positives, category hits)

    def update(self, pred, target, instances=None, pred_categories=None) -> "InstanceIoU":
        """Add one image: pred and target [H,W] class indices, instances an optional instance map
        (0 and ignore_index: none). pred_categories [H,W]: the category index each predicted
        pixel counts for (255: none), where that is not its class's category (cityscapesScripts
        counts a predicted caravan, no evaluated class, as a vehicle); default: its class's."""
        pred, target = _np(pred).astype(np.int64), _np(target).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bad.any():
            raise ValueError(f"target holds values {np.unique(target[bad])[:10].tolist()} outside [0, "
                             f"{self.num_classes}) that are not ignore_index={self.ignore_index}")
        for c in self.scored:
            self.fp[c] += np.count_nonzero(valid & (pred == c) & (target != c))
        if pred_categories is None:
            pred_categories = self.category_of[np.where((pred >= 0) & (pred < self.num_classes), pred, -1)]
        pred_categories = _np(pred_categories).astype(np.int64)
        target_categories = self.category_of[np.where(valid, target, -1)]
        for g in self.instance_categories:
            self.category_fp[g] += np.count_nonzero(valid & (pred_categories == g) & (target_categories != g))
        ids, classes = self._instance_ids(target, valid, instances)
        n = len(classes)
        if n:
            classes = np.concatenate([[-1], classes])
            sizes = np.bincount(ids.ravel(), minlength=n + 1)[1:]
            tps = np.bincount(ids[pred == classes[ids]], minlength=n + 1)[1:]
            hits = np.bincount(ids[pred_categories == self.category_of[classes[ids]]], minlength=n + 1)[1:]
            self.instances += [(int(c), int(s), int(t), int(h)) for c, s, t, h in zip(classes[1:], sizes, tps, hits)]
        return self

    def _instance_ids(self, target, valid, instances) -> tuple[np.ndarray, np.ndarray]:
        """(ids [H,W]: 1..n on the pixels of each instance of a scored class, 0 elsewhere; the n classes).

        From an instance map, an instance's class is its pixels' majority class; without one, the
        instances are the 4-connected components of each scored class in the target."""
        ids = np.zeros(target.shape, np.int64)
        classes: list[int] = []
        if instances is not None:
            inst = _np(instances).astype(np.int64)
            if inst.shape != target.shape:
                raise ValueError(f"instance map shape {inst.shape} != target shape {target.shape}")
            for k in np.unique(inst[valid]):
                if k == 0 or k == self.ignore_index:
                    continue
                region = valid & (inst == k)
                values, counts = np.unique(target[region], return_counts=True)
                c = int(values[np.argmax(counts)])
                if c in self.scored:
                    classes.append(c)
                    ids[region & (target == c)] = len(classes)
        else:
            for c in np.unique(target[valid]):
                if int(c) not in self.scored:
                    continue
                comps, n = connected_components(valid & (target == c))
                ids[comps > 0] = comps[comps > 0] + len(classes)
                classes += [int(c)] * n
        return ids, np.array(classes, np.int64)

    def _weights(self, arr: np.ndarray, avg_sizes: dict | None) -> np.ndarray:
        """Each instance's weight: its class's mean instance size over its own size."""
        w = np.zeros(len(arr))
        for c in np.unique(arr[:, 0]).astype(int):
            rows = arr[:, 0] == c
            mean = float(avg_sizes[c]) if avg_sizes and c in avg_sizes else arr[rows, 1].mean()
            w[rows] = mean / arr[rows, 1]
        return w

    def iiou(self, avg_sizes: dict | None = None) -> np.ndarray:
        """Per-class iIoU in [0, 1]; NaN for the classes not scored, and for classes without
        instances unless `instance_classes` names them. avg_sizes: overrides the constructor's."""
        return self._iiou(self.scored, self.fp, 2, avg_sizes, self.num_classes, lambda c: [c])

    def category_iiou(self, avg_sizes: dict | None = None) -> dict[str, float]:
        """{category: iIoU in [0, 1]} for the categories made of instance classes."""
        members = list(self.categories.values())
        v = self._iiou(self.instance_categories, self.category_fp, 3, avg_sizes, len(members), lambda g: members[g])
        names = list(self.categories)
        return {names[g]: float(v[g]) for g in self.instance_categories}

    def _iiou(self, scored, fp, hit_column, avg_sizes, size, classes_of) -> np.ndarray:
        """iIoU_k = Σ w_i hits_i / (Σ w_i hits_i + FP_k + Σ w_i (s_i - hits_i)) over the instances
        of k's classes (a class, or a category's)."""
        out = np.full(size, np.nan)
        arr = np.array(self.instances, np.float64).reshape(-1, 4)
        w = self._weights(arr, self.avg_sizes if avg_sizes is None else avg_sizes)
        for k in scored:
            rows = np.isin(arr[:, 0], classes_of(k))
            if not rows.any() and not self.always:
                continue
            itp = float((w[rows] * arr[rows, hit_column]).sum())
            ifn = float((w[rows] * (arr[rows, 1] - arr[rows, hit_column])).sum())
            denom = itp + ifn + fp[k]
            out[k] = itp / denom if denom > 0 else np.nan
        return out

    def mean(self, avg_sizes: dict | None = None) -> float:
        v = self.iiou(avg_sizes)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """{"iiou": .., "iiou.<class>": ..} in percent over the scored classes; with categories also
        {"category_iiou": .., "category_iiou.<category>": ..} (mean over those not NaN)."""
        names = class_names or [f"class_{i}" for i in range(self.num_classes)]
        v = self.iiou()
        out = {"iiou": 100.0 * self.mean()}
        for c in self.scored:
            out[f"iiou.{names[c]}"] = 100.0 * float(v[c])
        if self.instance_categories:
            cat = self.category_iiou()
            finite = [x for x in cat.values() if np.isfinite(x)]
            out["category_iiou"] = 100.0 * float(np.mean(finite)) if finite else float("nan")
            out.update({f"category_iiou.{name}": 100.0 * x for name, x in cat.items()})
        return out
