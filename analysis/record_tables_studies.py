"""The tables of docs/results.md that the studies' records give (trials.parquet and the local
runner's runs.jsonl: DAFormer's strategies, HRDA's crop sizes, the multi-decoder U-Net, MML and
UDAS), and the README run's cost in docs/performance.md."""
from __future__ import annotations

import math
import re
from typing import Callable

import pandas as pd

from udalab.analysis.paired import paired
from udalab.analysis.record_tables import (SMALL, bar_cell, delta_table, md, ms, num, ordered, pair_rows, paired_cell,
                                           seeds, signed, span)
from udalab.analysis.records import Record, RecordSet, table
from udalab.analysis.reference import reference
from udalab.core import layout

TICK = {True: "✓", False: "✗"}


def _is(value, default) -> bool:
    """A grid column's value, null meaning the preset's default."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else bool(value)


# ---------------------------------------------------------------------------------------
# DAFormer's strategy study.

DAFORMER_STEPS = ["source only", "+ self-training (DACS)", "+ warm-up", "+ RCS", "+ FD"]


def daformer_trials(rec: Record) -> pd.DataFrame:
    """The study's trials with `configuration` (its row) and `baseline` (the row above)."""
    df = rec.trials().copy()

    def step(r):
        if not _is(r["self_training"], True):
            return DAFORMER_STEPS[0]
        if pd.notna(r["warmup_iters"]) and r["warmup_iters"] == 0:
            return DAFORMER_STEPS[1]
        if not _is(r["rcs"], True):
            return DAFORMER_STEPS[2]
        return DAFORMER_STEPS[3] if r["fd_lambda"] == 0 else DAFORMER_STEPS[4]
    df["configuration"] = df.apply(step, axis=1)
    df["baseline"] = df["configuration"].map(lambda c: None if c == DAFORMER_STEPS[0]
                                             else DAFORMER_STEPS[DAFORMER_STEPS.index(c) - 1])
    df["small"] = df[[f"test.iou.{c}" for c in SMALL]].mean(axis=1)
    return ordered(df, DAFORMER_STEPS)


def daformer_ablation_table(rec: Record) -> str:
    """The study's rows paired with the row above and with source only; small classes, fence and wall."""
    df = daformer_trials(rec)
    to_src = paired(df.assign(baseline=df["configuration"].map(lambda c: None if c == DAFORMER_STEPS[0]
                                                               else DAFORMER_STEPS[0])), "test.miou")
    to_src = to_src.set_index("configuration")
    mean = df.groupby("configuration")[["small", "test.iou.fence", "test.iou.wall"]].mean()
    return delta_table(df, first=f"row ({int(df['iterations'].max())} steps)", extra=[
        ("paired Δ test to source only", lambda c: paired_cell(to_src.loc[c])),
        ("Δ to source only > 2 × larger std?", lambda c: "" if c == DAFORMER_STEPS[0] else
         f"{'**yes**' if to_src.loc[c, 'clears'] else 'no'} ({signed(to_src.loc[c, 'delta'])} against 2 × "
         f"{num(to_src.loc[c, 'bar'] / 2)})"),
        ("small classes' test IoU", lambda c: num(mean.loc[c, "small"])),
        ("fence / wall test IoU", lambda c: f"{num(mean.loc[c, 'test.iou.fence'])} / {num(mean.loc[c, 'test.iou.wall'])}")])


for _name in ("daformer_ablation", "daformer_ablation_2400_v3"):
    table(_name)(lambda recs, name=_name: daformer_ablation_table(recs[name]))


@table("daformer_ablation_presets")
def daformer_ablation_presets(recs: RecordSet) -> str:
    names = {"daformer_ablation": "lr 1.2e-3, α 0.95 (the preset)", "daformer_ablation_alpha0.999": "lr 1.2e-3, α 0.999",
             "daformer_ablation_lr6e-4_alpha0.999": "lr 6e-4, α 0.999"}
    frames = {n: daformer_trials(recs[n]) for n in names}
    rows = [[step] + [ms(f[f["configuration"] == step].sort_values("seed")["test.miou"]) for f in frames.values()]
            for step in DAFORMER_STEPS]
    full = []
    for f in frames.values():
        t = paired(f.assign(baseline=f["configuration"].map(lambda c: None if c == DAFORMER_STEPS[0]
                                                            else DAFORMER_STEPS[0])), "test.miou").set_index("configuration")
        full.append(paired_cell(t.loc["+ FD"]))
    rows.append(["+ FD − source only, paired"] + full)
    fence = [f"{num(f[f['configuration'] == '+ warm-up']['test.iou.fence'].mean())} → "
             f"{num(f[f['configuration'] == '+ RCS']['test.iou.fence'].mean())}" for f in frames.values()]
    rows.append(["fence test IoU, + warm-up → + RCS"] + fence)
    return md(["test mIoU (300 steps, seeds 0–2)", *names.values()], rows)


@table("daformer_ablation_rcs")
def daformer_ablation_rcs(recs: RecordSet) -> str:
    df = daformer_trials(recs["daformer_ablation"])
    before = df[df["configuration"] == "+ warm-up"].set_index("seed").sort_index()
    after = df[df["configuration"] == "+ RCS"].set_index("seed").sort_index()
    rows = []
    for c in ["fence", "wall", "terrain", "bus", "truck", "sidewalk", "road"]:
        k = f"test.iou.{c}"
        d = after[k] - before[k]
        rows.append([c, f"{num(before[k].mean())} → {num(after[k].mean())}", seeds(d, sign=True), ms(d, sign=True)])
    top = max(df[f"test.iou.{c}"].max() for c in SMALL)
    rows.append([f"the seven small classes ({', '.join(SMALL)})", f"largest test IoU in any of the {len(df)} trials: "
                 f"{num(top)}", "", ""])
    return md(["class", "test IoU, + warm-up → + RCS (mean of seeds)", "paired Δ per seed", "mean ± std"], rows)


# ---------------------------------------------------------------------------------------
# HRDA's crop-size study.

MODES = {"lr": "LR only", "hr": "HR only", "lr+hr": "LR + HR"}


def crop_name(r: pd.Series) -> str:
    """A crop-size trial's crop kind and ratio ("LR + HR 1")."""
    return f"{MODES[r['mode']]} {r['crop_ratio']:g}"


def crop_configuration(r: pd.Series) -> str:
    """A crop-size trial's row: "source only" or its crop (crop_name)."""
    return "source only" if not _is(r["self_training"], True) else crop_name(r)


def in_grid_order(df: pd.DataFrame, column: str = "configuration") -> list[str]:
    """The distinct values of `column` in the study's row order (the grid trials' names)."""
    row = df["trial_id"].map(lambda t: layout.grid_position(t)[0])
    return list(dict.fromkeys(df.assign(_row=row).sort_values("_row", kind="stable")[column]))


def crop_trials(rec: Record) -> pd.DataFrame:
    df = rec.trials().copy()
    df["configuration"] = df.apply(crop_configuration, axis=1)
    return df


def _crop_grid(rec: Record) -> str:
    df = crop_trials(rec)
    rows = []
    for ratio in sorted(df["crop_ratio"].unique()):
        row = [str(float(ratio))]
        for mode in MODES.values():
            sel = df[df["configuration"] == f"{mode} {ratio:g}"].sort_values("seed")["test.miou"]
            row.append(f"{ms(sel)} ({seeds(sel)})" if len(sel) else "–")
        rows.append(row)
    src = df[df["configuration"] == "source only"].sort_values("seed")["test.miou"]
    rows.append(["source only (LR 1.0, no self-training)", f"{ms(src)} ({seeds(src)})", "", ""])
    return md(["crop ratio", *MODES.values()], rows)


@table("hrda_crop_size_lr6e-4")
def hrda_crop_size_lr6e4(recs: RecordSet) -> str:
    return _crop_grid(recs["hrda_crop_size_lr6e-4_alpha0.999"])


CROP_QUESTIONS = [("HR 0.25", "LR only 0.25"), ("HR 0.5", "LR only 0.5"), ("HR 0.75", "LR only 0.75"),
                  ("LR only 0.75", "LR only 0.5"), ("LR + HR 1", "LR only 1"), ("LR + HR 1", "source only"),
                  ("LR only 1", "source only"), ("HR only 0.75", "LR + HR 1")]


@table("hrda_crop_size_questions")
def hrda_crop_size_questions(recs: RecordSet) -> str:
    rows = []
    frames = [crop_trials(recs[n]) for n in ("hrda_crop_size", "hrda_crop_size_lr6e-4_alpha0.999")]
    for a, b in CROP_QUESTIONS:
        a = a.replace("HR 0", "HR only 0")
        row = [f"{a} − {b}"]
        for df in frames:
            sel = pd.concat([df[df["configuration"] == b].assign(baseline=None),
                             df[df["configuration"] == a].assign(baseline=b)])
            row.append(paired_cell(paired(sel, "test.miou").set_index("configuration").loc[a]))
        rows.append(row)
    return md(["paired test Δ per seed (mean ± std)", "lr 1.2e-3, α 0.95 (the preset)", "lr 6e-4, α 0.999"], rows)


def crop_classes(rec: Record) -> str:
    """Road, car and the small classes' best IoU of the rows the paper's stuff / thing findings name."""
    df = crop_trials(rec)
    rows = []
    for c in ["LR only 0.75", "HR only 0.75", "LR only 1", "LR + HR 1"]:
        sel = df[df["configuration"] == c]
        rows.append([c, num(sel["test.iou.road"].mean()), num(sel["test.iou.car"].mean()),
                     num(max(sel[f"test.iou.{k}"].max() for k in SMALL))])
    return md(["configuration", "road test IoU", "car test IoU", "largest test IoU of the seven small classes"], rows)


def _register_crop(name: str, grid: str, classes: str) -> None:
    """Record `name`'s grid as table `grid` and its class table as `classes`."""
    table(grid)(lambda recs: _crop_grid(recs[name]))
    table(classes)(lambda recs: crop_classes(recs[name]))


for _name, _grid, _classes in (("hrda_crop_size", "hrda_crop_size", "hrda_crop_size_classes"),
                               ("hrda_crop_size_v3", "hrda_crop_size_v3", "hrda_crop_size_classes_v3"),
                               ("hrda_crop_size_2400_v3", "hrda_crop_size_2400_v3_grid",
                                "hrda_crop_size_classes_2400_v3")):
    _register_crop(_name, _grid, _classes)


@table("hrda_crop_size_2400_v3_curve")
def hrda_crop_size_2400_curve(recs: RecordSet) -> str:
    """Each row of the 2400-step grid along its schedule: val mIoU at every evaluation (mean of the
    seeds), the seeds whose last val is below their first, and test road IoU per seed: the crops
    under which self-training loses what it had learnt, and the class it loses."""
    rec = recs["hrda_crop_size_2400_v3"]
    runs = _crop_runs(rec)
    runs["configuration"] = runs.apply(crop_configuration, axis=1)
    reps = rec.reports().merge(runs[["run", "configuration"]], on="run").dropna(subset=["miou"])
    steps = sorted(reps["iteration"].unique())
    val = reps.pivot_table(index="configuration", columns="iteration", values="miou")      # mean of the seeds
    rows = []
    for conf in in_grid_order(runs):
        sel = runs[runs["configuration"] == conf].sort_values("seed")
        fell = int((sel["val_last"] < sel["val_first"]).sum())
        rows.append([conf, *(num(val.loc[conf, s]) for s in steps), f"{fell} of {len(sel)}", seeds(sel["test.iou.road"])])
    return md(["row", *(f"val mIoU at {int(s)}" for s in steps), "seeds ending below their first val",
               "test road IoU per seed"], rows)


def _crop_runs(rec: Record) -> pd.DataFrame:
    """A crop record's runs with their crop ("LR only 0.25"), and val mIoU at their first and last
    evaluation."""
    runs = rec.runs()
    runs["crop"] = runs.apply(crop_name, axis=1)
    reps = rec.reports().dropna(subset=["miou"]).sort_values(["run", "iteration"])
    by_run = reps.groupby("run")["miou"]
    return runs.assign(val_first=runs["run"].map(by_run.first()), val_last=runs["run"].map(by_run.last()))


def _fall(df: pd.DataFrame) -> str:
    """Val mIoU from the first evaluation to the last (means of the seeds), and how many seeds end below."""
    fell = int((df["val_last"] < df["val_first"]).sum())
    return f"{num(df['val_first'].mean())} → {num(df['val_last'].mean())} ({fell} of {len(df)} below)"


@table("hrda_small_crops_source_only_v3")
def hrda_small_crops_source_only(recs: RecordSet) -> str:
    """The crops whose self-training falls along the 2400-step schedule, trained on the source alone
    with the same crops (record hrda_small_crops_source_only_v3, mini_hrda's HRDA source-only row) beside
    the grid's self-training rows (hrda_crop_size_2400_v3), paired per seed; the grid's LR 1 and
    source-only rows below them."""
    names = ("hrda_crop_size_2400_v3", "hrda_small_crops_source_only_v3")
    recs.one_machine(names)
    grid, alone = (_crop_runs(recs[n]) for n in names)
    grid_st = grid[grid["self_training"].map(lambda v: _is(v, True))]
    pairs = [(crop, alone[alone["crop"] == crop], grid_st[grid_st["crop"] == crop]) for crop in alone["crop"].unique()]
    pairs.append(("LR only 1", grid[~grid["self_training"].map(lambda v: _is(v, True))], grid_st[grid_st["crop"] == "LR only 1"]))
    rows = []
    for crop, source, st in pairs:
        sel = pd.concat([source.assign(configuration="source only", baseline=None),
                         st.assign(configuration="self-training", baseline="source only")])
        p = paired(sel, "test.miou").set_index("configuration").loc["self-training"]
        road = [seeds(x.sort_values("seed")["test.iou.road"]) for x in (source, st)]
        rows.append([crop, f"{ms(source['test.miou'])} ({seeds(source.sort_values('seed')['test.miou'])})",
                     f"{ms(st['test.miou'])} ({seeds(st.sort_values('seed')['test.miou'])})", paired_cell(p),
                     bar_cell(p), _fall(source), _fall(st), f"{road[0]} / {road[1]}"])
    return md(["crop", "source only: test mIoU", "self-training: test mIoU", "paired Δ (self-training − source only)",
               "Δ > 2 × larger std?", "source only: val, first → last evaluation",
               "self-training: val, first → last evaluation", "test road IoU per seed: source only / self-training"],
              rows)


@table("readme_run_cost")
def readme_run_cost(recs: RecordSet) -> str:
    rows = []
    for name, label in (("hrda_crop_size_lr6e-4_alpha0.999", "Ray Tune + Train (the README's run)"),
                        ("hrda_crop_size", "local runner (`--local --jobs 2`)")):
        df = recs[name].trials()
        wall = df["wall_seconds"].sum() / 3600
        train = df["train_seconds"].sum() / 3600
        rows.append([label, len(df), num(wall, 2), num(train, 2), f"{100 * train / wall:.0f} %"])
    return md(["hrda_crop_size, 300 steps a trial", "trials", "Σ trial wall time (h)", "Σ training time (h)",
               "training's share"], rows)


@table("hrda_crop_size_2400_cost")
def hrda_crop_size_2400_cost(recs: RecordSet) -> str:
    """Each row of the grid at 2400 steps: its median trial's minutes (2 trials at once on 2 cores;
    a resumed trial's train_seconds, its time over all its processes, where its wall time is its last
    process's alone), and its share of LR + HR 1's time there beside its share in the 300-step grid (hrda_crop_size_v3);
    then the grid's CPU-hours, measured, plus, for trials not run yet, each missing row's 300-step share
    of the measured LR + HR 1 time. Only shares of one record's times are carried over, never times of
    two machines."""
    long, short = crop_trials(recs["hrda_crop_size_2400_v3"]), crop_trials(recs["hrda_crop_size_v3"])
    long["seconds"] = long[["wall_seconds", "train_seconds"]].max(axis=1)
    unit_long = long[long["configuration"] == "LR + HR 1"]["seconds"].median()
    shares = short.groupby("configuration")["wall_seconds"].mean() / short[short["configuration"] == "LR + HR 1"][
        "wall_seconds"].mean()
    rows = []
    for conf in in_grid_order(short):
        times = long[long["configuration"] == conf]["seconds"]
        rows.append([conf, len(times), num(times.median() / 60) if len(times) else "not run",
                     f"{shares[conf]:.2f}", f"{times.median() / unit_long:.2f}" if len(times) else ""])
    measured = long["seconds"].sum() / 3600
    ran = long.groupby("configuration").size()
    missing = {c: len(short[short["configuration"] == c]) - ran.get(c, 0) for c in shares.index}
    estimate = sum(n * shares[c] * unit_long for c, n in missing.items()) / 3600
    total = f"{num(measured, 1)} h measured"
    if estimate:
        total += f" + about {num(estimate, 1)} h for the {sum(missing.values())} not run (estimated)"
    rows.append([f"the grid, {len(short)} trials (CPU-hours)", len(long), total, "", ""])
    return md(["row", "trials at 2400 steps", "median trial (min)", "share of LR + HR 1's time at 300 steps",
               "share at 2400 steps"], rows)


# ---------------------------------------------------------------------------------------
# The multi-decoder U-Net.

SCHEDULES = {"s+copy>d>b": ("semantic first + copy, d→b", ("semantic", True, "d→b")),
             "s+copy>b": ("semantic first + copy, b", ("semantic", True, "b")),
             "s>d>b": ("semantic first, d→b", ("semantic", False, "d→b")),
             "s>b": ("semantic first, b", ("semantic", False, "b")),
             "d+copy>s>b": ("depth first + copy, s→b", ("depth", True, "s→b")),
             "d+copy>b": ("depth first + copy, b", ("depth", True, "b")),
             "d>s>b": ("depth first, s→b", ("depth", False, "s→b")),
             "d>b": ("depth first, b", ("depth", False, "b")),
             "s": ("single decoder", (None, None, "single decoder")),
             "b": ("joint (0.85 L_seg + 0.15 L_depth)", (None, None, "joint"))}
SCHEDULE_NAMES = [name for name, _ in SCHEDULES.values()]          # the tables' row order


def semantic_steps(schedule: str, iterations: int, first_share=None) -> int:
    """Steps in which the semantic decoder trains: stages share the budget evenly (a two-stage
    schedule's first stage gets first_share of it), and it trains in 's' and 'b' stages."""
    stages = [s.split("+")[0] for s in schedule.split(">")]
    if first_share is not None and not (isinstance(first_share, float) and math.isnan(first_share)) and len(stages) == 2:
        lengths = [round(iterations * first_share), iterations - round(iterations * first_share)]
    else:
        lengths = [iterations // len(stages)] * len(stages)
    return sum(n for s, n in zip(stages, lengths) if s in ("s", "b"))


def _published(key) -> str:
    ref = reference("multidecoder_schedule")
    match = ref[ref["order"] == key[2]] if key[0] is None else \
        ref[(ref["priority"] == key[0]) & (ref["weight_copy"] == key[1]) & (ref["order"] == key[2])]
    return num(float(match["miou"].iloc[0]), 2) if len(match) else ""


def multidecoder_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["configuration"] = df["schedule"].map(lambda s: SCHEDULES[s][0])
    df["baseline"] = df["schedule"].map(lambda s: None if s == "s" else SCHEDULES["s"][0])
    return df


def multidecoder_schedule_table(rec: Record) -> str:
    """The study's rows, paired with the single decoder; semantic-decoder steps and the published mIoU beside."""
    df = multidecoder_frame(rec.runs())
    df = ordered(df, SCHEDULE_NAMES)
    steps = {SCHEDULES[s][0]: semantic_steps(s, int(it)) for s, it in zip(df["schedule"], df["iteration"])}
    pub = {v[0]: _published(v[1]) for v in SCHEDULES.values()}
    return delta_table(df, first=f"schedule ({int(df['iteration'].max())} steps)",
                       extra=[("semantic-decoder steps", lambda c: steps[c]), ("published mIoU", lambda c: pub[c])])


for _name in ("multidecoder_schedule", "multidecoder_schedule_voc_v2", "multidecoder_schedule_2400_voc_v2"):
    table(_name)(lambda recs, name=_name: multidecoder_schedule_table(recs[name]))


@table("multidecoder_curve_2400_voc_v2")
def multidecoder_curve(recs: RecordSet) -> str:
    """Val mIoU of each schedule at each of its evaluations (mean of the seeds), with the stage it falls
    in (d: the depth decoder trains, s: the semantic decoder, b: both): whether a row still rises at the
    schedule's end."""
    rec = recs["multidecoder_schedule_2400_voc_v2"]
    reps = rec.reports().merge(multidecoder_frame(rec.runs())[["run", "configuration"]], on="run")
    steps = sorted(reps["iteration"].unique())
    rows = []
    for label in SCHEDULE_NAMES:
        at = reps[reps["configuration"] == label]
        if len(at):
            cells = {step: f"{num(e['miou'].mean())} ({e['stage'].iloc[0].split('-')[1]})"
                     for step, e in at.groupby("iteration")}
            rows.append([label, *(cells.get(step, "") for step in steps)])
    return md(["schedule", *(f"step {s}" for s in steps)], rows)


@table("multidecoder_equal_steps")
def multidecoder_equal_steps(recs: RecordSet) -> str:
    rec = recs["multidecoder_equal_semantic_steps"]
    two, three = rec.trials("two_stage_trials.parquet"), rec.trials("three_stage_trials.parquet")
    single = rec.runs("single_decoder_runs.jsonl").rename(columns={"iteration": "iterations"})
    df = multidecoder_frame(pd.concat([single, two, three], ignore_index=True))
    df["configuration"] = df.apply(lambda r: f"{r['configuration']} ({int(r['iterations'])} steps)", axis=1)
    df["baseline"] = df["baseline"].map(lambda b: None if not isinstance(b, str) else f"{b} (600 steps)")
    steps = {r["configuration"]: semantic_steps(r["schedule"], int(r["iterations"]), r.get("first_share"))
             for _, r in df.iterrows()}
    return delta_table(df, first="schedule", extra=[("semantic-decoder steps", lambda c: steps[c])])


COPY_STARTS = {"none": "its own initialisation (d>s>b)", "copy": "the paper's copy, every block (d+copy>s>b)",
               "copy_deep": "the copy of every block but the last"}


@table("multidecoder_copy_voc_v2")
def multidecoder_copy(recs: RecordSet) -> str:
    """benchmarks/multidecoder_copy.py: per start of the semantic decoder and schedule length, the
    effective rank of each decoder block's output at the semantic stage's start and end (seed means),
    the largest dead-channel share, and val / test mIoU paired per seed with its own initialisation."""
    rec = recs["multidecoder_copy_voc_v2"]
    rows = []
    for name in sorted((f for f in rec.manifest["files"] if f.startswith("copy")), key=len):
        runs = sorted(rec.json(name), key=lambda m: m["seed"])
        steps = runs[0]["iterations"][1]

        def ranks(variant, when):
            per_block = zip(*([b["effective_rank"] for b in m["variants"][variant][when]] for m in runs))
            return " / ".join(f"{sum(v) / len(v):.0f}" for v in per_block)

        for variant, label in COPY_STARTS.items():
            if variant not in runs[0]["variants"]:
                continue
            got = {k: [m["variants"][variant][k] for m in runs] for k in ("2-s.miou", "3-b.test.miou")}
            own = {k: [m["variants"]["none"][k] for m in runs] for k in got}
            dead = max(b["dead"] for m in runs for when in ("semantic_start", "semantic_end")
                       for b in m["variants"][variant][when])
            delta = {k: [a - b for a, b in zip(got[k], own[k])] for k in got}
            rows.append([steps, label, ", ".join(str(m["seed"]) for m in runs), ranks(variant, "semantic_start"),
                         ranks(variant, "semantic_end"), num(100 * dead, 0) + " %",
                         ms(got["2-s.miou"]), "" if variant == "none" else f"{seeds(delta['2-s.miou'], sign=True)} "
                         f"({ms(delta['2-s.miou'], sign=True)})",
                         ms(got["3-b.test.miou"]), "" if variant == "none" else f"{seeds(delta['3-b.test.miou'], sign=True)} "
                         f"({ms(delta['3-b.test.miou'], sign=True)})"])
    channels = " / ".join(str(b["channels"]) for b in runs[0]["variants"]["none"]["semantic_start"])
    return md(["steps per stage", "semantic decoder starts from", "seeds",
               f"effective rank per block, semantic stage's start (of {channels} channels)",
               "… at its end", "dead channels (largest share)", "val mIoU after the semantic stage",
               "paired Δ to own init", "test mIoU after both", "paired Δ to own init"], rows)


@table("multidecoder_single_repeat")
def multidecoder_single_repeat(recs: RecordSet) -> str:
    early = recs["multidecoder_schedule"].runs()
    early = early[early["schedule"] == "s"].set_index("seed").sort_index()
    late = recs["multidecoder_equal_semantic_steps"].runs("single_decoder_runs.jsonl").set_index("seed").sort_index()
    rows = [[int(s), num(early.loc[s, "test.miou"], 4), num(late.loc[s, "test.miou"], 4),
             "yes" if early.loc[s, "test.miou"] == late.loc[s, "test.miou"] else "no"] for s in early.index]
    return md(["single decoder, seed", "test mIoU, records/multidecoder_schedule (2026-11-30)",
               "test mIoU, records/multidecoder_equal_semantic_steps", "identical"], rows)


# ---------------------------------------------------------------------------------------
# MML and MS-UDA on mini MFNet.

MML_ROWS = {(False, False): "neither", (True, False): "L_att", (False, True): "L_KL", (True, True): "L_att + L_KL"}
MSUDA = "MS-UDA (Table 1's baseline)"


def mml_configuration(r: pd.Series) -> str:
    """A run's row: MML's by its two losses, MS-UDA's, or the source-only row (MS-UDA's adapt=False)."""
    if r["method"] == "ms_uda":
        adapt = r.get("adapt")                            # absent (NaN) in runs before the source-only row
        return "source only" if pd.notna(adapt) and not adapt else MSUDA
    return MML_ROWS[(bool(r["att_loss"]), bool(r["kl_loss"]))]


def mml_trials(rec: Record, name: str | None = None) -> pd.DataFrame:
    df = rec.runs(name)
    df["configuration"] = df.apply(mml_configuration, axis=1)
    df["adapt"] = df["configuration"] != "source only"        # every row but source only adapts (the default)
    return df


def mml_ablation_table(rec: Record) -> str:
    """Table 3's rows, MS-UDA and (in records that ran it) the source-only row, each paired with
    "neither"; per-class, day / night and RGB-stream columns; the published thermal mIoU beside."""
    df = mml_trials(rec)
    df["baseline"] = df["configuration"].map(lambda c: None if c == "neither" else "neither")
    df = ordered(df, ["source only", *MML_ROWS.values(), MSUDA])
    ref = reference("mml_ablation").set_index("label")["miou"]
    pub = {v: num(ref[f"L_att {TICK[k[0]]}, L_KL {TICK[k[1]]}"]) for k, v in MML_ROWS.items()}
    streams = reference("mml_streams").set_index("label")["miou"]
    pub[MSUDA], pub["source only"] = num(streams["MS-UDA, thermal stream"]), "–"
    return delta_table(df, first="row", extra=[*mml_columns(df), ("published (thermal)", lambda c: pub[c])])


def mml_columns(df: pd.DataFrame) -> list[tuple[str, object]]:
    """The MML tables' per-class, day / night and RGB-stream cells of a row (mean ± std over its seeds)."""
    by = df.groupby("configuration")

    def cell(c, *keys):
        return " / ".join(ms(by.get_group(c).sort_values("seed")[k]) for k in keys)
    return [("test car IoU", lambda c: cell(c, "test.iou.car")),
            ("test person / bicycle IoU", lambda c: cell(c, "test.iou.person", "test.iou.bicycle")),
            ("test day / night mIoU", lambda c: cell(c, "test.day.miou", "test.night.miou")),
            ("RGB stream test mIoU", lambda c: cell(c, "test.rgb.miou"))]


def mml_factorial_table(rec: Record) -> str:
    """Table 3 read as the 2 x 2 design it is, and MS-UDA's difference by time of day."""
    df = mml_trials(rec)
    t = {k: df[df["configuration"] == v].set_index("seed")["test.miou"].sort_index() for k, v in MML_ROWS.items()}
    att = ((t[True, False] - t[False, False]) + (t[True, True] - t[False, True])) / 2
    kl = ((t[False, True] - t[False, False]) + (t[True, True] - t[True, False])) / 2
    day, night = (df[df["configuration"] == MSUDA].set_index("seed").sort_index(),
                  df[df["configuration"] == "neither"].set_index("seed").sort_index())
    return md(["effect on test mIoU (thermal)", "per seed (0, 1, 2)", "mean ± std"],
              [["L_att (with and without L_KL, averaged)", seeds(att, sign=True), ms(att, sign=True)],
               ["L_KL (with and without L_att, averaged)", seeds(kl, sign=True), ms(kl, sign=True)],
               ["MS-UDA − neither, day images", seeds(day["test.day.miou"] - night["test.day.miou"], sign=True),
                ms(day["test.day.miou"] - night["test.day.miou"], sign=True)],
               ["MS-UDA − neither, night images", seeds(day["test.night.miou"] - night["test.night.miou"], sign=True),
                ms(day["test.night.miou"] - night["test.night.miou"], sign=True)]])


def _register_mml(name: str) -> None:
    table(name)(lambda recs: mml_ablation_table(recs[name]))
    table(name.replace("mml_ablation", "mml_factorial"))(lambda recs: mml_factorial_table(recs[name]))


for _name in ("mml_ablation", "mml_ablation_v3"):
    _register_mml(_name)


# ---------------------------------------------------------------------------------------
# IntraDA's premise, measured on trained runs (benchmarks/intrada_ranking.py).


def intrada_ranking(recs: RecordSet, name: str) -> str:
    """Per trained IntraDA run: G_inter on the easy and the hard split of its entropy ranking (the
    intra-domain gap), the entropy-accuracy rank correlation, and what stage 3 (G_intra) changed on
    each split; a mean row per λ."""
    runs = sorted(recs[name].json("ranking.json"), key=lambda m: (m["lambda_split"], m["seed"]))

    def row(label, of):
        def mean(get):
            return sum(get(m) for m in of) / len(of)

        inter, intra = ({k: {s: mean(lambda m, k=k, s=s, model=model: m[model][s][k]) for s in ("easy", "hard")}
                         for k in ("miou", "pixel_acc")} for model in ("inter", "intra"))
        images = of[0]["images"]
        return [label, f"{images['easy']} / {images['hard']}",
                *(f"{num(inter[k]['easy'])} / {num(inter[k]['hard'])} ({signed(inter[k]['easy'] - inter[k]['hard'])})"
                  for k in ("miou", "pixel_acc")),
                signed(mean(lambda m: m["spearman"]), 2),
                *(f"{signed(intra['miou'][s] - inter['miou'][s])} / {signed(intra['pixel_acc'][s] - inter['pixel_acc'][s])}"
                  for s in ("easy", "hard"))]

    rows = []
    for lam in sorted({m["lambda_split"] for m in runs}):
        of = [m for m in runs if m["lambda_split"] == lam]
        rows += [row(f"λ {lam:g}, seed {m['seed']}", [m]) for m in of]
        rows.append(row(f"**λ {lam:g}, mean of {len(of)}**", of))
    return md(["run", "images easy / hard", "G_inter mIoU easy / hard (gap)", "G_inter pixel acc. easy / hard (gap)",
               "Spearman (entropy, pixel acc.)", "G_intra − G_inter, easy: mIoU / pixel acc.",
               "G_intra − G_inter, hard: mIoU / pixel acc."], rows)


def _register_ranking(name: str) -> None:
    table(name)(lambda recs: intrada_ranking(recs, name))


for _name in ("intrada_ranking_v3", "intrada_ranking_2400_v3"):
    _register_ranking(_name)


def expert_table(rec: Record) -> str:
    """What every row of an MML-study record learns from: the expert's score on mini Cityscapes val and
    its pseudo labels of MFNet's day training images scored against MFNet's own labels (the artifact's
    meta, in the record as expert.json)."""
    meta = rec.json("expert.json")
    q = meta["pseudo_labels_vs_labels"]
    return md(["expert val mIoU (mini Cityscapes, 19 classes)", "day training images labelled",
               "pseudo labels vs MFNet's labels: mIoU (car, person, bicycle)", "car IoU", "person IoU", "bicycle IoU"],
              [[num(meta["expert_miou_on_cityscapes_val"]), meta["images"], num(q["miou"]), num(q["iou.car"]),
                num(q["iou.person"]), num(q["iou.bicycle"])]])


@table("mml_expert_v3")
def mml_expert_v3(recs: RecordSet) -> str:
    return expert_table(recs["mml_ablation_v3"])


@table("ms_uda_1200_v3_expert")
def ms_uda_1200_v3_expert(recs: RecordSet) -> str:
    return expert_table(recs["ms_uda_1200_v3"])


@table("ms_uda_1200_v3_classes")
def ms_uda_1200_v3_classes(recs: RecordSet) -> str:
    """MS-UDA and the source-only row at 1200 steps: test car, person and bicycle IoU, day / night and
    the RGB stream, each row's seeds (its paired mIoU against source only: the table ms_uda_1200_v3)."""
    df = ordered(mml_trials(recs["ms_uda_1200_v3"]), ["source only", MSUDA])
    cols = mml_columns(df)
    return md(["row", "seeds", *(h for h, _ in cols)],
              [[c, ", ".join(map(str, g["seed"])), *(fn(c) for _, fn in cols)]
               for c, g in df.groupby("configuration", sort=False)])


@table("mml_labels_and_rate_v3")
def mml_labels_and_rate_v3(recs: RecordSet) -> str:
    """MML's rows trained on the expert's pseudo labels (mml_ablation_v3, mml_ablation_lr0.02_v3) and on
    MFNet's own day labels (mml_own_labels_v3), at the mini preset's learning rate and at ten times it:
    thermal test mIoU and car / person / bicycle IoU, each adapting row paired with the source-only row
    of the same labels and learning rate."""
    groups = [("the expert's pseudo labels", "0.002 (the preset)", "mml_ablation_v3", None),
              ("the expert's pseudo labels", "0.02", "mml_ablation_lr0.02_v3", None),
              ("MFNet's own labels", "0.002 (the preset)", "mml_own_labels_v3", "runs_lr0.002.jsonl"),
              ("MFNet's own labels", "0.02", "mml_own_labels_v3", "runs_lr0.02.jsonl")]
    own = pd.concat([mml_trials(recs["mml_own_labels_v3"], f) for _, _, _, f in groups[2:]])
    order = [c for c in ["source only", *MML_ROWS.values(), MSUDA] if c in set(own["configuration"])]
    rows = []
    for labels, lr, name, file in groups:
        df = mml_trials(recs[name], file)
        df = ordered(df[df["configuration"].isin(order)].copy(), order)
        base = "source only" if "source only" in set(df["configuration"]) else None     # not run in every group
        df["baseline"] = df["configuration"].map(lambda c: None if c == base else base)
        to_src = paired(df, "test.miou").set_index("configuration")
        for c in dict.fromkeys(df["configuration"]):
            g = df[df["configuration"] == c].sort_values("seed")
            rows.append([labels, lr, c, ", ".join(str(int(x)) for x in g["seed"]), ms(g["test.miou"]),
                         *(ms(g[f"test.iou.{k}"]) for k in ("car", "person", "bicycle")),
                         paired_cell(to_src.loc[c]), bar_cell(to_src.loc[c])])
    return md(["trained on", "learning rate", "row", "seeds", "test mIoU (thermal)", "car IoU", "person IoU",
               "bicycle IoU", "paired Δ to source only", "Δ > 2 × larger std?"], rows)


@table("mml_delta_constant")
def mml_delta_constant(recs: RecordSet) -> str:
    ramp = mml_trials(recs["mml_ablation"])
    ramp = ramp[ramp["configuration"] == "L_att + L_KL"].assign(configuration="δ 0.2 → 1 (the paper's ramp)", baseline=None)
    const = recs["mml_delta_constant"].runs().assign(configuration="δ = 1 throughout", baseline="δ 0.2 → 1 (the paper's ramp)")
    return delta_table(pd.concat([ramp, const]), first="L_att + L_KL")


SEARCH_KEYS = ["delta_start", "delta_end", "delta_shape", "alpha", "beta", "gamma"]
PAPER = {"delta_start": 0.2, "delta_end": 1.0, "delta_shape": "linear", "alpha": 1.0, "beta": 0.25, "gamma": 0.01}


def _same(params: dict, row) -> bool:
    """Whether a run's config has these search parameters (to the 4 digits the sweep printed)."""
    return all(abs(float(row[k]) - float(v)) < 5e-4 if k != "delta_shape" else row[k] == v for k, v in params.items())


def search_configurations(rec: Record) -> list[tuple[str, dict]]:
    """(label, parameters): the paper's schedule, then the search's trials by their number."""
    trials = sorted(rec.lines("search_trials.jsonl"), key=lambda t: t["number"])
    return [("paper", PAPER)] + [(f"{t['number']} (`{t['trial_id']}`)", {k: t["params"][k] for k in SEARCH_KEYS})
                                 for t in trials]


def search_runs(rec: Record) -> pd.DataFrame:
    """runs.jsonl with `configuration` (a search_configurations label)."""
    df = rec.runs("runs.jsonl")
    df[SEARCH_KEYS] = df[SEARCH_KEYS].astype(object) if set(SEARCH_KEYS) <= set(df) else None
    for k, v in PAPER.items():
        df[k] = df[k].where(df[k].notna(), v)
    labels = search_configurations(rec)
    df["configuration"] = df.apply(lambda r: next(lab for lab, p in labels if _same(p, r)), axis=1)
    return df


@table("mml_delta_search")
def mml_delta_search(recs: RecordSet) -> str:
    rec = recs["mml_delta_search"]
    runs, reps = search_runs(rec), rec.reports("runs.jsonl")
    trials = {f"{t['number']} (`{t['trial_id']}`)": t for t in rec.lines("search_trials.jsonl")}
    rows = []
    for label, p in search_configurations(rec):
        t = trials.get(label)
        hist = {h["iteration"]: h for h in (t["train_history"] if t else [])}
        mine = runs[(runs["configuration"] == label) & (runs["seed"] == 0)]
        local = {r["iteration"]: r for _, r in reps[reps["run"].isin(mine["run"])].iterrows()}

        def at(step, key="miou"):
            if step in hist:
                return num(hist[step].get(key, math.nan))
            return f"*{num(local[step][key])}*" if step in local else "–"
        status = "(not in the search)" if t is None else f"{t['status']}, {len(t['tune_reports'])} of 3 reports to Tune"
        rows.append([label, f"{p['delta_start']:.2f} → {p['delta_end']:.2f}, {p['delta_shape']}", num(p["alpha"], 2),
                     num(p["beta"], 2), num(p["gamma"], 3), " / ".join(at(s) for s in (200, 400, 600)),
                     at(600, "test.miou"), status])
    return md(["configuration", "δ start → end, shape", "α", "β", "γ", "val at 200 / 400 / 600 steps", "test at 600",
               "the search (seed 0)"], rows)


def search_finals(rec: Record) -> pd.DataFrame:
    """The search's trials whose Train run reached 600 steps (seed 0): their last report, as runs."""
    labels = dict(search_configurations(rec)[1:]).keys()
    rows = [{"configuration": lab, "seed": t["params"]["seed"], **t["train_history"][-1]}
            for lab, t in zip(labels, sorted(rec.lines("search_trials.jsonl"), key=lambda t: t["number"]))
            if t["train_history"] and t["train_history"][-1]["iteration"] == 600]
    return pd.DataFrame(rows).assign(machine=rec.runs("runs.jsonl")["machine"].iloc[0])


@table("mml_delta_seeds")
def mml_delta_seeds(recs: RecordSet) -> str:
    rec = recs["mml_delta_search"]
    df = pd.concat([search_runs(rec), search_finals(rec)], ignore_index=True)
    df["baseline"] = df["configuration"].map(lambda c: None if c == "paper" else "paper")
    test = paired(df, "test.miou").set_index("configuration")
    order = test.sort_values("mean", ascending=False).index
    df = ordered(df, ["paper"] + [c for c in order if c != "paper"])
    alpha = df.groupby("configuration")["alpha"].first()
    return delta_table(df, first="configuration", extra=[("α", lambda c: num(float(alpha[c]), 2))])


@table("mml_delta_shape")
def mml_delta_shape(recs: RecordSet) -> str:
    paper = search_runs(recs["mml_delta_search"])
    paper = paper[paper["configuration"] == "paper"].assign(configuration="linear (the paper's)", baseline=None)
    shape = recs["mml_delta_shape"].runs()
    shape["configuration"] = shape["delta_shape"].map({"step": "step at half-way", "sigmoid": "sigmoid ramp-up"})
    shape["baseline"] = "linear (the paper's)"
    df = ordered(pd.concat([paper, shape]), ["linear (the paper's)", "step at half-way", "sigmoid ramp-up"])
    mean_delta = {}
    for name, part in (("mml_delta_search", paper), ("mml_delta_shape", shape)):
        reps = recs[name].reports("runs.jsonl")
        for c, sel in part.groupby("configuration"):
            mean_delta[c] = span([reps[reps["run"] == r]["loss.delta"].mean() for r in sel["run"]], 2)
    return delta_table(df, first="δ 0.2 → 1", extra=[("mean δ over training", lambda c: mean_delta[c])])


@table("mml_expert_256x128")
def mml_expert_256x128(recs: RecordSet) -> str:
    rows = [[int(r["iteration"]), num(r["miou"]), num(r.get("test.miou", math.nan)), num(r["iou.car"]),
             num(r["iou.person"]), num(r["iou.rider"]), num(r["iou.bicycle"]), num(r["train_seconds"] / 60)]
            for r in recs["mml_expert_256x128"].json()]
    return md(["step", "val mIoU", "test mIoU", "val car IoU", "person", "rider", "bicycle", "training minutes"], rows)


# ---------------------------------------------------------------------------------------
# UDAS.

UDAS_STEPS = {"row0": ("no adaptation", "no_adaptation"), "row1": ("UDA", "uda"), "row2": ("ST", "st"),
              "row3": ("ST + UDA", "st+uda"), "row4": ("ST + DA + SSL", "st+da+ssl"),
              "row5": ("AdaptSegNet", "adaptsegnet"), "row6": ("ADVENT", "advent")}
# the study's records: {record: its ADVENT row's name}. Runs record no resolved hyperparameters, and
# ADVENT's mini preset had the reference's four-layer discriminator when the first one ran (one layer now).
UDAS_RECORDS = {"udas_ablation": "ADVENT (four-layer D)", "udas_ablation_v3": "ADVENT"}


def udas_trials(rec: Record) -> pd.DataFrame:
    names = {**{row: name for row, (name, _) in UDAS_STEPS.items()}, "row6": UDAS_RECORDS[rec.name]}
    df = rec.runs()
    df["configuration"] = df["trial_id"].map(lambda t: names[t.split("-")[0]])
    df["step"] = df["trial_id"].map(lambda t: UDAS_STEPS[t.split("-")[0]][1])
    df["baseline"] = df["configuration"].map(lambda c: None if c == "no adaptation" else "no adaptation")
    return ordered(df, [names[row] for row in UDAS_STEPS])


def _udas_table(df: pd.DataFrame, steps: list[str]) -> str:
    pub = reference("udas_steps").set_index("step")["miou"]
    minutes = df.groupby("configuration")["train_seconds"].mean() / 60
    sel = df[df["step"].isin(steps)]
    published = dict(zip(sel["configuration"], sel["step"].map(lambda s: num(pub[s]))))
    return delta_table(sel, first="row", extra=[("published", lambda c: published[c]),
                                                ("training minutes per run", lambda c: num(minutes[c], 0))])


UDAS_CLASSES = ["road", "sidewalk", "building", "vegetation", "sky", "car"]


def learned_classes(df: pd.DataFrame) -> list[str]:
    """The classes some configuration learns: test IoU above 1 in its mean over the seeds."""
    means = df.groupby("configuration")[[c for c in df if c.startswith("test.iou.")]].mean()
    return [c.removeprefix("test.iou.") for c in means if (means[c] > 1).any()]


def class_deltas(runs: pd.DataFrame, base: pd.DataFrame, classes: list[str]) -> list[str]:
    """Per class, the paired Δ test IoU of `runs` to `base` (both indexed by seed), mean of the seeds both have."""
    return [signed((runs[f"test.iou.{k}"] - base[f"test.iou.{k}"]).mean()) for k in classes]


def udas_ablation_classes(rec: Record) -> str:
    """Each step row's paired Δ per class to no adaptation: the classes the first record learned, and on
    later mini data every class some row learns (test IoU above 1 in a row's mean)."""
    df = udas_trials(rec)
    classes = UDAS_CLASSES if rec.name == "udas_ablation" else learned_classes(df)
    base = df[df["configuration"] == "no adaptation"].set_index("seed")
    rows = [[c, *class_deltas(df[df["configuration"] == c].set_index("seed"), base, classes)]
            for c in ["UDA", "ST", "ST + UDA", "ST + DA + SSL"]]
    return md(["paired Δ test IoU to no adaptation (mean of seeds)", *classes], rows)


def stage_ends(rec: Record, df: pd.DataFrame, stage: str = "uda") -> pd.Series:
    """{run: test mIoU at the end of a stage} (its last report in that stage)."""
    reps = rec.reports()
    ends = reps[reps["stage"] == stage].groupby("run").last()["test.miou"]
    return df["run"].map(ends)


def udas_ablation_stages(rec: Record) -> str:
    df = udas_trials(rec)
    df = df[df["configuration"] == "ST + DA + SSL"].sort_values("seed")
    uda = stage_ends(rec, df)
    return md([f"ST + DA + SSL, seeds {', '.join(str(s) for s in df['seed'])}", "test mIoU", "mean ± std"],
              [["end of the UDA stage (with Domain CutMix)", seeds(uda), ms(uda)],
               ["after the self-training round", seeds(df["test.miou"]), ms(df["test.miou"])],
               ["the round's gain", seeds(df["test.miou"].values - uda.values, sign=True),
                ms(df["test.miou"].values - uda.values, sign=True)]])


def _register_udas(name: str) -> None:
    """The step table, the comparison rows, the per-class and the per-stage table of record `name`."""
    suffix = name.removeprefix("udas_ablation")
    steps = [step for _, step in UDAS_STEPS.values()]
    table(name)(lambda recs: _udas_table(udas_trials(recs[name]), steps[:5]))
    table(f"udas_comparison{suffix}")(lambda recs: _udas_table(udas_trials(recs[name]), [steps[0], *steps[5:]]))
    table(f"udas_ablation_classes{suffix}")(lambda recs: udas_ablation_classes(recs[name]))
    table(f"udas_ablation_stages{suffix}")(lambda recs: udas_ablation_stages(recs[name]))


for _name in UDAS_RECORDS:
    _register_udas(_name)


def _rgb(c) -> str:
    return "–" if c is None else "(" + ", ".join(f"{v:.0f}" for v in c) + ")"


def udas_translation(rec: Record) -> str:
    """Per class (1 % of the source's pixels or more): its shares, a source-trained model's IoU on the
    source and on the translation (mean ± std over the models' seeds), and its mean colours."""
    data = rec.json()
    rows = []
    for name, first in data[0]["classes"].items():
        if first["pixels"] < 0.01:
            continue
        src, tr = ([d["classes"][name][k] for d in data] for k in ("iou_source", "iou_translated"))
        rows.append([name, num(100 * first["pixels"]), num(100 * first["pixels_target"]), ms(src), ms(tr),
                     ms([b - a for a, b in zip(src, tr)], sign=True), _rgb(first["colour_source"]),
                     _rgb(first["colour_translated"]), _rgb(first["colour_target"]),
                     f"{num(math.dist(first['colour_source'], first['colour_target']), 0)} → "
                     f"{num(math.dist(first['colour_translated'], first['colour_target']), 0)}"])
    rows.append(["mIoU (every class)", "", "", ms([d["miou_source"] for d in data]),
                 ms([d["miou_translated"] for d in data]),
                 ms([d["miou_translated"] - d["miou_source"] for d in data], sign=True), "", "", "", ""])
    return md(["class", "% of source pixels", "% of target pixels", "IoU on the source", "IoU on its translation",
               "Δ", "mean RGB: source", "translation", "target", "RGB distance to the target's: source → translation"],
              rows)


table("udas_translation_v3")(lambda recs: udas_translation(recs["udas_translation_v3"]))

# CyCADA's semantic consistency in UDAS's CycleGAN: the study's no-adaptation and ST rows with the plain
# translation, and the ST row again with L_sem (one machine, one stand-in).
SEMANTIC_FILES = {"plain.jsonl": {"row0": "no adaptation", "row2": "ST (CycleGAN)"},
                  "semantic.jsonl": {"row2": "ST (CycleGAN + L_sem)"}}


def udas_semantic_trials(rec: Record) -> pd.DataFrame:
    parts = []
    for file, names in SEMANTIC_FILES.items():
        df = rec.runs(file)
        df["configuration"] = df["trial_id"].map(lambda t: names[t.split("-")[0]])
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    df["baseline"] = df["configuration"].map(lambda c: None if c == "no adaptation" else "no adaptation")
    return ordered(df, [name for names in SEMANTIC_FILES.values() for name in names.values()])


@table("udas_semantic_consistency")
def udas_semantic_consistency(recs: RecordSet) -> str:
    df = udas_semantic_trials(recs["udas_semantic_consistency"])
    minutes = df.groupby("configuration")["train_seconds"].mean() / 60
    return delta_table(df, first="row", bar=True, extra=[("training minutes per run", lambda c: num(minutes[c], 0))])


@table("udas_semantic_gain")
def udas_semantic_gain(recs: RecordSet) -> str:
    """ST with L_sem paired against ST with the plain CycleGAN, seed by seed."""
    df = udas_semantic_trials(recs["udas_semantic_consistency"])
    df = df[df["configuration"] != "no adaptation"].copy()
    df["baseline"] = df["configuration"].map(lambda c: None if c == "ST (CycleGAN)" else "ST (CycleGAN)")
    return delta_table(df, first="row", bar=True)


@table("udas_semantic_classes")
def udas_semantic_classes(recs: RecordSet) -> str:
    """The ST rows' paired Δ test IoU per class to no adaptation (mean of seeds), every class a row learns."""
    df = udas_semantic_trials(recs["udas_semantic_consistency"])
    learned = learned_classes(df)
    base = df[df["configuration"] == "no adaptation"].set_index("seed")
    rows = [[c, *class_deltas(df[df["configuration"] == c].set_index("seed"), base, learned)]
            for c in df["configuration"].unique() if c != "no adaptation"]
    return md(["paired Δ test IoU to no adaptation (mean of seeds)", *learned], rows)


CONFUSION_ROWS = {"no_adaptation": "no adaptation", "st": "ST (CycleGAN)", "st_semantic": "ST (CycleGAN + L_sem)"}


@table("udas_semantic_confusion")
def udas_semantic_confusion(recs: RecordSet) -> str:
    """Where each class's target test pixels go (`udalab eval --json`'s confusion counts, % of the
    class's pixels, mean ± std of the seeds): the class itself and the two classes that take most of
    it in any row, for every class of which some row gets more than 10 % right."""
    rec = recs["udas_semantic_confusion"]
    rates = {}      # row -> one frame per seed: % of each ground-truth class (rows) predicted as each column
    for key in CONFUSION_ROWS:
        matrices = [rec.json(f"{key}-seed{s}.json")["confusion"] for s in (0, 1, 2)]
        pixels = [pd.DataFrame(c["pixels"], index=c["classes"], columns=[*c["classes"], "other"]) for c in matrices]
        rates[key] = [100 * p.div(p.sum(axis=1), axis=0) for p in pixels]
    rows = []
    for gt in rates["no_adaptation"][0].index:
        means = pd.DataFrame({key: sum(run.loc[gt] for run in runs) / len(runs) for key, runs in rates.items()})
        if not means.loc[gt].max() > 10:          # none right, or no pixels of it (NaN)
            continue
        others = means.drop(index=gt).max(axis=1).nlargest(2).index
        for dest in [gt, *others]:
            rows.append([gt if dest == gt else "", dest] + [ms([run.loc[gt, dest] for run in runs]) for runs in rates.values()])
    return md(["target class", "predicted as (% of its pixels)", *CONFUSION_ROWS.values()], rows)


@table("udas_translation_semantic")
def udas_translation_semantic(recs: RecordSet) -> str:
    """Per class (1 % of the source's pixels or more): the no-adaptation models' IoU on the source, on
    the plain CycleGAN's translation and on the translation trained with L_sem; the mean colours."""
    rec = recs["udas_semantic_consistency"]
    plain, semantic = rec.json("translation_plain.json"), rec.json("translation_semantic.json")
    rows = []
    for name, first in plain[0]["classes"].items():
        if first["pixels"] < 0.01:
            continue
        src, tp, ts = ([d["classes"][name][k] for d in data] for data, k in
                       ((plain, "iou_source"), (plain, "iou_translated"), (semantic, "iou_translated")))
        rows.append([name, num(100 * first["pixels"]), ms(src), ms(tp), ms(ts), _rgb(first["colour_source"]),
                     _rgb(first["colour_translated"]), _rgb(semantic[0]["classes"][name]["colour_translated"]),
                     _rgb(first["colour_target"])])
    rows.append(["mIoU (every class)", "", ms([d["miou_source"] for d in plain]),
                 ms([d["miou_translated"] for d in plain]), ms([d["miou_translated"] for d in semantic]),
                 "", "", "", ""])
    return md(["class", "% of source pixels", "IoU on the source", "on the CycleGAN translation",
               "on the CycleGAN + L_sem translation", "mean RGB: source", "CycleGAN", "CycleGAN + L_sem", "target"],
              rows)


@table("udas_kl")
def udas_kl(recs: RecordSet) -> str:
    df = recs["udas_kl"].runs()
    short = df[df["iteration"] == 80].sort_values("lambda_kl", ascending=False)
    rows = [[r["kl"], f"{r['lambda_kl']:g}", 80, num(r["loss.seg_main"]), num(r["miou"]), num(r["test.miou"])]
            for _, r in short.iterrows()]
    uda = udas_trials(recs["udas_ablation"])
    shipped = uda[(uda["configuration"] == "UDA") & (uda["seed"] == 0)].iloc[0]
    for _, r in df[df["iteration"] == 600].iterrows():
        form = r["kl"] if isinstance(r.get("kl"), str) else "symmetric_kl"
        rows.append([form, f"{r['lambda_kl'] if pd.notna(r.get('lambda_kl')) else 1:g}", 600, "", num(r["miou"]),
                     num(r["test.miou"])])
    rows.append(["symmetric_kl (records/udas_ablation)", "0.1", 600, "", num(shipped["miou"]), num(shipped["test.miou"])])
    return md(["L_kl", "λ_kl", "UDA steps (seed 0)", "mean source CE over the steps", "val mIoU", "test mIoU"], rows)


UDAS_PAPER_COUNTS = {300: 2975, 100: 1000, 50: 500, 10: 100, 0: 0}    # mini count -> the paper's (x 2975 / 300)


def udas_data_trials(rec: Record, udas: str = "UDAS") -> pd.DataFrame:
    """The data study's runs with `configuration` ("UDAS, 50"; `udas` names a variant's UDAS rows) and
    `baseline` (Supervised on as many labels)."""
    df = rec.runs().rename(columns={"labeled": "labelled"})   # the record's runs used the old name
    df["configuration"] = df["method"].map({"supervised": "Supervised", "udas": udas}) + ", " + df["labelled"].astype(str)
    df["baseline"] = df.apply(lambda r: f"Supervised, {r['labelled']}" if r["method"] == "udas" and r["labelled"] else None,
                              axis=1)
    return df


def udas_data(rec: Record) -> str:
    df = udas_data_trials(rec)
    ref = reference("udas_data")
    paper = UDAS_PAPER_COUNTS
    pub = {f"{m}, {n}": num(float(ref[(ref["method"] == m.lower()) & (ref["labelled"] == paper[n])]["miou"].iloc[0]))
           if len(ref[(ref["method"] == m.lower()) & (ref["labelled"] == paper[n])]) else "–"
           for m in ("Supervised", "UDAS") for n in paper}
    order = [f"{m}, {n}" for n in paper for m in ("Supervised", "UDAS") if f"{m}, {n}" in set(df["configuration"])]
    return delta_table(ordered(df, order), first="labelled target images (method)", bar=True,
                       extra=[("paper's count", lambda c: paper[int(c.split(", ")[1])]),
                              ("published", lambda c: pub[c])])


def udas_data_stages(rec: Record) -> str:
    df = udas_data_trials(rec)
    df = df[df["method"] == "udas"].copy()
    df["first_stage_end"] = stage_ends(rec, df)
    rows = []
    for n in (300, 100, 50, 10, 0):
        sel = df[df["labelled"] == n].sort_values("seed")
        if sel.empty:
            continue
        gain = sel["test.miou"] - sel["first_stage_end"]
        rows.append([n, ms(sel["first_stage_end"]), f"{seeds(gain, sign=True)} ({signed(gain.mean())} ± {num(gain.std())})",
                     ms(sel["test.miou"])])
    return md(["labelled images", "UDAS: test mIoU at the end of the UDA stage", "the self-training round's gain per seed",
               "after the round"], rows)


def udas_data_classes(df: pd.DataFrame, udas: str = "UDAS") -> str:
    """Per labelled count: UDAS's (or the variant `udas`'s) paired Δ test IoU to Supervised on the same
    labels, per class that some row learns (mean of the seeds both rows have); the seeds in the second
    column. `df`: udas_data_trials' frame, one Supervised and one UDAS row per count and seed."""
    learned = learned_classes(df)
    rows = []
    for n in (300, 100, 50, 10):
        runs, sup = (df[(df["method"] == m) & (df["labelled"] == n)].set_index("seed") for m in ("udas", "supervised"))
        both = sorted(set(runs.index) & set(sup.index))
        if both:
            rows.append([n, ", ".join(map(str, both)), *class_deltas(runs, sup, learned)])
    name = f"({udas})" if " " in udas else udas     # a variant's name may hold a minus of its own
    return md([f"labelled images: {name} − Supervised, paired Δ test IoU", "seeds", *learned], rows)


for _name in ("udas_data", "udas_data_v3"):
    table(_name)(lambda recs, name=_name: udas_data(recs[name]))
    table(_name.replace("udas_data", "udas_data_stages"))(lambda recs, name=_name: udas_data_stages(recs[name]))
table("udas_data_classes_v3")(lambda recs: udas_data_classes(udas_data_trials(recs["udas_data_v3"])))


# the study's rows; its UDAS rows with L_sem in the CycleGAN; those again without the UDA step: {record: row name}
UDAS_DATA_SEMANTIC = {"udas_data_v3": "UDAS", "udas_data_semantic_v3": "UDAS + L_sem",
                      "udas_data_semantic_nouda_v3": "UDAS + L_sem − UDA"}


def first_stage_column(by: dict[str, pd.DataFrame]) -> tuple[str, Callable[[str], str]]:
    """A UDAS data table's column "test mIoU at the first stage's end": each UDAS configuration's
    mean ± std over its runs (`by`: configuration -> its runs), blank for Supervised."""
    return ("test mIoU at the first stage's end",
            lambda c: "" if c.startswith("Supervised") else ms(by[c]["first_stage_end"]))


@table("udas_data_semantic_v3")
def udas_data_semantic(recs: RecordSet) -> str:
    """UDAS with CyCADA's L_sem in its CycleGAN, with and without its UDA step, beside the data study's
    Supervised and plain UDAS rows at the same labelled counts (one machine): each UDAS row paired with
    Supervised on its labels, its first stage's end, and paired with the UDAS row above it."""
    df, order = _udas_data_semantic_trials(recs)
    by = {c: sel.set_index("seed") for c, sel in df.groupby("configuration")}

    def against_above(c: str) -> str:
        above = _udas_above(order, c)
        return "" if above is None else paired_cell(pair_rows(df, c, above, "test.miou"))

    return delta_table(ordered(df, order), first="labelled target images (method)", bar=True,
                       extra=[first_stage_column(by), ("paired Δ test to the row above", against_above)])


@table("udas_data_semantic_classes_v3")
def udas_data_semantic_classes(recs: RecordSet) -> str:
    """Per labelled count, each UDAS variant against the UDAS row above it and against Supervised on
    the same labels: paired Δ test IoU per class that some row learns (mean of the seeds both have)."""
    df, order = _udas_data_semantic_trials(recs)
    learned = learned_classes(df)
    by = {c: sel.set_index("seed") for c, sel in df.groupby("configuration")}
    rows = []
    for c in order:
        above = _udas_above(order, c)
        if above is None:
            continue
        n = c.rsplit(", ", 1)[1]
        for base in (above, f"Supervised, {n}"):
            both = sorted(set(by[c].index) & set(by[base].index))
            rows.append([f"{c} − ({base})", ", ".join(map(str, both)),
                         *class_deltas(by[c].loc[both], by[base].loc[both], learned)])
    return md(["paired Δ test IoU (mean of seeds)", "seeds", *learned], rows)


def _udas_above(order: list[str], c: str) -> str | None:
    """The UDAS variant a UDAS variant is paired with: the row above it, unless either is Supervised."""
    above = order[order.index(c) - 1]
    return None if c.startswith("Supervised") or above.startswith("Supervised") else above


def _udas_data_semantic_trials(recs: RecordSet) -> tuple[pd.DataFrame, list[str]]:
    """The runs of UDAS_DATA_SEMANTIC's records ("UDAS + L_sem, 50"), the study's Supervised rows and
    its UDAS rows at the counts the others ran, each with its first stage's end (`first_stage_end`); and their
    order, by count."""
    recs.one_machine(tuple(UDAS_DATA_SEMANTIC))
    parts = []
    for name, label in UDAS_DATA_SEMANTIC.items():
        df = udas_data_trials(recs[name])
        df["first_stage_end"] = stage_ends(recs[name], df)
        df["configuration"] = df["configuration"].str.replace("UDAS, ", f"{label}, ")
        parts.append(df)
    counts = sorted(set(parts[1]["labelled"]), reverse=True)
    df = pd.concat(parts, ignore_index=True)
    df = df[df["labelled"].isin(counts)]
    present = set(df["configuration"])
    order = [f"{m}, {n}" for n in counts for m in ("Supervised", *UDAS_DATA_SEMANTIC.values()) if f"{m}, {n}" in present]
    return df, order


# UDAS without its style transfer (translate=false: the source images as they are, Domain CutMix's
# boxes of the labelled target images pasted in) beside Supervised on the same labels, and Supervised
# at half its steps (SUPERVISED_SHORT): about the labelled pixels UDAS's first stage sees in its boxes
# (each box a share 1 − λ of the image, λ ~ U(0, 1): half on average); all run on one machine into one record
UDAS_DATA_NOTRANSLATE = ("udas_data_notranslate_v3", "UDAS − ST")
SUPERVISED_SHORT = 300
SHORT_NAME = f"Supervised at {SUPERVISED_SHORT} steps"


# The data study's records of one machine: udas_data_notranslate_v3's Supervised and UDAS − ST rows;
# the self-training round without its consistency term on the labelled images (lambda_st_kl=0: no
# λ_st_kl · KL(teacher ‖ student), methods/udas.py 2b; the paper states neither the term's form nor its
# weight) without the translation at every labelled count (udas_data_consistency_v3) and with it at
# every count beside the preset's UDAS rows (udas_data_consistency_v3 at 50 and 10,
# udas_data_consistency_translated_v3 at 300 and 100); and a first stage without its UDA step
# (udas_data_no_uda_v3)
UDAS_DATA_ONE_MACHINE = ("udas_data_notranslate_v3", "udas_data_consistency_v3", "udas_data_consistency_translated_v3",
                         "udas_data_no_uda_v3")
NO_CONSISTENCY = ", λ_st_kl 0"
NO_UDA = " − UDA"
ROUND_OF = ", round of "
UDAS_VARIANTS = ("Supervised", "UDAS − ST", f"UDAS − ST{NO_CONSISTENCY}", "UDAS", f"UDAS{NO_CONSISTENCY}")


def udas_variant(row: pd.Series) -> str:
    """A data-study run's variant: Supervised (SHORT_NAME at SUPERVISED_SHORT steps), or UDAS, " − ST"
    without its translation, NO_UDA without the first stage's UDA step, NO_CONSISTENCY without the
    round's consistency term, and the round's length where the run set one (", round of 600 steps")."""
    if row["method"] == "supervised":
        return SHORT_NAME if row.get("iterations") == SUPERVISED_SHORT else "Supervised"

    def off(key: str) -> bool:                      # set to False by the run (a missing key: the preset's True)
        value = row.get(key)
        return value is not None and not pd.isna(value) and not value

    weight, rounds = row.get("lambda_st_kl"), row.get("st_iterations")
    length = f"{ROUND_OF}{int(rounds)} steps" if rounds is not None and not pd.isna(rounds) else ""
    return f"UDAS{' − ST' if off('translate') else ''}{NO_UDA if off('uda') else ''}{NO_CONSISTENCY if weight == 0 else ''}{length}"


def udas_data_variant_trials(recs: RecordSet, names: tuple[str, ...], keep_short: bool = False) -> pd.DataFrame:
    """The data study's runs of one machine's records, `configuration` "<udas_variant>, <count>", each
    UDAS run's first stage's end (`first_stage_end`); baseline: Supervised on the same labels (for the short
    Supervised rows too, which only keep_short keeps)."""
    recs.one_machine(names)
    parts = []
    for name in names:
        df = udas_data_trials(recs[name])
        df["first_stage_end"] = stage_ends(recs[name], df)
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    df["variant"] = df.apply(udas_variant, axis=1)
    short = df["variant"] == SHORT_NAME
    df.loc[short, "baseline"] = "Supervised, " + df.loc[short, "labelled"].astype(str)
    df = df[keep_short | ~short].copy()
    df["configuration"] = df["variant"] + ", " + df["labelled"].astype(str)
    return df


def _udas_data_notranslate_trials(recs: RecordSet) -> pd.DataFrame:
    return udas_data_variant_trials(recs, (UDAS_DATA_NOTRANSLATE[0],), keep_short=True)


@table("udas_data_notranslate_v3")
def udas_data_notranslate(recs: RecordSet) -> str:
    """UDAS − ST and Supervised at half its steps, each paired with Supervised on the same labels; UDAS −
    ST's first stage's end and its paired Δ to the short Supervised."""
    df = _udas_data_notranslate_trials(recs)
    by = {c: sel for c, sel in df.groupby("configuration")}
    label = UDAS_DATA_NOTRANSLATE[1]
    order = [f"{m}, {n}" for n in sorted(set(df["labelled"]), reverse=True)
             for m in ("Supervised", SHORT_NAME, label) if f"{m}, {n}" in by]

    def against_short(c: str) -> str:
        short = c.replace(f"{label}, ", f"{SHORT_NAME}, ")
        return paired_cell(pair_rows(df, c, short, "test.miou")) if c.startswith(label) and short in by else ""

    return delta_table(ordered(df, order), first="labelled target images (method)", bar=True,
                       extra=[("test mIoU at the first stage's end", lambda c: ms(by[c]["first_stage_end"]) if c.startswith(label) else ""),
                              (f"paired Δ test to {SHORT_NAME}", against_short)])


@table("udas_data_notranslate_classes_v3")
def udas_data_notranslate_classes(recs: RecordSet) -> str:
    df = _udas_data_notranslate_trials(recs)
    return udas_data_classes(df[~df["configuration"].str.startswith(SHORT_NAME)], UDAS_DATA_NOTRANSLATE[1])


def round_gain(df: pd.DataFrame, c: str) -> str:
    """A UDAS configuration's final test mIoU minus its first stage's end (`first_stage_end`), per seed and mean ± std."""
    if c.startswith("Supervised"):
        return ""
    sel = df[df["configuration"] == c].sort_values("seed")
    g = sel["test.miou"] - sel["first_stage_end"]
    return f"{seeds(g, sign=True)} ({signed(g.mean())} ± {num(g.std())})"


@table("udas_data_consistency_v3")
def udas_data_consistency(recs: RecordSet) -> str:
    """Each UDAS variant paired with Supervised on its labels; its first stage's end, the round's gain
    on each seed, and a variant without the consistency term paired with the same variant with it."""
    df = udas_data_variant_trials(recs, UDAS_DATA_ONE_MACHINE)
    df = df[df["variant"].isin(UDAS_VARIANTS)]
    present = set(df["configuration"])
    order = [f"{v}, {n}" for n in sorted(set(df["labelled"]), reverse=True) for v in UDAS_VARIANTS if f"{v}, {n}" in present]

    def against_preset(c: str) -> str:
        return paired_cell(pair_rows(df, c, c.replace(NO_CONSISTENCY, ""), "test.miou")) if NO_CONSISTENCY in c else ""

    by = {c: sel for c, sel in df.groupby("configuration")}
    return delta_table(ordered(df, order), first="labelled target images (method)", bar=True,
                       extra=[first_stage_column(by), ("the round's gain per seed", lambda c: round_gain(df, c)),
                              ("paired Δ test to λ_st_kl 1", against_preset)])


def beside_its_row(df: pd.DataFrame, without: Callable[[str], str], name: str, stage_end: bool = False) -> str:
    """Each configuration that `without` maps to another (the same row without one change) beside
    that row and Supervised on its labels: each paired with Supervised, (stage_end: each UDAS row's
    first stage's end,) the round's gain on each seed, and the changed row paired with its row
    (`name`: that row's column)."""
    changed = df[df["configuration"].map(without) != df["configuration"]]
    rows = set(changed["configuration"].map(without))
    order = [c for n in sorted(set(changed["labelled"]), reverse=True)
             for c in (f"Supervised, {n}", *sorted(c for c in rows if c.endswith(f", {n}")),
                       *sorted(set(changed[changed["labelled"] == n]["configuration"])))]
    df = df[df["configuration"].isin(order)]
    by = {c: sel for c, sel in df.groupby("configuration")}

    def against_row(c: str) -> str:
        return paired_cell(pair_rows(df, c, without(c), "test.miou")) if without(c) != c else ""

    return delta_table(ordered(df, order), first="labelled target images (method)", bar=True,
                       extra=[*([first_stage_column(by)] if stage_end else []),
                              ("the round's gain per seed", lambda c: round_gain(df, c)),
                              (f"paired Δ test to {name}", against_row)])


@table("udas_data_long_round_v3")
def udas_data_long_round(recs: RecordSet) -> str:
    """A row whose self-training round ran longer than the preset's beside the same row at the preset's
    length and Supervised on its labels."""
    return beside_its_row(udas_data_variant_trials(recs, UDAS_DATA_ONE_MACHINE),
                          lambda c: re.sub(rf"{ROUND_OF}\d+ steps", "", c), "the preset's round")


@table("udas_data_no_uda_v3")
def udas_data_no_uda(recs: RecordSet) -> str:
    """A row whose first stage trained without its UDA step (uda=False: the segmentation loss on the
    Domain CutMix batch alone) beside the same row with it and Supervised on its labels."""
    return beside_its_row(udas_data_variant_trials(recs, UDAS_DATA_ONE_MACHINE),
                          lambda c: c.replace(NO_UDA, ""), "the row with its UDA step", stage_end=True)


@table("udas_data_consistency_classes_v3")
def udas_data_consistency_classes(recs: RecordSet) -> str:
    """Per labelled count, each variant without the consistency term against the same variant with it
    and against Supervised: paired Δ test IoU per class that some row learns (mean of the seeds)."""
    df = udas_data_variant_trials(recs, UDAS_DATA_ONE_MACHINE)
    learned = learned_classes(df)
    by = {c: sel.set_index("seed") for c, sel in df.groupby("configuration")}
    rows = []
    for n in sorted(set(df["labelled"]), reverse=True):
        for c in (f"{v}, {n}" for v in UDAS_VARIANTS if NO_CONSISTENCY in v):
            for base in (c.replace(NO_CONSISTENCY, ""), f"Supervised, {n}"):
                if c in by and base in by:
                    both = sorted(set(by[c].index) & set(by[base].index))
                    rows.append([f"{c} − ({base})", ", ".join(map(str, both)),
                                 *class_deltas(by[c].loc[both], by[base].loc[both], learned)])
    return md(["paired Δ test IoU (mean of seeds)", "seeds", *learned], rows)


SELF_TRAINING = [("τ = 0.3", {"tau": 0.3}), ("τ = 0.6 (paper)", {"tau": 0.6}), ("τ = 0.8", {"tau": 0.8}),
                 ("τ = 0.9", {"tau": 0.9}), ("τ = 0.95", {"tau": 0.95}), ("K = 1 (τ 0.6)", {"views": 1}),
                 ("K = 5 (τ 0.6)", {"views": 5}), ("rounds = 2 (τ 0.6, K 3)", {"rounds": 2})]


@table("udas_selftraining")
def udas_selftraining(recs: RecordSet) -> str:
    rec = recs["udas_selftraining"]
    df, reps = rec.runs(), rec.reports()

    def label(r):
        return next(lab for lab, s in SELF_TRAINING if all(r.get(k) == v for k, v in s.items()))
    df["configuration"] = df.apply(label, axis=1)
    df["baseline"] = df["configuration"].map(lambda c: None if c == "τ = 0.6 (paper)" else "τ = 0.6 (paper)")
    df = ordered(df, [lab for lab, _ in SELF_TRAINING])
    rounds = reps[reps["stage"].astype(str).str.startswith("round")]
    q = rounds.groupby("run")["loss.q"].mean() * 100
    qs = {c: ms(sel["run"].map(q)) for c, sel in df.groupby("configuration")}
    uda_end = reps[reps["stage"] == "uda"].groupby("run")["train_seconds"].last()
    minutes = (df["train_seconds"] - df["run"].map(uda_end)).groupby(df["configuration"]).mean() / 60
    return delta_table(df, first="setting", extra=[("q % (pixels kept)", lambda c: qs[c]),
                                                   ("self-training minutes per run", lambda c: num(minutes[c]))])


@table("udas_selftraining_repeat")
def udas_selftraining_repeat(recs: RecordSet) -> str:
    st = recs["udas_selftraining"].runs()
    st = st[st["tau"] == 0.6].set_index("seed").sort_index()
    ab = udas_trials(recs["udas_ablation"])
    ab = ab[ab["configuration"] == "ST + DA + SSL"].set_index("seed").sort_index()
    return md(["ST + DA + SSL, τ 0.6, seed", "UDA stage shared (records/udas_selftraining)",
               "UDA stage trained in the run (records/udas_ablation)"],
              [[int(s), num(st.loc[s, "test.miou"], 4), num(ab.loc[s, "test.miou"], 4)] for s in st.index])


@table("udas_pseudo_labels")
def udas_pseudo_labels(recs: RecordSet) -> str:
    data = recs["udas_pseudo_labels"].json()
    rows = []
    for tau in data[0]["taus"]:
        cells = [ms([d["taus"][tau][k] for d in data]) for k in ("q", "precision", "recall", "miou")]
        rows.append([tau, *cells])
    return md(["τ", "q % (pixels kept)", "precision %", "recall %", "mIoU %"], rows)
