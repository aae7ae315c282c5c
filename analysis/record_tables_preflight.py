"""The tables of `udalab preflight` records: a study's cost on the cluster (docs/cluster.md) and a
row's peak memory at the paper's sizes beside its paper's GPU memory (docs/performance.md)."""
from __future__ import annotations

import json

import numpy as np

from udalab.analysis.costs import costs, published_seconds, published_training
from udalab.analysis.record_tables import md, num, signed
from udalab.analysis.records import RecordSet, table


def _overrides(row: dict) -> str:
    shown = {k: v for k, v in row["config"].items() if k != "method"}
    return f"{row['row']}: " + (", ".join(f"{k}={json.dumps(v)}" for k, v in shown.items()) or "–")


@table("preflight_cost_daformer_ablation")
def preflight_cost_daformer_ablation(recs: RecordSet) -> str:
    """Each row's trial at the paper's schedule priced from its paper's training time, the study's
    trials (rows x seeds) summed; the memory measured at the record's sizes beside the worker's GPU."""
    data = recs["preflight_daformer_ablation_s0125"].json()
    cluster, seeds = data["cluster"], len(data["seeds"])
    rows, total = [], {"trial_hours": 0.0, "instance_hours": 0.0, "cost_usd": 0.0}
    for r in data["rows"]:
        seconds, _ = published_seconds(r["method"])
        c = costs(seconds, r["paper_iterations"], cluster["price_usd_per_hour"], cluster["boot_minutes"])
        total = {k: v + seeds * c[k] for k, v in total.items()}
        rows.append([_overrides(r), r["paper_iterations"], num(seconds, 2), num(c["trial_hours"]),
                     num(c["instance_hours"]), num(c["cost_usd"], 2), num(r["peak_memory_gb"], 2)])
    rows.append([f"study: {len(data['rows'])} rows x {seeds} seeds", "", "", num(total["trial_hours"]),
                 num(total["instance_hours"]), num(total["cost_usd"], 2), ""])
    boot = num(cluster["boot_minutes"], 0)
    return md(["row", "paper iterations", "s/it (published)", "trial h", f"instance h (+{boot} min boot)",
               f"cost USD at {cluster['price_usd_per_hour']}/h", f"peak GiB, sizes x {data['size_scale']:g} "
               f"(GPU: {cluster['gpu_memory_gb']})"], rows)


def extrapolated(scales: list[float], peaks: list[float]) -> float | None:
    """The peak at the paper's sizes (scale 1) extrapolated from the scales below 1 as a constant
    + activations x scale² (least squares); None with fewer than two such scales."""
    points = [(s, p) for s, p in zip(scales, peaks) if s < 1]
    if len(points) < 2:
        return None
    slope, constant = np.polyfit([s * s for s, _ in points], [p for _, p in points], 1)
    return float(constant + slope)


# the preflights of one CPU whose peaks the table puts side by side (HRDA at x1 ran later, alone)
MEMORY_RECORDS = ("preflight_memory_cpu", "preflight_memory_cpu_hrda_1")


@table("preflight_memory_cpu")
def preflight_memory_cpu(recs: RecordSet) -> str:
    """Each row's peaks at the measured scales, at x1 extrapolated and measured, beside its paper's
    GPU memory (the difference: of the measured value where there is one, else the extrapolated)."""
    recs.one_machine(MEMORY_RECORDS)
    runs: dict[tuple, list] = {}
    for rec in (recs[name] for name in MEMORY_RECORDS):
        for name in rec.manifest["files"]:
            data = rec.json(name)
            for r in data["rows"]:
                key = (data["study"], r["row"], r["method"])
                runs.setdefault(key, []).append((data["size_scale"], r["peak_memory_gb"]))
    rows = []
    for (study, row, method), points in sorted(runs.items()):
        scales, peaks = zip(*sorted(points))
        measured = dict(zip(scales, peaks)).get(1.0)
        guess = extrapolated(list(scales), list(peaks))
        full = measured if measured is not None else guess
        published = published_training(method)
        paper = published["gpu_memory_gb"] if published else None
        rows.append([f"{study} row {row} ({method})",
                     ", ".join(f"{num(p, 2)} at x{s:g}" for s, p in zip(scales, peaks) if s < 1),
                     num(guess, 2), num(measured, 2), f"{num(paper, 1)} ({published['gpu']})" if published else "–",
                     signed(100 * (full - paper) / paper, 0) + " %" if paper and full is not None else "–"])
    return md(["row (paper preset)", "peak GiB on this CPU at sizes x F < 1", "x1 extrapolated (GiB)",
               "x1 measured (GiB)", "published GPU memory (GB)", "x1 against the published"], rows)
