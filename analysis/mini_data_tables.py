"""The tables of docs/datasets.md's mini data v3 section, from the record mini_gap_v3: the runs of
studies/mini_gap.py (runs.jsonl: source only per pair, and the target-supervised "oracle" per
target) and `udalab data realism --json` (realism.json: the colour checks of the street pairs)."""
from __future__ import annotations

import math
import statistics

from udalab.analysis.record_tables import md, num
from udalab.analysis.record_tables_other import GAP_HEADER, colour_rows, gap_rows
from udalab.analysis.records import Record, RecordSet, table
from udalab.datasets.labels import CLASS_NAMES
from udalab.datasets.mfnet import CLASS_NAMES as MFNET_CLASS_NAMES

RECORD = "mini_gap_v3"
# studies/mini_gap.py's pairs by (source, target)
PAIR_NAMES = {("gta5", "cityscapes"): "GTA5 -> Cityscapes", ("synthia", "cityscapes"): "SYNTHIA -> Cityscapes",
              ("mfnet_rgb", "mfnet_thermal"): "MFNet RGB -> thermal",
              ("mfnet_rgb_day", "mfnet_rgb_night"): "MFNet day -> night (RGB)"}


def gap_runs(rec: Record) -> dict:
    """The study's runs as gap_rows reads them: {"runs": [{"key", "config", "final"}]}, the key a pair's
    name for a source-only run and the target's name for a target-supervised one."""
    runs = []
    for run in rec.lines("runs.jsonl"):
        c = run["config"]
        key = c["target"] if c["source"] == c["target"] else PAIR_NAMES[(c["source"], c["target"])]
        runs.append({"key": key, "config": c, "final": run["reports"][-1]})
    return {"runs": sorted(runs, key=lambda r: r["config"]["seed"])}


def _cell(values: list[float]) -> str:
    """Mean over seeds and, in brackets, the lowest seed; "–" where no run scores the class."""
    values = [v for v in values if not math.isnan(v)]
    return f"{num(statistics.mean(values))} ({num(min(values))})" if values else "–"


def _class_table(rec: Record, oracle: str, pair: str, names: tuple[str, ...], target: str) -> str:
    """Per class: the target-supervised run's IoU on val and test and the source-only run's on val (mean
    over seeds, lowest seed); a last row counts the classes above 0 on every seed."""
    runs = gap_runs(rec)["runs"]
    finals = {k: [r["final"] for r in runs if r["key"] == k] for k in (oracle, pair)}
    cols = [(oracle, ""), (oracle, "test."), (pair, "")]
    rows, above = [], [0, 0, 0]
    for name in names:
        row = [name]
        for i, (key, prefix) in enumerate(cols):
            values = [f.get(f"{prefix}iou.{name}", math.nan) for f in finals[key]]
            row.append(_cell(values))
            above[i] += bool(values) and all(v > 0 for v in values)
        rows.append(row)
    seeds = {k: ", ".join(str(r["config"]["seed"]) for r in runs if r["key"] == k) for k in (oracle, pair)}
    rows.append(["IoU > 0 on every seed"] + [f"{a} of {len(names)}" for a in above])
    return md(["class", f"{target} supervised, val (seeds {seeds[oracle]})", f"{target} supervised, test",
               f"source only {pair.replace('->', '→')}, val (seeds {seeds[pair]})"], rows)


@table("mini_gap_v3_cityscapes")
def mini_gap_v3_cityscapes(recs: RecordSet) -> str:
    return _class_table(recs[RECORD], "cityscapes", "GTA5 -> Cityscapes", CLASS_NAMES, "Cityscapes")


@table("mini_gap_v3_mfnet")
def mini_gap_v3_mfnet(recs: RecordSet) -> str:
    return _class_table(recs[RECORD], "mfnet_thermal", "MFNet RGB -> thermal", MFNET_CLASS_NAMES, "MFNet thermal")


@table("mini_gap_v3")
def mini_gap_v3(recs: RecordSet) -> str:
    return md(GAP_HEADER, gap_rows(gap_runs(recs[RECORD])))


@table("mini_gap_v3_colour")
def mini_gap_v3_colour(recs: RecordSet) -> str:
    return md(["pair (v3)", "classes mapped to themselves", "shift / class distance", "the others, mapped to"],
              colour_rows(recs[RECORD].json("realism.json")["colour"]))
