"""The tables of docs/datasets.md's mini data v3 section, each computed from its records alone.

    records/mini_oracle_v3/runs.jsonl   the target-trained oracles (source_only trained on the target's
                                        own train split): one run a line, {"key", "config", "reports": [final]}
    records/mini_gap_v3/gap.json        benchmarks/mini_gap.py's output: source only and oracle runs of
                                        every pair, and `colour` (colour_check of the street pairs)

Every renderer is a pure function records_root -> Markdown table (TABLES maps the docs' table
names to them); records_root is the folder holding the record folders.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from udalab.datasets.labels import CLASS_NAMES
from udalab.datasets.mfnet import CLASS_NAMES as MFNET_CLASS_NAMES, EVAL_3
from udalab.datasets.synthia import EVAL_13, EVAL_16

ORACLE, GAP = "mini_oracle_v3", "mini_gap_v3"
ORACLE_NAMES = {"cityscapes": "Cityscapes", "mfnet_thermal": "MFNet thermal", "mfnet_rgb_night": "MFNet RGB night"}
# a pair's main class subset and the smaller one its papers also report (names of the train ids averaged)
SUBSETS = {"19": CLASS_NAMES, "16": tuple(CLASS_NAMES[c] for c in EVAL_16),
           "13": tuple(CLASS_NAMES[c] for c in EVAL_13), "9": MFNET_CLASS_NAMES,
           "3": tuple(MFNET_CLASS_NAMES[c] for c in EVAL_3)}
PAIRS = {  # mini_gap's pairs: (oracle key, subsets reported)
    "GTA5 -> Cityscapes": ("cityscapes", ("19",)),
    "SYNTHIA -> Cityscapes": ("cityscapes", ("16", "13")),
    "MFNet RGB -> thermal": ("mfnet_thermal", ("9", "3")),
    "MFNet day -> night (RGB)": ("mfnet_rgb_night", ("9", "3")),
}


# ---------------------------------------------------------------------------------------
# Reading.

def oracle_runs(records_root) -> list[dict]:
    """The oracle runs of mini_oracle_v3: {"key", "seed", "final"} each, sorted by key and seed."""
    path = Path(records_root) / ORACLE / "runs.jsonl"
    runs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = [{"key": r["key"], "seed": r["config"]["seed"], "final": r["reports"][-1]} for r in runs]
    return sorted(out, key=lambda r: (r["key"], r["seed"]))


def gap_data(records_root) -> dict:
    return json.loads((Path(records_root) / GAP / "gap.json").read_text(encoding="utf-8"))


def subset_miou(final: dict, subset: str, prefix: str = "") -> float:
    """Mean IoU over the classes of `subset` that the report scores (NaN ones left out)."""
    vals = [final.get(f"{prefix}iou.{name}", math.nan) for name in SUBSETS[subset]]
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.mean(vals) if vals else math.nan


# ---------------------------------------------------------------------------------------
# Markdown.

def _num(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1f}"


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    return _num(statistics.mean(values)) + (f" ± {_num(statistics.stdev(values))}" if len(values) > 1 else "")


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


# ---------------------------------------------------------------------------------------
# Renderers.

def _oracle_classes(records_root, keys: tuple[str, ...], names: tuple[str, ...]) -> str:
    """Per class and oracle: IoU on val and test, mean over seeds and the lowest seed; a last row
    counts the classes above 0 on every seed."""
    runs = oracle_runs(records_root)
    header, rows, learnt = ["class"], [[n] for n in names], []
    for key in keys:
        finals = [r["final"] for r in runs if r["key"] == key]
        seeds = ", ".join(str(r["seed"]) for r in runs if r["key"] == key)
        for split, prefix in (("val", ""), ("test", "test.")):
            header.append(f"{ORACLE_NAMES[key]} {split}: mean (lowest seed); seeds {seeds}")
            column = [[f.get(f"{prefix}iou.{n}", math.nan) for f in finals] for n in names]
            for row, v in zip(rows, column):
                row.append("–" if all(math.isnan(x) for x in v) else f"{_num(statistics.mean(v))} ({_num(min(v))})")
            above = sum(all(x > 0 for x in v) for v in column)
            learnt.append(f"{above} of {len(names)}")
    return _md(header, rows + [["IoU > 0 on every seed", *learnt]])


def oracle_cityscapes(records_root) -> str:
    """The Cityscapes oracle's 19 classes."""
    return _oracle_classes(records_root, ("cityscapes",), CLASS_NAMES)


def oracle_mfnet(records_root) -> str:
    """The MFNet oracles' 9 classes (thermal, and RGB at night where recorded)."""
    keys = tuple(k for k in ("mfnet_thermal", "mfnet_rgb_night") if any(r["key"] == k for r in oracle_runs(records_root)))
    return _oracle_classes(records_root, keys, MFNET_CLASS_NAMES)


def gap(records_root) -> str:
    """Source only vs oracle (target supervised) per pair and class subset, mean ± sd over seeds."""
    runs = gap_data(records_root)["runs"]
    rows = []
    for pair, (oracle, subsets) in PAIRS.items():
        so = sorted((r for r in runs if r["key"] == pair), key=lambda r: r["config"]["seed"])
        ts = sorted((r for r in runs if r["key"] == oracle), key=lambda r: r["config"]["seed"])
        if not so:
            continue
        for sub in subsets:
            a = [subset_miou(r["final"], sub) for r in so]
            b = [subset_miou(r["final"], sub) for r in ts]
            diff = statistics.mean(b) - statistics.mean(a) if a and b else math.nan
            rows.append([pair.replace("->", "→"), sub, _mean_sd(a), _mean_sd(b), _num(diff),
                         ", ".join(map(_num, a)), ", ".join(map(_num, b))])
    return _md(["pair", "classes", "source only", "oracle", "gap", "source only per seed", "oracle per seed"], rows)


def gap_classes(records_root) -> str:
    """Per Cityscapes class, mean over seeds: source only from GTA5, from SYNTHIA, and the oracle (val)."""
    runs = gap_data(records_root)["runs"]
    cols = ("GTA5 -> Cityscapes", "SYNTHIA -> Cityscapes", "cityscapes")
    rows = []
    for name in CLASS_NAMES:
        cells = []
        for key in cols:
            v = [r["final"].get(f"iou.{name}", math.nan) for r in runs if r["key"] == key]
            v = [x for x in v if not math.isnan(x)]
            cells.append(_num(statistics.mean(v)) if v else "–")
        rows.append([name, *cells])
    return _md(["class", "source only (GTA5)", "source only (SYNTHIA)", "oracle"], rows)


def colour(records_root) -> str:
    """colour_check of the street pairs: classes whose target mean colour is nearest their own source
    mean, and the median colour shift of a class over the median distance between two classes."""
    rows = [[pair.replace("->", "→"), f"{c['self_mapped']} of {c['classes']}",
             f"{c['shift_ratio']:.2f} ({c['median_shift']:.0f} / {c['median_class_distance']:.0f})",
             ", ".join(f"{k} → {v}" for k, v in c["mapped_to"].items()) or "–"]
            for pair, c in gap_data(records_root)["colour"].items()]
    return _md(["pair", "classes mapped to themselves", "shift / class distance", "the others, mapped to"], rows)


TABLES = {"mini_oracle_v3_cityscapes": oracle_cityscapes, "mini_oracle_v3_mfnet": oracle_mfnet,
          "mini_gap_v3": gap, "mini_gap_v3_classes": gap_classes, "mini_gap_v3_colour": colour}
