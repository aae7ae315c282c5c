"""The direction tables of docs/results.md: each published comparison of a study's paper
(reference_data.json's `comparisons`, analysis/directions.py) beside the same comparison in the
study's newest record, paired per seed; and each adaptation method against its source-only
baseline at its study's schedule."""
from __future__ import annotations

import math
import re
from typing import Callable

import pandas as pd

from udalab.analysis.directions import (NOT_RUN, Comparison, NotInRecord, count_line, match, published_comparisons,
                                       verdict)
from udalab.analysis.record_tables import (MINUS, bench, delta_table, md, num, ordered, pair_rows, seeds, shift_cells,
                                           signed)
from udalab.analysis.record_tables_studies import (DAFORMER_STEPS, MSUDA, NO_CONSISTENCY, SCHEDULES,
                                                   UDAS_DATA_ONE_MACHINE, UDAS_PAPER_COUNTS, crop_configuration,
                                                   crop_trials, daformer_trials, learned_classes, mml_trials,
                                                   multidecoder_frame, udas_data_trials, udas_trials, udas_variant)
from udalab.analysis.records import Record, RecordSet, table
from udalab.analysis.reference import reference, reference_info


# ---------------------------------------------------------------------------------------
# Each study's record rows with the published tables' config columns.

def _hrda(rec: Record) -> pd.DataFrame:
    df = crop_trials(rec)
    return df.assign(self_training=df["configuration"] != "source only")     # null in the grid: the preset's True


def _daformer(rec: Record) -> pd.DataFrame:
    df = daformer_trials(rec)
    step = df["configuration"].map(DAFORMER_STEPS.index)
    return df.assign(**{name: step >= i for i, name in enumerate(["self-training", "warm-up", "RCS", "FD"], 1)})


def _udas_data(rec: Record) -> pd.DataFrame:
    df = udas_data_trials(rec)
    return df.assign(labelled=df["labelled"].map(UDAS_PAPER_COUNTS))


INTRADA_GRID = "intrada_split_grid_v3"     # the IntraDA study's rows at its schedule, all on one machine


def _intrada_configuration(row: pd.Series) -> str:
    return {"source_only": "source only", "advent": "ADVENT"}.get(row["method"]) or f"IntraDA λ {row['lambda_split']:g}"


def _intrada_runs(rec: Record) -> pd.DataFrame:
    """The IntraDA study's rows from a record's runs.jsonl (a longer schedule's record: runs with reports)."""
    df = rec.runs()
    return df.assign(configuration=df.apply(_intrada_configuration, axis=1))


def _multidecoder(rec: Record) -> pd.DataFrame:
    df = multidecoder_frame(rec.runs())
    columns = df["schedule"].map(lambda s: SCHEDULES[s][1])
    return df.assign(**{k: columns.map(lambda c, i=i: c[i]) for i, k in enumerate(["priority", "weight_copy", "order"])})


Records = str | tuple[str, ...]   # one record, or several of one machine whose rows join (study_rows)

# study: (its newest record(s) on the current data or None, the references it reproduces, its rows)
STUDIES: dict[str, tuple[Records | None, tuple[str, ...], Callable[[Record], pd.DataFrame] | None]] = {
    "hrda_crop_size": ("hrda_crop_size_2400_v3", ("hrda",), _hrda),
    "daformer_ablation": ("daformer_ablation_2400_v3", ("daformer",), _daformer),
    "intrada_split": (INTRADA_GRID, ("intrada",), _intrada_runs),
    "udas_ablation": ("udas_ablation_v3", ("udas_steps",), udas_trials),
    "udas_data": ("udas_data_v3", ("udas_data",), _udas_data),
    "mml_ablation": ("mml_ablation_v3", ("mml_ablation", "mml_streams"), mml_trials),
    "multidecoder_schedule": ("multidecoder_schedule_voc_v2", ("multidecoder_schedule",), _multidecoder),
}


def record_names(names: Records) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def joined(recs: RecordSet, names: Records, frame_of: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
    """`frame_of` each named record, one frame: one record, or several of one machine (rows of one
    schedule measured by separate runs: IntraDA's stage 1 is the ADVENT row's runs)."""
    names = record_names(names)
    if len(names) > 1:
        recs.one_machine(names)
    return pd.concat([frame_of(n) for n in names], ignore_index=True)


def study_rows(recs: RecordSet, names: Records, rows_of: Callable[[Record], pd.DataFrame]) -> pd.DataFrame:
    """A study's rows from its record(s)."""
    return joined(recs, names, lambda n: rows_of(recs[n]))


def records_label(names: Records) -> str:
    return " + ".join(f"records/{n}" for n in record_names(names))


def study_comparisons(study: str) -> list[Comparison]:
    """Every published comparison of the references a study reproduces."""
    return [c for ref in STUDIES[study][1] for c in published_comparisons(reference_info(ref), reference(ref))]


def configurations(df: pd.DataFrame, columns) -> dict[str, dict]:
    """{configuration: its values of `columns`} (its first trial's)."""
    first = df.drop_duplicates("configuration").set_index("configuration")
    return {label: {c: row[c] for c in columns if c in first} for label, row in first.iterrows()}


# ---------------------------------------------------------------------------------------
# The tables.

def _metric_name(c: Comparison) -> str:
    return f"test IoU of {', '.join(c.classes)}" if c.classes else f"test {c.measured.replace('miou', 'mIoU')}"


def _paper_cell(c: Comparison) -> str:
    return signed(c.paper_delta) if not math.isnan(c.paper_delta) else f"{'+' if c.sign > 0 else MINUS} (direction only)"


# published config columns that are no configuration of a record: the stream MML's Table 1 reads
# is a metric of the same run (the comparison's `measured`: rgb.miou for the RGB stream)
NOT_CONFIG = ("stream",)


def _measured(df: pd.DataFrame, confs: dict, c: Comparison) -> tuple[str, pd.Series]:
    a, b = ({k: v for k, v in x.items() if k not in NOT_CONFIG} for x in (c.a, c.b))
    a, b = match(a, confs), match(b, confs)
    column = "test." + c.measured
    if c.classes:
        column = "test.classes"
        df = df.assign(**{column: df[[f"test.iou.{k}" for k in c.classes]].mean(axis=1)})
    return f"{a} − {b}", pair_rows(df, a, b, column)


def _udas_data_rows(variant: str) -> Callable[[Record], pd.DataFrame]:
    """The data study's Supervised rows and its UDAS rows of one variant (udas_variant, which names
    the row) from a record of several variants, with the study's (method, labelled)."""
    def rows(rec: Record) -> pd.DataFrame:
        df = _udas_data(rec)
        names = df.apply(udas_variant, axis=1)
        count = df["configuration"].str.rsplit(", ", n=1).str[1]        # the mini count, as udas_data_trials names it
        return df.assign(configuration=names + ", " + count)[names.isin(("Supervised", variant))]
    return rows


# a study's rows under another schedule or setting than its own, where one was measured on one
# machine: table name: (study, records, their rows)
VARIANTS: dict[str, tuple[str, Records, Callable[[Record], pd.DataFrame]]] = {
    "intrada_split_2400": ("intrada_split", ("advent_2400_v3", "intrada_2400_v3"), _intrada_runs),
    "multidecoder_schedule_2400": ("multidecoder_schedule", "multidecoder_schedule_2400_voc_v2", _multidecoder),
    "udas_data_notranslate": ("udas_data", "udas_data_notranslate_v3", _udas_data_rows("UDAS − ST")),
    "udas_data_notranslate_consistency": ("udas_data", UDAS_DATA_ONE_MACHINE,
                                          _udas_data_rows(f"UDAS − ST{NO_CONSISTENCY}")),
    "udas_data_consistency": ("udas_data", UDAS_DATA_ONE_MACHINE, _udas_data_rows(f"UDAS{NO_CONSISTENCY}")),
    # the study's own UDAS rows (the preset) measured again beside the variants above
    "udas_data_preset_rerun": ("udas_data", UDAS_DATA_ONE_MACHINE, _udas_data_rows("UDAS")),
}


def direction_table(recs: RecordSet, study: str, records: tuple[Records, Callable] | None = None) -> str:
    """comparison | record rows | metric | paper Δ | mini Δ paired | agree?, and the count line;
    `records`: (records, their rows) other than the study's own (a VARIANTS entry)."""
    name, refs, rows_of = STUDIES[study]
    if records is not None:
        name, rows_of = records
    comps = study_comparisons(study)
    header = ["published comparison (a − b)", "record rows (a − b)", "metric", "paper Δ",
              "mini Δ, paired (± 2 × larger seed std; per seed)", "agree?"]
    if name is None:
        rows = [[c.name, "no record", _metric_name(c), _paper_cell(c), "no record", "–"] for c in comps]
        return md(header, rows) + f"\n\nNo record of this study on the current data: 0 / {len(comps)} compared."
    df = study_rows(recs, name, rows_of)
    confs = configurations(df, {k for ref in refs for k in reference_info(ref)["config"]})
    rows, verdicts = [], []
    for c in comps:
        try:
            label, p = _measured(df, confs, c)
        except NotInRecord:
            verdicts.append(NOT_RUN)
            rows.append([c.name, "–", _metric_name(c), _paper_cell(c), "–", NOT_RUN])
            continue
        verdicts.append(verdict(c.sign, p["delta"], p["bar"]))
        rows.append([c.name, label, _metric_name(c), _paper_cell(c),
                     f"{signed(p['delta'])} ± {num(p['bar'])} ({seeds(p['paired'], sign=True)})", verdicts[-1]])
    return md(header, rows) + f"\n\n{records_label(name)} ({mini_data_of(df)}): {count_line(verdicts)}."


def mini_data_of(df: pd.DataFrame) -> str:
    """The mini twins a record's runs read, as their provenance names them ("cityscapes-v4, gta5-v3")."""
    found = set()
    for text in df.get("provenance.data", pd.Series(dtype=object)).dropna():
        found.update(re.findall(r"\b([a-z0-9]+-v\d+):", str(text)))
    return "mini data " + ", ".join(sorted(found)) if found else "mini data not recorded"


def _register(study: str) -> None:
    table(f"directions_{study}")(lambda recs: direction_table(recs, study))


def _register_variant(name: str) -> None:
    study, records, rows_of = VARIANTS[name]
    table(f"directions_{name}")(lambda recs: direction_table(recs, study, (records, rows_of)))


for _study in STUDIES:
    _register(_study)
for _name in VARIANTS:
    _register_variant(_name)


# method, record, its configuration there, its source-only configuration there: each adaptation
# method in its study's record on the current data at the study's schedule, and where a longer
# schedule was measured, that record beside it
METHODS = [("ADVENT (IntraDA study)", INTRADA_GRID, "ADVENT", "source only"),
           ("ADVENT (IntraDA study)", "advent_2400_v3", "ADVENT", "source only"),
           ("IntraDA (λ 0.67)", INTRADA_GRID, "IntraDA λ 0.67", "source only"),
           ("IntraDA (λ 0.67)", ("advent_2400_v3", "intrada_2400_v3"), "IntraDA λ 0.67", "source only"),
           ("DAFormer (DACS + warm-up + RCS + FD)", "daformer_ablation_v3", "+ FD", "source only"),
           ("DAFormer (DACS + warm-up + RCS + FD)", "daformer_ablation_2400_v3", "+ FD", "source only"),
           ("HRDA (LR + HR 1)", "hrda_crop_size_v3", "LR + HR 1", "source only"),
           ("HRDA (LR + HR 1)", "hrda_crop_size_2400_v3", "LR + HR 1", "source only"),
           ("AdaptSegNet (UDAS study)", "udas_ablation_v3", "AdaptSegNet", "no adaptation"),
           ("ADVENT (UDAS study)", "udas_ablation_v3", "ADVENT", "no adaptation"),
           ("UDAS: ST + DA + SSL", "udas_ablation_v3", "ST + DA + SSL", "no adaptation"),
           ("MS-UDA", "mml_ablation_v3", MSUDA, "source only"),
           ("MS-UDA", "ms_uda_1200_v3", MSUDA, "source only"),
           ("MML (L_att + L_KL)", "mml_ablation_v3", "L_att + L_KL", "source only")]

# how to read each study record's rows: the studies' newest records as STUDIES reads them, and an
# earlier record of a study (the benchmark records: their `row`)
READERS: dict[str, Callable[[Record], pd.DataFrame]] = {
    **{name: rows for name, _, rows in STUDIES.values() if name is not None}, "daformer_ablation_v3": _daformer,
    "hrda_crop_size_v3": _hrda, "ms_uda_1200_v3": mml_trials, "advent_2400_v3": _intrada_runs,
    "intrada_2400_v3": _intrada_runs}


def _method_rows(recs: RecordSet, name: Records) -> pd.DataFrame:
    if not isinstance(name, str):
        return joined(recs, name, lambda n: _method_rows(recs, n))
    if name in READERS:
        return READERS[name](recs[name])
    df = bench(recs[name])
    return df.assign(configuration=df["row"])


def against_bar(p: pd.Series, above: str) -> str:
    """A method's paired row against its source-only model: `above` or "**below**" where the difference
    clears 2 × the larger seed std, else "within 2 × std"."""
    if not p["clears"]:
        return "within 2 × std"
    return above if p["delta"] > 0 else "**below**"


@table("method_vs_source_only")
def method_vs_source_only(recs: RecordSet) -> str:
    rows = []
    for method, name, conf, base in METHODS:
        df = _method_rows(recs, name)
        steps = int(df[df["configuration"] == conf]["iteration" if "iteration" in df else "iterations"].max())
        p = pair_rows(df, conf, base, "test.miou")
        beats = against_bar(p, "**beats**")
        rows.append([method, " + ".join(f"`{n}`" for n in record_names(name)),
                     mini_data_of(df).removeprefix("mini data "), steps, f"{num(p['base_mean'])} ({base})",
                     num(p["mean"]), f"{signed(p['delta'])} ({seeds(p['paired'], sign=True)})", num(p["bar"]), beats])
    return md(["method", "record", "mini data", "steps", "source-only test mIoU", "method test mIoU",
               "paired Δ (per seed)", "2 × larger seed std", "beats source only?"], rows)


def by_step(runs: pd.DataFrame, reports: pd.DataFrame, a: str, b: str) -> str:
    """Configuration a against b at each evaluation of their runs, val mIoU, and on the held-out test
    split at the end (`runs`: one row per run with `run`, `configuration` and `machine`; `reports`:
    Record.reports()): where along the schedule a method passes its source-only model."""
    reps = reports.merge(runs[["run", "configuration", "machine"]], on="run")
    reps = reps[reps["configuration"].isin([a, b])]
    rows = [[step, split, *_step_cells(pair_rows(at, a, b, metric))]
            for step, split, metric, at in _evaluations(reps, reps["iteration"].unique())]
    return md(["step", "split", f"{b} mIoU", f"{a} mIoU", "paired Δ (per seed)", "2 × larger seed std",
               f"against {b}"], rows)


@table("hrda_crop_size_2400_v3")
def hrda_crop_size_2400_v3(recs: RecordSet) -> str:
    """HRDA against the crop-size study's source-only row, both at 2400 steps, along the schedule."""
    rec = recs["hrda_crop_size_2400_v3"]
    runs = rec.runs()
    runs["configuration"] = runs.apply(crop_configuration, axis=1)
    return by_step(runs, rec.reports(), "LR + HR 1", "source only")


@table("advent_2400_v3")
def advent_2400_v3(recs: RecordSet) -> str:
    """ADVENT against the IntraDA study's source-only row, both at 2400 steps, along the schedule."""
    rec = recs["advent_2400_v3"]
    return by_step(_intrada_runs(rec), rec.reports(), "ADVENT", "source only")


@table("advent_2400_v3_classes")
def advent_2400_v3_classes(recs: RecordSet) -> str:
    """Per class some row learns, test IoU source only → ADVENT at 2400 steps (mean of the seeds) and
    the paired difference per seed."""
    df = _intrada_runs(recs["advent_2400_v3"])
    src, ada = (df[df["configuration"] == c].set_index("seed").sort_index() for c in ("source only", "ADVENT"))
    rows = [[k, *shift_cells(src, ada, f"test.iou.{k}")] for k in learned_classes(df)]
    return md(["class", "test IoU, source only → ADVENT (mean of seeds)", "paired Δ per seed"], rows)


def after_stage(runs: pd.DataFrame, reports: pd.DataFrame, configuration: str, base_step: int) -> list[list]:
    """Each evaluation of a configuration's runs after `base_step` (val; test at the end) against the
    same run at `base_step`, paired per seed: what a later stage adds to the model it starts from."""
    reps = reports.merge(runs[["run", "configuration", "machine"]], on="run")
    reps = reps[reps["configuration"] == configuration]
    base = reps[reps["iteration"] == base_step].assign(configuration="before")
    return [[configuration, step, split,
             *_step_cells(pair_rows(pd.concat([base, at.assign(configuration="after")]), "after", "before", metric))]
            for step, split, metric, at in _evaluations(reps, [s for s in reps["iteration"].unique() if s > base_step])]


def _evaluations(reps: pd.DataFrame, steps):
    """(step, split, metric, the reports at step) for each of `steps` in order and each split every run
    scored there: val at every evaluation, test at a stage's end."""
    for step in sorted(steps):
        at = reps[reps["iteration"] == step]
        for metric, split in (("miou", "val"), ("test.miou", "test")):
            if metric in at and not at[metric].isna().any():
                yield int(step), split, metric, at


def _step_cells(p: pd.Series) -> list[str]:
    """A paired row's cells: baseline mean, mean, paired Δ (per seed), the bar, above / below / within."""
    return [num(p["base_mean"]), num(p["mean"]), f"{signed(p['delta'])} ({seeds(p['paired'], sign=True)})",
            num(p["bar"]), against_bar(p, "**above**")]


def _lambda_table(df: pd.DataFrame) -> str:
    """The IntraDA study's rows in its order (source only, ADVENT, λ ascending): test mIoU, and each λ
    against the ADVENT model its stage 3 starts from (ADVENT against source only)."""
    lams = sorted(df["lambda_split"].dropna().unique())
    df = ordered(df, ["source only", "ADVENT", *(f"IntraDA λ {lam:g}" for lam in lams)])
    df = df.assign(baseline=df["method"].map({"source_only": None, "advent": "source only", "intrada": "ADVENT"}))
    base = df.drop_duplicates("configuration").set_index("configuration")["baseline"].fillna("")
    return delta_table(df, first="row", bar=True, extra=[("paired with", base.get)])


@table(INTRADA_GRID)
def intrada_split_grid(recs: RecordSet) -> str:
    """Every row of the IntraDA study at its schedule that the record ran, all on one machine."""
    return _lambda_table(_intrada_runs(recs[INTRADA_GRID]))


@table("intrada_split_v3")
def intrada_split_v3(recs: RecordSet) -> str:
    """The study's first run on the v3 twins (the rows the paper's Table 1 names), another machine."""
    df = recs["intrada_split_v3"].trials()
    return _lambda_table(df.assign(configuration=df.apply(_intrada_configuration, axis=1)))


@table("intrada_2400_v3")
def intrada_2400_v3(recs: RecordSet) -> str:
    """IntraDA's stage 3 at the longer schedule against the G_inter it starts from (the run's own
    stage-1 result, the ADVENT row's run), along stage 3."""
    rec = recs["intrada_2400_v3"]
    runs, reports = _intrada_runs(rec), rec.reports()
    inter = int(runs["iterations"].max())          # stage 1's length: stage 3 starts from its result
    rows = [r for conf in ("IntraDA λ 0.67", "IntraDA λ 1") for r in after_stage(runs, reports, conf, inter)]
    return md(["row", "step", "split", f"G_inter (step {inter}) mIoU", "G_intra mIoU", "paired Δ (per seed)",
               "2 × larger seed std", "against G_inter"], rows)


@table("ms_uda_1200_v3")
def ms_uda_1200_v3(recs: RecordSet) -> str:
    """MS-UDA against the MML study's source-only row, both at 1200 steps, along the schedule."""
    rec = recs["ms_uda_1200_v3"]
    return by_step(mml_trials(rec), rec.reports(), MSUDA, "source only")
