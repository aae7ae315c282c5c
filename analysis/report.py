"""The study report: one self-contained HTML file (plotly.js embedded once) that opens offline.

    write_report("results/intrada_split", ReportSpec(title="IntraDA: split ratio λ", x="lambda_split",
                 reference="intrada", baseline={"method": "source_only"}), data_scale="mini")

Contents, top to bottom: title; status line (finished / running / errored / pending trials);
a banner on mini or smoke data; the metric-vs-x curve (mean over seeds, ±std band, one point
per x; configurations without x, e.g. baselines, as horizontal lines with their own bands;
the published numbers on a second y axis, so that shapes compare whatever the level) or, with
no x, a bar chart per configuration; the table with one row per configuration (mean ± std over
seeds, n seeds, Δ to the baseline row, best in bold, the published number beside); the
per-class IoU means; the published table; the errors of failed trials.

Running trials count with their latest evaluation (marked), NaN metrics show as "–".
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from udalab.analysis import store
from udalab.analysis.reference import _equal, _is_missing, config_matches, reference, reference_info

__all__ = ["ReportSpec", "write_report", "render_report", "aggregate"]

REPORT_FILE = "report.html"

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

    title:     heading of the report
    x:         the hyperparameter of the curve (e.g. "lambda_split"); None: a bar chart per configuration
    reference: name in the published reference data (analysis.reference.REFERENCES)
    baseline:  the configuration Δ is measured against, e.g. {"method": "source_only"}
    group:     column that names the curves (one curve per value) and the baselines
    metric:    the reported metric of the curve and the table
    """

    title: str
    x: str | None = None
    reference: str | None = None
    baseline: dict | None = None
    group: str = "method"
    metric: str = "miou"


# ---------------------------------------------------------------------------------------
# Aggregation (pandas).


def _norm(v: Any) -> Any:
    if _is_missing(v):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def aggregate(df: pd.DataFrame, metric: str = "miou") -> pd.DataFrame:
    """One row per configuration (config columns of the trials frame, seeds pooled).

    Columns: the config columns, `mean`, `std` (sample std, NaN with one value), `n` (trials with a
    value), `trials`, `running`, `errored`, `pending`, `iou.<class>` means, and `_rows` (the trial
    row indices). Configurations keep the order of their first trial.
    """
    cfg_cols = store.config_columns(df)
    iou_cols = [c for c in df.columns if str(c).startswith("iou.")]
    keys = [tuple(_norm(v) for v in row) for row in df[cfg_cols].itertuples(index=False, name=None)] \
        if cfg_cols else [()] * len(df)
    order: dict[tuple, list[int]] = {}
    for i, k in zip(df.index, keys):
        order.setdefault(k, []).append(i)
    records = []
    for key, idx in order.items():
        sub = df.loc[idx]
        vals = pd.to_numeric(sub[metric], errors="coerce").dropna() if metric in sub else pd.Series(dtype=float)
        status = sub["status"].astype(str)
        rec = dict(zip(cfg_cols, key))
        rec.update(mean=float(vals.mean()) if len(vals) else math.nan,
                   std=float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                   n=int(len(vals)), trials=int(len(sub)),
                   running=int(status.isin(["RUNNING", "PAUSED"]).sum()),
                   errored=int((status == "ERROR").sum()),
                   pending=int((status == "PENDING").sum()))
        for c in iou_cols:
            v = pd.to_numeric(sub[c], errors="coerce").dropna()
            rec[c] = float(v.mean()) if len(v) else math.nan
        rec["_rows"] = list(idx)
        records.append(rec)
    columns = cfg_cols + ["mean", "std", "n", "trials", "running", "errored", "pending"] + iou_cols + ["_rows"]
    return pd.DataFrame.from_records(records, columns=columns)


def _baseline_index(agg: pd.DataFrame, baseline: Mapping | None) -> int | None:
    if not baseline:
        return None
    for i, row in agg.iterrows():
        if all(k in agg.columns and _equal(row[k], v) for k, v in baseline.items()):
            return i
    return None


# ---------------------------------------------------------------------------------------
# Formatting.


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt_value(v: Any) -> str:
    v = _norm(v)
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "✓" if v else "✗"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _fmt_num(v: Any, digits: int = 1, signed: bool = False) -> str:
    if _is_missing(v) or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _config_label(row: Mapping, cols: list[str], varying: list[str], group: str) -> str:
    parts = []
    for c in cols:
        if c not in varying and c != group:
            continue
        v = _norm(row.get(c))
        if v is None:
            continue
        parts.append(str(v) if c == group else f"{c}={_fmt_value(v)}")
    return ", ".join(parts) or "all trials"


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """headers: plain text (escaped here); rows: cells already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


# ---------------------------------------------------------------------------------------
# Figures (Plotly).


def _figures(agg: pd.DataFrame, spec: ReportSpec, cfg_cols: list[str], varying: list[str],
             ref: pd.DataFrame | None, ref_cfg: list[str]) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    metric = spec.metric
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    have_published = False
    x = spec.x if spec.x and spec.x in agg.columns else None

    def band_color(c: str) -> str:
        r, g, b = int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)
        return f"rgba({r},{g},{b},0.18)"

    if x is not None:
        has_x = agg[x].map(lambda v: not _is_missing(v))
        curves = agg[has_x]
        flat = agg[~has_x]
        xs = pd.to_numeric(curves[x], errors="coerce").dropna()
        if ref is not None and x in ref.columns:
            xs = pd.concat([xs, pd.to_numeric(ref[x], errors="coerce").dropna()])
        x0, x1 = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0)
        if x0 == x1:
            x0, x1 = x0 - 0.5, x1 + 0.5
        curve_keys = [c for c in cfg_cols if c != x]
        color_i = 0
        groups: dict[tuple, list[int]] = {}
        for i, row in curves.iterrows():
            groups.setdefault(tuple(_norm(row[c]) for c in curve_keys), []).append(i)
        for key, idx in groups.items():
            sub = curves.loc[idx].copy()
            sub["_x"] = pd.to_numeric(sub[x], errors="coerce")
            sub = sub.sort_values("_x")
            color = palette[color_i % len(palette)]
            color_i += 1
            name = _config_label(dict(zip(curve_keys, key)), curve_keys, varying, spec.group)
            std = sub["std"].fillna(0.0)
            upper, lower = sub["mean"] + std, sub["mean"] - std
            fig.add_trace(go.Scatter(x=list(sub["_x"]) + list(sub["_x"])[::-1],
                                     y=list(upper) + list(lower)[::-1], fill="toself", fillcolor=band_color(color),
                                     line=dict(width=0), hoverinfo="skip", showlegend=False,
                                     name=f"{name} ±std"), secondary_y=False)
            fig.add_trace(go.Scatter(x=list(sub["_x"]), y=list(sub["mean"]), mode="lines+markers",
                                     name=f"{name} (mean over seeds)", line=dict(color=color),
                                     customdata=np.stack([sub["std"].to_numpy(), sub["n"].to_numpy()], axis=1),
                                     hovertemplate=f"{x}=%{{x}}<br>{metric}=%{{y:.2f}} ± %{{customdata[0]:.2f}}"
                                                   f"<br>n=%{{customdata[1]}}<extra></extra>"),
                          secondary_y=False)
        for i, row in flat.iterrows():
            if _is_missing(row["mean"]):
                continue
            color = palette[color_i % len(palette)]
            color_i += 1
            name = _config_label(row, cfg_cols, varying, spec.group)
            std = 0.0 if _is_missing(row["std"]) else float(row["std"])
            m = float(row["mean"])
            fig.add_trace(go.Scatter(x=[x0, x1, x1, x0], y=[m + std, m + std, m - std, m - std], fill="toself",
                                     fillcolor=band_color(color), line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, name=f"{name} ±std"), secondary_y=False)
            fig.add_trace(go.Scatter(x=[x0, x1], y=[m, m], mode="lines", line=dict(color=color, dash="dash"),
                                     name=f"{name} (no {x}; n={int(row['n'])})",
                                     hovertemplate=f"{_e(name)}: %{{y:.2f}} ± {std:.2f}<extra></extra>"),
                          secondary_y=False)
        if ref is not None and metric in ref.columns:
            pts = ref[ref[metric].notna()]
            if x in pts.columns:
                with_x = pts[pts[x].map(lambda v: not _is_missing(v))]
                # only published points whose other config values (e.g. method) are those of a curve here
                curve_cfgs = curves.to_dict("records")
                keep = [any(config_matches(p, {**c, x: p[x]}, ref_cfg) for c in curve_cfgs)
                        for p in with_x.to_dict("records")]
                with_x = with_x[pd.Series(keep, index=with_x.index, dtype=bool)]
                if len(with_x):
                    have_published = True
                    fig.add_trace(go.Scatter(x=list(pd.to_numeric(with_x[x])), y=list(with_x[metric]),
                                             mode="markers+text", text=list(with_x["label"]),
                                             textposition="top center",
                                             marker=dict(symbol="star", size=13, color="black"),
                                             name="published (right axis)"), secondary_y=True)
                no_x = pts[pts[x].map(_is_missing)] if x in pts.columns else pts
            else:
                no_x = pts
            # Published numbers without x that correspond to a configuration of this study (baselines).
            for _, prow in no_x.iterrows():
                if not any(config_matches(prow, r, ref_cfg) for r in flat.to_dict("records")):
                    continue
                have_published = True
                fig.add_trace(go.Scatter(x=[x0, x1], y=[prow[metric]] * 2, mode="lines",
                                         line=dict(color="black", dash="dot", width=1),
                                         name=f"published: {prow['label']} (right axis)"), secondary_y=True)
        fig.update_xaxes(title_text=x)
        title = f"{metric} vs {x}: mean over seeds, band ±1 std"
    else:
        labels = [_config_label(r, cfg_cols, varying, spec.group) for r in agg.to_dict("records")]
        fig.add_trace(go.Bar(x=labels, y=list(agg["mean"]),
                             error_y=dict(type="data", array=list(agg["std"].fillna(0.0)), visible=True),
                             name=f"{metric} (mean ± std over seeds)", marker_color=palette[0]), secondary_y=False)
        if ref is not None and metric in ref.columns:
            ys = []
            for r in agg.to_dict("records"):
                hit = [p for p in ref.to_dict("records") if config_matches(p, r, ref_cfg)]
                ys.append(hit[0][metric] if hit else None)
            if any(y is not None for y in ys):
                have_published = True
                fig.add_trace(go.Scatter(x=labels, y=ys, mode="markers",
                                         marker=dict(symbol="star", size=13, color="black"),
                                         name="published (right axis)"), secondary_y=True)
        title = f"{metric} per configuration: mean ± std over seeds"
    fig.update_yaxes(title_text=f"measured {metric} (%)", secondary_y=False)
    fig.update_yaxes(title_text=f"published {metric} (%)" if have_published else "", secondary_y=True,
                     showgrid=False, visible=have_published)
    fig.update_layout(title=title, height=480, template="plotly_white",
                      legend=dict(orientation="h", yanchor="top", y=-0.18), margin=dict(t=60, b=40))
    return [("fig-metric", fig)]


# ---------------------------------------------------------------------------------------
# The report.

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em} .status{font-size:1.05em;margin:10px 0}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:10px 14px;border-radius:6px;font-weight:600;margin:14px 0}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:.88em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left} .note{color:#666;font-size:.88em} .err{white-space:pre-wrap;text-align:left;font-family:monospace}
.pub{color:#555} .run{color:#a15c00}
"""


def render_report(df: pd.DataFrame, spec: ReportSpec, data_scale: str = "mini", study_name: str = "") -> str:
    """The report's HTML text for a trials frame (see store.load_trials)."""
    import plotly.io as pio

    metric = spec.metric
    cfg_cols = store.config_columns(df)
    if metric not in df.columns:
        df = df.assign(**{metric: np.nan})
    agg = aggregate(df, metric)
    varying = [c for c in cfg_cols if agg[c].map(lambda v: repr(_norm(v))).nunique() > 1] if len(agg) else []
    ref = ref_info = None
    ref_cfg: list[str] = []
    ref_error = ""
    if spec.reference:
        try:
            ref, ref_info = reference(spec.reference), reference_info(spec.reference)
            ref_cfg = list(ref_info["config"])
        except KeyError as e:
            ref_error = str(e.args[0])

    parts: list[str] = []
    status = df["status"].astype(str).value_counts().to_dict() if len(df) else {}
    done, running = status.get("TERMINATED", 0), status.get("RUNNING", 0) + status.get("PAUSED", 0)
    errored, pending = status.get("ERROR", 0), status.get("PENDING", 0)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f"<h1>{_e(spec.title)}</h1>")
    parts.append(f'<div class="meta">study {_e(study_name)} · data: {_e(data_scale)} · generated {when}'
                 + (f" · reference: {_e(ref_info['title'])} ({_e(ref_info['benchmark'])})" if ref_info else "")
                 + "</div>")
    parts.append(f'<div class="status"><b>{len(df)} trials:</b> {done} finished, {running} running, '
                 f'{errored} errored, {pending} pending</div>')
    if data_scale in _BANNERS:
        parts.append(f'<div class="banner">{_e(_BANNERS[data_scale])}</div>')
    if ref_error:
        parts.append(f'<p class="note">{_e(ref_error)}</p>')
    if spec.x and spec.x not in df.columns and len(df):
        parts.append(f'<p class="note">The x column of the curve, {_e(spec.x)}, is not among the results\' '
                     f"columns ({_e(', '.join(cfg_cols))}); showing configurations instead.</p>")

    if len(df) == 0:
        parts.append('<p class="note">No trials yet: Tune has not saved its experiment state. Run the study, '
                     "then write the report again.</p>")
    else:
        # Figure(s): plotly.js embedded once, with the first figure.
        parts.append("<h2>Curve</h2>" if spec.x and spec.x in df.columns else "<h2>Configurations</h2>")
        for n, (div_id, fig) in enumerate(_figures(agg, spec, cfg_cols, varying, ref, ref_cfg)):
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(n == 0), div_id=div_id,
                                     default_height="480px", config={"displaylogo": False}))
        parts.append(_main_table(agg, spec, cfg_cols, ref, ref_cfg))
        parts.append(_class_table(agg, cfg_cols, varying, spec))
        parts.append(_errors(df, cfg_cols))
    if ref is not None:
        parts.append(_published_table(ref, ref_info))

    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{_e(spec.title)}</title>\n'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _main_table(agg: pd.DataFrame, spec: ReportSpec, cfg_cols: list[str], ref, ref_cfg) -> str:
    metric = spec.metric
    base_i = _baseline_index(agg, spec.baseline)
    base_mean = agg.loc[base_i, "mean"] if base_i is not None else math.nan
    best = agg["mean"].max() if agg["mean"].notna().any() else math.nan
    headers = cfg_cols + [f"{metric} mean ± std", "n seeds", "trials",
                          "Δ vs baseline" if base_i is not None else "Δ"]
    if ref is not None:
        headers.append(f"published {metric}")
    rows = []
    for i, r in agg.iterrows():
        cells = [_e(_fmt_value(r[c])) for c in cfg_cols]
        mean = _fmt_num(r["mean"]) + ("" if _is_missing(r["std"]) else f" ± {_fmt_num(r['std'])}")
        if not _is_missing(r["mean"]) and np.isclose(r["mean"], best):
            mean = f"<b>{mean}</b>"
        cells.append(mean)
        cells.append(str(int(r["n"])))
        notes = []
        if r["running"]:
            notes.append(f'<span class="run">{int(r["running"])} running</span>')
        if r["errored"]:
            notes.append(f'{int(r["errored"])} errored')
        if r["pending"]:
            notes.append(f'{int(r["pending"])} pending')
        cells.append(f"{int(r['trials'])}" + (f" ({', '.join(notes)})" if notes else ""))
        if i == base_i:
            cells.append("baseline")
        else:
            cells.append(_fmt_num(r["mean"] - base_mean, signed=True) if base_i is not None else "–")
        if ref is not None:
            hits = [p for p in ref.to_dict("records") if config_matches(p, dict(r), ref_cfg)]
            cells.append("<br>".join(f'<span class="pub">{_fmt_value(p.get(metric))} ({_e(p["label"])})</span>'
                                     for p in hits if not _is_missing(p.get(metric))) or "–")
        rows.append(cells)
    parts = ["<h2>Results per configuration</h2>", _table(headers, rows, "main")]
    note = (f"Mean ± sample std over seeds of the last reported {metric} (%). Best mean in bold. "
            "Running trials count with their latest evaluation.")
    if spec.baseline:
        note += (f" Baseline: {_e(', '.join(f'{k}={v}' for k, v in spec.baseline.items()))}"
                 + ("" if base_i is not None else " (not among the results yet)") + ".")
    parts.append(f'<p class="note">{note}</p>')
    return "\n".join(parts)


def _class_table(agg: pd.DataFrame, cfg_cols: list[str], varying: list[str], spec: ReportSpec) -> str:
    iou_cols = [c for c in agg.columns if str(c).startswith("iou.")]
    if not iou_cols:
        return ""
    best = {c: agg[c].max() for c in iou_cols}
    rows = []
    for _, r in agg.iterrows():
        cells = [_e(_config_label(r, cfg_cols, varying, spec.group))]
        for c in iou_cols:
            s = _fmt_num(r[c])
            if not _is_missing(r[c]) and not _is_missing(best[c]) and np.isclose(r[c], best[c]):
                s = f"<b>{s}</b>"
            cells.append(s)
        rows.append(cells)
    headers = ["configuration"] + [c[4:] for c in iou_cols]
    return ("<h2>Per-class IoU (mean over seeds, %)</h2>\n" + _table(headers, rows, "classes")
            + '\n<p class="note">Best per class in bold; – where the class never appeared in GT or prediction.</p>')


def _published_table(ref: pd.DataFrame, info: dict) -> str:
    cols = [c for c in ["label", *info["config"], *info["metrics"]] if c in ref.columns and ref[c].notna().any()]
    rows = []
    for _, r in ref.iterrows():
        cells = [_e(_fmt_value(r[c])) for c in cols]  # published precision as printed (%g)
        cells.append(_e(r["benchmark"]))
        cells.append(_e(r["source"]) + ("" if _is_missing(r.get("note")) or r.get("note") in ("None", "nan")
                                        else f'<br><span class="note">{_e(r["note"])}</span>'))
        rows.append(cells)
    headers = [c[4:] if c.startswith("iou.") else c for c in cols] + ["benchmark", "source"]
    notes = f'<p class="note">{_e(info.get("notes", ""))}</p>' if info.get("notes") else ""
    return (f"<h2>Published: {_e(info['title'])}</h2>\n" + _table(headers, rows, "published") + "\n" + notes)


def _errors(df: pd.DataFrame, cfg_cols: list[str]) -> str:
    err = df[df["status"].astype(str) == "ERROR"]
    if not len(err):
        return ""
    rows = []
    for _, r in err.iterrows():
        cfg = ", ".join(f"{c}={_fmt_value(r[c])}" for c in cfg_cols if not _is_missing(r[c]))
        seed = "" if _is_missing(r.get("seed")) else f", seed={r['seed']}"
        rows.append([_e(r["trial_id"]), _e(cfg + seed), f'<span class="err">{_e(r.get("error") or "")}</span>'])
    return ("<h2>Errors</h2>\n" + _table(["trial", "configuration", "error"], rows, "errors")
            + '\n<p class="note">Full tracebacks: error.txt in each trial folder. Re-running the study resumes '
              "errored trials.</p>")


def write_report(study_dir: str | os.PathLike, spec: ReportSpec | None, df: pd.DataFrame | None = None,
                 data_scale: str = "mini") -> Path | str:
    """Write `<study_dir>/report.html` and return its Path (its URI string for a remote study directory).

    df: the trials frame (default: store.load_trials(study_dir)); data_scale: "mini", "smoke" or
    "paper" (mini and smoke get a banner saying how to read the numbers).
    """
    if df is None:
        df = store.load_trials(study_dir)
    name = str(study_dir).rstrip("/").rsplit("/", 1)[-1]
    if spec is None:
        spec = ReportSpec(title=name)
    text = render_report(df, spec, data_scale=data_scale, study_name=name)
    fs, path = store._fs(study_dir)
    fs.create_dir(path, recursive=True)
    target = store._join(path, REPORT_FILE)
    tmp = store._join(path, f".{REPORT_FILE}.{os.getpid()}.tmp")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    fs.move(tmp, target)
    if store._is_local(study_dir):
        return Path(target)
    return str(study_dir).rstrip("/") + "/" + REPORT_FILE
