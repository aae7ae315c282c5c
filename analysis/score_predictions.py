"""`udalab eval`: score saved prediction PNGs against Cityscapes ground truth.

Works like cityscapesScripts' evalPixelLevelSemanticLabeling:

* every `<root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png` is one image
  (stem = `<city>_<seq>_<frame>`);
* its prediction is the one PNG anywhere under `pred_dir` (recursively) whose file name
  contains `<stem>`; none or several is an error;
* predictions hold label ids (mapped to train ids with ID_TO_TRAIN_ID, so a non-evaluated
  label counts as wrong) or train ids (0..18; anything else counts as wrong);
  `pred_format="auto"` decides from the values seen over all predictions;
* pixels whose ground truth is not one of the 19 evaluated classes are ignored;
* one confusion matrix over all pixels -> per-class IoU, mIoU (classes present), pixel accuracy.

    udalab eval --dataset cityscapes --root /data/cityscapes --split val --pred-dir preds/ [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from udalab.datasets.labels import CLASS_NAMES, ID_TO_TRAIN_ID, IGNORE_INDEX, MAX_LABEL_ID, NUM_CLASSES
from udalab.datasets.metrics import ConfusionMatrix

log = logging.getLogger("udalab")

PRED_FORMATS = ("auto", "trainid", "labelid")
GT_SUFFIX = "_gtFine_labelIds.png"

__all__ = ["EvaluationError", "evaluate_predictions", "add_eval_arguments", "run_eval", "format_table",
           "PRED_FORMATS"]


class EvaluationError(Exception):
    """A problem with the ground truth or the predictions; the message names the file and the fix."""


def _read_png(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except Exception as e:  # corrupt / not an image
        raise EvaluationError(f"cannot read {what} {path}: {e}; re-save it as a PNG") from e
    if arr.ndim != 2:
        raise EvaluationError(
            f"{what} {path} is a {mode} image with shape {arr.shape}; expected one channel of class indices "
            f"(PIL mode 'L', 'P' or 'I;16'). Save the argmax as a single-channel PNG, not a colour rendering")
    return arr


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


def _list_predictions(pred_dir: Path) -> list[Path]:
    if not pred_dir.is_dir():
        raise EvaluationError(f"prediction folder {pred_dir} does not exist; pass the folder holding the "
                              f"prediction PNGs with --pred-dir")
    found = []
    for dirpath, _dirs, names in os.walk(pred_dir):
        for name in names:
            if name.lower().endswith(".png"):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _match(stems: list[tuple[str, Path]], preds: list[Path], pred_dir: Path) -> list[tuple[Path, Path]]:
    """(gt, prediction) pairs: the prediction's file name must contain the GT stem, exactly once."""
    pairs = []
    for stem, gt in stems:
        hits = [p for p in preds if stem in p.name]
        if not hits:
            raise EvaluationError(
                f"no prediction for ground truth {gt}: expected a PNG under {pred_dir} whose file name "
                f"contains '{stem}' (e.g. {stem}_pred.png or {stem}_leftImg8bit.png); write one prediction "
                f"per image of the split")
        if len(hits) > 1:
            shown = ", ".join(str(h) for h in hits[:5])
            raise EvaluationError(
                f"{len(hits)} predictions match ground truth {gt} (file names containing '{stem}'): {shown}; "
                f"keep exactly one per image under {pred_dir}")
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


def _evaluate(root, split, pred_dir, pred_format="auto") -> tuple[dict, dict]:
    if pred_format not in PRED_FORMATS:
        raise EvaluationError(f"pred_format={pred_format!r}; use one of {', '.join(PRED_FORMATS)}")
    root, pred_dir = Path(root), Path(pred_dir)
    stems = _find_gt(root, split)
    pairs = _match(stems, _list_predictions(pred_dir), pred_dir)

    # One pass: accumulate both interpretations, pick one at the end ('auto') from all values seen.
    cms = {fmt: ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX) for fmt in ("trainid", "labelid")
           if pred_format in ("auto", fmt)}
    hist = np.zeros(65536, dtype=np.int64)
    lut = np.full(65536, IGNORE_INDEX, dtype=np.int64)  # label id -> train id, any 16-bit value
    lut[:256] = ID_TO_TRAIN_ID
    for gt_path, pred_path in pairs:
        gt_ids = _read_png(gt_path, "ground truth")
        pred = _read_png(pred_path, "prediction")
        if gt_ids.shape != pred.shape:
            raise EvaluationError(
                f"size mismatch: prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but ground truth "
                f"{gt_path} is {gt_ids.shape[1]}x{gt_ids.shape[0]}; save predictions at the full label resolution "
                f"(upsample the logits before the argmax)")
        if gt_ids.max(initial=0) > 255:
            raise EvaluationError(f"ground truth {gt_path} holds values > 255; is it a *{GT_SUFFIX} file?")
        gt = ID_TO_TRAIN_ID[gt_ids]
        pred = pred.astype(np.int64)
        if pred.min(initial=0) < 0:
            raise EvaluationError(f"prediction {pred_path} holds negative values; save class indices")
        hist += np.bincount(pred.ravel(), minlength=65536)[:65536]
        if "trainid" in cms:
            cms["trainid"].update(pred, gt)
        if "labelid" in cms:
            cms["labelid"].update(lut[pred], gt)

    if pred_format == "auto":
        chosen, why = _decide_format(hist)
        note = f"--pred-format auto: reading predictions as {'label ids' if chosen == 'labelid' else 'train ids'} ({why})"
    else:
        chosen, note = pred_format, f"--pred-format {pred_format}"
    cm = cms[chosen]
    summary = cm.summary(CLASS_NAMES)
    info = {"pred_format": chosen, "note": note, "images": len(pairs), "pixels": cm.total}
    return summary, info


def evaluate_predictions(root, split, pred_dir, pred_format: str = "auto") -> dict:
    """Score the prediction PNGs under `pred_dir` against `<root>/gtFine/<split>`.

    Returns the contract's summary dict in percent: {"miou", "pixel_acc", "iou.<class>"...}.
    Raises EvaluationError (naming the file and the fix) on missing/duplicate predictions,
    size mismatches, unreadable or non-index images.
    """
    summary, info = _evaluate(root, split, pred_dir, pred_format)
    log.info("%s; %d images", info["note"], info["images"])
    return summary


def format_table(summary: dict) -> str:
    """Per-class IoU table + mIoU + pixel accuracy, as cityscapesScripts prints it."""
    def f(v):
        return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.2f}"

    names = [k[4:] for k in summary if k.startswith("iou.")]
    width = max([len(n) for n in names] + [14])
    lines = [f"{'class':<{width}}  IoU (%)", "-" * (width + 9)]
    lines += [f"{n:<{width}}  {f(summary['iou.' + n])}" for n in names]
    lines += ["-" * (width + 9), f"{'mIoU':<{width}}  {f(summary['miou'])}",
              f"{'pixel accuracy':<{width}}  {f(summary['pixel_acc'])}"]
    return "\n".join(lines)


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `udalab eval`."""
    parser.add_argument("--dataset", default="cityscapes", choices=["cityscapes"],
                        help="ground-truth layout (Cityscapes gtFine)")
    parser.add_argument("--root", required=True, help="Cityscapes folder holding gtFine/")
    parser.add_argument("--split", default="val", help="gtFine split to score (default: val)")
    parser.add_argument("--pred-dir", required=True,
                        help="folder searched recursively for one PNG per image whose name contains "
                             "<city>_<seq>_<frame>")
    parser.add_argument("--pred-format", default="auto", choices=list(PRED_FORMATS),
                        help="prediction values: Cityscapes label ids, train ids (0..18), or auto (decided "
                             "from the values)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the summary dict to this JSON file")
    return parser


def run_eval(args: argparse.Namespace) -> dict:
    """`udalab eval`: score, print the table, optionally write JSON; returns the summary dict.

    Problems exit with the EvaluationError's message (SystemExit) instead of a traceback.
    """
    try:
        summary, info = _evaluate(args.root, args.split, args.pred_dir, args.pred_format)
    except EvaluationError as e:
        raise SystemExit(f"udalab eval: {e}") from e
    print(info["note"])
    print(f"{info['images']} images, {info['pixels']} evaluated pixels ({args.dataset} {args.split})\n")
    print(format_table(summary))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
        out.write_text(json.dumps(clean, indent=2) + "\n")
        print(f"\nwrote {out}")
    return summary
