"""Does adaptation close part of the mini data's domain gap? Seeds x methods, without Ray.

Runs the method loops through the local runner (the same code Ray Train runs), one CPU
thread per run and `--jobs` runs at a time, and prints target-val mIoU mean ± std:

    source only  (GTA5 -> Cityscapes, no adaptation)
    ADVENT       (IntraDA's stage 1 is exactly ADVENT: its report at the end of stage 1)
    IntraDA λ    (the end of stage 2)
    oracle       (trained on mini-Cityscapes train itself: the gap's upper end)

    python benchmarks/mini_adaptation.py --seeds 0 1 2 --json docs/mini_adaptation.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor


def _one(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from udalab.methods.engine import run_local

    reports = run_local(job["method"], job["config"])
    return {**job, "reports": reports}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lambda-split", type=float, default=0.67)
    p.add_argument("--preset", default="mini")
    p.add_argument("--iterations", type=int, default=None,
                   help="steps of source-only / ADVENT / IntraDA stage 1 (stage 2 gets half); default: the preset's")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    base = {"preset": args.preset}
    if args.iterations:
        base["iterations"] = args.iterations
    intra = {"intra_iterations": args.iterations // 2} if args.iterations else {}
    jobs = []
    for seed in args.seeds:
        jobs += [
            {"row": "source only", "method": "source_only", "config": {**base, "seed": seed}},
            {"row": "intrada", "method": "intrada", "config": {**base, **intra, "seed": seed,
                                                                 "lambda_split": args.lambda_split}},
            {"row": "oracle", "method": "source_only", "config": {**base, "seed": seed, "source": "cityscapes"}},
        ]
    jobs.sort(key=lambda j: j["method"] != "intrada")  # longest first
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(_one, jobs))

    rows: dict[str, list[float]] = {}
    for d in done:
        reports = d["reports"]
        if d["row"] == "intrada":
            inter_end = max(r["iteration"] for r in reports if r["stage"] == "inter")
            rows.setdefault("ADVENT", []).append(next(r["miou"] for r in reports if r["iteration"] == inter_end))
            rows.setdefault(f"IntraDA (λ={args.lambda_split})", []).append(reports[-1]["miou"])
        else:
            rows.setdefault(d["row"], []).append(reports[-1]["miou"])
    print(f"mini GTA5 -> mini Cityscapes val, mIoU (%), seeds {args.seeds}, iterations {args.iterations or 'preset'}")
    print(f"| {'row':22s} | mean ± std | per seed |")
    print("|---|---|---|")
    for name in ("source only", "ADVENT", f"IntraDA (λ={args.lambda_split})", "oracle"):
        v = rows[name]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        print(f"| {name:22s} | {statistics.mean(v):.1f} ± {sd:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": args.seeds, "rows": rows,
                       "runs": [{k: d[k] for k in ("row", "method", "config", "reports")} for d in done]}, f, indent=1)


if __name__ == "__main__":
    main()
