"""The study report: one self-contained HTML file (plotly.js embedded once) that opens offline,
and results/index.html, the list of all studies.

    write_report("results/intrada_split", ReportSpec(title="IntraDA: split ratio λ", x="lambda_split",
                 reference="intrada", baseline={"method": "source_only"}), data_scale="mini")
    write_index("results")

Contents, top to bottom: title, status line (finished / running / errored / pending trials), a
banner on mini or smoke data; "Did we reproduce it?" (measured vs published for the
configurations the paper has, ordering and best configuration compared); for an Optuna search
"What the search found" (best trial, optimization history, hyperparameter importance, parallel
coordinates); the metric-vs-x curve with seed bands (one curve per `group` value) or grouped
bars; the results table in the paper's shape (✓ / ✗ and factor columns, mean ± std, Δ to the
baseline, best in bold, published rows beside; Markdown and LaTeX alongside); per-class IoU
(heatmap and table, optionally stuff | thing); cost per trial; the published table; errors.

Tables are also written to <study>/tables/*.md|tex, figures to <study>/figures/*.png|svg when a
Chromium / Chrome is there for kaleido (else the report says that it skipped them).
Running trials count with their latest evaluation (marked), NaN metrics show as "–".
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import glob
import html
import json
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

from udalab.analysis import figures as F
from udalab.analysis import store
from udalab.analysis import tables as T
from udalab.analysis.reference import _is_missing, config_matches, reference, reference_info
from udalab.analysis.tables import aggregate, baseline_index as _baseline_index  # noqa: F401  (public names)

__all__ = ["ReportSpec", "write_report", "render_report", "aggregate", "write_index", "render_index", "study_dirs",
           "build_report", "export_figures", "find_browser"]

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
    metrics:      the metric columns of the results table (default: `metric`, then iiou and pixel_acc
                  when the trials report them)
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
    if _is_missing(v) or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _apply_derived(df: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    if not spec.derived or not len(df):
        return df
    df = df.copy()
    # each trial row as a dict of the values it has: a hyperparameter a row does not set is absent
    # (not NaN / <NA>), so that `r.get(name, default)` gives the default
    records = [{k: v for k, v in r.items() if not _is_missing(v)} for r in df.to_dict("records")]
    # insert derived columns among the config columns (before `seed`), so that store.config_columns sees them
    for name, fn in spec.derived.items():
        values = [fn(r) for r in records]
        col = store._param_series(values)
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
    for m in ("iiou", "pixel_acc"):
        if m in df.columns and m not in out and pd.to_numeric(df[m], errors="coerce").notna().any():
            out.append(m)
    return out


def _is_search(study_name: str) -> bool:
    return "_optuna" in study_name


# ---------------------------------------------------------------------------------------
# "Did we reproduce it?"


def reproduction_summary(agg: pd.DataFrame, spec: ReportSpec, ref: pd.DataFrame | None, info: Mapping | None,
                         data_scale: str, cfg_cols: Sequence[str], varying: Sequence[str]) -> dict:
    """Measured vs published for the configurations the published table has.

    Returns {"pairs": [(configuration label, measured mean, std, n, published, published label)],
    "spearman": rank correlation of measured and published over the pairs (None below 3 pairs),
    "best_measured": label, "best_published": label (among the pairs), "facts": [(text, measured,
    published)], "verdict": one sentence}.
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
        hits = [p for p in unique.get(pos, []) if not _is_missing(p.get(spec.metric))]
        if _is_missing(r["mean"]) or not hits:
            continue
        p = hits[0]
        out["pairs"].append((T.config_label(r, cfg_cols, varying, spec.group, spec.labels), float(r["mean"]),
                             r["std"], int(r["n"]), float(p[spec.metric]), str(p["label"])))
    out["ambiguous"] = [f"{p['label']} ({p[spec.metric]:g}) matches {n} configurations" for p, n in ambiguous
                        if not _is_missing(p.get(spec.metric))]
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
            with_x = agg[agg[x].map(lambda z: not _is_missing(z)) & agg["mean"].notna()]
            if len(with_x):
                best = with_x.loc[(sign * with_x["mean"]).idxmax()]
                n_x = with_x[x].map(lambda z: repr(T._norm(z))).nunique()
                out["facts"].append((f"best {spec.labels.get(x, x)}" + (" (only one value measured)" if n_x < 2 else
                                                                       f" (of {n_x} measured)"),
                                     T.fmt_value(best[x]), T.fmt_value(v)))
    if not pairs:
        out["verdict"] = ("None of the measured configurations has a published counterpart yet "
                          "(or none has a result).")
    elif data_scale == "paper":
        gaps = [t[1] - t[4] for t in pairs]
        within = sum(1 for t in pairs if abs(t[1] - t[4]) <= max(1.0, 2 * (0 if _is_missing(t[2]) else t[2])))
        out["verdict"] = (f"{within} of {len(pairs)} published configurations reproduced within max(1 point, "
                          f"2 std); mean Δ measured − published {np.mean(gaps):+.1f}.")
    else:
        same_best = out["best_measured"] == out["best_published"]
        parts = [f"{len(pairs)} configurations have a published number."]
        if len(pairs) >= 2:
            parts.append("The best of them is the same as the paper's." if same_best else
                         f"The paper's best of them is {out['best_published']}; here it is {out['best_measured']}.")
        if out["spearman"] is not None:
            parts.append(f"Rank correlation measured vs published: {out['spearman']:+.2f}.")
        parts.append("Smoke run: the numbers only show that the pipeline works." if data_scale == "smoke" else
                     "On mini data only the shape compares, not the level.")
        out["verdict"] = " ".join(parts)
    return out


def _summary_html(s: dict, spec: ReportSpec, data_scale: str) -> str:
    parts = ['<div class="summary">', f"<p><b>{_e(s['verdict'])}</b></p>"]
    if s["pairs"]:
        rows = []
        for label, mean, std, n, pub, plabel in s["pairs"]:
            ms = _fmt(mean) + ("" if _is_missing(std) else f" ± {_fmt(std)}")
            delta = _fmt(mean - pub, signed=True) if data_scale == "paper" else "(levels differ)"
            rows.append(f"<tr><td>{_e(label)}</td><td>{_e(ms)} (n={n})</td><td>{_e(f'{pub:g}')}</td>"
                        f"<td>{_e(plabel)}</td><td>{_e(delta)}</td></tr>")
        m = T.METRIC_LABELS.get(spec.metric, spec.metric)
        parts.append(f'<div class="scroll"><table class="paper"><thead><tr><th>configuration</th><th>measured {m}</th>'
                     f"<th>published {m}</th><th>published row</th><th>Δ</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table></div>")
    if s.get("ambiguous"):
        parts.append(f'<p class="note">Not compared, the published configuration is not pinned down by the reference '
                     f"data: {_e('; '.join(s['ambiguous']))}.</p>")
    for what, measured, published in s["facts"]:
        parts.append(f"<p>{_e(what)}: measured <b>{_e(measured)}</b>, published <b>{_e(published)}</b>.</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _search_html(df: pd.DataFrame, spec: ReportSpec, params: list[str]) -> str:
    d = df[pd.to_numeric(df[spec.metric], errors="coerce").notna()]
    if not len(d):
        return '<p class="note">No trial of the search has reported yet.</p>'
    vals = pd.to_numeric(d[spec.metric], errors="coerce")
    best = d.loc[vals.idxmax() if spec.mode == "max" else vals.idxmin()]
    ps = ", ".join(f"{spec.labels.get(p, p)} = {T.fmt_value(best[p])}" for p in params) or "–"
    m = T.METRIC_LABELS.get(spec.metric, spec.metric)
    imp = F.importances(df, params, spec.metric, spec.mode)
    imp_txt = (" Importance: " + ", ".join(f"{spec.labels.get(k, k)} {v:.2f}" for k, v in imp.items()) + ".") if imp else ""
    return (f'<p class="summary"><b>Best trial {_e(best["trial_id"])}: {m} {_fmt(best[spec.metric], 2)}</b> at {_e(ps)}'
            f" (seed {_e(T.fmt_value(best.get('seed')))}; {len(d)} of {len(df)} trials reported).{_e(imp_txt)}</p>")


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
"""


_FILES_MARK = "<!--udalab-files-->"


@dataclasses.dataclass
class Report:
    """A rendered report: its HTML text, its figures {id: Figure} and its tables {name: Table}."""

    html: str
    figures: dict[str, Any]
    tables: dict[str, T.Table]


def build_report(df: pd.DataFrame, spec: ReportSpec, data_scale: str = "mini", study_name: str = "",
                 search: bool | None = None, static_note: str = "", histories: pd.DataFrame | None = None
                 ) -> Report:
    """The report of a trials frame (see store.load_trials): HTML text, figures and tables.
    histories: the trials' learning curves (store.load_histories), drawn when given."""
    import plotly.io as pio

    metric = spec.metric
    df = _apply_derived(df, spec)
    if metric not in df.columns:
        df = df.assign(**{metric: np.nan})
    cfg_cols = store.config_columns(df)
    metrics = _table_metrics(df, spec)
    agg = aggregate(df, metrics)
    varying = T.varying_columns(agg, cfg_cols)
    class_groups = spec.resolved_class_groups()
    ref = info = None
    ref_cfg: list[str] = []
    ref_error = ""
    if spec.reference:
        try:
            ref, info = reference(spec.reference), reference_info(spec.reference)
            ref_cfg = list(info["config"])
        except KeyError as e:
            ref_error = str(e.args[0])
    pub_axis = "same" if data_scale == "paper" else "secondary"
    search = _is_search(study_name) if search is None else search

    figs: dict[str, Any] = {}
    tabs: dict[str, T.Table] = {}
    sections: list[tuple[str, list[str]]] = []   # (heading, html parts); figures as ("\0fig:<id>")

    status = df["status"].astype(str).value_counts().to_dict() if len(df) else {}
    done, running = status.get("TERMINATED", 0), status.get("RUNNING", 0) + status.get("PAUSED", 0)
    errored, pending = status.get("ERROR", 0), status.get("PENDING", 0)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    devices = sorted(set(df["gpu"].dropna().astype(str))) if "gpu" in df and len(df) else []
    head = [f"<h1>{_e(spec.title)}</h1>",
            f'<div class="meta">study {_e(study_name)} · data: {_e(data_scale)} · generated {when}'
            + (f" · device: {_e(', '.join(devices))}" if devices else "")
            + (f" · reference: {_e(info['title'])} ({_e(info['benchmark'])})" if info else "") + "</div>",
            f'<div class="status"><b>{len(df)} trials:</b> {done} finished, {running} running, '
            f"{errored} errored, {pending} pending</div>"]
    if data_scale in _BANNERS:
        head.append(f'<div class="banner">{_e(_BANNERS[data_scale])}</div>')
    if spec.description:
        head.append(f"<p>{_e(spec.description)}</p>")
    if ref_error:
        head.append(f'<p class="note">{_e(ref_error)}</p>')
    if spec.x and spec.x not in df.columns and len(df):
        head.append(f'<p class="note">The x column of the curve, {_e(spec.x)}, is not among the results\' '
                    f"columns ({_e(', '.join(cfg_cols))}); showing configurations instead.</p>")

    if len(df) == 0:
        head.append('<p class="note">No trials yet: Tune has not saved its experiment state. Run the study, '
                    "then write the report again.</p>")
    else:
        # Did we reproduce it?
        if ref is not None:
            s = reproduction_summary(agg, spec, ref, info, data_scale, cfg_cols, varying)
            sections.append(("Did we reproduce it?", [_summary_html(s, spec, data_scale)]))
        # The search
        params = F.search_params(df, cfg_cols)
        if search:
            part = [_search_html(df, spec, params)]
            for fid, fig in (("fig-history", F.optuna_history(df, metric, spec.mode)),
                             ("fig-importance", F.param_importance(df, params, metric, spec.mode, spec.labels)),
                             ("fig-parallel", F.parallel_coordinates(df, params, metric, spec.labels))):
                if fig is not None:
                    figs[fid] = fig
                    part.append(f"\0fig:{fid}")
            if "fig-importance" not in figs:
                part.append('<p class="note">Hyperparameter importance needs at least two finished trials with '
                            "different values.</p>")
            sections.append(("What the search found", part))
        # The curve or the bars
        if spec.x and spec.x in df.columns:
            figs["fig-metric"] = F.metric_curve(agg, spec.x, metric, spec.group, cfg_cols, varying, ref, ref_cfg,
                                                pub_axis, spec.x_log, spec.labels)
            heading = f"{T.METRIC_LABELS.get(metric, metric)} vs {spec.labels.get(spec.x, spec.x)}"
        else:
            figs["fig-metric"] = F.ablation_bars(agg, metrics[:1] if len(agg) > 6 else metrics, cfg_cols, varying,
                                                 spec.group, ref, ref_cfg, pub_axis, spec.labels)
            heading = "Configurations"
        sections.append((heading, ["\0fig:fig-metric"]))
        # The table
        tabs["results"] = T.ablation_table(df, metrics, baseline=spec.baseline, reference=spec.reference,
                                           config=spec.columns, checkmarks=spec.checkmarks, labels=spec.labels,
                                           caption=f"{spec.title}: results per configuration", mode=spec.mode)
        sections.append(("Results per configuration", [tabs["results"].to_html("main"),
                                                      _sources(tabs["results"])]))
        # Per-class IoU
        classes = [c[4:] for c in df.columns if str(c).startswith("iou.")]
        if spec.classes:
            classes = [c for c in spec.classes if c in classes]
        if classes:
            fig = F.class_heatmap(agg, classes, cfg_cols, varying, spec.group, ref, ref_cfg, class_groups, spec.labels)
            tabs["classes"] = T.class_table(df, classes, class_groups, reference=spec.reference, config=spec.columns,
                                            checkmarks=spec.checkmarks, labels=spec.labels, metric=metric,
                                            caption=f"{spec.title}: per-class IoU")
            part = []
            if fig is not None:
                figs["fig-classes"] = fig
                part.append("\0fig:fig-classes")
            part += [tabs["classes"].to_html("classes"), _sources(tabs["classes"])]
            sections.append(("Per-class IoU" + (" (" + " | ".join(class_groups) + ")" if class_groups else ""), part))
        # Learning curves
        if histories is not None:
            fig = F.learning_curves(histories, df, metric, cfg_cols, varying, spec.group, spec.labels)
            if fig is not None:
                figs["fig-curves"] = fig
                sections.append(("Learning curves", ["\0fig:fig-curves"]))
        # Cost
        fig = F.cost_per_trial(df, cfg_cols, varying, spec.group, spec.labels)
        if fig is not None:
            figs["fig-cost"] = fig
            sections.append(("Cost per trial", ["\0fig:fig-cost"]))
        err = _errors(df, cfg_cols)
        if err:
            sections.append(("Errors", [err]))
    if ref is not None:
        sections.append((f"Published: {info['title']}", [_published_table(ref, info)]))
    if static_note:
        sections.append(("Files", [f'<p class="note">{_e(static_note)}</p>' if static_note != _FILES_MARK
                                   else _FILES_MARK]))

    # plotly.js embedded once, with the first figure
    out = list(head)
    first = True
    for heading, parts in sections:
        out.append(f"<h2>{_e(heading)}</h2>")
        for p in parts:
            if p.startswith("\0fig:"):
                fid = p[5:]
                fig = figs[fid]
                height = fig.layout.height or 460
                out.append(pio.to_html(fig, full_html=False, include_plotlyjs=first, div_id=fid,
                                       default_height=f"{height}px", config={"displaylogo": False}))
                first = False
            else:
                out.append(p)
    body = "\n".join(out)
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{_e(spec.title)}</title>\n'
            f'<meta name="udalab-study" content="{_e(study_name)}">\n'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
    return Report(text, figs, tabs)


def render_report(df: pd.DataFrame, spec: ReportSpec, data_scale: str = "mini", study_name: str = "",
                  search: bool | None = None) -> str:
    """The report's HTML text for a trials frame (see store.load_trials)."""
    return build_report(df, spec, data_scale, study_name, search).html


def _sources(t: T.Table) -> str:
    """The table as Markdown and LaTeX, to copy into a paper or a README."""
    return ("<details><summary>Markdown / LaTeX</summary>"
            f"<pre>{_e(t.to_markdown())}</pre><pre>{_e(t.to_latex())}</pre></details>")


def _published_table(ref: pd.DataFrame, info: dict) -> str:
    cols = [c for c in ["label", *info["config"], *info["metrics"]] if c in ref.columns and ref[c].notna().any()]
    rows = []
    for _, r in ref.iterrows():
        cells = [_e(T.fmt_value(r[c])) for c in cols]  # published precision as printed (%g)
        cells.append(_e(r["benchmark"]))
        cells.append(_e(r["source"]) + ("" if _is_missing(r.get("note")) or r.get("note") in ("None", "nan")
                                        else f'<br><span class="note">{_e(r["note"])}</span>'))
        rows.append(cells)
    headers = [c[4:] if c.startswith("iou.") else c for c in cols] + ["benchmark", "source"]
    notes = f'<p class="note">{_e(info.get("notes", ""))}</p>' if info.get("notes") else ""
    return _html_table(headers, rows, "published") + "\n" + notes


def _html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """headers: plain text (escaped here); rows: cells already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _errors(df: pd.DataFrame, cfg_cols: list[str]) -> str:
    err = df[df["status"].astype(str) == "ERROR"]
    if not len(err):
        return ""
    rows = []
    for _, r in err.iterrows():
        cfg = ", ".join(f"{c}={T.fmt_value(r[c])}" for c in cfg_cols if not _is_missing(r[c]))
        seed = "" if _is_missing(r.get("seed")) else f", seed={r['seed']}"
        rows.append([_e(r["trial_id"]), _e(cfg + seed), f'<span class="err">{_e(r.get("error") or "")}</span>'])
    return (_html_table(["trial", "configuration", "error"], rows, "errors")
            + '\n<p class="note">Full tracebacks: error.txt in each trial folder. Re-running the study resumes '
              "errored trials.</p>")


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
    fs, path = store._fs(out_dir)
    local = store._is_local(out_dir)
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
            dst = store._join(path, os.path.basename(p))
            with open(p, "rb") as f, fs.open_output_stream(dst) as o:
                o.write(f.read())
            written.append(dst)
        shutil.rmtree(tmp, ignore_errors=True)
    return written, (f"Static figures: {len(written)} files in figures/ ("
                     + ", ".join(sorted({os.path.basename(w) for w in written})) + ").")


# ---------------------------------------------------------------------------------------
# Writing.


def _write_text(fs, path: str, name: str, text: str) -> str:
    target = store._join(path, name)
    tmp = store._join(path, f".{name.replace('/', '_')}.{os.getpid()}.tmp")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    fs.move(tmp, target)
    return target


def _study_scale(fs, path: str) -> str | None:
    text = store._read_text(fs, store._join(path, "udalab_study.json"))
    try:
        return json.loads(text).get("scale") if text else None
    except json.JSONDecodeError:
        return None


def write_report(study_dir: str | os.PathLike, spec: ReportSpec | None, df: pd.DataFrame | None = None,
                 data_scale: str | None = "mini", static_figures: bool | None = None,
                 index: bool = True) -> Path | str:
    """Write `<study_dir>/report.html` (+ tables/*.md|tex, figures/*.png|svg) and the results folder's
    index.html; return the report's Path (its URI string for a remote study directory).

    df: the trials frame (default: store.load_trials(study_dir)); data_scale: "mini", "smoke" or
    "paper" (mini and smoke get a banner saying how to read the numbers; None: the scale the study
    recorded in udalab_study.json, else "mini"); static_figures: export PNG/SVG with kaleido (None:
    when a Chromium / Chrome is found); index: also rewrite <results>/index.html.
    """
    fs, path = store._fs(study_dir)
    if df is None:
        df = store.load_trials(study_dir)
    name = str(study_dir).rstrip("/").rsplit("/", 1)[-1]
    if spec is None:
        spec = ReportSpec(title=name)
    if data_scale is None:
        data_scale = _study_scale(fs, path) or "mini"
    search = bool(store._ls(fs, path)) and any(i.base_name.startswith("searcher-state-") for i in store._ls(fs, path))
    search = search or _is_search(name)
    fs.create_dir(path, recursive=True)

    try:
        histories = store.load_histories(study_dir, list(df["trial_id"].astype(str))) if len(df) else None
    except Exception as e:  # the curves are a view; never lose the report for them
        log.warning("learning curves skipped: cannot read the trials' histories under %s: %s", study_dir, e)
        histories = None
    report = build_report(df, spec, data_scale=data_scale, study_name=name, search=search, static_note=_FILES_MARK,
                          histories=histories)
    note = ""
    if static_figures is None:
        static_figures = find_browser() is not None
        if not static_figures:
            note = ("Static PNG/SVG figures skipped: no Chromium or Chrome found (install Debian's chromium, or set "
                    "BROWSER_PATH). The interactive figures above are unaffected.")
    if static_figures and report.figures:
        _, note = export_figures(report.figures, store._join(path, "figures") if not store._is_local(study_dir)
                                 else os.path.join(path, "figures"))
    files = ["trials.parquet: one row per trial (docs/architecture.md)", "tables/*.md, tables/*.tex: the tables"]
    if store._info(fs, store._join(path, "optuna.db")).type == store.pafs.FileType.File:
        files.append(f"optuna.db: the Optuna study (optuna-dashboard sqlite:///{path}/optuna.db)")
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in files + ([note] if note else []))
    report.html = report.html.replace(_FILES_MARK, notes, 1)

    fs.create_dir(store._join(path, "tables"), recursive=True)
    for tname, table in report.tables.items():
        _write_text(fs, path, f"tables/{tname}.md", table.to_markdown())
        _write_text(fs, path, f"tables/{tname}.tex", table.to_latex())
    target = _write_text(fs, path, REPORT_FILE, report.html)
    if index:
        parent = str(study_dir).rstrip("/").rsplit("/", 1)[0] if "/" in str(study_dir).rstrip("/") else "."
        try:
            write_index(parent)
        except Exception as e:  # the index is a convenience; never lose the report for it
            log.warning("could not write %s/%s: %s", parent, INDEX_FILE, e)
    if store._is_local(study_dir):
        return Path(target)
    return str(study_dir).rstrip("/") + "/" + REPORT_FILE


# ---------------------------------------------------------------------------------------
# results/index.html


def study_dirs(results_dir: str | os.PathLike) -> list[str]:
    """The study folders under a results folder (those holding a Tune state or a trials.parquet)."""
    fs, root = store._fs(results_dir)
    return _study_dirs(fs, root)


def _study_dirs(fs, root: str) -> list[str]:
    out = []
    for i in store._ls(fs, root):
        if i.type != store.pafs.FileType.Directory or i.base_name.startswith((".", "_")):
            continue
        names = {j.base_name for j in store._ls(fs, i.path)}
        if store.TRIALS_FILE in names or any(store._STATE_RE.match(n) for n in names):
            out.append(i.base_name)
    return sorted(out)


def study_summary(results_dir: str | os.PathLike, name: str, metric: str = "miou") -> dict:
    """Status and best result of one study folder, for the index."""
    fs, root = store._fs(results_dir)
    path = store._join(root, name)
    try:
        df = store.load_trials(path) if any(store._STATE_RE.match(i.base_name) for i in store._ls(fs, path)) \
            else pd.read_parquet(store._join(path, store.TRIALS_FILE), filesystem=fs)
    except Exception as e:
        return {"name": name, "error": f"{type(e).__name__}: {e}", "trials": 0}
    status = df["status"].astype(str).value_counts().to_dict() if len(df) else {}
    out = {"name": name, "trials": len(df), "status": status, "scale": _study_scale(fs, path) or "?",
           "report": store._info(fs, store._join(path, REPORT_FILE)).type == store.pafs.FileType.File,
           "title": name, "best": None, "error": None}
    if out["report"]:
        text = store._read_text(fs, store._join(path, REPORT_FILE)) or ""
        m = re.search(r"<title>(.*?)</title>", text[:4000], re.S)
        if m:
            out["title"] = html.unescape(m.group(1))
    mtimes = [i.mtime for i in store._ls(fs, path) if i.mtime is not None]
    out["updated"] = max(mtimes).strftime("%Y-%m-%d %H:%M") if mtimes else ""
    if len(df) and metric in df.columns and pd.to_numeric(df[metric], errors="coerce").notna().any():
        agg = aggregate(df, metric)
        cfg = store.config_columns(df)
        varying = T.varying_columns(agg, cfg)
        b = agg.loc[agg["mean"].idxmax()]
        out["best"] = (T.config_label(b, cfg, varying, "method"), float(b["mean"]), b["std"], int(b["n"]))
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
            best = f"{_fmt(mean)}" + ("" if _is_missing(std) else f" ± {_fmt(std)}") + f" ({_e(label)}, n={n})"
        rows.append(f"<tr><td>{name}</td><td style='text-align:left'>{link}</td><td>{_e(s['state'])}</td>"
                    f"<td>{s['trials']}: {_e(st)}</td><td>{best}</td><td>{_e(s['scale'])}</td><td>{_e(s['updated'])}</td></tr>")
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = ("<h1>udalab results</h1>"
            f'<div class="meta">{_e(results_dir)} · {len(summaries)} studies · generated {when}</div>'
            + ('<div class="scroll"><table><thead><tr><th>study</th><th>report</th><th>state</th><th>trials</th>'
               "<th>best mIoU (mean ± std over seeds)</th><th>data</th><th>updated</th></tr></thead><tbody>"
               + "\n".join(rows) + "</tbody></table></div>" if summaries else
               '<p class="note">No studies yet: run one, e.g. python studies/intrada_split.py --smoke</p>')
            + '<p class="note">mini / smoke data: compare shapes, not levels, with the papers. Each report opens '
              "offline; trials.parquet in each folder holds the numbers.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>udalab results</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_index(results_dir: str | os.PathLike) -> Path | str:
    """Write <results_dir>/index.html: every study folder with its state and best result."""
    fs, root = store._fs(results_dir)
    summaries = [study_summary(results_dir, n) for n in _study_dirs(fs, root)]
    fs.create_dir(root, recursive=True)
    target = _write_text(fs, root, INDEX_FILE, render_index(summaries, str(results_dir)))
    return Path(target) if store._is_local(results_dir) else str(results_dir).rstrip("/") + "/" + INDEX_FILE
