"""Does adaptation close part of the mini data's domain gap? Seeds x methods, without Ray.

Runs the method loops through the local runner (the same code Ray Train runs), one CPU
thread per run and `--jobs` runs at a time, each against its own source-only baseline, on
mini GTA5 -> mini Cityscapes with the mini presets (ImageNet stand-in init):

    DeepLab-v2 family   source only                 source_only
                        ADVENT                      IntraDA's stage 1 is exactly ADVENT: its end-of-stage report
                                                    (`--rows ADVENT`: ADVENT alone, for sweeps)
                        IntraDA (λ = 0.67)          the end of stage 2
    DAFormer family     DAFormer source only        daformer, self_training off
                        DAFormer                    daformer
                        HRDA source only            hrda, self_training off
                        HRDA                        hrda

The result is the held-out test split (`test.miou`, 45 images nothing was tuned on); val
(`miou`, what the presets were chosen on) is printed beside it. Every finished run is
appended to the --out JSON-lines file at once, and a re-run skips the runs already there,
so an interrupted measurement resumes; a run with other settings (`--set`) is a run of its own, and
the table names it by them:

    python benchmarks/mini_adaptation.py --seeds 0 1 2 --out records/mini_adaptation/runs.jsonl
    python benchmarks/mini_adaptation.py --out records/mini_adaptation/runs.jsonl --summary   # the table only
    python benchmarks/mini_adaptation.py --rows ADVENT --set lambda_adv_main=0.001 --out sweep.jsonl
    python benchmarks/mini_adaptation.py --out sweep.jsonl --baseline records/mini_adaptation/runs.jsonl --summary
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from udalab.studies.study import parse_sets

# row -> (method, config overrides, its baseline row); IntraDA's run also yields the ADVENT row
ROWS = {
    "source only": ("source_only", {}, None),
    "ADVENT": ("advent", {}, "source only"),    # alone, for sweeps: not run by default (IntraDA's stage 1)
    "IntraDA": ("intrada", {"lambda_split": 0.67}, "source only"),
    "DAFormer source only": ("daformer", {"self_training": False}, None),
    "DAFormer": ("daformer", {}, "DAFormer source only"),
    "HRDA source only": ("hrda", {"self_training": False}, None),
    "HRDA": ("hrda", {}, "HRDA source only"),
}
BASELINE = {k: v[2] for k, v in ROWS.items() if v[2]}
DEFAULT_ROWS = [row for row in ROWS if row != "ADVENT"]
ORDER = ["source only", "ADVENT", "IntraDA", "DAFormer source only", "DAFormer", "HRDA source only", "HRDA"]
COST = {"hrda": 4, "intrada": 3, "advent": 2, "daformer": 2, "source_only": 1}   # rough, longest first


def _one(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from udalab.methods import run_local

    return {**job, "reports": run_local(job["method"], job["config"])}


def settings(job: dict) -> dict[str, str]:
    """What a run set beyond its row and the preset as it is now: {key: JSON value}. A value the
    preset has since adopted (e.g. a tuned lr passed with --set) is no setting of its own."""
    from udalab.methods import get_method

    method, own, _ = ROWS[job["row"]]
    preset = get_method(method).hparams({"preset": job["config"]["preset"], **own})
    return {k: json.dumps(v) for k, v in job["config"].items()
            if k == "preset" or (k != "seed" and k not in own and json.dumps(v) != json.dumps(getattr(preset, k, None)))}


def _key(job: dict) -> tuple:
    """A run is done when its row ran on that seed with the same settings."""
    return job["row"], job["config"]["seed"], json.dumps(settings(job), sort_keys=True)


def labels(runs: list[dict]) -> list[str]:
    """Each run's settings that set it apart from the table's other runs, e.g.
    "lambda_adv_main=0.001, lambda_adv_aux=0.0002"; "" where it has none."""
    each = [set(settings(r).items()) for r in runs]
    common = set.intersection(*each) if each else set()
    return [", ".join(f"{k}={v}" for k, v in sorted(e - common)) for e in each]


def rows_of(run: dict) -> dict[str, dict]:
    """{row: final report} of one run (IntraDA: ADVENT at the end of stage 1, IntraDA at the end)."""
    reports = run["reports"]
    if run["row"] == "IntraDA":
        inter = [r for r in reports if r["stage"] == "inter"]
        return {"ADVENT": inter[-1], "IntraDA": reports[-1]}
    return {run["row"]: reports[-1]}


def teacher_share(run: dict, after: int) -> float | None:
    """Mean share (%) of target pixels the teacher keeps above τ (`q`) over reports after step `after`."""
    qs = [r["stat.q"] for r in run["reports"] if "stat.q" in r and r["iteration"] > after]
    return 100 * statistics.mean(qs) if qs else None


def summary(runs: list[dict]) -> str:
    """The table: test mIoU per row, val beside it, Δ to the row's baseline (unpaired: means; paired:
    the same seed's difference, mean ± std), and whether the mean Δ exceeds twice the larger std.
    Runs with other settings than the rest get rows of their own, named by those settings; a row's
    baseline is the baseline row with the same settings, else the one without any."""
    vals: dict[tuple[str, str], dict[str, dict[int, float]]] = {}   # (row, its settings) -> metric -> seed -> value
    for run, named in zip(runs, labels(runs)):
        for row, rep in rows_of(run).items():
            for m in ("test.miou", "miou"):
                vals.setdefault((row, named), {}).setdefault(m, {})[run["config"]["seed"]] = rep.get(m, float("nan"))

    def ms(v):
        v = list(v)
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else float("nan"))

    out = ["mini GTA5 -> mini Cityscapes, mIoU (%) on the held-out test split (val beside it), "
           "mean ± sample std over seeds",
           "| row | test mIoU | per seed | val mIoU | Δ test | Δ > 2 × larger std? | paired Δ per seed |",
           "|---|---|---|---|---|---|---|"]
    for row, named in sorted(vals, key=lambda key: (ORDER.index(key[0]), key[1])):
        t, v = vals[row, named]["test.miou"], vals[row, named]["miou"]
        (tm, ts), (vm, vs) = ms(t.values()), ms(v.values())
        delta = verdict = paired = ""
        base = (BASELINE.get(row), named) if (BASELINE.get(row), named) in vals else (BASELINE.get(row), "")
        if base in vals:
            b = vals[base]["test.miou"]
            bm, bs = ms(b.values())
            d = tm - bm
            delta = f"{d:+.1f}"
            verdict = ("yes" if d > 2 * max(ts, bs) else "no") + f" (2 × {max(ts, bs):.1f})"
            diffs = [t[s] - b[s] for s in sorted(t) if s in b]
            pm, ps = ms(diffs)
            paired = f"{', '.join(f'{x:+.1f}' for x in diffs)} ({pm:+.1f} ± {ps:.1f})"
        name = f"{row} ({named})" if named else row
        out.append(f"| {name} | {tm:.1f} ± {ts:.1f} | {', '.join(f'{t[s]:.1f}' for s in sorted(t))} "
                   f"| {vm:.1f} ± {vs:.1f} | {delta} | {verdict} | {paired} |")
    for run in runs:
        if run["method"] in ("daformer", "hrda") and run["config"].get("self_training", True):
            q = teacher_share(run, after=200)
            if q is not None:
                out.append(f"{run['row']} seed {run['config']['seed']}: the teacher keeps {q:.1f} % of target pixels "
                           f"above τ (mean of loss.q over the reports after step 200)")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=list(ROWS),
                   help="ADVENT alone only when named: by default IntraDA's stage 1 reports it")
    p.add_argument("--preset", default="mini")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter of every run (a JSON value, else a string), e.g. "
                        "--set iterations=300 --set variant=minent")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="records/mini_adaptation/runs.jsonl", help="JSON lines, one finished run each")
    p.add_argument("--summary", action="store_true", help="print the table of --out and run nothing")
    p.add_argument("--baseline", metavar="FILE", help="pair with the baseline rows of another --out file, e.g. "
                   "a sweep's ADVENT runs with records/mini_adaptation/runs.jsonl's source-only runs of the same seeds")
    args = p.parse_args(argv)
    out = Path(args.out)
    done = _read(out)
    needed = {BASELINE[r["row"]] for r in done if r["row"] in BASELINE}
    baselines = [r for r in _read(Path(args.baseline), must_exist=True) if r["row"] in needed] if args.baseline else []
    if not args.summary:
        sets = parse_sets(args.set)
        have = {_key(d) for d in done}
        jobs = [{"row": row, "method": ROWS[row][0],
                 "config": {"preset": args.preset, **ROWS[row][1], **sets, "seed": seed}}
                for seed in args.seeds for row in args.rows]
        jobs = sorted((j for j in jobs if _key(j) not in have), key=lambda j: -COST[j["method"]])
        out.parent.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            for fut in as_completed([pool.submit(_one, j) for j in jobs]):
                run = fut.result()
                with out.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                done.append(run)
                print(f"done: {run['row']} seed {run['config']['seed']}: "
                      f"test {run['reports'][-1].get('test.miou', float('nan')):.1f}", flush=True)
    print(summary(baselines + done))


def _read(path: Path, must_exist: bool = False) -> list[dict]:
    """The runs of an --out file ([] before its first run)."""
    if not path.is_file():
        if must_exist:
            raise SystemExit(f"--baseline {path}: no such file; give the --out file of a run with the baseline rows")
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
