"""How realistic the domain gap of a dataset pair is: does colour alone tell the domains apart?

It should not: in the real datasets road stays grey and sky blue-white across GTA5 and
Cityscapes, the gap is realism (textures, noise, lens, layout). `colour_check` fits a
nearest-class-mean classifier on mean RGB on the source and classifies the target's class
means; it reports how many classes it maps to themselves, and the median shift of a class's
mean colour across domains over the median distance between two source classes.

    udalab data realism [--images N] [--json FILE]     # the mini twins' street pairs (seconds)
"""
from __future__ import annotations

import json

import numpy as np


def class_mean_colours(ds, num_classes: int, images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB per train id over the first `images` samples at native size: (means [C,3], pixel counts [C])."""
    sums, counts = np.zeros((num_classes, 3)), np.zeros(num_classes)
    for i in range(len(ds) if images is None else min(images, len(ds))):
        image, label = ds.load(i)
        rgb = image[:3].permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.float64)
        lab = label.numpy().ravel()
        ok = lab < num_classes
        np.add.at(sums, lab[ok], rgb[ok])
        counts += np.bincount(lab[ok], minlength=num_classes)
    return sums / np.maximum(counts, 1)[:, None], counts


def colour_check(source, target, images: int | None = None) -> dict:
    """Colour-only nearest-class-mean check of a source -> target pair of datasets (same label space).

    Over the classes present in both: `self_mapped` of `classes` target class means whose nearest
    source class mean (RGB) is their own class; `shift_ratio` = median over classes of the
    distance between a class's source and target mean colour / median distance between two
    source class means (0: same colours; ~1: a class moves as far as to another class)."""
    ms, cs = class_mean_colours(source, source.num_classes, images)
    mt, ct = class_mean_colours(target, target.num_classes, images)
    cls = np.nonzero((cs > 0) & (ct > 0))[0]
    ms, mt = ms[cls], mt[cls]
    nearest = np.linalg.norm(mt[:, None] - ms[None], axis=2).argmin(1)
    shift = np.linalg.norm(mt - ms, axis=1)
    pairs = np.linalg.norm(ms[:, None] - ms[None], axis=2)[np.triu_indices(len(cls), 1)]
    names = source.class_names
    return {"classes": int(len(cls)), "self_mapped": int((nearest == np.arange(len(cls))).sum()),
            "shift_ratio": round(float(np.median(shift) / np.median(pairs)), 3),
            "median_shift": round(float(np.median(shift)), 1), "median_class_distance": round(float(np.median(pairs)), 1),
            "mapped_to": {names[c]: names[cls[n]] for i, (c, n) in enumerate(zip(cls, nearest)) if n != i}}


def mini_colour_checks(images: int | None = None) -> dict:
    """colour_check of the two street pairs on the mini twins (target: Cityscapes val)."""
    from udalab.datasets import build_dataset

    target = build_dataset("cityscapes", split="val")
    return {f"{s} -> Cityscapes": colour_check(build_dataset(s.lower()), target, images) for s in ("GTA5", "SYNTHIA")}


def print_checks(checks: dict) -> None:
    for pair, c in checks.items():
        print(f"colour check {pair}: {c['self_mapped']}/{c['classes']} classes mapped to themselves, "
              f"shift / class distance {c['shift_ratio']:.2f} ({c['median_shift']:.0f} / {c['median_class_distance']:.0f})")


def run(args) -> int:
    """`udalab data realism`: the mini twins' colour checks, printed and (--json) written."""
    checks = mini_colour_checks(args.images)
    print_checks(checks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": args.images, "colour": checks}, f, indent=1)
    return 0
