"""Tables in the papers' shapes, from a trials frame (analysis.store), in Markdown, HTML and LaTeX.

A table is a small model (`Table`: columns, rows of `Cell`s) built by one of the builders and
rendered by `Table.to_markdown()`, `.to_html()`, `.to_latex()`:

    agg = aggregate(df, metrics=("miou",))                         # one row per configuration
    t = ablation_table(df, metrics=("miou",), baseline={"method": "source_only"}, reference="intrada")
    t = class_table(df, class_groups=STUFF_THING, reference="hrda")  # per-class IoU, stuff | thing
    print(t.to_markdown())

What the builders produce, as in the papers:

* configuration columns: on/off hyperparameters (boolean columns) as ✓ / ✗ (MML Table 3), other
  hyperparameters as factor columns with their values (multi-decoder Table 3: priority, weight copy,
  order); only the columns that vary across the configurations (at least the first one);
* metric columns as mean ± sample std over seeds (std left out with one seed), the best measured
  value per column in bold;
* Δ to the baseline row (`baseline={"method": "source_only"}`), "baseline" in that row;
* per-class IoU columns (UDAS / HRDA style), optionally grouped under "stuff" / "thing" headers with
  a mean per group;
* published rows from analysis.reference beside the measured configuration they correspond to
  (marked "published", never bold, never counted for "best").
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from udalab.analysis import store
from udalab.analysis.reference import config_matches, is_missing, reference, reference_info, values_equal

__all__ = ["Cell", "Column", "Row", "Table", "aggregate", "ablation_table", "class_table", "STUFF_THING",
           "published_matches",
           "varying_columns", "config_label", "config_dump", "NAME_COLUMN", "fmt_value", "norm_value", "is_missing", "values_equal", "baseline_index",
           "METRIC_LABELS", "metric_label"]

METRIC_LABELS = {"miou": "mIoU", "pixel_acc": "pixel acc.", "iiou": "iIoU", "test.miou": "test mIoU",
                 "test.pixel_acc": "test pixel acc."}
_PART_LABELS = {"test": "test", "val": "val", "day": "day", "night": "night", "rgb": "RGB stream", "std": "seed std of"}


def metric_label(metric: str, labels: Mapping[str, str] | None = None) -> str:
    """A metric's display name: the study's label for it when `labels` has one (a held-out report's
    "miou": "test mIoU"), else "mIoU", "test mIoU", "night mIoU", "RGB stream mIoU", "test night mIoU"."""
    if labels and labels.get(metric):
        return labels[metric]
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    part, dot, rest = metric.partition(".")
    if dot and part in _PART_LABELS and not rest.startswith("iou."):
        return f"{_PART_LABELS[part]} {metric_label(rest)}"
    return metric


def _stuff_thing() -> dict[str, tuple[str, ...]]:
    from udalab.datasets.labels import CLASS_NAMES, THING_CLASSES

    return {"stuff": tuple(c for c in CLASS_NAMES if c not in THING_CLASSES),
            "thing": tuple(c for c in CLASS_NAMES if c in THING_CLASSES)}


class _LazyStuffThing(Mapping):
    """The Cityscapes stuff / thing split (udalab.datasets.labels.THING_CLASSES), loaded on use."""

    def _d(self):
        return _stuff_thing()

    def __getitem__(self, k):
        return self._d()[k]

    def __iter__(self):
        return iter(self._d())

    def __len__(self):
        return 2

    def __repr__(self):
        return "STUFF_THING"


STUFF_THING: Mapping[str, tuple[str, ...]] = _LazyStuffThing()


# ---------------------------------------------------------------------------------------
# Aggregation.


def norm_value(v: Any) -> Any:
    """A value as a plain Python scalar (numpy ints / floats / bools converted), None when missing."""
    if is_missing(v):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def aggregate(df: pd.DataFrame, metric: str | Sequence[str] = "miou", config: Sequence[str] | None = None
              ) -> pd.DataFrame:
    """One row per configuration (the config columns, seeds pooled), in the order of first appearance.

    Columns: the config columns; `mean`, `std`, `n` of the first metric (kept for the report's
    curve); `<m>.mean`, `<m>.std`, `<m>.n` for every metric in `metric` and every `iou.<class>`;
    `trials`, `running`, `errored`, `pending`, `wall_seconds` (summed) and `_rows` (trial row indices).
    `iou.<class>` itself holds the class mean (as before). std is the sample std (NaN with one value).
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    cfg_cols = list(config) if config is not None else store.config_columns(df)
    iou_cols = [c for c in df.columns if str(c).startswith("iou.")]
    keys = [tuple(norm_value(v) for v in row) for row in df[cfg_cols].itertuples(index=False, name=None)] \
        if cfg_cols else [()] * len(df)
    order: dict[tuple, list] = {}
    for i, k in zip(df.index, keys):
        order.setdefault(k, []).append(i)
    records = []
    for key, idx in order.items():
        sub = df.loc[idx]
        status = sub["status"].astype(str) if "status" in sub else pd.Series(["TERMINATED"] * len(sub))
        rec = dict(zip(cfg_cols, key))
        for m in [*metrics, *[c for c in iou_cols if c not in metrics]]:
            vals = pd.to_numeric(sub[m], errors="coerce").dropna() if m in sub else pd.Series(dtype=float)
            rec[f"{m}.mean"] = float(vals.mean()) if len(vals) else math.nan
            rec[f"{m}.std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            rec[f"{m}.n"] = int(len(vals))
        first = metrics[0]
        rec.update(mean=rec[f"{first}.mean"], std=rec[f"{first}.std"], n=rec[f"{first}.n"],
                   trials=int(len(sub)),
                   running=int(status.isin(["RUNNING", "PAUSED"]).sum()),
                   errored=int((status == "ERROR").sum()),
                   pending=int((status == "PENDING").sum()))
        ws = pd.to_numeric(sub["wall_seconds"], errors="coerce") if "wall_seconds" in sub else pd.Series(dtype=float)
        rec["wall_seconds"] = float(ws.sum()) if ws.notna().any() else math.nan
        for c in iou_cols:
            rec[c] = rec[f"{c}.mean"]
        rec["_rows"] = list(idx)
        records.append(rec)
    stat_cols = [f"{m}.{s}" for m in [*metrics, *[c for c in iou_cols if c not in metrics]] for s in ("mean", "std", "n")]
    columns = (cfg_cols + ["mean", "std", "n", "trials", "running", "errored", "pending", "wall_seconds"]
               + [c for c in iou_cols] + stat_cols + ["_rows"])
    return pd.DataFrame.from_records(records, columns=columns)


def varying_columns(agg: pd.DataFrame, cfg_cols: Sequence[str]) -> list[str]:
    """The config columns whose value differs between configurations."""
    if not len(agg):
        return []
    return [c for c in cfg_cols if agg[c].map(lambda v: repr(norm_value(v))).nunique() > 1]


def baseline_index(agg: pd.DataFrame, baseline: Mapping | None):
    """Index of the first configuration matching every key of `baseline` (None if none)."""
    if not baseline:
        return None
    for i, row in agg.iterrows():
        if all(k in agg.columns and values_equal(row[k], v) for k, v in baseline.items()):
            return i
    return None


# ---------------------------------------------------------------------------------------
# Formatting helpers.


def fmt_value(v: Any) -> str:
    """A config value as printed: ✓ / ✗ for booleans, %g for floats, – when missing."""
    v = norm_value(v)
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "✓" if v else "✗"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# The column holding a configuration's name as the paper gives it ("+ RCS", "LR 0.5"): ReportSpec.name
# fills it; every table row, bar, legend entry and axis label of the report then uses it.
NAME_COLUMN = "name"


def config_label(row: Mapping, cols: Sequence[str], varying: Sequence[str], group: str | None = "method",
                 labels: Mapping[str, str] | None = None) -> str:
    """A short name of one configuration: its `NAME_COLUMN` value when it has one; else the group
    value plain and the other varying values as name=value."""
    if not is_missing(row.get(NAME_COLUMN)):
        return str(row[NAME_COLUMN])
    labels = labels or {}
    parts = []
    for c in cols:
        if c not in varying and c != group:
            continue
        v = norm_value(row.get(c))
        if v is None:
            continue
        parts.append(str(v) if c == group else f"{labels.get(c, c)}={fmt_value(v)}")
    return ", ".join(parts) or "all trials"


# ---------------------------------------------------------------------------------------
# The table model.


@dataclasses.dataclass
class Cell:
    """One table cell. kind: "text", "check" (a boolean as ✓ / ✗), "number" (value, optional std),
    "delta" (a signed number)."""

    value: Any = None
    kind: str = "text"
    std: float | None = None
    bold: bool = False
    digits: int = 1
    note: str = ""          # shown after the value (e.g. "1 running")
    title: str = ""         # HTML tooltip

    def text(self, pm: str = " ± ") -> str:
        v = norm_value(self.value)
        if self.kind == "check":
            return "–" if v is None else ("✓" if bool(v) else "✗")
        if self.kind in ("number", "delta"):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                return "–"
            s = f"{v:+.{self.digits}f}" if self.kind == "delta" else f"{v:.{self.digits}f}"
            if self.std is not None and not is_missing(self.std) and math.isfinite(self.std):
                s += f"{pm}{self.std:.{self.digits}f}"
            return s
        if v is None:
            return "–"
        return fmt_value(v) if not isinstance(v, str) else v


@dataclasses.dataclass
class Column:
    key: str
    label: str
    kind: str = "metric"    # "config" | "metric" | "delta" | "info"
    group: str = ""         # a header spanning adjacent columns with the same group ("stuff", "thing")


@dataclasses.dataclass
class Row:
    cells: dict[str, Cell]
    kind: str = "measured"  # "measured" | "baseline" | "published"
    source: str = ""        # published rows: where the numbers come from


@dataclasses.dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    caption: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    # -- access (tests, figures)
    def column(self, key: str) -> list[str]:
        """The plain text of one column, top to bottom."""
        return [r.cells.get(key, Cell()).text() for r in self.rows]

    def to_frame(self) -> pd.DataFrame:
        """The table as plain text cells (column labels as headers)."""
        return pd.DataFrame([[r.cells.get(c.key, Cell()).text() for c in self.columns] for r in self.rows],
                            columns=[c.label for c in self.columns])

    def _groups(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for c in self.columns:
            if out and out[-1][0] == c.group:
                out[-1] = (c.group, out[-1][1] + 1)
            else:
                out.append((c.group, 1))
        return out

    # -- Markdown
    def to_markdown(self) -> str:
        def md(cell: Cell) -> str:
            s = cell.text().replace("|", "\\|")
            if cell.note:
                s += f" ({cell.note})"
            return f"**{s}**" if cell.bold and s != "–" else s

        labels = []
        for c in self.columns:
            labels.append(f"{c.label} ({c.group})" if c.group and c.kind == "metric" and
                          not c.label.startswith(c.group) else c.label)
        lines = []
        if self.caption:
            lines += [f"**{self.caption}**", ""]
        lines.append("| " + " | ".join(l.replace("|", "\\|") for l in labels) + " |")
        lines.append("|" + "|".join(":---" if c.kind == "config" else "---:" for c in self.columns) + "|")
        for r in self.rows:
            cells = []
            for c in self.columns:
                s = md(r.cells.get(c.key, Cell()))
                cells.append(f"*{s}*" if r.kind == "published" and s not in ("–", "") else s)
            lines.append("| " + " | ".join(cells) + " |")
        for n in self.notes:
            lines += ["", n]
        return "\n".join(lines) + "\n"

    # -- HTML
    def to_html(self, cls: str = "") -> str:
        e = lambda t: html.escape(str(t), quote=True)  # noqa: E731
        groups = self._groups()
        head = ""
        if any(g for g, _ in groups):
            head += "<tr>" + "".join(f'<th colspan="{n}" class="grp">{e(g)}</th>' if g else f'<th colspan="{n}"></th>'
                                     for g, n in groups) + "</tr>"
        head += "<tr>" + "".join(f'<th class="{c.kind}">{e(c.label)}</th>' for c in self.columns) + "</tr>"
        body = []
        for r in self.rows:
            tds = []
            for c in self.columns:
                cell = r.cells.get(c.key, Cell())
                s = e(cell.text())
                if cell.note:
                    s += f' <span class="cellnote">({e(cell.note)})</span>'
                if cell.bold and cell.text() != "–":
                    s = f"<b>{s}</b>"
                title = f' title="{e(cell.title)}"' if cell.title else ""
                tds.append(f'<td class="{c.kind}"{title}>{s}</td>')
            title = f' title="{e(r.source)}"' if r.source else ""
            body.append(f'<tr class="{r.kind}"{title}>' + "".join(tds) + "</tr>")
        cap = f"<caption>{e(self.caption)}</caption>" if self.caption else ""
        notes = "".join(f'<p class="note">{e(n)}</p>' for n in self.notes)
        return (f'<div class="scroll"><table class="paper {cls}">{cap}<thead>{head}</thead>\n<tbody>\n'
                + "\n".join(body) + f"\n</tbody></table></div>{notes}")

    # -- LaTeX (booktabs; \checkmark needs amssymb)
    def to_latex(self) -> str:
        def tex(cell: Cell, published: bool) -> str:
            if cell.kind == "check":
                v = norm_value(cell.value)
                s = "--" if v is None else (r"\checkmark" if v else r"$\times$")
            else:
                s = latex_escape(cell.text(pm=" \u00b1 "))
                if cell.note:
                    s += " (" + latex_escape(cell.note) + ")"
            if cell.bold and cell.text() != "–":
                s = rf"\textbf{{{s}}}"
            if published and s not in ("--", ""):
                s = rf"\textit{{{s}}}"
            return s

        align = "".join("l" if c.kind == "config" else "r" for c in self.columns)
        out = [r"\begin{table}[t]", r"\centering"]
        if self.caption:
            out.append(rf"\caption{{{latex_escape(self.caption)}}}")
        out += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
        groups = self._groups()
        if any(g for g, _ in groups):
            cells, rules, col = [], [], 1
            for g, n in groups:
                cells.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(g)}}}" if g else (" & ".join([""] * n)))
                if g:
                    rules.append(rf"\cmidrule(lr){{{col}-{col + n - 1}}}")
                col += n
            out.append(" & ".join(cells) + r" \\")
            out.append(" ".join(rules))
        out.append(" & ".join(latex_escape(c.label) for c in self.columns) + r" \\")
        out.append(r"\midrule")
        for r in self.rows:
            out.append(" & ".join(tex(r.cells.get(c.key, Cell()), r.kind == "published") for c in self.columns)
                       + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        for n in self.notes:
            out.append(r"\par\smallskip{\footnotesize " + latex_escape(n) + "}")
        out.append(r"\end{table}")
        return "\n".join(out) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
        "λ": r"$\lambda$", "δ": r"$\delta$", "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$",
        "→": r"$\to$", "✓": r"\checkmark", "✗": r"$\times$", "–": "--", "≥": r"$\geq$", "×": r"$\times$",
        "·": r"$\cdot$"}


def latex_escape(text: Any) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


# ---------------------------------------------------------------------------------------
# Builders.


def _config_cells(rec: Mapping, cols: Sequence[str], kinds: Mapping[str, str]) -> dict[str, Cell]:
    cells = {}
    for c in cols:
        v = norm_value(rec.get(c))
        if kinds[c] == "check":
            b = None if v is None else (v if isinstance(v, bool) else str(v).lower() == "true")
            cells[c] = Cell(b, kind="check")
        else:
            cells[c] = Cell(v, kind="text")
    return cells


def _column_kinds(df: pd.DataFrame, cols: Sequence[str], checkmarks: Sequence[str] | None) -> dict[str, str]:
    kinds = {}
    for c in cols:
        is_bool = c in df.columns and (pd.api.types.is_bool_dtype(df[c]) or
                                       df[c].dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all()
                                       and df[c].notna().any())
        kinds[c] = "check" if (checkmarks is not None and c in checkmarks) or (checkmarks is None and is_bool) \
            else "factor"
    return kinds


def _table_config_columns(df: pd.DataFrame, agg: pd.DataFrame, config: Sequence[str] | None,
                          drop: Sequence[str] = ()) -> list[str]:
    cfg_cols = [c for c in store.config_columns(df) if c not in drop]
    varying = varying_columns(agg, cfg_cols)
    named = [NAME_COLUMN] if NAME_COLUMN in varying else []   # the paper's row names come first
    if config is not None:
        return named + [c for c in config if c in agg.columns and c != NAME_COLUMN]
    return named or varying or cfg_cols[:1]      # named rows: the name, not the config dump beside it


def config_dump(row: Mapping, cols: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """Every set value of `cols` (but the name) as name=value: the full config behind a name."""
    labels = labels or {}
    return ", ".join(f"{labels.get(c, c)}={fmt_value(norm_value(row.get(c)))}" for c in cols
                     if c != NAME_COLUMN and norm_value(row.get(c)) is not None)


def published_matches(ref: pd.DataFrame | None, config_columns: Sequence[str], records: Sequence[Mapping]
                      ) -> tuple[dict[int, list[dict]], list[tuple[dict, int]]]:
    """Pair published rows with configurations (position in `records`).

    Returns ({position: [published rows that match that configuration and no other]},
    [(published row, number of configurations it matches)] for rows matching several: e.g. HRDA's
    73.8, published for one crop setting, when the reference row names only the method).
    Published rows matching no configuration are left out.
    """
    unique: dict[int, list[dict]] = {}
    ambiguous: list[tuple[dict, int]] = []
    if ref is None:
        return unique, ambiguous
    for p in ref.to_dict("records"):
        hits = [i for i, r in enumerate(records) if config_matches(p, r, config_columns)]
        if len(hits) == 1:
            unique.setdefault(hits[0], []).append(p)
        elif len(hits) > 1:
            ambiguous.append((p, len(hits)))
    return unique, ambiguous


def _load_reference(reference_name: str | None):
    if not reference_name:
        return None, None
    try:
        return reference(reference_name), reference_info(reference_name)
    except KeyError:
        return None, None


def ablation_table(df: pd.DataFrame, metrics: Sequence[str] = ("miou",), baseline: Mapping | None = None,
                   reference: str | None = None, config: Sequence[str] | None = None,
                   checkmarks: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                   delta: Sequence[str] | None = None, digits: int = 1, caption: str = "",
                   published: bool = True, mode: str = "max") -> Table:
    """One row per configuration: config columns (✓ / ✗ or factor values), mean ± std of each metric
    over seeds (best in bold), seeds, Δ to the baseline; published rows beside the ones they match.

    config: the config columns to show (default: those that vary); checkmarks: the columns shown as
    ✓ / ✗ (default: the boolean ones); labels: display names ({"att_loss": "L_att"}); delta: the
    metrics that get a Δ column (default: the first); mode: "max" or "min", which value is best.
    """
    metrics = [m for m in metrics]
    labels = {NAME_COLUMN: "configuration", **(labels or {})}
    agg = aggregate(df, metrics)
    cols = _table_config_columns(df, agg, config)
    kinds = _column_kinds(df, cols, checkmarks)
    ref, info = _load_reference(reference) if published else (None, None)
    delta = list(metrics[:1] if delta is None else delta)
    base_i = baseline_index(agg, baseline)

    columns = [Column(c, labels.get(c, c), "config") for c in cols]
    columns += [Column(m, labels.get(m, m[4:] if m.startswith("iou.") else metric_label(m)), "metric")
                for m in metrics]
    columns += [Column(f"Δ{m}", f"Δ {labels.get(m, metric_label(m))}", "delta") for m in delta]
    columns.append(Column("seeds", "seeds", "info"))

    best = {m: _best(agg[f"{m}.mean"] if len(agg) else pd.Series(dtype=float), mode) for m in metrics}
    rows: list[Row] = []
    unique, ambiguous = published_matches(ref, info["config"] if info else (), agg.to_dict("records"))
    for pos, (i, r) in enumerate(agg.iterrows()):
        rec = r.to_dict()
        cells = _config_cells(rec, cols, kinds)
        for m in metrics:
            mean = r[f"{m}.mean"]
            cells[m] = Cell(mean, kind="number", std=r[f"{m}.std"], digits=digits,
                            bold=not is_missing(mean) and not is_missing(best[m]) and bool(np.isclose(mean, best[m])))
        for m in delta:
            if i == base_i:
                cells[f"Δ{m}"] = Cell("baseline")
            elif base_i is not None:
                cells[f"Δ{m}"] = Cell(r[f"{m}.mean"] - agg.loc[base_i, f"{m}.mean"], kind="delta", digits=digits)
            else:
                cells[f"Δ{m}"] = Cell(None)
        notes = [f"{int(r[k])} {k}" for k in ("running", "errored", "pending") if r[k]]
        cells["seeds"] = Cell(str(int(r["n"])), note=", ".join(notes))
        rows.append(Row(cells, "baseline" if i == base_i else "measured"))
        for p in unique.get(pos, []):
            rows.append(_published_row(p, rec, cols, kinds, metrics, delta, ref))
    for p, n in ambiguous:   # published for a setting the reference does not pin down: listed last
        rows.append(_published_row(p, {}, cols, kinds, metrics, delta, ref,
                                   f"published ({p['label']}; matches {n} configurations)"))
    notes = ["Mean ± sample std over seeds; best measured value per column in bold."]
    if baseline:
        notes.append("Δ: difference of the means to the baseline ("
                     + ", ".join(f"{k}={v}" for k, v in baseline.items())
                     + (")." if base_i is not None else "; not among the results yet)."))
    if ref is not None and any(r.kind == "published" for r in rows):
        notes.append(f"Published rows (italic): {info['title']}, {info['benchmark']}.")
    return Table(columns, rows, caption=caption, notes=notes)


def _published_row(p: Mapping, rec: Mapping, cols, kinds, metrics, delta, ref, seeds: str = "published") -> Row:
    pc = _config_cells({**rec, **{k: v for k, v in p.items() if not is_missing(v)}}, cols, kinds)
    for m in metrics:
        pc[m] = Cell(p.get(m), kind="number", digits=_pub_digits(ref, m))
    for m in delta:
        pc[f"Δ{m}"] = Cell(None)
    pc["seeds"] = Cell(seeds)
    return Row(pc, "published", source=f"{p['label']}: {p['source']}")


def _best(values: pd.Series, mode: str = "max") -> float:
    """The best value of a column, NaN unless it has at least two distinct values (nothing to bold)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.round(9).nunique() < 2:
        return math.nan
    return float(v.max() if mode == "max" else v.min())


def _pub_digits(ref: pd.DataFrame, m: str) -> int:
    vals = ref[m].dropna() if m in ref else []
    d = 1
    for v in vals:
        s = f"{v:g}"
        if "." in s:
            d = max(d, len(s.split(".")[1]))
    return min(d, 2)


def class_table(df: pd.DataFrame, classes: Sequence[str] | None = None,
                class_groups: Mapping[str, Sequence[str]] | None = None, reference: str | None = None,
                config: Sequence[str] | None = None, checkmarks: Sequence[str] | None = None,
                labels: Mapping[str, str] | None = None, metric: str = "miou", digits: int = 1,
                caption: str = "", published: bool = True) -> Table:
    """Per-class IoU: one row per configuration, one column per class (mean over seeds, the std in
    the HTML tooltip), best per column in bold, the mIoU last.

    classes: the classes to show, in order (default: every iou.<class> column of the frame);
    class_groups: {"stuff": [...], "thing": [...]} (e.g. STUFF_THING): classes grouped under these
    headers, each group followed by its mean IoU ("stuff mIoU"), classes in no group last.
    """
    labels = {NAME_COLUMN: "configuration", **(labels or {})}
    all_classes = [c[4:] for c in df.columns if str(c).startswith("iou.")]
    classes = [c for c in (classes or all_classes) if c in all_classes]
    agg = aggregate(df, [metric])
    cols = _table_config_columns(df, agg, config)
    kinds = _column_kinds(df, cols, checkmarks)
    ref, info = _load_reference(reference) if published else (None, None)
    layout = _class_layout(classes, class_groups)
    grouped = bool(class_groups)

    # group means per trial, then mean ± std over seeds
    work = df.copy()
    group_keys = []
    for g, ms in layout:
        if g and grouped:
            key = f"_group.{g}"
            work[key] = work[[f"iou.{c}" for c in ms]].apply(pd.to_numeric, errors="coerce").mean(axis=1, skipna=True)
            group_keys.append(key)
    gagg = aggregate(work, [metric, *group_keys], config=store.config_columns(df))

    columns = [Column(c, labels.get(c, c), "config") for c in cols] + _class_columns(layout, grouped, metric, labels)
    value_keys = [c.key for c in columns if c.kind == "metric"]
    best = {k: _best(gagg[f"{k}.mean"] if f"{k}.mean" in gagg else pd.Series(dtype=float), "max")
            for k in value_keys}
    rows: list[Row] = []
    unique, _ambiguous = published_matches(ref, info["config"] if info else (), gagg.to_dict("records"))
    for pos, (i, r) in enumerate(gagg.iterrows()):
        rec = r.to_dict()
        cells = _config_cells(rec, cols, kinds)
        cells.update(_class_cells(r, value_keys, best, digits))
        rows.append(Row(cells, "measured"))
        for p in unique.get(pos, []):
            if any(not is_missing(p.get(f"iou.{c}")) for c in classes):
                rows.append(_published_class_row(p, rec, cols, kinds, layout, grouped, metric))
    notes = ["IoU in % per class, mean over seeds; best measured value per column in bold; "
             "– where the class appeared in neither ground truth nor prediction."]
    if class_groups:
        notes.append("Group means (" + ", ".join(f"{g} mIoU" for g, _ in layout if g)
                     + ") average the group's classes per trial, then over seeds.")
    if any(r.kind == "published" for r in rows):
        notes.append(f"Published rows (italic): {info['title']}, {info['benchmark']}.")
    return Table(columns, rows, caption=caption, notes=notes)


def _class_layout(classes: Sequence[str], class_groups: Mapping[str, Sequence[str]] | None
                  ) -> list[tuple[str, list[str]]]:
    """The per-class columns as (header, classes) in order: each group's shown classes, then the rest
    under "other"; one ("", classes) without groups."""
    if not class_groups:
        return [("", list(classes))]
    layout, placed = [], set()
    for g, members in class_groups.items():
        ms = [c for c in members if c in classes]
        if ms:
            layout.append((g, ms))
            placed |= set(ms)
    rest = [c for c in classes if c not in placed]
    if rest:
        layout.append(("other", rest))
    return layout


def _class_columns(layout: list[tuple[str, list[str]]], grouped: bool, metric: str,
                   labels: Mapping[str, str]) -> list[Column]:
    """The value columns: each group's classes and (grouped) its mean, then the metric."""
    columns = []
    for g, ms in layout:
        columns += [Column(f"iou.{c}", c, "metric", group=g) for c in ms]
        if g and grouped:
            columns.append(Column(f"_group.{g}", f"{g} mIoU", "metric", group=g))
    columns.append(Column(metric, metric_label(metric, labels), "metric"))
    return columns


def _class_cells(r: pd.Series, value_keys: Sequence[str], best: Mapping[str, float], digits: int) -> dict[str, Cell]:
    """A configuration's value cells: mean over seeds, bold when best, the std in the tooltip."""
    cells = {}
    for k in value_keys:
        mean = r.get(f"{k}.mean", math.nan)
        std = r.get(f"{k}.std", math.nan)
        cells[k] = Cell(mean, kind="number", digits=digits,
                        bold=not is_missing(mean) and not is_missing(best[k]) and bool(np.isclose(mean, best[k])),
                        title="" if is_missing(std) else f"± {std:.{digits}f} (std over {int(r[f'{k}.n'])} seeds)")
    return cells


def _published_class_row(p: Mapping, rec: Mapping, cols, kinds, layout: list[tuple[str, list[str]]], grouped: bool,
                         metric: str) -> Row:
    """A published row beside its configuration: its per-class IoU, group means of the classes it gives."""
    pc = _config_cells({**rec, **{k: v for k, v in p.items() if not is_missing(v)}}, cols, kinds)
    for g, ms in layout:
        for c in ms:
            pc[f"iou.{c}"] = Cell(p.get(f"iou.{c}"), kind="number", digits=1)
        if g and grouped:
            vals = [p.get(f"iou.{c}") for c in ms if not is_missing(p.get(f"iou.{c}"))]
            pc[f"_group.{g}"] = Cell(float(np.mean(vals)) if vals else None, kind="number", digits=1)
    pc[metric] = Cell(p.get(metric), kind="number", digits=1)
    return Row(pc, "published", source=f"{p['label']}: {p['source']}")
