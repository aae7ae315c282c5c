"""The tables of the mini v1 records and the CPU timing records (docs/results.md), the runner's
overhead (docs/performance.md) and the mini twins' domain gaps (docs/datasets.md)."""
from __future__ import annotations

import math
import statistics

from udalab.analysis.record_tables import SMALL, md, ms, num, seeds
from udalab.analysis.records import RecordSet, table
from udalab.datasets.labels import CLASS_NAMES, THING_CLASSES
from udalab.datasets.synthia import EVAL_13, EVAL_16

STUFF = [c for c in CLASS_NAMES if c not in THING_CLASSES]


def _final(run: dict) -> dict:
    return run["final"] if "final" in run else run["reports"][-1]


def _over(final: dict, classes) -> float:
    """mIoU (%) over a class subset of a report (NaN classes left out); all classes when None."""
    keys = [k for k in final if k.startswith("iou.")] if classes is None else [f"iou.{c}" for c in classes]
    values = [final[k] for k in keys if k in final and not math.isnan(final[k])]
    return statistics.mean(values) if values else math.nan


def _v1_rows(data: dict, order: list[str]) -> list[list]:
    """Per row of a v1 benchmark JSON: mIoU mean ± std, per seed, stuff / thing mIoU, pixel acc., train s."""
    rows = []
    for label in order:
        runs = [r for r in data["runs"] if _v1_row(r) == label]
        finals = [_final(r) for r in sorted(runs, key=lambda r: r["config"]["seed"])]
        rows.append([label, ms(data["rows"][label]), seeds(data["rows"][label]),
                     f"{ms([_over(f, STUFF) for f in finals])} / {ms([_over(f, THING_CLASSES) for f in finals])}",
                     ms([f["pixel_acc"] for f in finals]), num(statistics.mean(f["train_seconds"] for f in finals), 0)])
    return rows


def _v1_row(run: dict) -> str:
    return run["row"]


V1_HEADER = ["row", "val mIoU", "per seed (0, 1, 2)", "stuff / thing mIoU", "pixel acc.", "train s / run"]


@table("mini_adaptation_v1")
def mini_adaptation_v1(recs: RecordSet) -> str:
    rows = []
    for name, steps in (("mini_adaptation_v1", 600), ("mini_adaptation_v1_300steps", 300)):
        data = recs[name].json()
        for label in ("source only", "ADVENT", "IntraDA (λ=0.67)", "oracle"):
            rows.append([f"{label}, {steps} steps", ms(data["rows"][label]), seeds(data["rows"][label])])
    return md(["row (mini v1, random init)", "val mIoU", "per seed (0, 1, 2)"], rows)


@table("mini_hrda_v1")
def mini_hrda_v1(recs: RecordSet) -> str:
    data = recs["mini_hrda_v1"].json()
    order = ["source only", "DAFormer", "oracle", "HRDA source only", "HRDA", "HRDA oracle"]
    rows = [[f"{r[0]}, 600 steps", *r[1:]] for r in _v1_rows(data, order)]
    rows += [[f"{r[0]}, 1200 steps", *r[1:]] for r in _v1_rows(recs["mini_hrda_v1_1200steps"].json(), ["DAFormer", "HRDA"])]
    gap = data["gap_closed"]
    rows.append(["share of its own gap closed, (UDA − source only) / (oracle − source only)",
                 f"DAFormer {num(gap['DAFormer'])} %, HRDA {num(gap['HRDA'])} %", "", "", "", ""])
    return md(V1_HEADER, rows)


@table("hrda_views_v1")
def hrda_views_v1(recs: RecordSet) -> str:
    rows = recs["hrda_views_v1"].json()["rows"]
    out = []
    for view in ("LR 0.5", "HR 0.5", "LR 1.0"):
        so, orc = rows.get(f"{view} source only"), rows.get(f"{view} oracle")
        out.append([view, ms(so) if so else "–", ms(orc) if orc else "not run (the LR 1.0 view is DAFormer's segmentor)"])
    return md(["view of HRDA's segmentor (mini v1, 600 steps)", "source only val mIoU", "oracle val mIoU"], out)


@table("segformer_step_cpu")
def segformer_step_cpu(recs: RecordSet) -> str:
    data = recs["segformer_step_cpu"].json()
    names = {"segformer_hf": "transformers SegFormer", "segformer_ours": "udalab MiT + SegFormer head"}
    sizes = list(dict.fromkeys(r["sizes"] for r in data["rows"]))
    rows = []
    for key, label in names.items():
        cells = []
        for size in sizes:
            r = next(r for r in data["rows"] if r["row"] == key and r["sizes"] == size)
            cells.append(f"{r['ms_median']:.0f} ms ({r['ms_min']:.0f})")
        rows.append([label, *cells])
    return md([f"step (fwd + bwd + AdamW), {data['rows'][0]['backbone']}, {data['device']}, torch {data['torch']}",
               *[f"{s} median (min)" for s in sizes]], rows)


# ---------------------------------------------------------------------------------------
# The runner's overhead (benchmarks/sweep_overhead.py).

SWEEPS = {"sweep_overhead_clock_only": "before the cuts", "sweep_overhead_actor_reuse": "after the cuts"}
PHASES = ["before the loop", "setup", "data", "step", "update", "evaluate", "checkpoint", "other (loop)",
          "after the loop", "trial wall"]


def _mean(trials: list[dict], key: str) -> float:
    return statistics.mean(t[key] for t in trials)


@table("sweep_overhead_trial")
def sweep_overhead_trial(recs: RecordSet) -> str:
    data = {n: recs[n].json() for n in SWEEPS}
    header = ["per trial (mean s, % of its wall time)"] + [f"{when}: {mode}" for when in SWEEPS.values()
                                                           for mode in ("Tune + Train", "in-process")]
    rows = []
    for phase in PHASES:
        row = [phase]
        for d in data.values():
            for mode in ("tune", "local"):
                trials = d[mode]["trials"]
                v, wall = _mean(trials, phase), _mean(trials, "trial wall")
                row.append(f"{num(v)} ({100 * v / wall:.0f} %)")
        rows.append(row)
    return md(header, rows)


@table("sweep_overhead_sweep")
def sweep_overhead_sweep(recs: RecordSet) -> str:
    data = {n: recs[n].json() for n in SWEEPS}
    keys = ["wall", "makespan", "outside trials", "idle slots", "trial seconds"]
    header = ["sweep (s)"] + [f"{when}: {mode}" for when in SWEEPS.values() for mode in ("Tune + Train", "in-process")]
    rows = [[k] + [f"{d[m]['sweep'][k]:.0f}" for d in data.values() for m in ("tune", "local")] for k in keys]
    rows.append(["overhead: (Tune − in-process) / in-process wall"] + [
        cell for d in data.values() for cell in (f"{100 * (d['tune']['sweep']['wall'] / d['local']['sweep']['wall'] - 1):.0f} %", "")])
    return md(header, rows)


@table("sweep_overhead_step")
def sweep_overhead_step(recs: RecordSet) -> str:
    data = {n: recs[n].json() for n in SWEEPS}
    parts = list(next(iter(data.values()))["tune"]["trials"][0]["step parts"])
    header = ["inside `step` (mean s per trial)"] + [f"{when}: {mode}" for when in SWEEPS.values()
                                                    for mode in ("Tune + Train", "in-process")]
    rows = [[p] + [num(statistics.mean(t["step parts"][p] for t in d[m]["trials"])) for d in data.values()
                   for m in ("tune", "local")] for p in parts]
    return md(header, rows)


# ---------------------------------------------------------------------------------------
# The mini twins' domain gaps (benchmarks/mini_gap.py).

SUBSETS = {"19": None, "16": [CLASS_NAMES[i] for i in EVAL_16], "13": [CLASS_NAMES[i] for i in EVAL_13],
           "9": None, "3": ["car", "person", "bicycle"]}
PAIRS = {"GTA5 -> Cityscapes": ("cityscapes", ["19"]), "SYNTHIA -> Cityscapes": ("cityscapes", ["16", "13"]),
         "MFNet RGB -> thermal": ("mfnet_thermal", ["9", "3"]), "MFNet day -> night (RGB)": ("mfnet_rgb_night", ["9", "3"])}


def _mfnet_names(final: dict) -> dict:
    """MFNet's class 3 was reported as "bike" by the v1 code."""
    return {("iou.bicycle" if k == "iou.bike" else k): v for k, v in final.items()}


def gap_rows(data: dict) -> list[list]:
    """Per pair and class subset: source only and target supervised, mean ± std and per seed, and the gap
    (`data["runs"]`: {"key": a pair's name or its target's, "config", "final"} each)."""
    by = {}
    for run in sorted(data["runs"], key=lambda r: r["config"]["seed"]):
        by.setdefault(run["key"], []).append(_mfnet_names(run["final"]))
    rows = []
    for pair, (oracle, subsets) in PAIRS.items():
        if pair not in by or oracle not in by:
            continue
        for sub in subsets:
            so = [_over(f, SUBSETS[sub]) for f in by[pair]]
            ts = [_over(f, SUBSETS[sub]) for f in by[oracle]]
            rows.append([pair.replace("->", "→"), sub, ms(so), ms(ts), num(statistics.mean(ts) - statistics.mean(so)),
                         seeds(so), seeds(ts)])
    return rows


GAP_HEADER = ["pair", "classes", "source only", "target supervised", "gap", "source only per seed", "target sup. per seed"]


@table("mini_gap")
def mini_gap(recs: RecordSet) -> str:
    return md(GAP_HEADER, gap_rows(recs["mini_gap"].json()))


@table("mini_gap_v1")
def mini_gap_v1(recs: RecordSet) -> str:
    return md(GAP_HEADER, gap_rows(recs["mini_gap_v1"].json()))


def _mean_iou(finals: list[dict], classes: list[str]) -> float:
    """Mean over runs and classes of the IoU values a run reports (a SYNTHIA-trained run has none for
    the classes SYNTHIA does not label)."""
    values = [f[f"iou.{c}"] for f in finals for c in classes if not math.isnan(f.get(f"iou.{c}", math.nan))]
    return statistics.mean(values) if values else math.nan


@table("mini_gap_classes")
def mini_gap_classes(recs: RecordSet) -> str:
    data = recs["mini_gap"].json()
    keys = {"GTA5 -> Cityscapes": "source only from GTA5", "SYNTHIA -> Cityscapes": "from SYNTHIA",
            "cityscapes": "target supervised"}
    classes = ["road", "sidewalk", "building", "vegetation", "sky", "car", "truck", "bus"]
    rows = []
    for key, label in keys.items():
        finals = [r["final"] for r in data["runs"] if r["key"] == key]
        rows.append([label] + [num(_mean_iou(finals, [c])) for c in classes] +
                    [num(max(f[f"iou.{c}"] for f in finals for c in SMALL if not math.isnan(f.get(f"iou.{c}", math.nan))))])
    return md(["IoU, mean of 3 seeds", *classes, f"largest IoU of {', '.join(SMALL)}, any seed"], rows)


def colour_rows(colour: dict) -> list[list]:
    """Per pair of realism.colour_check's results: classes mapped to themselves, the colour shift, the misses."""
    return [[pair.replace("->", "→"), f"{c['self_mapped']} of {c['classes']}",
             f"{c['shift_ratio']:.2f} ({c['median_shift']:.0f} / {c['median_class_distance']:.0f})",
             ", ".join(f"{a} → {b}" for a, b in c["mapped_to"].items())] for pair, c in colour.items()]


@table("mini_gap_colour")
def mini_gap_colour(recs: RecordSet) -> str:
    return md(["pair (v2)", "classes mapped to themselves", "shift / class distance", "the others, mapped to"],
              colour_rows(recs["mini_gap"].json()["colour"]))


# ---------------------------------------------------------------------------------------
# The test suite's wall time on a clean clone (benchmarks/suite_time.py).


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


SUITE_RECORDS = ("suite_time", "suite_time_xdist")   # runs of one machine, in the order they were measured


@table("suite_time")
def suite_time(recs: RecordSet) -> str:
    return suite_table(recs, SUITE_RECORDS)


for _name in ("suite_time_xeon", "suite_time_second_xeon", "suite_time_xdist_groups",
              "suite_time_ray_tests"):   # one machine each
    table(_name)(lambda recs, name=_name: suite_table(recs, (name,)))


def suite_table(recs: RecordSet, names: tuple[str, ...]) -> str:
    """Each suite run of records `names` (one machine's) with its counts, times and slowest three tests."""
    machine = recs.one_machine(names)
    rows = []
    for name in names:
        for run in recs[name].json()["runs"]:
            counts = ", ".join(f"{n} {k}" for k, n in run["counts"].items())
            slowest = "; ".join(f"{s['test'].split('::')[-1]} {s['seconds']:.0f} s" for s in run["slowest"][:3])
            rows.append([f"`{name}`", f"`{run['commit']}`", counts, _minutes(run["pytest_seconds"]),
                         _minutes(run["wall_seconds"]), slowest])
    return md(["record", f"commit ({machine['cpu']}, {machine['isa']}, {machine['cores']} cores)", "tests",
               "pytest (min:s)", "`.ci/run` wall (min:s)", "slowest three"], rows)
