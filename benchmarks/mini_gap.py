"""How large is each mini twin's domain gap? Source-only vs target-supervised, seeds x pairs, without Ray.

For every pair the DeepLab-v2 source-only loop (methods/source_only.py, the mini preset)
is trained twice per seed through the local runner (the code Ray Train runs):

    source only   trained on the labelled source, scored on target val
    target sup.   trained on the labelled target train split itself (the gap's upper end)

    GTA5 -> Cityscapes          19 classes
    SYNTHIA -> Cityscapes       16 classes (SYNTHIA's; 13-class mIoU too)
    MFNet RGB -> thermal        9 classes (and MML's 3: car, person, bike)
    MFNet day -> night (RGB)    9 classes (and 3)

Cityscapes' target-supervised runs are shared by the two Cityscapes pairs (their per-class
IoUs give both averages). One CPU thread per run, `--jobs` runs at a time; the JSON is
rewritten after every finished run, so an interrupted measurement keeps what it has.

Before training, `colour_check` asks whether colour alone tells the domains apart (it should
not: in the real datasets road stays grey and sky blue-white, the gap is realism): a
nearest-class-mean classifier on mean RGB, fit on the source, classifies the target's class
means; reported: how many classes it maps to themselves, and the median shift of a class's
mean colour across domains over the median distance between two source classes. It is
written into the JSON ("colour") and printed alone with `--colour-only`.

    python benchmarks/mini_gap.py --seeds 0 1 2 --iterations 600 --pairs "GTA5 -> Cityscapes" "SYNTHIA -> Cityscapes" \
        --jobs 2 --json records/mini_gap/gap.json
    python benchmarks/mini_gap.py --colour-only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

CS = {"source_size": [128, 64], "target_size": [128, 64], "eval_size": [128, 64]}
MF = {"source_size": [128, 96], "target_size": [128, 96], "eval_size": [128, 96]}
# pair -> (source-only config, target-supervised run key, classes for the main mIoU)
PAIRS = {
    "GTA5 -> Cityscapes": ({"source": "gta5", "target": "cityscapes", "source_size": [128, 72],
                            "target_size": [128, 64], "eval_size": [128, 64]}, "cityscapes", "19"),
    "SYNTHIA -> Cityscapes": ({"source": "synthia", "target": "cityscapes", "source_size": [128, 76],
                               "target_size": [128, 64], "eval_size": [128, 64]}, "cityscapes", "16"),
    "MFNet RGB -> thermal": ({"source": "mfnet_rgb", "target": "mfnet_thermal", **MF}, "mfnet_thermal", "9"),
    "MFNet day -> night (RGB)": ({"source": "mfnet_rgb_day", "target": "mfnet_rgb_night", **MF},
                                 "mfnet_rgb_night", "9"),
}
ORACLES = {
    "cityscapes": {"source": "cityscapes", "target": "cityscapes", **CS},
    "mfnet_thermal": {"source": "mfnet_thermal", "target": "mfnet_thermal", **MF},
    "mfnet_rgb_night": {"source": "mfnet_rgb_night", "target": "mfnet_rgb_night", **MF},
}
SUBSETS = {  # class names averaged for each reported mIoU
    "19": None,
    "16": ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle"),
    "13": ("road", "sidewalk", "building", "traffic light", "traffic sign", "vegetation", "sky", "person", "rider",
           "car", "bus", "motorcycle", "bicycle"),
    "9": None,
    "3": ("car", "person", "bicycle"),
}
OLD_NAMES = {"bicycle": "bike"}  # MFNet's class 3 was called "bike" before


def _one(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from udalab.methods import run_local

    t0 = time.perf_counter()
    reports = run_local("source_only", job["config"])
    return {**job, "final": reports[-1], "seconds": time.perf_counter() - t0}


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


def miou_over(final: dict, subset: str) -> float:
    names = SUBSETS[subset]
    if names is None:
        vals = [v for k, v in final.items() if k.startswith("iou.")]
    else:
        keys = (f"iou.{n}" if f"iou.{n}" in final else f"iou.{OLD_NAMES.get(n)}" for n in names)
        vals = [final[k] for k in keys if k in final]
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.mean(vals) if vals else float("nan")


def _fmt(v: list[float]) -> str:
    if not v:
        return "–"
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    return f"{statistics.mean(v):.1f} ± {sd:.1f}"


def table(runs: list[dict]) -> str:
    by = {}
    for r in runs:
        by.setdefault(r["key"], []).append(r)
    lines = ["| pair | classes | source only | target supervised | gap |", "|---|---|---|---|---|"]
    for pair, (_, oracle, main_subset) in PAIRS.items():
        subsets = [main_subset] + (["13"] if main_subset == "16" else ["3"] if main_subset == "9" else [])
        for sub in subsets:
            so = [miou_over(r["final"], sub) for r in by.get(pair, [])]
            ts = [miou_over(r["final"], sub) for r in by.get(oracle, [])]
            gap = f"{statistics.mean(ts) - statistics.mean(so):.1f}" if so and ts else "–"
            lines.append(f"| {pair} | {sub} | {_fmt(so)} | {_fmt(ts)} | {gap} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--pairs", nargs="*", default=None, help="subset of the pairs (their names); default all")
    p.add_argument("--json", default=None)
    p.add_argument("--colour-only", action="store_true", help="print colour_check of the street pairs and stop")
    args = p.parse_args(argv)
    pairs = {k: v for k, v in PAIRS.items() if not args.pairs or k in args.pairs}
    colour = mini_colour_checks() if args.colour_only or any("Cityscapes" in k for k in pairs) else {}
    for pair, c in colour.items():
        print(f"colour check {pair}: {c['self_mapped']}/{c['classes']} classes mapped to themselves, "
              f"shift / class distance {c['shift_ratio']:.2f} ({c['median_shift']:.0f} / {c['median_class_distance']:.0f})")
    if args.colour_only:
        return colour
    base = {"preset": "mini", "iterations": args.iterations, "eval_every": args.iterations}
    jobs = []
    for seed in args.seeds:  # seed-major: every pair gets a first seed early
        oracles = {o for _, o, _ in pairs.values()}
        for pair, (cfg, _, _) in pairs.items():
            jobs.append({"key": pair, "config": {**base, **cfg, "seed": seed}})
        for o in sorted(oracles):
            jobs.append({"key": o, "config": {**base, **ORACLES[o], "seed": seed}})
    done: list[dict] = []
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_one, j) for j in jobs]
        for fut in as_completed(futures):
            r = fut.result()
            done.append(r)
            print(f"[{time.time() - t0:6.0f}s] {r['key']:26s} seed {r['config']['seed']}: mIoU {r['final']['miou']:.1f} "
                  f"({r['seconds']:.0f} s)  {len(done)}/{len(jobs)}", flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"seeds": args.seeds, "iterations": args.iterations, "colour": colour, "jobs": len(jobs),
                               "finished": len(done), "table": table(done),
                               "runs": [{k: d[k] for k in ("key", "config", "final", "seconds")} for d in done]},
                              f, indent=1)
    print(f"\nmini twins, target-val mIoU (%), DeepLab-v2 mini preset, {args.iterations} iterations, seeds {args.seeds}")
    print(table(done))


if __name__ == "__main__":
    main()
