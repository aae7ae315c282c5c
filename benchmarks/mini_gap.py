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

    python benchmarks/mini_gap.py --seeds 0 1 2 --iterations 300 --json docs/mini_gap.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

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
    "3": ("car", "person", "bike"),
}


def _one(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from udalab.methods.engine import run_local

    t0 = time.perf_counter()
    reports = run_local("source_only", job["config"])
    return {**job, "final": reports[-1], "seconds": time.perf_counter() - t0}


def miou_over(final: dict, subset: str) -> float:
    names = SUBSETS[subset]
    if names is None:
        vals = [v for k, v in final.items() if k.startswith("iou.")]
    else:
        vals = [final[f"iou.{n}"] for n in names if f"iou.{n}" in final]
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
    args = p.parse_args(argv)
    pairs = {k: v for k, v in PAIRS.items() if not args.pairs or k in args.pairs}
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
                    json.dump({"seeds": args.seeds, "iterations": args.iterations, "jobs": len(jobs),
                               "finished": len(done), "table": table(done),
                               "runs": [{k: d[k] for k in ("key", "config", "final", "seconds")} for d in done]},
                              f, indent=1)
    print(f"\nmini twins, target-val mIoU (%), DeepLab-v2 mini preset, {args.iterations} iterations, seeds {args.seeds}")
    print(table(done))


if __name__ == "__main__":
    main()
