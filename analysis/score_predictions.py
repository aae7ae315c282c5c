"""`udalab eval`: score saved prediction PNGs against a dataset's ground truth.

Cityscapes works like cityscapesScripts' evalPixelLevelSemanticLabeling and gives its numbers:

* every `<root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png` is one image
  (stem = `<city>_<seq>_<frame>`);
* its prediction is the one PNG anywhere under `pred_dir` (recursively) whose file name matches
  `<stem>*.png` (cityscapesScripts' pattern); none or several is an error;
* predictions hold label ids (mapped to train ids with ID_TO_TRAIN_ID, so a non-evaluated
  label counts as wrong) or train ids (0..18; anything else counts as wrong). The folder's
  predictions.json (written by `udalab predict`) says which; without it `pred_format="auto"`
  decides from the values seen over all predictions;
* pixels whose ground truth is not one of the 19 evaluated classes are ignored;
* one confusion matrix over all pixels -> per-class IoU, mIoU (classes present), pixel
  accuracy, and cityscapesScripts' category IoU (its 7 categories, `ConfusionMatrix.grouped`);
* iIoU of the 8 instance classes (person ... bicycle) and category iIoU (human, vehicle) over
  the instances of `*_gtFine_instanceIds.png`, weighted by cityscapesScripts' mean instance
  sizes (labels.AVG_INSTANCE_SIZE). Where the split has no instanceIds files (the mini twin),
  the instances are each class's 4-connected components, and the printout says so.

Other datasets with a prediction format (MFNet and its views, VOC; `name@subset` too): the
dataset's own layout under `root` (None: the mini twin); image i's prediction is
`pred_dir / ds.prediction_name(i)` in the encoding of the dataset's labels (what `udalab
predict` writes), scored over the dataset's `eval_classes`; VOC adds iIoU over its
SegmentationObject instances.

    udalab eval --dataset cityscapes --root /data/cityscapes --split val --pred-dir preds/ [--json out.json]
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from udalab.datasets import DATASETS, DatasetError, build_dataset, mini_root, root_key
from udalab.datasets.base import SegmentationDataset, read_prediction_png, read_predictions_info
from udalab.datasets.labels import (AVG_INSTANCE_SIZE, CATEGORIES, CLASS_NAMES, ID_TO_CATEGORY, ID_TO_TRAIN_ID,
                                    IGNORE_INDEX, INSTANCE_CLASSES, MAX_LABEL_ID, NUM_CLASSES)
from udalab.datasets.metrics import ConfusionMatrix, InstanceIoU

log = logging.getLogger("udalab")

PRED_FORMATS = ("auto", "trainid", "labelid")
GT_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"

__all__ = ["EvaluationError", "evaluate_predictions", "add_eval_arguments", "run_eval", "format_table",
           "PRED_FORMATS"]


class EvaluationError(Exception):
    """A problem with the ground truth or the predictions; the message names the file and the fix."""


def _read_png(path: Path, what: str) -> np.ndarray:
    try:
        return read_prediction_png(path, what)
    except DatasetError as e:
        raise EvaluationError(str(e)) from e


def _find_gt(root: Path, split: str) -> list[tuple[str, Path]]:
    gt_dir = root / "gtFine" / split
    if not gt_dir.is_dir():
        raise EvaluationError(
            f"no Cityscapes ground truth at {gt_dir}: expected {gt_dir}/<city>/<city>_<seq>_<frame>{GT_SUFFIX}; "
            f"point --root at the Cityscapes folder that holds gtFine/ (and check --split)")
    files = sorted(gt_dir.glob(f"*/*{GT_SUFFIX}"))
    if not files:
        raise EvaluationError(f"{gt_dir} holds no */*{GT_SUFFIX} files; is gtFine/{split} unpacked completely?")
    return [(p.name[: -len(GT_SUFFIX)], p) for p in files]


def _match(stems: list[tuple[str, Path]], pred_dir: Path) -> list[tuple[Path, Path]]:
    """(gt, prediction) pairs: exactly one file under pred_dir named `<stem>*.png`, as cityscapesScripts finds it."""
    if not pred_dir.is_dir():
        raise EvaluationError(f"prediction folder {pred_dir} does not exist; pass the folder holding the "
                              f"prediction PNGs with --pred-dir")
    by_stem: dict[str, list[Path]] = {}
    for dirpath, _dirs, names in os.walk(pred_dir):
        for name in names:
            if fnmatch.fnmatch(name, "*.png"):
                by_stem.setdefault("_".join(name.split("_")[:3]), []).append(Path(dirpath) / name)
    pairs = []
    for stem, gt in stems:
        hits = sorted(p for p in by_stem.get(stem, []) if fnmatch.fnmatch(p.name, f"{stem}*.png"))
        if not hits:
            raise EvaluationError(
                f"no prediction for ground truth {gt}: expected a PNG under {pred_dir} whose file name starts "
                f"with '{stem}' (e.g. {stem}_leftImg8bit.png); write one prediction per image of the split")
        if len(hits) > 1:
            shown = ", ".join(str(h) for h in hits[:5])
            raise EvaluationError(
                f"{len(hits)} predictions match ground truth {gt} (file names starting with '{stem}'): {shown}; "
                f"keep exactly one per image under {pred_dir} (colour pictures belong in another folder)")
        pairs.append((gt, hits[0]))
    return pairs


def _decide_format(hist: np.ndarray) -> tuple[str, str]:
    """Label ids or train ids from the histogram of prediction values (index = value)."""
    present = np.flatnonzero(hist)
    others = [int(v) for v in present if v > MAX_LABEL_ID and v != IGNORE_INDEX]
    if others:
        raise EvaluationError(
            f"predictions hold values {others[:10]} that are neither Cityscapes label ids (0..{MAX_LABEL_ID}) "
            f"nor train ids (0..{NUM_CLASSES - 1}, {IGNORE_INDEX}); save class indices, not colours or scores")
    above = [int(v) for v in present if NUM_CLASSES <= v <= MAX_LABEL_ID]
    if above:
        return "labelid", (f"values {above[:6]}{'...' if len(above) > 6 else ''} occur, which only label ids "
                           f"use (train ids stop at {NUM_CLASSES - 1})")
    return "trainid", (f"all values are in 0..{NUM_CLASSES - 1} (or {IGNORE_INDEX}); pass --pred-format labelid "
                       f"if these are label ids")


def _check_info(info: dict | None, pred_dir: Path, dataset: str) -> None:
    """predictions.json, where `udalab predict` wrote one, must name the dataset scored."""
    if info is not None and root_key(str(info.get("dataset", dataset))) != root_key(dataset):
        raise EvaluationError(f"{pred_dir} holds predictions of {info.get('dataset')!r} (its predictions.json), "
                              f"not of {dataset!r}; pass the matching --dataset and --root")


def _pred_format(pairs, pred_dir: Path, pred_format: str) -> tuple[str, str]:
    """The value encoding of the predictions and the sentence that says how it was chosen."""
    if pred_format not in PRED_FORMATS:
        raise EvaluationError(f"pred_format={pred_format!r}; use one of {', '.join(PRED_FORMATS)}")
    if pred_format != "auto":
        return pred_format, f"--pred-format {pred_format}"
    info = read_predictions_info(pred_dir)
    _check_info(info, pred_dir, "cityscapes")
    if info is not None and info.get("values") in ("labelid", "trainid"):
        chosen = info["values"]
        return chosen, f"reading predictions as {_NAMES[chosen]} (as {pred_dir / 'predictions.json'} says)"
    hist = np.zeros(65536, dtype=np.int64)
    for _gt, pred_path in pairs:
        hist += np.bincount(_read_png(pred_path, "prediction").astype(np.int64).ravel(), minlength=65536)[:65536]
    chosen, why = _decide_format(hist)
    return chosen, f"--pred-format auto: reading predictions as {_NAMES[chosen]} ({why})"


_NAMES = {"labelid": "label ids", "trainid": "train ids"}


def _instances(pairs) -> tuple[list[Path | None], str]:
    """Each image's instanceIds file (None for all where the split has none) and a note on the instances."""
    paths = [gt.with_name(gt.name[: -len(GT_SUFFIX)] + INSTANCE_SUFFIX) for gt, _ in pairs]
    present = [p.is_file() for p in paths]
    if all(present):
        return list(paths), f"iIoU over the instances of *{INSTANCE_SUFFIX}"
    if any(present):
        missing = paths[present.index(False)]
        raise EvaluationError(f"{missing} is missing while other images of the split have theirs; restore it from "
                              f"gtFine_trainvaltest.zip (iIoU needs every image's instances)")
    return [None] * len(paths), (f"no *{INSTANCE_SUFFIX} beside the ground truth: iIoU over each class's "
                                 f"4-connected components instead of the annotated instances")


def _evaluate_cityscapes(root, split, pred_dir, pred_format="auto") -> tuple[dict, dict]:
    root, pred_dir = Path(root), Path(pred_dir)
    pairs = _match(_find_gt(root, split), pred_dir)
    chosen, note = _pred_format(pairs, pred_dir, pred_format)
    instance_files, instance_note = _instances(pairs)
    cm = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX)
    inst = InstanceIoU(NUM_CLASSES, IGNORE_INDEX, background=(), instance_classes=INSTANCE_CLASSES,
                       avg_sizes=AVG_INSTANCE_SIZE, categories=CATEGORIES)
    to_train = np.full(65536, IGNORE_INDEX, dtype=np.int64)  # label id -> train id, any 16-bit value
    to_train[:256] = ID_TO_TRAIN_ID
    to_category = np.full(65536, IGNORE_INDEX, dtype=np.int64)
    to_category[:256] = ID_TO_CATEGORY
    for (gt_path, pred_path), inst_path in zip(pairs, instance_files):
        gt_ids = _read_png(gt_path, "ground truth")
        pred = _read_png(pred_path, "prediction").astype(np.int64)
        if gt_ids.shape != pred.shape:
            raise EvaluationError(
                f"size mismatch: prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but ground truth "
                f"{gt_path} is {gt_ids.shape[1]}x{gt_ids.shape[0]}; save predictions at the full label resolution "
                f"(upsample the logits before the argmax)")
        if gt_ids.max(initial=0) > 255:
            raise EvaluationError(f"ground truth {gt_path} holds values > 255; is it a *{GT_SUFFIX} file?")
        gt = ID_TO_TRAIN_ID[gt_ids]
        instances = None
        if inst_path is not None:
            raw = _read_png(inst_path, "instance map").astype(np.int64)
            instances = np.where(raw > 1000, raw, 0)  # cityscapesScripts' instances: label id * 1000 + k
        if chosen == "labelid":
            cm.update(to_train[pred], gt)
            inst.update(to_train[pred], gt, instances, pred_categories=to_category[pred])
        else:
            cm.update(pred, gt)
            inst.update(pred, gt, instances)
    summary = {**cm.summary(CLASS_NAMES), **inst.summary(CLASS_NAMES), **cm.category_summary(CATEGORIES)}
    info = {"pred_format": chosen, "note": f"{note}; {instance_note}", "images": len(pairs), "pixels": cm.total,
            "confusion": confusion(cm, CLASS_NAMES)}
    return summary, info


def _evaluate_dataset(name: str, root, split: str, pred_dir) -> tuple[dict, dict]:
    """A dataset with a prediction format other than Cityscapes: predictions named and encoded as it writes them."""
    pred_dir = Path(pred_dir)
    try:
        ds: SegmentationDataset = build_dataset(name, root, split)
        ds.prediction_name(0)
    except DatasetError as e:
        raise EvaluationError(str(e)) from e
    _check_info(read_predictions_info(pred_dir), pred_dir, name)
    cm = ConfusionMatrix(ds.num_classes, IGNORE_INDEX)
    inst = InstanceIoU(ds.num_classes) if hasattr(ds, "load_instances") else None
    for i in range(len(ds)):
        path = pred_dir / ds.prediction_name(i)
        if not path.is_file():
            raise EvaluationError(f"no prediction for {ds.files[i][0]}: expected {path}; write one prediction per "
                                  f"image of the split (`udalab predict` names them so)")
        try:
            pred, label = ds.read_prediction(path), ds.load_label(i)
        except DatasetError as e:
            raise EvaluationError(str(e)) from e
        if pred.shape != label.shape:
            raise EvaluationError(f"size mismatch: prediction {path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but "
                                  f"label {ds.files[i][1]} is {label.shape[1]}x{label.shape[0]}; save predictions "
                                  f"at the label's resolution")
        cm.update(pred, label)
        if inst is not None:
            inst.update(pred, label, ds.load_instances(i))
    summary = cm.summary(ds.class_names, eval_classes=ds.eval_classes)
    if inst is not None:
        summary.update(inst.summary(ds.class_names))
    info = {"pred_format": ds.PREDICTION_VALUES, "note": f"{name} {split}: {ds.PREDICTION_VALUES} PNGs named as "
            f"{ds.prediction_name(0)}", "images": len(ds), "pixels": cm.total,
            "confusion": confusion(cm, ds.class_names)}
    return summary, info


def confusion(cm: ConfusionMatrix, class_names) -> dict:
    """The pixel counts behind the IoUs, for the JSON: `pixels[i][j]` ground truth `classes[i]`
    predicted as `classes[j]`, the last column predictions outside the classes (counted wrong)."""
    return {"classes": list(class_names), "pixels": np.asarray(cm.matrix.cpu()).tolist()}


def _evaluate(root, split, pred_dir, pred_format="auto", dataset="cityscapes") -> tuple[dict, dict]:
    base = dataset.partition("@")[0]
    if base not in DATASETS:
        raise EvaluationError(f"unknown dataset {dataset!r}; use cityscapes, voc or an MFNet view "
                              f"({', '.join(n for n in DATASETS if n.startswith('mfnet'))})")
    if base == "cityscapes":
        if "@" in dataset:
            raise EvaluationError(f"{dataset!r}: Cityscapes is scored on its 19 classes, as cityscapesScripts "
                                  f"scores it; pass --dataset cityscapes")
        return _evaluate_cityscapes(mini_root("cityscapes") if root is None else root, split, pred_dir, pred_format)
    if pred_format not in ("auto", "trainid"):
        raise EvaluationError(f"--pred-format {pred_format} is for Cityscapes; {dataset} predictions hold "
                              f"class indices (leave --pred-format auto)")
    return _evaluate_dataset(dataset, root, split, pred_dir)


def evaluate_predictions(root, split, pred_dir, pred_format: str = "auto", dataset: str = "cityscapes") -> dict:
    """Score the prediction PNGs under `pred_dir` against the ground truth of `dataset`'s `split` under `root`
    (None: the mini twin).

    Returns the summary dict in percent: {"miou", "pixel_acc", "iou.<class>"...}, plus for Cityscapes
    {"iiou", "iiou.<class>", "category_iiou", "category_iiou.<cat>", "category_miou", "category_iou.<cat>"}
    and for VOC {"iiou", "iiou.<class>"}. Raises EvaluationError (naming the file and the fix) on
    missing/duplicate predictions, size mismatches, unreadable or non-index images.
    """
    summary, info = _evaluate(root, split, pred_dir, pred_format, dataset)
    log.info("%s; %d images", info["note"], info["images"])
    return summary


def _block(summary: dict, title: str, prefixes: tuple[str, str], means: tuple[str, str], width: int) -> list[str]:
    """One table of cityscapesScripts' printout: a row per name with its IoU and (where scored) iIoU, then the means."""
    def f(v):
        return "      nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:9.2f}"

    (iou, iiou), (miou, miiou) = prefixes, means
    names = [k[len(iou):] for k in summary if k.startswith(iou)]
    with_iiou = miiou in summary
    head = f"{title:<{width}}  IoU (%)" + ("  iIoU (%)" if with_iiou else "")
    rule = "-" * len(head)
    rows = [f"{n:<{width}}{f(summary[iou + n])}" + (f(summary.get(iiou + n)) if with_iiou else "") for n in names]
    label = "mean" if title != "class" else ("mIoU / iIoU" if with_iiou else "mIoU")
    return [head, rule, *rows, rule, f"{label:<{width}}{f(summary[miou])}" + (f(summary[miiou]) if with_iiou else "")]


def format_table(summary: dict) -> str:
    """Per-class IoU and iIoU, their means, the category scores where there are any, and pixel accuracy:
    cityscapesScripts' printout, in percent (its 'nIoU' is the iIoU)."""
    names = [k.partition(".")[2] for k in summary if k.startswith(("iou.", "category_iou."))]
    width = max([len(n) for n in names] + [len("pixel accuracy")])
    lines = _block(summary, "class", ("iou.", "iiou."), ("miou", "iiou"), width)
    if "category_miou" in summary:
        lines += [""] + _block(summary, "category", ("category_iou.", "category_iiou."),
                               ("category_miou", "category_iiou"), width)
    lines += ["", f"{'pixel accuracy':<{width}}{summary['pixel_acc']:9.2f}"]
    return "\n".join(lines)


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `udalab eval`."""
    parser.add_argument("--dataset", default="cityscapes",
                        help="ground-truth layout: cityscapes (gtFine, as cityscapesScripts), voc, or an MFNet view "
                             "such as mfnet_thermal (name@subset scores a class subset, e.g. mfnet_thermal@3)")
    parser.add_argument("--root", default=None,
                        help="the dataset's folder (Cityscapes: the one holding gtFine/); default: the mini twin")
    parser.add_argument("--split", default="val", help="split to score (default: val)")
    parser.add_argument("--pred-dir", required=True,
                        help="the predictions: Cityscapes: searched recursively for one PNG per image named "
                             "<city>_<seq>_<frame>*.png; others: named as `udalab predict` writes them")
    parser.add_argument("--pred-format", default="auto", choices=list(PRED_FORMATS),
                        help="Cityscapes prediction values: label ids, train ids (0..18), or auto (as the folder's "
                             "predictions.json says, else decided from the values)")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the summary dict to this JSON file, with the confusion matrix's pixel counts "
                             "(confusion: classes, pixels[ground truth][prediction])")
    return parser


def run_eval(args: argparse.Namespace) -> dict:
    """`udalab eval`: score, print the table, optionally write JSON; returns the summary dict.

    Problems exit with the EvaluationError's message (SystemExit) instead of a traceback.
    """
    try:
        summary, info = _evaluate(args.root, args.split, args.pred_dir, args.pred_format, args.dataset)
    except EvaluationError as e:
        raise SystemExit(f"udalab eval: {e}") from e
    print(info["note"])
    print(f"{info['images']} images, {info['pixels']} evaluated pixels ({args.dataset} {args.split})\n")
    print(format_table(summary))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
        out.write_text(json.dumps({**clean, "confusion": info["confusion"]}, indent=2) + "\n")
        print(f"\nwrote {out}")
    return summary
