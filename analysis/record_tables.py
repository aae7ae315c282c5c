"""The tables of docs/results.md that the mini GTA5 -> Cityscapes benchmark runs give
(benchmarks/mini_adaptation.py's runs.jsonl records), and the Markdown helpers every renderer
shares. Each renderer computes its table from its records only (analysis/records.py); the
studies', performance and dataset tables are in record_tables_studies.py."""
from __future__ import annotations

import math

import pandas as pd

from udalab.analysis.paired import mean_std, paired
from udalab.analysis.records import Record, RecordSet, table

MINUS = "\u2212"
# Cityscapes classes no mini model learns (a few pixels wide at the mini training sizes)
SMALL = ["pole", "traffic light", "traffic sign", "person", "rider", "motorcycle", "bicycle"]


# ---------------------------------------------------------------------------------------
# Markdown.

def num(x, digits: int = 1) -> str:
    """x to `digits` decimals with a typographic minus; "–" for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}".replace("-", MINUS)


def signed(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}".replace("-", MINUS)


def ms(values, digits: int = 1, sign: bool = False) -> str:
    """"mean ± std" of values (a single value alone); sign=True for a difference (+/−)."""
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "–"
    m, s = mean_std(values)
    mean = (signed if sign else num)(m, digits)
    return mean if len(values) == 1 else f"{mean} ± {num(s, digits)}"


def seeds(values, digits: int = 1, sign: bool = False) -> str:
    return ", ".join((signed if sign else num)(v, digits) for v in values)


def span(values, digits: int = 1, unit: str = "") -> str:
    """"lo–hi" of values ("v" when they agree at that precision)."""
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "–"
    lo, hi = num(min(values), digits), num(max(values), digits)
    return (lo if lo == hi else f"{lo}–{hi}") + unit


def md(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pair_rows(df: pd.DataFrame, a: str, b: str, column: str) -> pd.Series:
    """paired()'s row of configuration a against b on one metric column."""
    sel = pd.concat([df[df["configuration"] == b].assign(baseline=None), df[df["configuration"] == a].assign(baseline=b)])
    return paired(sel, column).set_index("configuration").loc[a]


def paired_cell(row, digits: int = 1) -> str:
    """"+a, +b, +c (+m ± s)" of a paired() row; empty without a baseline."""
    if not row["paired"]:
        return ""
    if len(row["paired"]) == 1:
        return signed(row["paired"][0], digits)
    return f"{seeds(row['paired'], digits, sign=True)} ({signed(row['paired_mean'], digits)} ± {num(row['paired_std'], digits)})"


def bar_cell(row) -> str:
    """Whether the difference of the means clears twice the larger seed std."""
    if row["clears"] is None:
        return ""
    return f"{'**yes**' if row['clears'] else 'no'} ({signed(row['delta'])} against 2 × {num(row['bar'] / 2)})"


def delta_table(trials: pd.DataFrame, *, first: str = "row", labels: dict | None = None, bar: bool = False,
                extra: list[tuple[str, object]] = (), val: bool = True) -> str:
    """The common shape: one row per configuration with its seeds, test mIoU (mean ± std, per seed),
    val mIoU, the paired test (and val) difference to its baseline and, with bar=True, whether the
    test difference clears twice the larger seed std. `extra`: (header, fn(configuration) -> cell)."""
    test = paired(trials, "test.miou").set_index("configuration")
    vals = paired(trials, "miou").set_index("configuration") if val else None
    header = [first, "seeds", "test mIoU", "per seed", *(["val mIoU"] if val else []), "paired Δ test",
              *(["paired Δ val"] if val else []), *(["Δ > 2 × larger std?"] if bar else []), *[h for h, _ in extra]]
    rows = []
    for label, t in test.iterrows():
        row = [(labels or {}).get(label, label), ", ".join(map(str, t["seeds"])), ms(t["values"]), seeds(t["values"])]
        if val:
            row.append(ms(vals.loc[label, "values"]))
        row.append(paired_cell(t))
        if val:
            row.append(paired_cell(vals.loc[label]))
        if bar:
            row.append(bar_cell(t))
        rows.append(row + [fn(label) for _, fn in extra])
    return md(header, rows)


# ---------------------------------------------------------------------------------------
# The benchmark's runs.

def shift_cells(base: pd.DataFrame, method: pd.DataFrame, column: str) -> list[str]:
    """A metric from base to method (means of the seeds) and their paired difference per seed (both
    frames indexed by seed)."""
    return [f"{num(base[column].mean())} → {num(method[column].mean())}", seeds(method[column] - base[column], sign=True)]


def bench(rec: Record, name: str | None = None) -> pd.DataFrame:
    """One row per benchmark row and seed of a mini_adaptation runs file: the run's config and
    last report; an IntraDA run also gives the ADVENT row (its stage 1, the same computation)."""
    return rec.cached("bench", name, lambda n: _bench(rec, n))


def _bench(rec: Record, name: str | None) -> pd.DataFrame:
    runs, reps = rec.runs(name), rec.reports(name)
    out = []
    for _, run in runs.iterrows():
        mine = reps[reps["run"] == run["run"]]
        ends = [(run["row"], mine.iloc[-1])]
        if run["row"] == "IntraDA":
            ends.insert(0, ("ADVENT", mine[mine["stage"] == "inter"].iloc[-1]))
        for label, rep in ends:
            out.append({**run.to_dict(), **rep.dropna().to_dict(), "row": label, "run": run["run"]})
    return pd.DataFrame(out)


def window(rec: Record, run: int, key: str, after: int, upto: float = math.inf, name: str | None = None) -> float:
    """Mean of a report key over the reports of one run at steps (after, upto] (each report's loss
    is the mean since the previous one); NaN without such reports."""
    reps = rec.cached("reports by run", name, lambda n: rec.reports(n).set_index("run", drop=False), copy=False)
    r = reps.loc[[run]] if run in reps.index else reps.iloc[:0]
    r = r[(r["iteration"] > after) & (r["iteration"] <= upto)]
    values = r[key].dropna() if key in r else []
    return float(values.mean()) if len(values) else math.nan


def ordered(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rows by configuration in `order` (configurations not named there: an error), then by seed."""
    unknown = set(df["configuration"]) - set(order)
    if unknown:
        raise KeyError(f"configurations {sorted(unknown)} are not in the table's order {order}")
    return df.sort_values(["configuration", "seed"], key=lambda s: s.map(order.index) if s.name == "configuration" else s)


def with_baseline(df: pd.DataFrame, configuration, baseline) -> pd.DataFrame:
    """df with `configuration` and `baseline` columns: functions of a row, or a column / mapping."""
    df = df.copy()
    df["configuration"] = df.apply(configuration, axis=1) if callable(configuration) else df["row"].map(configuration)
    df["baseline"] = df.apply(baseline, axis=1) if callable(baseline) else df["configuration"].map(baseline)
    return df


ADAPTATION_BASE = {"ADVENT": "source only", "IntraDA": "source only", "DAFormer": "DAFormer source only",
                   "HRDA": "HRDA source only"}


@table("mini_adaptation")
def mini_adaptation(recs: RecordSet) -> str:
    df = with_baseline(bench(recs["mini_adaptation"]), lambda r: r["row"], lambda r: ADAPTATION_BASE.get(r["row"]))
    df = ordered(df, ["source only", "ADVENT", "IntraDA", "DAFormer source only", "DAFormer", "HRDA source only", "HRDA"])
    labels = {"source only": "source only (DeepLab-v2)", "IntraDA": "IntraDA (λ = 0.67)"}
    return delta_table(df, labels=labels, bar=True)


@table("mini_adaptation_cost")
def mini_adaptation_cost(recs: RecordSet) -> str:
    """Training minutes per run (one CPU thread each, several runs at once on the 2 cores)."""
    df = bench(recs["mini_adaptation"])
    rows = []
    for label in ["source only", "ADVENT", "IntraDA", "DAFormer source only", "DAFormer", "HRDA source only", "HRDA"]:
        sel = df[df["row"] == label]
        rows.append([label, span(sel["train_seconds"] / 60, 1)])
    return md(["row", "training minutes per run (seeds 0–2; ADVENT: IntraDA's stage 1)"], rows)


def _move_rows(recs: RecordSet) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(configuration, its runs on the 2026-11-30 environment, the same on the next one)."""
    early, now = bench(recs["mini_adaptation_earlier_presets"]), bench(recs["mini_adaptation"])
    lr = bench(recs["daformer_lr"])
    ema, hrda = bench(recs["daformer_ema_alpha"]), bench(recs["hrda_lr"])
    intra = bench(recs["intrada_lambda_adv_0.001"])
    daf_st = lambda d: d[(d["row"] == "DAFormer") & (d["lr"] == 0.0012)]  # noqa: E731
    return [("DeepLab source only", early[early["row"] == "source only"], now[now["row"] == "source only"]),
            ("IntraDA (λ_adv 0.001, four-layer D)", early[early["row"] == "IntraDA"], intra[intra["row"] == "IntraDA"]),
            ("DAFormer source only (lr 1.2e-3)", lr[(lr["row"] == "DAFormer source only") & (lr["lr"] == 0.0012)],
             now[now["row"] == "DAFormer source only"]),
            ("DAFormer (lr 1.2e-3, α 0.999)", daf_st(lr), ema[ema["ema_alpha"] == 0.999]),
            ("HRDA source only (lr 6e-4)", early[early["row"] == "HRDA source only"],
             hrda[(hrda["row"] == "HRDA source only") & (hrda["lr"] == 0.0006)]),
            ("HRDA (lr 6e-4, α 0.999)", early[early["row"] == "HRDA"], hrda[(hrda["row"] == "HRDA") & (hrda["lr"] == 0.0006)])]


@table("machine_move")
def machine_move(recs: RecordSet) -> str:
    """The same configuration and seed on two environments (this table compares machines: its
    differences are the machines', not a method's)."""
    rows = []
    for label, then, now in _move_rows(recs):
        a, b = then.set_index("seed")["test.miou"], now.set_index("seed")["test.miou"]
        common = sorted(set(a.index) & set(b.index))
        rows.append([label, ms(a.values), ms(b.values), seeds([b[s] - a[s] for s in common], sign=True)])
    return md(["configuration", "test mIoU, environment until 2026-12-01 (Xeon)",
               "test mIoU, environment from 2026-12-01 10:15 UTC (Xeon, AVX512)", "per seed (0, 1, 2): later − earlier"], rows)


@table("machine_move_amd")
def machine_move_amd(recs: RecordSet) -> str:
    xeon, amd = bench(recs["mini_adaptation"]), bench(recs["advent_bn_target"])
    rows = []
    for metric, name in (("test.miou", "test"), ("miou", "val")):
        a = xeon[xeon["row"] == "source only"].set_index("seed")[metric]
        b = amd[amd["row"] == "source only"].set_index("seed")[metric]
        rows.append([f"DeepLab source only, {name} mIoU", seeds(a[sorted(a.index)], 2), seeds(b[sorted(b.index)], 2)])
    head = recs["advent_bn_target"].runs().iloc[0]
    rows.append(["data checksums (provenance.data)", "", head["provenance.data"]])
    return md(["seeds 0, 1, 2", "Intel Xeon, AVX512 (records/mini_adaptation)", "AMD EPYC, AVX2 (records/advent_bn_target)"],
              rows)


@table("machine_move_xeon")
def machine_move_xeon(recs: RecordSet) -> str:
    """Supervised (the data study's rows) on two Xeons of one instruction set: the same data bytes and
    torch, and the first Xeon's code run again on the second (record supervised_at_commit_b5cbd2a), so
    that what moves is the machine."""
    first, second, old = (recs[n] for n in ("udas_data_v3", "udas_data_notranslate_v3", "supervised_at_commit_b5cbd2a"))
    sup = {name: r.runs()[lambda d: (d["method"] == "supervised") & d.get("iterations", pd.Series(index=d.index)).isna()]
           for name, r in (("first", first), ("second", second), ("old", old))}
    rows = []
    for n in sorted(set(sup["second"]["labelled"]), reverse=True):
        a, b = (sup[k][sup[k]["labelled"] == n].set_index("seed")["test.miou"].sort_index() for k in ("first", "second"))
        common = sorted(set(a.index) & set(b.index))
        rows.append([f"Supervised, {n} labelled, test mIoU (seeds {', '.join(map(str, common))})",
                     seeds(a[common], 2), seeds(b[common], 2), seeds(b[common] - a[common], 2, sign=True)])
    n = int(sup["old"]["labelled"].iloc[0])
    o = sup["old"].set_index("seed")["test.miou"]
    a = sup["first"][sup["first"]["labelled"] == n].set_index("seed")["test.miou"]
    rows.append([f"the same, {n} labelled, code of commit {old.manifest['commit'][:7]} (seed {', '.join(map(str, o.index))})",
                 seeds(a[o.index], 2), seeds(o, 2), seeds(o - a[o.index], 2, sign=True)])
    for label, r in (("torch", "provenance.torch"), ("data checksums (provenance.data)", "provenance.data")):
        rows.append([label, sup["first"][r].iloc[0], sup["second"][r].iloc[0], ""])
    return md(["configuration", f"{first.manifest['machine']['cpu']}, {first.manifest['machine']['isa']} (records/udas_data_v3)",
               f"{second.manifest['machine']['cpu']}, {second.manifest['machine']['isa']} (records/udas_data_notranslate_v3 and "
               f"supervised_at_commit_b5cbd2a)", "per seed: second − first"], rows)


@table("source_only_code_repeat")
def source_only_code_repeat(recs: RecordSet) -> str:
    old = bench(recs["source_only_at_commit_8940107"]).iloc[-1]
    now = bench(recs["mini_adaptation"])
    now = now[(now["row"] == "source only") & (now["seed"] == 0)].iloc[-1]
    early = bench(recs["mini_adaptation_earlier_presets"])
    early = early[(early["row"] == "source only") & (early["seed"] == 0)].iloc[-1]
    return md(["DeepLab source only, seed 0", "test mIoU", "val mIoU"],
              [["code of commit 8940107, later environment", num(old["test.miou"], 3), num(old["miou"], 3)],
               ["code of 2026-12-01, later environment", num(now["test.miou"], 3), num(now["miou"], 3)],
               ["2026-11-30, earlier environment", num(early["test.miou"], 3), num(early["miou"], 3)]])


# ---------------------------------------------------------------------------------------
# ADVENT.

def _d_bce(rec: Record, df: pd.DataFrame, key: str = "loss.d_tgt") -> dict:
    """{configuration: range over its runs of D's BCE over steps 401-600}."""
    out = {}
    for label, sel in df.groupby("configuration", sort=False):
        out[label] = span([window(rec, r, key, 400, 600) for r in sel["run"]], 2)
    return out


def _repeat_note(what: str, alone, stage1) -> str:
    """A sentence setting a run of ADVENT alone beside IntraDA's stage 1 on the same seed."""
    return (f"\n\n{what}, seed {int(alone['seed'])}: test {num(alone['test.miou'], 3)}, val {num(alone['miou'], 3)}; "
            f"IntraDA's stage 1 on that seed: test {num(stage1['test.miou'], 3)}, val {num(stage1['miou'], 3)}.")


@table("advent_lambda")
def advent_lambda(recs: RecordSet) -> str:
    src = bench(recs["mini_adaptation"])
    src = src[src["row"] == "source only"].assign(configuration="0 (source only)", baseline=None)
    every = bench(recs["advent_lambda_adv"])
    lam = every[every["lambda_adv_main"].notna()].copy()
    lam["configuration"] = lam["lambda_adv_main"].map({0.0003: "0.0003 (the preset then)", 0.003: "0.003", 0.01: "0.01"})
    intra = bench(recs["intrada_lambda_adv_0.001"])
    intra = intra[intra["row"] == "ADVENT"].assign(configuration="0.001 (the paper's; IntraDA's stage 1)")
    adv = pd.concat([lam, intra]).assign(baseline="0 (source only)")
    order = ["0 (source only)", "0.0003 (the preset then)", "0.001 (the paper's; IntraDA's stage 1)", "0.003", "0.01"]
    df = ordered(pd.concat([src, adv]), order)
    bce = {**_d_bce(recs["advent_lambda_adv"], lam), **_d_bce(recs["intrada_lambda_adv_0.001"], intra)}
    alone = every[every["lambda_adv_main"].isna()].iloc[0]
    stage1 = intra[intra["seed"] == alone["seed"]].iloc[0]
    return delta_table(df, first="λ_adv_main (four-layer D)",
                       extra=[("D's BCE on target maps, steps 401–600", lambda c: bce.get(c, ""))]) + \
        _repeat_note("The record's run of ADVENT alone at the preset of then (λ 0.001)", alone, stage1)


@table("advent_variants")
def advent_variants(recs: RecordSet) -> str:
    src = bench(recs["mini_adaptation"])
    src = src[src["row"] == "source only"]
    d4 = bench(recs["intrada_four_layer_d"])
    long, frozen, minent = bench(recs["advent_2400_steps"]), bench(recs["advent_frozen_bn"]), bench(recs["advent_minent"])
    base = "source only, 600 steps"
    parts = [(src, base, None), (d4[d4["row"] == "ADVENT"], "ADVENT, four-layer D (the preset then)", base),
             (long[long["row"] == "source only"], "source only, 2400 steps", None),
             (long[long["row"] == "ADVENT"], "ADVENT, 2400 steps (four-layer D)", "source only, 2400 steps"),
             (frozen[frozen["row"] == "source only"], "source only, BN frozen", None),
             (frozen[frozen["row"] == "ADVENT"], "ADVENT, BN frozen (four-layer D)", "source only, BN frozen"),
             (minent[minent["lambda_ent_main"].isna()], "MinEnt, λ_ent 0.001 / 0.0002 (the paper's)", base),
             (minent[minent["lambda_ent_main"] == 0.01], "MinEnt, λ_ent 0.01 / 0.002", base)]
    df = pd.concat([part.assign(configuration=label, baseline=b) for part, label, b in parts])
    return delta_table(df, first="setting")


@table("advent_d_layers")
def advent_d_layers(recs: RecordSet) -> str:
    src = bench(recs["mini_adaptation"])
    d4, d4p = bench(recs["intrada_four_layer_d"]), bench(recs["intrada_lambda_adv_0.001"])
    dl = bench(recs["advent_d_layers"])
    lam = dl["lambda_adv_main"].fillna(0.0003)

    def dl_rows(mask, label):
        return dl[mask].assign(configuration=label)
    parts = [src[src["row"] == "source only"].assign(configuration="source only", baseline=None),
             d4[d4["row"] == "ADVENT"].assign(configuration="four layers, λ 0.0003"),
             d4p[d4p["row"] == "ADVENT"].assign(configuration="four layers, λ 0.001 (paper)"),
             src[src["row"] == "ADVENT"].assign(configuration="**one layer, λ 0.0003 (the preset)**"),
             dl_rows((dl["d_layers"] == 1) & (lam == 0.001) & dl["lr_d"].isna(), "one layer, λ 0.001 (paper)"),
             dl_rows((dl["d_layers"] == 1) & (lam == 0.01), "one layer, λ 0.01"),
             dl_rows(dl["d_layers"] == 2, "two layers (22 px), λ 0.001"),
             dl_rows(dl["lr_d"].notna(), "one layer, D's lr × 10, λ 0.001"),
             dl_rows((dl["d_layers"] == 1) & (lam == 0), "one layer, no adversarial term (λ 0)")]
    df = pd.concat(parts)
    df["baseline"] = df["configuration"].map(lambda c: None if c == "source only" else "source only")
    runs = {"four layers, λ 0.0003": ("intrada_four_layer_d", parts[1]), "four layers, λ 0.001 (paper)":
            ("intrada_lambda_adv_0.001", parts[2]), "**one layer, λ 0.0003 (the preset)**": ("mini_adaptation", parts[3])}
    bce = _d_bce(recs["advent_d_layers"], pd.concat(parts[4:]))
    for label, (name, part) in runs.items():
        bce.update(_d_bce(recs[name], part))
    alone = dl[(dl["d_layers"] == 1) & dl["lambda_adv_main"].isna()].iloc[0]
    stage1 = parts[3][parts[3]["seed"] == alone["seed"]].iloc[0]
    return delta_table(df, first="discriminator, λ_adv_main",
                       extra=[("D's BCE on target maps, steps 401–600", lambda c: bce.get(c, ""))]) + \
        _repeat_note("The one-layer row at λ 0.0003 is IntraDA's stage 1 in records/mini_adaptation; ADVENT alone "
                     "with `--set d_layers=1` (records/advent_d_layers)", alone, stage1)


@table("advent_256px")
def advent_256px(recs: RecordSet) -> str:
    df = bench(recs["advent_256px"])
    rows = []
    for _, r in df.iterrows():
        label = "λ_adv 0" if r["lambda_adv_main"] == 0 else f"λ_adv {r['lambda_adv_main']}, {int(r['d_layers'])}-layer D"
        rows.append([label, int(r["seed"]), num(r["test.miou"], 2), num(r["miou"], 2),
                     num(window(recs["advent_256px"], r["run"], "loss.d_tgt", 400, 600), 2),
                     num(window(recs["advent_256px"], r["run"], "loss.d_src", 400, 600), 2), num(r["train_seconds"] / 60, 0)])
    return md(["ADVENT at 256 × 144 → 256 × 128", "seed", "test mIoU", "val mIoU", "D's BCE, target maps (401–600)",
               "source maps", "training minutes"], rows)


@table("advent_bn_target")
def advent_bn_target(recs: RecordSet) -> str:
    rec = recs["advent_bn_target"]
    df = bench(rec)

    def label(r):
        if r["row"] == "source only":
            return "source only"
        if r.get("bn_target") != "running":
            return '`bn_target="batch"` (the preset)'
        if r.get("d_layers") == 4:
            return '`"running"`, four-layer D, λ_adv 0.001'
        return '`"running"`, λ_adv 0' if r.get("lambda_adv_main") == 0 else '`bn_target="running"`'
    df = with_baseline(df, label, lambda r: None if r["row"] == "source only" else "source only")
    df = ordered(df, ["source only", '`bn_target="batch"` (the preset)', '`bn_target="running"`', '`"running"`, λ_adv 0',
                      '`"running"`, four-layer D, λ_adv 0.001'])
    bce = {}
    for c, sel in df[df["row"] == "ADVENT"].groupby("configuration", sort=False):
        bce[c] = " / ".join(span([window(rec, r, k, 400, 600) for r in sel["run"]], 2) for k in ("loss.d_src", "loss.d_tgt"))
    return delta_table(df, first="row (AMD EPYC)", extra=[("D's BCE, steps 401–600 (source / target maps)",
                                                            lambda c: bce.get(c, ""))])


# ---------------------------------------------------------------------------------------
# DAFormer and HRDA: learning rate, EMA horizon, schedule length.

def _q_cell(rec: Record, df: pd.DataFrame) -> dict:
    """{configuration: the teacher's share above τ per seed, steps 201-600}."""
    return {c: seeds([100 * window(rec, r, "loss.q", 200, 600) for r in sel.sort_values("seed")["run"]]) + " %"
            for c, sel in df.groupby("configuration", sort=False) if not sel["row"].str.contains("source only").all()}


TEACHER = "teacher pixels above τ, steps 201–600"


def _with_teacher(rec: Record, df: pd.DataFrame, order: list[str], first: str) -> str:
    """delta_table of one record's runs in `order`, with the teacher's share above τ per seed."""
    df = ordered(df, order)
    q = _q_cell(rec, df)
    return delta_table(df, first=first, extra=[(TEACHER, lambda c: q.get(c, ""))])


@table("daformer_lr")
def daformer_lr(recs: RecordSet) -> str:
    rec = recs["daformer_lr"]
    df = bench(rec)
    src = df["row"] == "DAFormer source only"
    df["configuration"] = df["lr"].map(lambda v: f"{v:g}") + src.map({True: ", source only", False: ""})
    df["baseline"] = df["configuration"].map(lambda c: None if c.startswith("0.0006") else
                                             "0.0006" + (", source only" if "source" in c else ""))
    return _with_teacher(rec, df, ["0.0002", "0.0006", "0.0012", "0.0024", "0.0006, source only", "0.0012, source only"],
                         "lr (α 0.999)")


@table("hrda_lr")
def hrda_lr(recs: RecordSet) -> str:
    rec = recs["hrda_lr"]
    df = bench(rec)
    df["configuration"] = df["row"] + ", lr " + df["lr"].map(lambda v: f"{v:g}")
    df["baseline"] = df["configuration"].map(lambda c: None if c.endswith("0.0006") else c.replace("0.0012", "0.0006"))
    return _with_teacher(rec, df, ["HRDA, lr 0.0006", "HRDA, lr 0.0012", "HRDA source only, lr 0.0006",
                                   "HRDA source only, lr 0.0012"], "HRDA row (α 0.999)")


@table("daformer_ema")
def daformer_ema(recs: RecordSet) -> str:
    rec = recs["daformer_ema_alpha"]
    df = bench(rec)
    horizon = {0.999: "0.999 (the paper's)", 0.99: "0.99 (100 steps)", 0.97: "0.97 (33 steps)",
               0.95: "0.95 (20 steps, the preset)", 0.9: "0.9 (10 steps)"}
    df["configuration"] = df["ema_alpha"].map(horizon)
    df["baseline"] = df["ema_alpha"].map(lambda a: None if a == 0.999 else horizon[0.999])
    return _with_teacher(rec, df, list(horizon.values()), "α (horizon), lr 1.2e-3")


@table("hrda_ema")
def hrda_ema(recs: RecordSet) -> str:
    lr, ema = bench(recs["hrda_lr"]), bench(recs["hrda_ema_alpha"])
    lr = lr[lr["row"] == "HRDA"].assign(ema_alpha=0.999)
    df = pd.concat([lr.assign(src="hrda_lr"), ema.assign(src="hrda_ema_alpha")])
    df["configuration"] = "lr " + df["lr"].map(lambda v: f"{v:g}") + ", α " + df["ema_alpha"].map(lambda v: f"{v:g}")
    df["baseline"] = df.apply(lambda r: None if r["ema_alpha"] == 0.999 else f"lr {r['lr']:g}, α 0.999", axis=1)
    order = ["lr 0.0006, α 0.999", "lr 0.0006, α 0.95", "lr 0.0012, α 0.999", "lr 0.0012, α 0.95"]
    df = ordered(df, order)
    q = {}
    for name in ("hrda_lr", "hrda_ema_alpha"):
        q.update(_q_cell(recs[name], df[df["src"] == name]))
    return delta_table(df, first="HRDA", extra=[(TEACHER, lambda c: q.get(c, ""))])


def _long(recs: RecordSet, name: str, method: str, tag: str = "") -> pd.DataFrame:
    df = bench(recs[name])
    df = with_baseline(df, lambda r: r["row"] + tag,
                       lambda r: None if "source only" in r["row"] else f"{method} source only{tag}")
    return ordered(df, [f"{method} source only{tag}", f"{method}{tag}"])


@table("daformer_2400")
def daformer_2400(recs: RecordSet) -> str:
    return delta_table(_long(recs, "daformer_2400_steps", "DAFormer"), first="row (2400 steps)", bar=True)


@table("hrda_2400")
def hrda_2400(recs: RecordSet) -> str:
    now = _long(recs, "hrda_2400_steps", "HRDA", ", lr 1.2e-3, α 0.95 (the preset)")
    old = _long(recs, "hrda_2400_steps_lr6e-4_alpha0.999", "HRDA", ", lr 6e-4, α 0.999")
    return delta_table(pd.concat([now, old]), first="row (2400 steps)", bar=True)


def _teacher_windows(rec: Record, method: str) -> str:
    df = bench(rec)
    df = df[df["row"] == method].sort_values("seed")
    edges = [0, 600, 1200, 1800, 2400]
    rows = [[f"seed {int(r['seed'])}"] + [num(100 * window(rec, r["run"], "loss.q", lo, hi)) + " %"
                                         for lo, hi in zip(edges, edges[1:])] for _, r in df.iterrows()]
    return md(["steps", *[f"{lo + 1}–{hi}" for lo, hi in zip(edges, edges[1:])]], rows)


@table("daformer_2400_teacher")
def daformer_2400_teacher(recs: RecordSet) -> str:
    return _teacher_windows(recs["daformer_2400_steps"], "DAFormer")


@table("hrda_2400_teacher")
def hrda_2400_teacher(recs: RecordSet) -> str:
    return _teacher_windows(recs["hrda_2400_steps"], "HRDA")


@table("hrda_2400_classes")
def hrda_2400_classes(recs: RecordSet) -> str:
    """Test IoU per class, source only → HRDA (mean over seeds), and the paired difference per seed."""
    classes = ["road", "sidewalk", "wall", "fence", "car", "truck", "traffic sign", "pole", "person", "rider"]
    header = ["class"]
    cols = []
    for name, tag in (("hrda_2400_steps", "preset"), ("hrda_2400_steps_lr6e-4_alpha0.999", "lr 6e-4, α 0.999")):
        df = bench(recs[name])
        src, ada = (df[df["row"] == r].set_index("seed").sort_index() for r in ("HRDA source only", "HRDA"))
        header += [f"{tag}: source only → HRDA", f"{tag}: paired Δ per seed"]
        cols.append((src, ada))
    rows = []
    for c in classes:
        row = [c]
        for src, ada in cols:
            row += shift_cells(src, ada, f"test.iou.{c}")
        rows.append(row)
    return md(header, rows)
