"""The study report: one self-contained HTML file (plotly.js embedded once) that opens offline,
and results/index.html, the list of all studies.

    write_report("results/intrada_split", ReportSpec(title="IntraDA: split ratio λ", x="lambda_split",
                 reference="intrada", baseline={"method": "source_only"}), preset="mini")
    write_index("results")

A report is a sequence of `Section`s (a heading, HTML fragments and `Plot`s, the tables it
exports), each made by one function from the study's `ReportData`; `report_sections` lists them
in order and `assemble_report` renders them into one page. Top to bottom:

    header_section            title, status line (finished / running / errored / pending trials), a
                              banner for the mini or smoke preset, the description, notes
    reproduction_section      "Did we reproduce it?": measured vs published for the configurations the
                              paper has, ordering and best configuration compared (with a reference)
    search_section            "What the search found" (Optuna searches): best trial, optimization
                              history, hyperparameter importance, parallel coordinates
    metric_section            the metric-vs-x curve with seed bands (one curve per `group` value), or
                              grouped bars per configuration
    results_section           the results table in the paper's shape (✓ / ✗ and factor columns,
                              mean ± std, Δ to the baseline, best in bold, published rows beside;
                              Markdown and LaTeX alongside)
    class_section             per-class IoU (heatmap and table, optionally stuff | thing)
    learning_curves_section   metric vs iteration per configuration (when the histories are given)
    cost_section              cost per trial
    errors_section            the errored trials and their exception lines
    published_section         the published table (with a reference)
    files_section             the files beside the report and the static figure export's note
                              (write_report; build_report with a static_note)

Without trials only the header (saying so) and the published table are there.
Tables are also written to <study>/tables/*.md|tex, figures to <study>/figures/*.png|svg when a
Chromium / Chrome is there for kaleido (else the report says that it skipped them).
Running trials count with their latest evaluation (marked), NaN metrics show as "–".
A grid whose finished trials all scored the held-out split reports that split (store.held_out_view:
test.* under the plain names, val.* beside, learning curves on val); a search reports val, its selector.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from udalab.analysis import figures as F
from udalab.analysis import pictures as P
from udalab.analysis import store
from udalab.core import storage
from udalab.analysis import tables as T
from udalab.analysis.reference import reference, reference_info
from udalab.analysis.tables import aggregate, is_missing

__all__ = ["ReportSpec", "write_report", "render_report", "aggregate", "write_index", "render_index", "study_dirs",
           "build_report", "export_figures", "find_browser", "Report", "ReportData", "report_data", "Section",
           "Plot", "report_sections", "assemble_report", "reproduction_summary", "study_summary"]

log = logging.getLogger("udalab")

REPORT_FILE = "report.html"
INDEX_FILE = "index.html"

_BANNERS = {
    "mini": ("mini data: compare the shape, not the level, with the published numbers. These trials ran on "
             "udalab's embedded miniature datasets (tiny images, short schedules); the published numbers come "
             "from full-size data and schedules."),
    "smoke": ("smoke run: a seconds-scale schedule on the mini data. The numbers only show that the pipeline "
              "works; compare neither shape nor level with the published numbers."),
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A weight schedule a search tunes: `fn(progress, *values of params)`, e.g. MML's δ ramp
    (methods.ramps.ramp; params delta_start, delta_end, delta_shape; paper 0.2, 1, linear)."""

    label: str
    params: tuple[str, ...]
    fn: Callable[..., float]
    paper: Mapping[str, Any]


@dataclasses.dataclass
class ReportSpec:
    """What a study's report shows.

    title:        heading of the report
    x:            the numeric hyperparameter of the curve (e.g. "lambda_split", "crop_ratio", "labeled");
                  None: grouped bars per configuration
    reference:    name in the published reference data (analysis.reference.REFERENCES)
    baseline:     the configuration Δ is measured against, e.g. {"method": "source_only"}
    group:        column whose values draw separate curves (one curve per value, e.g. a column with
                  "LR only" / "HR only" / "LR+HR"); configurations without an x value are drawn as
                  horizontal lines. A group column that is not a hyperparameter can be computed with
                  `derived`. When the column is absent, every combination of the other config
                  columns is its own curve.
    metric:       the metric of the curve, the bars' first metric and "best"
    metrics:      the metric columns of the results table (default: `metric`, then test.miou (the
                  held-out split), iiou and pixel_acc when the trials report them)
    mode:         "max" or "min": which value of `metric` is best
    x_log:        log-scaled x axis (the data-dependency curve: labelled images -> mIoU)
    labels:       display names of columns, e.g. {"att_loss": "L_att", "kl_loss": "L_KL"}
    columns:      the config columns of the tables, in order (default: those that vary)
    checkmarks:   columns shown as ✓ / ✗ (default: the boolean ones)
    classes:      the classes of the per-class table and heatmap (default: all reported)
    class_groups: "stuff_thing" (Cityscapes stuff vs thing, udalab.datasets.labels.THING_CLASSES) or
                  {"header": [classes], ...}: per-class columns grouped under headers, with a mean each
    derived:      {column: function(trial row dict) -> value}: columns computed from each trial row
                  before anything is drawn (e.g. a `group` column from two hyperparameters); the dict
                  holds the row's non-missing values only, so `r.get(name, default)` works
    description:  a paragraph under the title (what the study reproduces, how to read it)
    paper:        the paper's value of searched hyperparameters ({"tau": 0.6}): marked in the search's
                  metric-against-parameter panels and named beside the best trial's
    schedule:     a searched weight schedule (Schedule: δ's start, end, shape) drawn for the best trials
                  beside the paper's
    name:         function(trial row dict) -> the configuration's name as the paper gives it ("+ RCS",
                  "LR 0.5"), used for it in every table, bar, legend and axis; default: the `columns`
                  values ("L_att ✓, L_KL ✗") when `columns` is set, else the varying values (name=value).
                  The full config stays in the trials table and in each bar's hover.
    """

    title: str
    x: str | None = None
    reference: str | None = None
    baseline: dict | None = None
    group: str | None = "method"
    metric: str = "miou"
    metrics: tuple[str, ...] | None = None
    mode: str = "max"
    x_log: bool = False
    labels: dict = dataclasses.field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    checkmarks: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    class_groups: Any = None
    derived: dict[str, Callable[[dict], Any]] = dataclasses.field(default_factory=dict)
    description: str = ""
    name: Callable[[dict], str] | None = None
    paper: dict = dataclasses.field(default_factory=dict)
    schedule: Any = None

    def derived_columns(self) -> dict[str, Callable[[dict], Any]]:
        """`derived`, then the configuration name (tables.NAME_COLUMN) computed from them."""
        if self.name is None and not self.columns:
            return dict(self.derived)
        return {**self.derived, T.NAME_COLUMN: self.name or self._columns_name}

    def _columns_name(self, r: dict) -> str:
        parts = []
        for c in self.columns or ():
            v = r.get(c)
            if v is None:
                continue
            shown = ("✓" if v else "✗") if isinstance(v, (bool, np.bool_)) else T.fmt_value(v)
            parts.append(f"{self.labels.get(c, c)} {shown}")
        return ", ".join(parts)

    def resolved_class_groups(self) -> Mapping[str, Sequence[str]] | None:
        if self.class_groups in (None, "", False):
            return None
        if isinstance(self.class_groups, str):
            if self.class_groups.replace("/", "_").replace(" ", "_").lower() in ("stuff_thing", "stuffthing"):
                return dict(T.STUFF_THING)
            raise ValueError(f"ReportSpec.class_groups={self.class_groups!r}: use 'stuff_thing' or a dict "
                             "{header: [class names]}")
        return dict(self.class_groups)


# ---------------------------------------------------------------------------------------
# Helpers.


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: Any, digits: int = 1, signed: bool = False) -> str:
    if is_missing(v) or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _fmt_ms(mean: Any, std: Any) -> str:
    """mean ± std, the std left out when missing (one seed)."""
    return _fmt(mean) + ("" if is_missing(std) else f" ± {_fmt(std)}")


def _html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """headers: plain text (escaped here); rows: cells already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _sources(t: T.Table) -> str:
    """The table as Markdown and LaTeX, to copy into a paper or a README."""
    return ("<details><summary>Markdown / LaTeX</summary>"
            f"<pre>{_e(t.to_markdown())}</pre><pre>{_e(t.to_latex())}</pre></details>")


def _apply_derived(df: pd.DataFrame, spec: ReportSpec, names: bool = True) -> pd.DataFrame:
    derived = spec.derived_columns() if names else dict(spec.derived)
    if not derived or not len(df):
        return df
    df = df.copy()
    # each trial row as a dict of the values it has: a hyperparameter a row does not set is absent
    # (not NaN / <NA>), so that `r.get(name, default)` gives the default
    records = [{k: v for k, v in r.items() if not is_missing(v)} for r in df.to_dict("records")]
    # insert derived columns among the config columns (before `seed`), so that store.config_columns sees them
    for name, fn in derived.items():
        values = [fn(r) for r in records]
        for r, v in zip(records, values):       # a later derived column (the name) sees the earlier ones
            if not is_missing(v):
                r[name] = v
        col = store.param_series(values)
        col.index = df.index
        if name in df.columns:
            df[name] = col
        else:
            pos = list(df.columns).index("seed") if "seed" in df.columns else len(df.columns)
            df.insert(pos, name, col)
    return df


def _table_metrics(df: pd.DataFrame, spec: ReportSpec) -> list[str]:
    if spec.metrics:
        return [m for m in spec.metrics if m in df.columns] or [spec.metric]
    out = [spec.metric]
    # std.*: a search scored over seeds; val.*: the validation split beside a held-out report (held_out_view)
    for m in (f"std.{spec.metric}", "test.miou", f"{store.VAL_PREFIX}{spec.metric}", "iiou", "pixel_acc"):
        if m in df.columns and m not in out and pd.to_numeric(df[m], errors="coerce").notna().any():
            out.append(m)
    return out


def _held_out_metrics(spec: ReportSpec, view: pd.DataFrame) -> tuple[str, ...] | None:
    """spec.metrics in a held-out view's names: test.<m> -> <m>; <m> -> <m> where the test split scored
    it too, else val.<m>; the headline first, its val twin second."""
    if not spec.metrics:
        return None
    val = store.VAL_PREFIX
    names = [m.removeprefix(store.TEST_PREFIX) if m.startswith(store.TEST_PREFIX)
             else m if m in view.columns else val + m for m in spec.metrics]
    names = [spec.metric, val + spec.metric] + [m for m in names if m not in (spec.metric, val + spec.metric)]
    return tuple(m for m in names if m in view.columns)


def _is_search(study_name: str) -> bool:
    return "_optuna" in study_name


# ---------------------------------------------------------------------------------------
# What every section reads.


@dataclasses.dataclass
class ReportData:
    """A study's trials prepared once for all sections (see report_data).

    df: the trials frame with the spec's derived columns (and the metric column, NaN when absent);
    preset: "mini", "smoke" or "paper"; search: the study is an Optuna search; histories: the
    trials' learning curves or None; cfg_cols / varying: the config columns, those that vary;
    metrics: the results table's metric columns; agg: aggregate(df, metrics); ref / info: the
    published table and its reference_info (None without a reference); ref_error: why the
    reference could not be loaded ("" when it could); held_out: the metrics are the held-out test
    split's, the validation ones named val.* (store.held_out_view; a grid of fixed configurations
    whose every finished trial scored the test split).
    """

    df: pd.DataFrame
    spec: ReportSpec
    preset: str
    study_name: str
    search: bool
    histories: pd.DataFrame | None
    cfg_cols: list[str]
    varying: list[str]
    metrics: list[str]
    agg: pd.DataFrame
    ref: pd.DataFrame | None = None
    info: dict | None = None
    ref_error: str = ""
    pictures: dict | None = None          # {trial_id: store.load_pictures(...)} of the trials that kept them
    held_out: bool = False

    @property
    def ref_cfg(self) -> list[str]:
        return list(self.info["config"]) if self.info else []

    def label(self, metric: str) -> str:
        """A metric's display name in this report ("test mIoU" for a held-out report's "miou")."""
        return T.metric_label(metric, self.spec.labels)

    @property
    def pub_axis(self) -> str:
        """Published numbers on the measured axis only for the paper preset (else levels differ)."""
        return "same" if self.preset == "paper" else "secondary"


def report_data(df: pd.DataFrame, spec: ReportSpec, preset: str = "mini", study_name: str = "",
                search: bool | None = None, histories: pd.DataFrame | None = None,
                pictures: dict | None = None) -> ReportData:
    """The trials frame (store.load_trials) with everything the sections share computed once.
    search: None: a study whose name has "_optuna" in it."""
    search = _is_search(study_name) if search is None else search
    # A grid reports the held-out split, nothing was tuned on it; a search shows the split it selects on
    held_out = None if search else store.held_out_view(df, spec.metric)
    if held_out is not None:
        tested = {m: T.metric_label(store.TEST_PREFIX + m) for m in held_out.columns
                  if f"{store.TEST_PREFIX}{m}" in df.columns and not m.startswith("iou.")}   # "miou": "test mIoU"
        df, spec = held_out, dataclasses.replace(spec, metrics=_held_out_metrics(spec, held_out),
                                                 labels={**tested, **spec.labels})
        histories = None if histories is None else store.held_out_view(histories, complete=False)
    df = _apply_derived(df, spec, names=not search)    # a search's trials are points, not named rows
    if spec.metric not in df.columns:
        df = df.assign(**{spec.metric: np.nan})
    cfg_cols = store.config_columns(df)
    metrics = _table_metrics(df, spec)
    agg = aggregate(df, metrics)
    data = ReportData(df=df, spec=spec, preset=preset, study_name=study_name,
                      search=search, histories=histories,
                      cfg_cols=cfg_cols, varying=T.varying_columns(agg, cfg_cols), metrics=metrics, agg=agg,
                      pictures=pictures, held_out=held_out is not None)
    if spec.reference:
        try:
            data.ref, data.info = reference(spec.reference), reference_info(spec.reference)
        except KeyError as e:
            data.ref_error = str(e.args[0])
    return data


# ---------------------------------------------------------------------------------------
# Sections.


@dataclasses.dataclass(frozen=True)
class Plot:
    """A figure in a section's body. id: the element id of its div (fig-metric, fig-history, ...) and,
    without the "fig-" prefix, the name of its static export (figures/metric.png)."""

    id: str
    figure: Any

    def to_html(self, include_plotlyjs: bool) -> str:
        import plotly.io as pio

        height = self.figure.layout.height or 460
        return pio.to_html(self.figure, full_html=False, include_plotlyjs=include_plotlyjs, div_id=self.id,
                           default_height=f"{height}px", config={"displaylogo": False})


@dataclasses.dataclass
class Section:
    """One part of the report. title: its <h2> heading (None: the header, which has none); body: HTML
    fragments and Plots, in order; tables: {name: Table} it exports as tables/<name>.md|tex."""

    title: str | None
    body: list[str | Plot]
    tables: dict[str, T.Table] = dataclasses.field(default_factory=dict)

    @property
    def figures(self) -> dict[str, Any]:
        """{id: Figure} of the Plots in the body."""
        return {p.id: p.figure for p in self.body if isinstance(p, Plot)}


def _plots(*figures: tuple[str, Any]) -> list[Plot]:
    """Plots of the (id, figure) pairs whose figure is not None (nothing to draw)."""
    return [Plot(fid, fig) for fid, fig in figures if fig is not None]


def header_section(d: ReportData) -> Section:
    """Title, meta line, status counts, the preset's banner, description and notes."""
    spec, df, info = d.spec, d.df, d.info
    status = df["status"].astype(str).value_counts().to_dict() if len(df) else {}
    done, running = status.get("TERMINATED", 0), status.get("RUNNING", 0) + status.get("PAUSED", 0)
    errored, pending = status.get("ERROR", 0), status.get("PENDING", 0)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    devices = sorted(set(df["gpu"].dropna().astype(str))) if "gpu" in df and len(df) else []
    body = [f"<h1>{_e(spec.title)}</h1>",
            f'<div class="meta">study {_e(d.study_name)} · data: {_e(d.preset)} · generated {when}'
            + (f" · device: {_e(', '.join(devices))}" if devices else "")
            + (f" · reference: {_e(info['title'])} ({_e(info['benchmark'])})" if info else "") + "</div>",
            f'<div class="status"><b>{len(df)} trials:</b> {done} finished, {running} running, '
            f"{errored} errored, {pending} pending</div>"]
    if d.preset in _BANNERS:
        body.append(f'<div class="banner">{_e(_BANNERS[d.preset])}</div>')
    if spec.description:
        body.append(f"<p>{_e(spec.description)}</p>")
    if d.held_out:
        body.append('<p class="note">Results on the held-out test split, which nothing was tuned on; the '
                    "val columns and the learning curves are the validation split, which settings were chosen on.</p>")
    if d.ref_error:
        body.append(f'<p class="note">{_e(d.ref_error)}</p>')
    if spec.x and spec.x not in df.columns and len(df):
        body.append(f'<p class="note">The x column of the curve, {_e(spec.x)}, is not among the results\' '
                    f"columns ({_e(', '.join(d.cfg_cols))}); showing configurations instead.</p>")
    if not len(df):
        body.append('<p class="note">No trials yet: Tune has not saved its experiment state. Run the study, '
                    "then write the report again.</p>")
    body += _provenance(df)
    return Section(None, body)


def _provenance(df: pd.DataFrame) -> list[str]:
    """What the trials ran with (methods/engine/provenance.py): each value with its number of trials; a
    warning when they differ, since their results then compare less well."""
    cols = [c for c in df.columns if str(c).startswith(store.PROVENANCE_PREFIX)]
    if not cols:
        return []
    items, differ = [], []
    for c in cols:
        counts = df[c].dropna().astype(str).value_counts()
        if not len(counts):
            continue
        name = c[len(store.PROVENANCE_PREFIX):]
        if len(counts) == 1:
            items.append(f"<li><b>{_e(name)}</b>: {_e(counts.index[0])}</li>")
        else:
            differ.append(name)
            items.append(f"<li><b>{_e(name)}</b>: " + "; ".join(f"{_e(v)} ({n} trials)" for v, n in counts.items())
                         + "</li>")
    warn = (f'<p class="note cellnote">The trials differ in {_e(", ".join(differ))}: compare their results with '
            "care.</p>") if differ else ""
    return [f"<details><summary>Provenance: what these results depend on</summary><ul>{''.join(items)}</ul></details>"
            + warn]


def reproduction_summary(agg: pd.DataFrame, spec: ReportSpec, ref: pd.DataFrame | None, info: Mapping | None,
                         preset: str, cfg_cols: Sequence[str], varying: Sequence[str]) -> dict:
    """Measured vs published for the configurations the published table has.

    Returns {"pairs": [(configuration label, measured mean, std, n, published, published label)],
    "spearman": rank correlation of measured and published over the pairs (None below 3 pairs),
    "best_measured": label, "best_published": label (among the pairs), "facts": [(text, measured,
    published)], "ambiguous": [published rows matching several configurations] (with a published
    table), "verdict": one sentence}. preset "paper" compares levels, "mini" / "smoke" only shapes.
    """
    out: dict[str, Any] = {"pairs": [], "spearman": None, "best_measured": None, "best_published": None,
                           "facts": [], "verdict": ""}
    if ref is None or spec.metric not in ref.columns:
        out["verdict"] = "No published numbers to compare with." if ref is None else \
            f"The published table has no {spec.metric}."
        return out
    records = agg.to_dict("records")
    unique, ambiguous = T.published_matches(ref, info["config"], records)
    for pos, r in enumerate(records):
        hits = [p for p in unique.get(pos, []) if not is_missing(p.get(spec.metric))]
        if is_missing(r["mean"]) or not hits:
            continue
        p = hits[0]
        out["pairs"].append((T.config_label(r, cfg_cols, varying, spec.group, spec.labels), float(r["mean"]),
                             r["std"], int(r["n"]), float(p[spec.metric]), str(p["label"])))
    out["ambiguous"] = [f"{p['label']} ({p[spec.metric]:g}) matches {n} configurations" for p, n in ambiguous
                        if not is_missing(p.get(spec.metric))]
    pairs = out["pairs"]
    sign = 1 if spec.mode == "max" else -1
    if pairs:
        out["best_measured"] = max(pairs, key=lambda t: sign * t[1])[0]
        out["best_published"] = max(pairs, key=lambda t: sign * t[4])[0]
    if len(pairs) >= 3:
        m = pd.Series([t[1] for t in pairs]).rank()
        p = pd.Series([t[4] for t in pairs]).rank()
        rho = float(m.corr(p))
        out["spearman"] = rho if math.isfinite(rho) else None
    # facts such as best_lambda_split: the measured best x against the published one
    x = spec.x
    for k, v in (info.get("facts") or {}).items():
        if x and k == f"best_{x}" and x in agg.columns:
            with_x = agg[agg[x].map(lambda z: not is_missing(z)) & agg["mean"].notna()]
            if len(with_x):
                best = with_x.loc[(sign * with_x["mean"]).idxmax()]
                n_x = with_x[x].map(lambda z: repr(T.norm_value(z))).nunique()
                out["facts"].append((f"best {spec.labels.get(x, x)}" + (" (only one value measured)" if n_x < 2 else
                                                                       f" (of {n_x} measured)"),
                                     T.fmt_value(best[x]), T.fmt_value(v)))
    if not pairs:
        out["verdict"] = ("None of the measured configurations has a published counterpart yet "
                          "(or none has a result).")
    elif preset == "paper":
        gaps = [t[1] - t[4] for t in pairs]
        within = sum(1 for t in pairs if abs(t[1] - t[4]) <= max(1.0, 2 * (0 if is_missing(t[2]) else t[2])))
        out["verdict"] = (f"{within} of {len(pairs)} published configurations reproduced within max(1 point, "
                          f"2 std); mean Δ measured − published {np.mean(gaps):+.1f}.")
    else:
        same_best = out["best_measured"] == out["best_published"]
        parts = ["1 configuration has a published number." if len(pairs) == 1 else
                 f"{len(pairs)} configurations have a published number."]
        if len(pairs) >= 2:
            parts.append("The best of them is the same as the paper's." if same_best else
                         f"The paper's best of them is {out['best_published']}; here it is {out['best_measured']}.")
        if out["spearman"] is not None:
            parts.append(f"Rank correlation measured vs published: {out['spearman']:+.2f}.")
        parts.append("Smoke run: the numbers only show that the pipeline works." if preset == "smoke" else
                     "On mini data only the shape compares, not the level.")
        out["verdict"] = " ".join(parts)
    return out


def reproduction_section(d: ReportData) -> Section | None:
    """"Did we reproduce it?": reproduction_summary as a verdict, a measured-vs-published table and facts."""
    if d.ref is None:
        return None
    s = reproduction_summary(d.agg, d.spec, d.ref, d.info, d.preset, d.cfg_cols, d.varying)
    parts = ['<div class="summary">', f"<p><b>{_e(s['verdict'])}</b></p>"]
    if s["pairs"]:
        rows = []
        for label, mean, std, n, pub, plabel in s["pairs"]:
            ms = _fmt_ms(mean, std)
            delta = _fmt(mean - pub, signed=True) if d.preset == "paper" else "(levels differ)"
            rows.append(f"<tr><td>{_e(label)}</td><td>{_e(ms)} (n={n})</td><td>{_e(f'{pub:g}')}</td>"
                        f"<td>{_e(plabel)}</td><td>{_e(delta)}</td></tr>")
        m = T.metric_label(d.spec.metric)
        parts.append(f'<div class="scroll"><table class="paper"><thead><tr><th>configuration</th>'
                     f"<th>measured {d.label(d.spec.metric)}</th><th>published {m}</th><th>published row</th><th>Δ</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table></div>")
    if s.get("ambiguous"):
        parts.append(f'<p class="note">Not compared, the published configuration is not pinned down by the reference '
                     f"data: {_e('; '.join(s['ambiguous']))}.</p>")
    for what, measured, published in s["facts"]:
        parts.append(f"<p>{_e(what)}: measured <b>{_e(measured)}</b>, published <b>{_e(published)}</b>.</p>")
    parts.append("</div>")
    return Section("Did we reproduce it?", ["\n".join(parts)])


def _best_trial(d: ReportData, params: list[str]) -> str:
    """The search's best trial, its hyperparameters and their importance, as one paragraph."""
    df, spec = d.df, d.spec
    done = df[pd.to_numeric(df[spec.metric], errors="coerce").notna()]
    if not len(done):
        return '<p class="note">No trial of the search has reported yet.</p>'
    vals = pd.to_numeric(done[spec.metric], errors="coerce")
    best = done.loc[vals.idxmax() if spec.mode == "max" else vals.idxmin()]
    ps = ", ".join(f"{spec.labels.get(p, p)} = {T.fmt_value(best[p])}"
                   + (f" (paper {T.fmt_value(spec.paper[p])})" if p in spec.paper else "") for p in params) or "–"
    m = T.metric_label(spec.metric)
    imp = F.importances(df, params, spec.metric, spec.mode)
    imp_txt = (" Importance: " + ", ".join(f"{spec.labels.get(k, k)} {v:.2f}" for k, v in imp.items()) + ".") if imp else ""
    return (f'<p class="summary"><b>Best trial {_e(best["trial_id"])}: {m} {_fmt(best[spec.metric], 2)}</b> at {_e(ps)}'
            f" (seed {_e(T.fmt_value(best.get('seed')))}; {len(done)} of {len(df)} trials reported).{_e(imp_txt)}</p>")


def search_section(d: ReportData) -> Section | None:
    """"What the search found" (an Optuna search): the best trial, optimization history (fig-history),
    hyperparameter importance (fig-importance), the metric against each parameter (fig-slices), the
    best trials' schedules (fig-schedule, with spec.schedule), parallel coordinates (fig-parallel)."""
    if not d.search:
        return None
    spec, metric = d.spec, d.spec.metric
    params = F.search_params(d.df, d.cfg_cols)
    plots = _plots(("fig-history", F.optuna_history(d.df, metric, spec.mode)),
                   ("fig-importance", F.param_importance(d.df, params, metric, spec.mode, spec.labels)),
                   ("fig-slices", F.param_slices(d.df, params, metric, spec.mode, spec.labels, spec.paper)),
                   ("fig-schedule", F.schedule_curves(d.df, spec.schedule, metric, spec.mode) if spec.schedule else None),
                   ("fig-parallel", F.parallel_coordinates(d.df, params, metric, spec.labels)))
    body: list[str | Plot] = [_best_trial(d, params), *plots]
    if not any(p.id == "fig-importance" for p in plots):
        body.append('<p class="note">Hyperparameter importance needs at least two finished trials with '
                    "different values.</p>")
    return Section("What the search found", body)


def metric_section(d: ReportData) -> Section:
    """fig-metric: the metric vs spec.x with seed bands, or grouped bars when there is no x column."""
    spec, metric = d.spec, d.spec.metric
    if spec.x and spec.x in d.df.columns:
        fig = F.metric_curve(d.agg, spec.x, metric, spec.group, d.cfg_cols, d.varying, d.ref, d.ref_cfg,
                             d.pub_axis, spec.x_log, spec.labels)
        title = f"{d.label(metric)} vs {spec.labels.get(spec.x, spec.x)}"
    else:
        # the IoU metrics only: pixel accuracy (≈ 80 %) beside them flattens a 1-point mIoU difference
        ious = [m for m in d.metrics if not m.endswith("pixel_acc")] or d.metrics[:1]
        fig = F.ablation_bars(d.agg, ious[:1] if len(d.agg) > 6 else ious, d.cfg_cols, d.varying,
                              spec.group, d.ref, d.ref_cfg, d.pub_axis, spec.labels)
        title = "Configurations"
    return Section(title, [Plot("fig-metric", fig)])


def results_section(d: ReportData) -> Section:
    """The results table (tables/results.md|tex), with its Markdown and LaTeX."""
    spec = d.spec
    table = T.ablation_table(d.df, d.metrics, baseline=spec.baseline, reference=spec.reference, config=spec.columns,
                             checkmarks=spec.checkmarks, labels=spec.labels,
                             caption=f"{spec.title}: results per configuration", mode=spec.mode)
    return Section("Results per configuration", [table.to_html("main"), _sources(table)], {"results": table})


def class_section(d: ReportData) -> Section | None:
    """Per-class IoU: heatmap (fig-classes) and table (tables/classes.md|tex), when the trials report classes."""
    spec = d.spec
    classes = [c[4:] for c in d.df.columns if str(c).startswith("iou.")]
    if spec.classes:
        classes = [c for c in spec.classes if c in classes]
    if not classes:
        return None
    groups = spec.resolved_class_groups()
    fig = F.class_heatmap(d.agg, classes, d.cfg_cols, d.varying, spec.group, d.ref, d.ref_cfg, groups, spec.labels)
    table = T.class_table(d.df, classes, groups, reference=spec.reference, config=spec.columns,
                          checkmarks=spec.checkmarks, labels=spec.labels, metric=spec.metric,
                          caption=f"{spec.title}: per-class IoU")
    title = "Per-class IoU" + (" (" + " | ".join(groups) + ")" if groups else "")
    return Section(title, [*_plots(("fig-classes", fig)), table.to_html("classes"), _sources(table)],
                   {"classes": table})


def learning_curves_section(d: ReportData) -> Section | None:
    """fig-curves: the metric vs iteration per configuration, from the trials' histories."""
    if d.histories is None:
        return None
    metric = store.VAL_PREFIX + d.spec.metric if d.held_out else d.spec.metric   # scored on val while training
    fig = F.learning_curves(d.histories, d.df, metric, d.cfg_cols, d.varying, d.spec.group, d.spec.labels)
    return Section("Learning curves", _plots(("fig-curves", fig))) if fig is not None else None


def pictures_section(d: ReportData) -> Section | None:
    """What the models see: the pictures the trials kept at their final evaluation (analysis/pictures.py)."""
    if not d.pictures or d.search:
        return None
    base_i = T.baseline_index(d.agg, d.spec.baseline)
    name_of = lambda row: T.config_label(row, d.cfg_cols, d.varying, d.spec.group, d.spec.labels)  # noqa: E731
    columns = P.shown_trials(d.agg, d.df, d.pictures, base_i, name_of)
    if not columns:
        return None
    grids, used, notes = P.picture_grids(columns, d.pictures, name_of(d.agg.loc[base_i]) if base_i is not None else None)
    index = d.pictures[columns[0][1]]["index"]
    seeds = sorted({int(s) for s in d.df[d.df["trial_id"].astype(str).isin([t for _, t in columns])]["seed"].dropna()})
    body = [f'<p class="note">The same {len(index.get("images", []))} validation images ({_e(index.get("dataset", ""))}) '
            f"in every trial, at the end of training; each configuration is shown by its lowest-seed trial "
            f"(seed {', '.join(map(str, seeds))}). Classes in the dataset's palette, ignored pixels white. "
            f"{used / 1e3:.0f} kB of pictures embedded (budget {P.BUDGET_BYTES / 1e6:.1f} MB"
            + (f"; some left out: {', '.join(notes)}" if notes else "") + ").</p>",
            f'<p class="note">{P.legend(index)}</p>', *grids]
    return Section("What the models see", body)


def cost_section(d: ReportData) -> Section | None:
    """fig-cost: wall and training seconds per trial."""
    fig = F.cost_per_trial(d.df, d.cfg_cols, d.varying, d.spec.group, d.spec.labels)
    return Section("Cost per trial", _plots(("fig-cost", fig))) if fig is not None else None


def errors_section(d: ReportData) -> Section | None:
    """The errored trials: configuration, seed and exception line."""
    err = d.df[d.df["status"].astype(str) == "ERROR"]
    if not len(err):
        return None
    rows = []
    for _, r in err.iterrows():
        cfg = ", ".join(f"{c}={T.fmt_value(r[c])}" for c in d.cfg_cols if not is_missing(r[c]))
        seed = "" if is_missing(r.get("seed")) else f", seed={r['seed']}"
        rows.append([_e(r["trial_id"]), _e(cfg + seed), f'<span class="err">{_e(r.get("error") or "")}</span>'])
    return Section("Errors", [_html_table(["trial", "configuration", "error"], rows, "errors")
                              + '\n<p class="note">Full tracebacks: error.txt in each trial folder. Re-running the '
                                "study resumes errored trials.</p>"])


def published_section(d: ReportData) -> Section | None:
    """The published table of the reference, as printed, with its benchmark, source and notes."""
    ref, info = d.ref, d.info
    if ref is None:
        return None
    cols = [c for c in ["label", *info["config"], *info["metrics"]] if c in ref.columns and ref[c].notna().any()]
    rows = []
    for _, r in ref.iterrows():
        cells = [_e(T.fmt_value(r[c])) for c in cols]  # published precision as printed (%g)
        cells.append(_e(r["benchmark"]))
        cells.append(_e(r["source"]) + ("" if is_missing(r.get("note")) or r.get("note") in ("None", "nan")
                                        else f'<br><span class="note">{_e(r["note"])}</span>'))
        rows.append(cells)
    headers = [c[4:] if c.startswith("iou.") else c for c in cols] + ["benchmark", "source"]
    notes = f'<p class="note">{_e(info.get("notes", ""))}</p>' if info.get("notes") else ""
    return Section(f"Published: {info['title']}", [_html_table(headers, rows, "published") + "\n" + notes])


def files_section(notes: Sequence[str]) -> Section:
    """Notes on the files beside the report (plain text, one paragraph each)."""
    return Section("Files", ["".join(f'<p class="note">{_e(n)}</p>' for n in notes)])


def report_sections(d: ReportData) -> list[Section]:
    """The sections of the report, in order (without the files section, which needs the export's note)."""
    sections = [header_section(d)]
    if len(d.df):
        sections += [reproduction_section(d), search_section(d), metric_section(d), results_section(d),
                     class_section(d), pictures_section(d), learning_curves_section(d), cost_section(d),
                     errors_section(d)]
    sections.append(published_section(d))
    return [s for s in sections if s is not None]


# ---------------------------------------------------------------------------------------
# Assembly.


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em} .status{font-size:1.05em;margin:10px 0}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:10px 14px;border-radius:6px;font-weight:600;margin:14px 0}
.summary{background:#eef6ee;border-left:4px solid #2ca02c;padding:6px 14px;margin:10px 0}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:.88em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap} th{background:#f5f5f5}
td.config,th.config,td:first-child,th:first-child{text-align:left} th.grp{text-align:center}
tr.published td{color:#555;font-style:italic;background:#fafafa} tr.baseline td{background:#f3f7fc}
.note{color:#666;font-size:.88em} .cellnote{color:#a15c00;font-size:.9em} .err{white-space:pre-wrap;text-align:left;font-family:monospace}
.pub{color:#555} .run{color:#a15c00} details pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:.85em}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
table.pictures td{padding:2px;vertical-align:middle} table.pictures img{display:block;image-rendering:pixelated}
.swatch{display:inline-block;width:12px;height:12px;margin:0 3px 0 10px;border:1px solid #999;vertical-align:middle}
"""


@dataclasses.dataclass
class Report:
    """A rendered report: its HTML text, its figures {id: Figure}, its tables {name: Table} and the
    sections they come from."""

    html: str
    figures: dict[str, Any]
    tables: dict[str, T.Table]
    sections: list[Section] = dataclasses.field(default_factory=list)


def assemble_report(sections: Sequence[Section], title: str, study_name: str = "") -> Report:
    """The page of the sections, in order: each section's heading, then its body; plotly.js is
    embedded once, with the first figure."""
    out: list[str] = []
    first = True
    for s in sections:
        if s.title is not None:
            out.append(f"<h2>{_e(s.title)}</h2>")
        for part in s.body:
            if isinstance(part, Plot):
                out.append(part.to_html(include_plotlyjs=first))
                first = False
            else:
                out.append(part)
    body = "\n".join(out)
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f'<meta name="udalab-study" content="{_e(study_name)}">\n'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
    return Report(text, {k: v for s in sections for k, v in s.figures.items()},
                  {k: v for s in sections for k, v in s.tables.items()}, list(sections))


def build_report(df: pd.DataFrame, spec: ReportSpec, preset: str = "mini", study_name: str = "",
                 search: bool | None = None, static_note: str = "", histories: pd.DataFrame | None = None,
                 pictures: dict | None = None) -> Report:
    """The report of a trials frame (see store.load_trials): HTML text, figures and tables.

    preset: the hyperparameter preset the trials ran with, "mini", "smoke" or "paper" (mini and smoke
    get a banner saying how to read the numbers); search: an Optuna search (None: "_optuna" in
    study_name); static_note: a last "Files" section with this note; histories: the trials'
    learning curves (store.load_histories), drawn when given; pictures: {trial_id: store.load_pictures}."""
    sections = report_sections(report_data(df, spec, preset, study_name, search, histories, pictures))
    if static_note:
        sections.append(files_section([static_note]))
    return assemble_report(sections, spec.title, study_name)


def render_report(df: pd.DataFrame, spec: ReportSpec, preset: str = "mini", study_name: str = "",
                  search: bool | None = None) -> str:
    """The report's HTML text for a trials frame (see store.load_trials)."""
    return build_report(df, spec, preset, study_name, search).html


# ---------------------------------------------------------------------------------------
# Static figures (kaleido + a Chromium / Chrome).

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """The Chromium / Chrome kaleido would use: $BROWSER_PATH, else the first of chromium, google-chrome...
    on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.exists(env) else None
    for name in _BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return None


def export_figures(figs: Mapping[str, Any], out_dir: str | os.PathLike, formats: Sequence[str] = ("png", "svg"),
                   ) -> tuple[list[str], str]:
    """Write each figure as <out_dir>/<id>.<format> with kaleido. Returns (files written, note).
    Skipped (no files, a note saying why) without kaleido or without a Chromium / Chrome."""
    if not figs:
        return [], ""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return [], "Static PNG/SVG figures skipped: kaleido is not installed (pip install 'udalab[export]')."
    browser = find_browser()
    if browser is None:
        return [], ("Static PNG/SVG figures skipped: no Chromium or Chrome found (install Debian's chromium, or set "
                    "BROWSER_PATH to a Chrome executable). The interactive figures above are unaffected.")
    import plotly.io as pio

    os.environ.setdefault("BROWSER_PATH", browser)
    for name in ("kaleido", "choreographer", "logistro"):   # their INFO lines would flood a study's log
        logging.getLogger(name).setLevel(logging.WARNING)
    fs, path = storage.fs_path(out_dir)
    local = storage.is_local(out_dir)
    tmp = None if local else tempfile.mkdtemp(prefix="udalab-figures-")
    target = path if local else tmp
    os.makedirs(target, exist_ok=True)
    items, paths = [], []
    for fid, fig in figs.items():
        name = fid.removeprefix("fig-")
        for fmt in formats:
            items.append(fig)
            paths.append(os.path.join(target, f"{name}.{fmt}"))
    try:
        pio.write_images(items, paths, width=1100, height=None, scale=1 if len(items) > 4 else 2)
    except Exception as e:  # a browser that does not start, a kaleido/plotly mismatch: the report still goes out
        log.warning("static figure export failed: %s", e)
        return [], f"Static PNG/SVG figures skipped: kaleido failed ({type(e).__name__}: {str(e)[:200]})."
    written = []
    if local:
        written = [str(p) for p in paths]
    else:
        fs.create_dir(path, recursive=True)
        for p in paths:
            dst = storage.join_path(path, os.path.basename(p))
            with open(p, "rb") as f, fs.open_output_stream(dst) as o:
                o.write(f.read())
            written.append(dst)
        shutil.rmtree(tmp, ignore_errors=True)
    return written, (f"Static figures: {len(written)} files in figures/ ("
                     + ", ".join(sorted({os.path.basename(w) for w in written})) + ").")


# ---------------------------------------------------------------------------------------
# Writing.


def _write_text(fs, path: str, name: str, text: str) -> str:
    target = storage.join_path(path, name)
    tmp = storage.join_path(path, f".{name.replace('/', '_')}.{os.getpid()}.tmp")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    fs.move(tmp, target)
    return target


def _study_preset(fs, path: str) -> str | None:
    """The preset the study recorded in udalab_study.json ("scale" in folders written before "preset")."""
    return store.study_options(fs, path).get("preset")


def _histories(study_dir: str | os.PathLike, df: pd.DataFrame) -> pd.DataFrame | None:
    try:
        return store.load_histories(study_dir, list(df["trial_id"].astype(str))) if len(df) else None
    except Exception as e:  # the curves are a view; never lose the report for them
        log.warning("learning curves skipped: cannot read the trials' histories under %s: %s", study_dir, e)
        return None


def _pictures(study_dir: str | os.PathLike, df: pd.DataFrame) -> dict | None:
    out = {}
    for tid in (df["trial_id"].astype(str) if len(df) else []):
        try:
            pics = store.load_pictures(study_dir, tid)
        except Exception as e:  # the pictures are a view; never lose the report for them
            log.warning("pictures of trial %s skipped: %s", tid, e)
            continue
        if pics is not None:
            out[tid] = pics
    return out or None


def _export_note(figures: Mapping[str, Any], study_dir: str | os.PathLike, path: str,
                 static_figures: bool | None) -> str:
    """Export the figures to <study>/figures (static_figures None: when a Chromium / Chrome is found);
    the note saying what was written or why not ("" when nothing was asked)."""
    if static_figures is None:
        static_figures = find_browser() is not None
        if not static_figures:
            return ("Static PNG/SVG figures skipped: no Chromium or Chrome found (install Debian's chromium, or set "
                    "BROWSER_PATH). The interactive figures above are unaffected.")
    if not (static_figures and figures):
        return ""
    out_dir = os.path.join(path, "figures") if storage.is_local(study_dir) else storage.join_path(path, "figures")
    return export_figures(figures, out_dir)[1]


def _file_notes(fs, path: str) -> list[str]:
    """What lies beside the report."""
    files = ["trials.parquet: one row per trial (docs/architecture.md)", "tables/*.md, tables/*.tex: the tables"]
    if storage.is_file(fs, storage.join_path(path, "optuna.db")):
        files.append(f"optuna.db: the Optuna study (optuna-dashboard sqlite:///{path}/optuna.db)")
    return files


def write_report(study_dir: str | os.PathLike, spec: ReportSpec | None, df: pd.DataFrame | None = None,
                 preset: str | None = "mini", static_figures: bool | None = None,
                 index: bool = True) -> Path | str:
    """Write `<study_dir>/report.html` (+ tables/*.md|tex, figures/*.png|svg) and the results folder's
    index.html; return the report's Path (its URI string for a remote study directory).

    df: the trials frame (default: store.load_trials(study_dir)); preset: the hyperparameter preset
    the trials ran with, "mini", "smoke" or "paper" (mini and smoke get a banner saying how to read
    the numbers; None: the preset the study recorded in udalab_study.json, else "mini");
    static_figures: export PNG/SVG with kaleido (None: when a Chromium / Chrome is found); index:
    also rewrite <results>/index.html.
    """
    fs, path = storage.fs_path(study_dir)
    if df is None:
        df = store.load_trials(study_dir)
    name = storage.uri_name(study_dir)
    if spec is None:
        spec = ReportSpec(title=name)
    if preset is None:
        preset = _study_preset(fs, path) or "mini"
    search = _is_search(name) or any(i.base_name.startswith("searcher-state-") for i in storage.list_dir(fs, path))
    fs.create_dir(path, recursive=True)

    sections = report_sections(report_data(df, spec, preset, name, search, _histories(study_dir, df),
                                           _pictures(study_dir, df)))
    note = _export_note({k: v for s in sections for k, v in s.figures.items()}, study_dir, path, static_figures)
    sections.append(files_section(_file_notes(fs, path) + ([note] if note else [])))
    report = assemble_report(sections, spec.title, name)

    fs.create_dir(storage.join_path(path, "tables"), recursive=True)
    for tname, table in report.tables.items():
        _write_text(fs, path, f"tables/{tname}.md", table.to_markdown())
        _write_text(fs, path, f"tables/{tname}.tex", table.to_latex())
    target = _write_text(fs, path, REPORT_FILE, report.html)
    if index:
        parent = storage.uri_parent(study_dir)
        try:
            write_index(parent)
        except Exception as e:  # the index is a convenience; never lose the report for it
            log.warning("could not write %s/%s: %s", parent, INDEX_FILE, e)
    if storage.is_local(study_dir):
        return Path(target)
    return storage.uri_join(study_dir, REPORT_FILE)


# ---------------------------------------------------------------------------------------
# results/index.html


def study_dirs(results_dir: str | os.PathLike) -> list[str]:
    """The study folders under a results folder (those holding a Tune state or a trials.parquet)."""
    fs, root = storage.fs_path(results_dir)
    return _study_dirs(fs, root)


def _study_dirs(fs, root: str) -> list[str]:
    out = []
    for i in storage.list_dir(fs, root):
        if i.type != pafs.FileType.Directory or i.base_name.startswith((".", "_")):
            continue
        names = {j.base_name for j in storage.list_dir(fs, i.path)}
        if store.TRIALS_FILE in names or any(store.is_state_file(n) for n in names):
            out.append(i.base_name)
    return sorted(out)


def study_summary(results_dir: str | os.PathLike, name: str, metric: str = "miou") -> dict:
    """Status and best result of one study folder, for the index: name, title, trials, status counts,
    state, best (label, mean, std, n: the best configuration by the val metric), best_test (its held-out
    test.<metric>: mean, std, n; absent without one), preset (the preset it recorded in udalab_study.json, "?" when
    none), report (whether report.html exists), updated, error."""
    fs, root = storage.fs_path(results_dir)
    path = storage.join_path(root, name)
    try:
        df = store.load_trials(storage.uri_join(results_dir, name)) \
            if any(store.is_state_file(i.base_name) for i in storage.list_dir(fs, path)) \
            else pd.read_parquet(storage.join_path(path, store.TRIALS_FILE), filesystem=fs)
    except Exception as e:
        return {"name": name, "error": f"{type(e).__name__}: {e}", "trials": 0}
    status = df["status"].astype(str).value_counts().to_dict() if len(df) else {}
    out = {"name": name, "trials": len(df), "status": status, "preset": _study_preset(fs, path) or "?",
           "report": storage.is_file(fs, storage.join_path(path, REPORT_FILE)),
           "title": name, "best": None, "error": None}
    if out["report"]:
        text = storage.read_text(fs, storage.join_path(path, REPORT_FILE)) or ""
        m = re.search(r"<title>(.*?)</title>", text[:4000], re.S)
        if m:
            out["title"] = html.unescape(m.group(1))
    mtimes = [i.mtime for i in storage.list_dir(fs, path) if i.mtime is not None]
    out["updated"] = max(mtimes).strftime("%Y-%m-%d %H:%M") if mtimes else ""
    if len(df) and metric in df.columns and pd.to_numeric(df[metric], errors="coerce").notna().any():
        test = store.TEST_PREFIX + metric
        agg = aggregate(df, [metric, test] if test in df.columns else metric)
        cfg = store.config_columns(df)
        varying = T.varying_columns(agg, cfg)
        b = agg.loc[agg["mean"].idxmax()]            # chosen on val; its held-out score beside it
        out["best"] = (T.config_label(b, cfg, varying, "method"), float(b["mean"]), b["std"], int(b["n"]))
        if b.get(f"{test}.n", 0):
            out["best_test"] = (float(b[f"{test}.mean"]), b[f"{test}.std"], int(b[f"{test}.n"]))
    if not len(df):
        out["state"] = "no trials yet"
    elif status.get("ERROR"):
        out["state"] = "errors"
    elif set(status) == {"TERMINATED"}:
        out["state"] = "finished"
    else:
        out["state"] = "unfinished (running or interrupted)"
    return out


def render_index(summaries: list[dict], results_dir: str = "") -> str:
    rows = []
    for s in summaries:
        name = _e(s["name"])
        link = f'<a href="{_e(s["name"])}/{REPORT_FILE}">{_e(s.get("title") or s["name"])}</a>' if s.get("report") \
            else _e(s.get("title") or s["name"]) + ' <span class="note">(no report yet: udalab report ' + name + ")</span>"
        if s.get("error"):
            rows.append(f"<tr><td>{name}</td><td>{link}</td><td colspan=5 class=err>{_e(s['error'])}</td></tr>")
            continue
        st = ", ".join(f"{v} {k.lower()}" for k, v in sorted(s["status"].items())) or "–"
        best = "–"
        if s["best"]:
            label, mean, std, n = s["best"]
            best = f"{_fmt_ms(mean, std)} ({_e(label)}, n={n})"
            if s.get("best_test"):
                t_mean, t_std, t_n = s["best_test"]
                best += f"; test {_fmt_ms(t_mean, t_std)} (n={t_n})"
        rows.append(f"<tr><td>{name}</td><td style='text-align:left'>{link}</td><td>{_e(s['state'])}</td>"
                    f"<td>{s['trials']}: {_e(st)}</td><td>{best}</td><td>{_e(s['preset'])}</td><td>{_e(s['updated'])}</td></tr>")
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = ("<h1>udalab results</h1>"
            f'<div class="meta">{_e(results_dir)} · {len(summaries)} studies · generated {when}</div>'
            + ('<div class="scroll"><table><thead><tr><th>study</th><th>report</th><th>state</th><th>trials</th>'
               "<th>best configuration by val mIoU (mean ± std over seeds); its held-out test mIoU</th><th>data</th><th>updated</th></tr></thead><tbody>"
               + "\n".join(rows) + "</tbody></table></div>" if summaries else
               '<p class="note">No studies yet: run one, e.g. python studies/intrada_split.py --smoke</p>')
            + '<p class="note">mini / smoke data: compare shapes, not levels, with the papers. Each report opens '
              "offline; trials.parquet in each folder holds the numbers.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>udalab results</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_index(results_dir: str | os.PathLike) -> Path | str:
    """Write <results_dir>/index.html: every study folder with its state and best result."""
    fs, root = storage.fs_path(results_dir)
    summaries = [study_summary(results_dir, n) for n in _study_dirs(fs, root)]
    fs.create_dir(root, recursive=True)
    target = _write_text(fs, root, INDEX_FILE, render_index(summaries, str(results_dir)))
    return Path(target) if storage.is_local(results_dir) else storage.uri_join(results_dir, INDEX_FILE)
