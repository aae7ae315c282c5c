"""Does HRDA ≥ DAFormer > source-only hold on the mini data? Seeds x rows, without Ray.

The method loops run through the local runner (the code Ray Train runs), one CPU thread
per run, `--jobs` runs at a time (or on the GPU with --device cuda), and the script prints
target-val mIoU mean ± std per row:

    source only       MiT + DAFormer head on mini-GTA5 alone (DAFormer's geometry, no self-training)
    DAFormer          DACS self-training at the low resolution (Cityscapes 128x64, 64-px crops)
    HRDA source only  HRDA's multi-resolution segmentor on mini-GTA5 alone
    HRDA              LR context (128 px at full resolution -> 64 px) + HR detail (64 px), fused
    oracle            (--oracle) DAFormer's segmentor trained on mini-Cityscapes train itself
    HRDA oracle       (--oracle) HRDA's segmentor trained on mini-Cityscapes train itself

Each segmentor has its own source-only and oracle row, so the table also gives the share of
its own gap that self-training closes: (UDA - source only) / (oracle - source only).

    python benchmarks/mini_hrda.py --seeds 0 1 2 --json records/mini_hrda/runs.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor


def _one(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    if job["config"].get("device", "cpu") == "cpu":
        torch.set_num_threads(1)
    from udalab.methods import run_local

    t0 = time.time()
    reports = run_local(job["method"], job["config"])
    return {**job, "reports": reports, "wall_s": round(time.time() - t0, 1)}


ROWS = {
    "source only": ("daformer", {"self_training": False}),
    "DAFormer": ("daformer", {}),
    "HRDA source only": ("hrda", {"self_training": False}),
    "HRDA": ("hrda", {}),
}
ORACLES = {
    "oracle": ("daformer", {"self_training": False, "source": "cityscapes"}),
    "HRDA oracle": ("hrda", {"self_training": False, "source": "cityscapes"}),
}
GAPS = {"DAFormer": ("source only", "oracle"), "HRDA": ("HRDA source only", "HRDA oracle")}


def gap_closed(by_row: dict[str, list[float]]) -> dict[str, float]:
    """Share (%) of each segmentor's own source-only -> oracle gap its self-training closes, on mean mIoU."""
    out = {}
    for row, (low, high) in GAPS.items():
        if all(by_row.get(k) for k in (row, low, high)):
            lo, hi = statistics.mean(by_row[low]), statistics.mean(by_row[high])
            out[row] = 100.0 * (statistics.mean(by_row[row]) - lo) / (hi - lo) if hi != lo else float("nan")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="mini")
    p.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--oracle", action="store_true", help="also train each segmentor on mini-Cityscapes train "
                                                            "(the top of its gap)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run (JSON)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    base = {"preset": args.preset, "device": args.device}
    if args.iterations:
        base.update(iterations=args.iterations, eval_every=args.iterations)
    for item in args.set:
        k, _, v = item.partition("=")
        base[k] = json.loads(v)
    rows = {name: ROWS[name] for name in args.rows}
    if args.oracle:
        rows.update({name: spec for name, spec in ORACLES.items() if spec[0] in {m for m, _ in rows.values()}})
    jobs = [{"row": name, "method": m, "config": {**base, **extra, "seed": seed}}
            for seed in args.seeds for name, (m, extra) in rows.items()]
    jobs.sort(key=lambda j: j["method"] != "hrda")  # longest first
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(_one, jobs))

    by_row: dict[str, list[float]] = {}
    for d in done:
        by_row.setdefault(d["row"], []).append(d["reports"][-1]["miou"])
    print(f"mini GTA5 -> mini Cityscapes val, mIoU (%), seeds {args.seeds}, iterations {args.iterations or 'preset'}")
    print("| row | mean ± std | per seed | wall s / run |")
    print("|---|---|---|---|")
    for name in rows:
        v = by_row[name]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        wall = statistics.mean(d["wall_s"] for d in done if d["row"] == name)
        print(f"| {name} | {statistics.mean(v):.1f} ± {sd:.1f} | {', '.join(f'{x:.1f}' for x in v)} | {wall:.0f} |")
    closed = gap_closed(by_row)
    for name, share in closed.items():
        low, high = GAPS[name]
        print(f"{name} closes {share:.1f} % of its own gap ({low} -> {high})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": args.seeds, "iterations": args.iterations, "rows": by_row, "gap_closed": closed,
                       "runs": [{k: d[k] for k in ("row", "method", "config", "reports", "wall_s")} for d in done]},
                      f, indent=1)


if __name__ == "__main__":
    main()
