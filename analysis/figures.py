"""Plotly figures of a study, from its trials frame (analysis.store) and published reference rows.

    metric_curve(agg, x="lambda_split", ...)   metric vs one hyperparameter, mean over seeds with a
                                               ±1 std band, one curve per value of `group`,
                                               configurations without x as horizontal lines,
                                               published points beside (λ split, λ_d, confidence
                                               threshold, δ ramp, crop size; with x_log the
                                               data-dependency curve: labelled images -> mIoU)
    ablation_bars(agg, ...)                    grouped bars per configuration (mean ± std), published
    class_heatmap(agg, ...)                    per-class IoU heatmap, configurations x classes
    optuna_history(df, ...)                    a search's value per trial and best so far
    param_importance(df, ...)                  Optuna's hyperparameter importance of a search
                                               (the numbers: importances(df, ...); the searched
                                               columns: search_params(df, cfg_cols))
    parallel_coordinates(df, ...)              the searched hyperparameters and the metric per trial
    cost_per_trial(df)                         wall and training seconds per trial (GPU in the hover)
    learning_curves(hist, df, ...)             metric vs iteration per configuration, mean over seeds
                                               with a ±1 std band (store.load_histories)

Every builder returns a `plotly.graph_objects.Figure` (or None when there is nothing to draw).
Published numbers go on a second y axis when the study ran on mini data (`published_axis=
"secondary"`: shapes compare, levels do not) and on the same axis for full-size data.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from udalab.analysis.reference import config_matches
from udalab.analysis.tables import (config_dump, config_label, fmt_value, is_missing, metric_label, norm_value,
                                    values_equal)

__all__ = ["PALETTE", "metric_curve", "ablation_bars", "class_heatmap", "optuna_history", "param_importance",
           "parallel_coordinates", "cost_per_trial", "learning_curves", "search_params", "importances"]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]
_LAYOUT = dict(template="plotly_white", legend=dict(orientation="h", yanchor="top", y=-0.2),
               margin=dict(t=60, b=40, l=60, r=60))


def _band(c: str, alpha: float = 0.18) -> str:
    r, g, b = int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)
    return f"rgba({r},{g},{b},{alpha})"


def _mlabel(metric: str, labels: Mapping[str, str] | None = None) -> str:
    return metric_label(metric, labels)


def _make(published_axis: str | None):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    return make_subplots(specs=[[{"secondary_y": True}]]) if published_axis == "secondary" else go.Figure()


def _add(fig, trace, secondary: bool = False):
    if getattr(fig, "_has_secondary_y", None) or _is_subplots(fig):
        fig.add_trace(trace, secondary_y=secondary)
    else:
        fig.add_trace(trace)


def _is_subplots(fig) -> bool:
    try:
        return fig._grid_ref is not None
    except AttributeError:
        return False


def _finish_axes(fig, metric: str, published_axis: str | None, have_published: bool, pub_metric_label: str = "",
                 labels: Mapping[str, str] | None = None):
    label = _mlabel(metric, labels)
    if _is_subplots(fig):
        fig.update_yaxes(title_text=f"measured {label} (%)", secondary_y=False)
        fig.update_yaxes(title_text=f"published {pub_metric_label or metric_label(metric)} (%)" if have_published else "",
                         secondary_y=True, showgrid=False, visible=have_published)
    else:
        fig.update_yaxes(title_text=f"{label} (%)" + (" — measured and published" if have_published else ""))


def metric_curve(agg: pd.DataFrame, x: str, metric: str = "miou", group: str | None = "method",
                 cfg_cols: Sequence[str] = (), varying: Sequence[str] = (), ref: pd.DataFrame | None = None,
                 ref_config: Sequence[str] = (), published_axis: str | None = "secondary", x_log: bool = False,
                 labels: Mapping[str, str] | None = None, title: str | None = None):
    """metric vs x: mean over seeds (line), ±1 std (band), one curve per value of `group` (when it is a
    column; else per combination of the other config columns). Configurations without an x value
    (e.g. source only) are dashed horizontal lines with their band. Published points: stars in the
    curve's colour when their config matches the curve's, black otherwise."""
    labels = dict(labels or {})
    fig = _make(published_axis if ref is not None else None)
    has_x = agg[x].map(lambda v: not is_missing(v)) if x in agg else pd.Series(False, index=agg.index)
    curves, flat = agg[has_x], agg[~has_x]
    zero_at = _log_zero(curves, ref, x) if x_log else None
    x_span = _x_span(curves, ref, x, zero_at)
    use_group = bool(group) and group in agg.columns and group != x
    curve_keys = [group] if use_group else [c for c in cfg_cols if c != x]
    groups: dict[tuple, list] = {}
    for i, row in curves.iterrows():
        groups.setdefault(tuple(norm_value(row[c]) for c in curve_keys), []).append(i)

    colors = itertools.cycle(PALETTE)
    curve_colors: list[tuple[dict, str, list[dict]]] = []   # (the curve's config values, colour, its rows)
    for key, idx in groups.items():
        cfg, color = dict(zip(curve_keys, key)), next(colors)
        name = str(key[0]) if use_group else config_label(cfg, curve_keys, varying, group, labels)
        curve_colors.append((cfg, color, curves.loc[idx].to_dict("records")))
        _draw_curve(fig, _curve_points(curves.loc[idx], x, pool=use_group), name, color, x, metric, labels, zero_at)
    for _, row in flat.iterrows():
        if not is_missing(row["mean"]):
            _draw_level(fig, row, config_label(row, cfg_cols, varying, group, labels), next(colors), x_span, x, labels)

    have_published = False
    if ref is not None and metric in ref.columns:
        pts, secondary = ref[ref[metric].notna()], _is_subplots(fig)
        if x in pts.columns:
            with_x = pts[pts[x].map(lambda v: not is_missing(v))]
            have_published = _draw_published_points(fig, with_x, x, metric, curve_colors, use_group, ref_config,
                                                    secondary, zero_at)
            pts = pts[pts[x].map(is_missing)]
        levels = _draw_published_levels(fig, pts, agg, metric, ref_config, x_span, secondary)
        have_published = have_published or levels
    fig.update_xaxes(title_text=labels.get(x, x), type="log" if x_log else None)
    if zero_at is not None:
        fig.update_xaxes(**_zero_ticks(zero_at, x_span[1]))
    _finish_axes(fig, metric, published_axis, have_published, labels=labels)
    fig.update_layout(title=title or f"{_mlabel(metric, labels)} vs {labels.get(x, x)}: mean over seeds, band ±1 std",
                      height=480, **_LAYOUT)
    return fig


def _x_values(curves: pd.DataFrame, ref: pd.DataFrame | None, x: str) -> pd.Series:
    """The measured and published x values."""
    xs = pd.to_numeric(curves[x], errors="coerce").dropna() if len(curves) else pd.Series(dtype=float)
    if ref is not None and x in ref.columns:
        xs = pd.concat([xs, pd.to_numeric(ref[x], errors="coerce").dropna()])
    return xs


def _log_zero(curves: pd.DataFrame, ref: pd.DataFrame | None, x: str) -> float | None:
    """Where a log x axis shows x = 0, which it has no place for (log 0 = −∞): half a decade left of the
    smallest positive x, under a tick of its own labelled "0", its points not joined to the others.
    None when no measured or published x is 0 (or below)."""
    xs = _x_values(curves, ref, x)
    if not (xs <= 0).any():
        return None
    positive = xs[xs > 0]
    return (float(positive.min()) if len(positive) else 1.0) / math.sqrt(10)


def _zero_ticks(zero_at: float, x_max: float) -> dict:
    """A log axis's ticks: "0" at zero_at, then each power of ten up to x_max."""
    decades = [10.0 ** k for k in range(math.ceil(math.log10(zero_at)), math.floor(math.log10(max(x_max, zero_at))) + 1)]
    return dict(tickmode="array", tickvals=[zero_at, *decades], ticktext=["0", *(f"{d:g}" for d in decades)])


def _x_span(curves: pd.DataFrame, ref: pd.DataFrame | None, x: str, zero_at: float | None = None) -> tuple[float, float]:
    """The x range the horizontal lines span: that of the measured and published x values (x = 0 at
    zero_at on a log axis)."""
    xs = _x_values(curves, ref, x)
    if zero_at is not None:
        xs = xs.where(xs > 0, zero_at)
    x0, x1 = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0)
    if x0 == x1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    return x0, x1


def _curve_points(rows: pd.DataFrame, x: str, pool: bool) -> pd.DataFrame:
    """A curve's configurations as points sorted by x (column "_x"); pool: several configurations at one
    x (a group curve) merge into one point."""
    sub = rows.copy()
    sub["_x"] = pd.to_numeric(sub[x], errors="coerce")
    if pool and sub["_x"].duplicated().any():
        sub = _pool(sub, "_x")
    return sub.sort_values("_x")


def _draw_curve(fig, sub: pd.DataFrame, name: str, color: str, x: str, metric: str, labels: Mapping[str, str],
                zero_at: float | None = None):
    """One curve: its ±1 std band, then the mean over seeds (std and n in the hover). With zero_at (a log
    axis), a point at x = 0 stands apart at zero_at, its std as an error bar."""
    import plotly.graph_objects as go

    if zero_at is not None:
        for _, z in sub[sub["_x"] <= 0].iterrows():
            std = 0.0 if is_missing(z["std"]) else float(z["std"])
            _add(fig, go.Scatter(x=[zero_at], y=[z["mean"]], mode="markers", marker=dict(size=9, color=color),
                                 error_y=dict(type="data", array=[std], color=color), legendgroup=name,
                                 showlegend=False, name=f"{name} at 0",
                                 hovertemplate=f"{labels.get(x, x)}=0<br>{_mlabel(metric, labels)}=%{{y:.2f}} ± "
                                               f"{std:.2f}<br>n={int(z['n'])}<extra>{name}</extra>"))
        sub = sub[sub["_x"] > 0]
        if not len(sub):
            return
    std = sub["std"].fillna(0.0)
    upper, lower = sub["mean"] + std, sub["mean"] - std
    _add(fig, go.Scatter(x=list(sub["_x"]) + list(sub["_x"])[::-1], y=list(upper) + list(lower)[::-1],
                         fill="toself", fillcolor=_band(color), mode="lines", line=dict(width=0), hoverinfo="skip",
                         showlegend=False, name=f"{name} ±std"))
    _add(fig, go.Scatter(x=list(sub["_x"]), y=list(sub["mean"]), mode="lines+markers", legendgroup=name,
                         name=f"{name} (mean over seeds)", line=dict(color=color), marker=dict(size=9),
                         customdata=np.stack([sub["std"].to_numpy(dtype=float), sub["n"].to_numpy(dtype=float)],
                                             axis=1),
                         hovertemplate=f"{labels.get(x, x)}=%{{x}}<br>{_mlabel(metric, labels)}=%{{y:.2f}} ± "
                                       f"%{{customdata[0]:.2f}}<br>n=%{{customdata[1]}}<extra>{name}</extra>"))


def _draw_level(fig, row: Mapping, name: str, color: str, x_span: tuple[float, float], x: str,
                labels: Mapping[str, str]):
    """A configuration without an x value: a dashed horizontal line across x_span with its band."""
    import plotly.graph_objects as go

    x0, x1 = x_span
    std = 0.0 if is_missing(row["std"]) else float(row["std"])
    m = float(row["mean"])
    _add(fig, go.Scatter(x=[x0, x1, x1, x0], y=[m + std, m + std, m - std, m - std], fill="toself", mode="lines",
                         fillcolor=_band(color, 0.12), line=dict(width=0), hoverinfo="skip", showlegend=False,
                         name=f"{name} ±std"))
    _add(fig, go.Scatter(x=[x0, x1], y=[m, m], mode="lines", line=dict(color=color, dash="dash"),
                         name=f"{name} (no {labels.get(x, x)}; n={int(row['n'])})",
                         hovertemplate=f"{name}: %{{y:.2f}} ± {std:.2f}<extra></extra>"))


def _draw_published_points(fig, with_x: pd.DataFrame, x: str, metric: str, curve_colors: list, use_group: bool,
                           ref_config: Sequence[str], secondary: bool, zero_at: float | None = None) -> bool:
    """Published points with an x value, as stars in the colour of the curve they belong to (_belongs);
    whether any was drawn. With zero_at (a log axis), a point at x = 0 stands apart there, not joined."""
    import plotly.graph_objects as go

    drawn = False
    for cfg, color, rows in curve_colors:
        keep = [_belongs(p, cfg, rows, ref_config, x) for p in with_x.to_dict("records")]
        hit = with_x[pd.Series(keep, index=with_x.index, dtype=bool)] if len(with_x) else with_x
        if not len(hit):
            continue
        drawn = True
        name = "published" + (f" {next(iter(cfg.values()))}" if use_group and cfg else "") + \
            (" (right axis)" if secondary else "")
        star = dict(symbol="star", size=13, color=color, line=dict(color="black", width=1))
        xs = pd.to_numeric(hit[x])
        if zero_at is not None and (xs <= 0).any():
            at0 = hit[xs <= 0]
            _add(fig, go.Scatter(x=[zero_at] * len(at0), y=list(at0[metric]), mode="markers", marker=star,
                                 text=list(at0["label"]), hovertemplate="%{text}: %{y}<extra>published</extra>",
                                 legendgroup=name, showlegend=False, name=f"{name} at 0"), secondary)
            hit, xs = hit[xs > 0], xs[xs > 0]
        _add(fig, go.Scatter(x=list(xs), y=list(hit[metric]), mode="markers+lines", legendgroup=name,
                             line=dict(color=color, dash="dot", width=1), marker=star,
                             text=list(hit["label"]), hovertemplate="%{text}: %{y}<extra>published</extra>",
                             name=name), secondary)
    return drawn


def _draw_published_levels(fig, no_x: pd.DataFrame, agg: pd.DataFrame, metric: str, ref_config: Sequence[str],
                           x_span: tuple[float, float], secondary: bool) -> bool:
    """Published numbers without an x value (e.g. HRDA's 73.8) that match a measured configuration, as
    dotted level lines; whether any was drawn."""
    import plotly.graph_objects as go

    drawn = False
    for _, prow in no_x.iterrows():
        if not any(config_matches(prow, r, ref_config) for r in agg.to_dict("records")):
            continue
        drawn = True
        _add(fig, go.Scatter(x=list(x_span), y=[prow[metric]] * 2, mode="lines",
                             line=dict(color="black", dash="dot", width=1),
                             name=f"published: {prow['label']}" + (" (right axis)" if secondary else "")), secondary)
    return drawn


def _belongs(p: Mapping, cfg: Mapping, rows: list[dict], ref_config: Sequence[str], x: str) -> bool:
    """A published point with an x value belongs to a curve when each config value it sets (x aside)
    equals the curve's group value or that of one of the curve's configurations."""
    for c in ref_config:
        pv = p.get(c)
        if c == x or is_missing(pv):
            continue
        if c in cfg:
            if not values_equal(cfg[c], pv):
                return False
        elif not any(values_equal(r.get(c), pv) for r in rows):
            return False
    return True


def _pool(sub: pd.DataFrame, key: str) -> pd.DataFrame:
    """Merge configurations that share one x value (their trials pooled: n-weighted mean, pooled std)."""
    rows = []
    for xv, g in sub.groupby(key, sort=True):
        n = g["n"].astype(float)
        mean = float((g["mean"] * n).sum() / n.sum()) if n.sum() else math.nan
        var = float((((g["std"].fillna(0) ** 2) * (n - 1).clip(lower=0)).sum()
                     + (n * (g["mean"] - mean) ** 2).sum()) / max(n.sum() - 1, 1))
        rows.append({key: xv, "mean": mean, "std": math.sqrt(var) if n.sum() > 1 else math.nan, "n": int(n.sum())})
    return pd.DataFrame(rows)


def ablation_bars(agg: pd.DataFrame, metrics: Sequence[str] = ("miou",), cfg_cols: Sequence[str] = (),
                  varying: Sequence[str] = (), group: str | None = "method", ref: pd.DataFrame | None = None,
                  ref_config: Sequence[str] = (), published_axis: str | None = "secondary",
                  labels: Mapping[str, str] | None = None, title: str | None = None):
    """Grouped bars: one group per configuration, one bar per metric (mean, ±std error bar);
    published values as a bar beside (same axis) or as stars on a second axis (mini data)."""
    import plotly.graph_objects as go

    labels = dict(labels or {})
    names = [tick_text(config_label(r, cfg_cols, varying, group, labels)) for r in agg.to_dict("records")]
    configs = [config_dump(r, varying, labels) for r in agg.to_dict("records")]
    fig = _make(published_axis if ref is not None else None)
    secondary = _is_subplots(fig)
    have_published = False
    for k, m in enumerate(metrics):
        mean_col, std_col = (f"{m}.mean", f"{m}.std") if f"{m}.mean" in agg else ("mean", "std")
        color = PALETTE[k % len(PALETTE)]
        _add(fig, go.Bar(x=names, y=list(agg[mean_col]), name=f"{_mlabel(m, labels)} measured (mean ± std)",
                         marker_color=color, customdata=configs,
                         hovertemplate=f"%{{x}}<br>{_mlabel(m, labels)} %{{y:.2f}}<br>%{{customdata}}<extra></extra>",
                         error_y=dict(type="data", array=list(agg[std_col].fillna(0.0)), visible=True)))
        if ref is not None and m in ref.columns:
            ys = []
            for r in agg.to_dict("records"):
                hit = [p for p in ref.to_dict("records") if config_matches(p, r, ref_config) and not is_missing(p[m])]
                ys.append(hit[0][m] if hit else None)
            if any(y is not None for y in ys):
                have_published = True
                if secondary:
                    _add(fig, go.Scatter(x=names, y=ys, mode="markers", name=f"{_mlabel(m)} published (right axis)",
                                         marker=dict(symbol="star", size=14, color=color,
                                                     line=dict(color="black", width=1))), True)
                else:
                    _add(fig, go.Bar(x=names, y=ys, name=f"{_mlabel(m)} published", marker_color=_band(color, 0.45),
                                     marker_line=dict(color=color, width=1.5), marker_pattern_shape="/"))
    _finish_axes(fig, metrics[0], published_axis, have_published, labels=labels)
    if secondary and have_published:   # both axes from 0 to the same top: a published 68.3 reads as 68.3
        top = 1.05 * _highest(fig)
        fig.update_yaxes(range=[0, top], secondary_y=False)
        fig.update_yaxes(range=[0, top], secondary_y=True)
    fig.update_layout(barmode="group", height=460,
                      title=title or "Per configuration: mean ± std over seeds", **_LAYOUT)
    fig.update_xaxes(tickangle=0, automargin=True)          # names wrapped onto lines, never slanted
    return fig


def _highest(fig) -> float:
    """The highest point of a bar figure: a bar's mean + std or a published star."""
    tops = []
    for t in fig.data:
        errors = t.error_y.array if t.error_y and t.error_y.array is not None else [0.0] * len(t.y)
        tops += [y + (e or 0.0) for y, e in zip(t.y, errors) if y is not None and math.isfinite(y)]
    return max(tops, default=1.0)


def tick_text(name: str, width: int = 14) -> str:
    """A configuration name as a horizontal axis label: broken onto lines of about `width` characters
    at ", " and spaces (plotly's <br>)."""
    lines: list[str] = []
    for word in name.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(x for x in lines if x)


def class_heatmap(agg: pd.DataFrame, classes: Sequence[str], cfg_cols: Sequence[str] = (),
                  varying: Sequence[str] = (), group: str | None = "method", ref: pd.DataFrame | None = None,
                  ref_config: Sequence[str] = (), class_groups: Mapping[str, Sequence[str]] | None = None,
                  labels: Mapping[str, str] | None = None):
    """Per-class IoU (mean over seeds) as a heatmap: configurations x classes, the published rows
    that match a configuration below their measured row ("published: ..."), classes ordered by
    group with the group name on the axis."""
    import plotly.graph_objects as go

    if class_groups:
        ordered = [c for g in class_groups.values() for c in g if c in classes]
        ordered += [c for c in classes if c not in ordered]
        gname = {c: g for g, ms in class_groups.items() for c in ms}
        xlabels = [f"{c} ({gname.get(c, 'other')})" for c in ordered]
    else:
        ordered, xlabels = list(classes), list(classes)
    if not ordered or not len(agg):
        return None
    z, ylabels = [], []
    for r in agg.to_dict("records"):
        z.append([r.get(f"iou.{c}", math.nan) for c in ordered])
        ylabels.append(config_label(r, cfg_cols, varying, group, labels))
        if ref is not None:
            for p in ref.to_dict("records"):
                if config_matches(p, r, ref_config) and any(not is_missing(p.get(f"iou.{c}")) for c in ordered):
                    z.append([p.get(f"iou.{c}", math.nan) for c in ordered])
                    ylabels.append(f"published: {p['label']}")
    zz = np.array([[math.nan if is_missing(v) else float(v) for v in row] for row in z], dtype=float)
    text = [["–" if math.isnan(v) else f"{v:.1f}" for v in row] for row in zz]
    # unique y labels (plotly merges equal categories)
    seen: dict[str, int] = {}
    for i, l in enumerate(ylabels):
        seen[l] = seen.get(l, 0) + 1
        if seen[l] > 1:
            ylabels[i] = f"{l} #{seen[l]}"
    fig = go.Figure(go.Heatmap(z=zz, x=xlabels, y=ylabels, colorscale="Viridis", zmin=0, zmax=100,
                               text=text, texttemplate="%{text}", hovertemplate="%{y}<br>%{x}: %{z:.1f}<extra></extra>",
                               colorbar=dict(title="IoU %")))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Per-class IoU (%), mean over seeds" + (", published rows beside" if ref is not None else ""),
                      height=max(320, 60 + 34 * len(ylabels)), template="plotly_white",
                      margin=dict(t=60, b=120, l=200, r=40))
    return fig


def search_params(df: pd.DataFrame, cfg_cols: Sequence[str]) -> list[str]:
    """The config columns that vary across trials (the searched hyperparameters), method excluded."""
    out = []
    for c in cfg_cols:
        if c == "method" or c not in df.columns:
            continue
        if df[c].dropna().map(lambda v: repr(norm_value(v))).nunique() > 1:
            out.append(c)
    return out


def _order(df: pd.DataFrame) -> pd.DataFrame:
    """Trials in creation order (the store's row order)."""
    return df.reset_index(drop=True)


def param_slices(df: pd.DataFrame, params: Sequence[str], metric: str = "miou", mode: str = "max",
                 labels: Mapping[str, str] | None = None, paper: Mapping[str, Any] | None = None):
    """The metric against each searched hyperparameter, one panel each (a dot per trial, the best
    ringed), with the paper's value as a dashed line where `paper` gives one (UDAS's τ = 0.6)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels, paper = dict(labels or {}), dict(paper or {})
    d = df[pd.to_numeric(df[metric], errors="coerce").notna()]
    if not len(d) or not params:
        return None
    m = pd.to_numeric(d[metric], errors="coerce")
    best = m.idxmax() if mode == "max" else m.idxmin()
    cols = min(len(params), 3)
    rows = -(-len(params) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[labels.get(p, p) for p in params],
                        horizontal_spacing=0.08, vertical_spacing=0.18)
    for k, p in enumerate(params):
        r, c = k // cols + 1, k % cols + 1
        x = d[p].map(lambda v: None if is_missing(v) else norm_value(v))
        fig.add_trace(go.Scatter(x=list(x), y=list(m), mode="markers", showlegend=False,
                                 marker=dict(color=PALETTE[0], size=8, opacity=0.8),
                                 hovertemplate=f"{labels.get(p, p)}=%{{x}}<br>{_mlabel(metric)}=%{{y:.2f}}<extra></extra>"),
                      row=r, col=c)
        fig.add_trace(go.Scatter(x=[x[best]], y=[m[best]], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(color="black", width=2))),
                      row=r, col=c)
        if p in paper and isinstance(paper[p], (int, float)) and not isinstance(paper[p], bool):
            fig.add_vline(x=paper[p], line_dash="dash", line_color="#d62728", row=r, col=c,
                          annotation_text=f"paper {paper[p]:g}", annotation_position="top")
        fig.update_yaxes(title_text=_mlabel(metric) if c == 1 else None, row=r, col=c)
    fig.update_layout(title=f"{_mlabel(metric)} against each searched hyperparameter (ringed: the best trial)",
                      height=320 * rows + 60, template="plotly_white", margin=dict(t=90, b=40, l=60, r=40))
    return fig


def schedule_curves(df: pd.DataFrame, schedule, metric: str = "miou", mode: str = "max", top: int = 5):
    """A searched weight schedule (ReportSpec.schedule: δ's start, end and shape) of the best `top`
    trials over training progress, the paper's schedule dashed beside them."""
    import plotly.graph_objects as go

    d = df[pd.to_numeric(df[metric], errors="coerce").notna()]
    if not len(d) or not all(p in d.columns for p in schedule.params):
        return None
    d = d.assign(_m=pd.to_numeric(d[metric], errors="coerce")).sort_values("_m", ascending=mode != "max").head(top)
    t = [i / 50 for i in range(51)]
    fig = go.Figure()
    for k, (_, r) in enumerate(d.iterrows()):
        args = [norm_value(r[p]) for p in schedule.params]
        fig.add_trace(go.Scatter(x=t, y=[schedule.fn(x, *args) for x in t], mode="lines",
                                 line=dict(color=PALETTE[k % len(PALETTE)], width=2.5 if k == 0 else 1.5),
                                 name=f"#{k + 1}: {_mlabel(metric)} {r['_m']:.1f} ("
                                      + ", ".join(f"{fmt_value(a)}" for a in args) + ")"))
    paper = [schedule.paper[p] for p in schedule.params]
    fig.add_trace(go.Scatter(x=t, y=[schedule.fn(x, *paper) for x in t], mode="lines", name="paper ("
                             + ", ".join(fmt_value(a) for a in paper) + ")",
                             line=dict(color="black", dash="dash", width=2)))
    fig.update_layout(title=f"{schedule.label} over training: the {len(d)} best trials and the paper's",
                      xaxis_title="training progress", yaxis_title=schedule.label, height=420,
                      template="plotly_white", margin=dict(t=80, b=50, l=60, r=40))
    return fig


def optuna_history(df: pd.DataFrame, metric: str = "miou", mode: str = "max"):
    """The search's metric per trial (in the order Tune created them) and the best so far."""
    import plotly.graph_objects as go

    d = _order(df)
    vals = pd.to_numeric(d[metric], errors="coerce")
    if vals.notna().sum() == 0:
        return None
    n = np.arange(len(d))
    best = (vals.cummax() if mode == "max" else vals.cummin()).ffill()
    status = d["status"].astype(str)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=n, y=vals, mode="markers", name=f"{_mlabel(metric)} per trial",
                             marker=dict(size=9, color=["#1f77b4" if s == "TERMINATED" else "#ff7f0e" for s in status]),
                             text=[f"{t} ({s})" for t, s in zip(d["trial_id"], status)],
                             hovertemplate="trial %{x}: %{y:.2f}<br>%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=n, y=best, mode="lines", line=dict(shape="hv", color="#d62728"),
                             name="best so far"))
    fig.update_layout(title="Optimization history (orange: not finished)", height=400,
                      xaxis_title="trial", yaxis_title=f"{_mlabel(metric)} (%)", **_LAYOUT)
    return fig


def importances(df: pd.DataFrame, params: Sequence[str], metric: str = "miou", mode: str = "max") -> dict[str, float]:
    """Optuna's hyperparameter importance (its default evaluator) of the finished trials of a search,
    from an in-memory Optuna study rebuilt from the trials frame. {} with fewer than 2 usable trials."""
    import optuna

    d = df[df["status"].astype(str) == "TERMINATED"]
    d = d[pd.to_numeric(d[metric], errors="coerce").notna()]
    params = [p for p in params if p in d.columns and d[p].notna().all()]
    if len(d) < 2 or not params:
        return {}
    dists = {}
    for p in params:
        col = d[p]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            lo, hi = float(col.min()), float(col.max())
            if lo == hi:
                continue
            dists[p] = optuna.distributions.FloatDistribution(lo, hi)
        else:
            choices = tuple(sorted({str(v) for v in col}))
            if len(choices) < 2:
                continue
            dists[p] = optuna.distributions.CategoricalDistribution(choices)
    if not dists:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, r in d.iterrows():
        values = {p: (float(r[p]) if isinstance(dist, optuna.distributions.FloatDistribution) else str(r[p]))
                  for p, dist in dists.items()}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=float(r[metric])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # PED-ANOVA's "importances will be equal" on tiny searches
            return dict(optuna.importance.get_param_importances(study))
    except Exception:  # too few / degenerate trials for the evaluator
        return {}


def param_importance(df: pd.DataFrame, params: Sequence[str], metric: str = "miou", mode: str = "max",
                     labels: Mapping[str, str] | None = None):
    import plotly.graph_objects as go

    imp = importances(df, params, metric, mode)
    if not imp:
        return None
    labels = dict(labels or {})
    items = sorted(imp.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[labels.get(k, k) for k, _ in items], orientation="h",
                           marker_color="#2ca02c", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=f"Hyperparameter importance for {_mlabel(metric)} (Optuna)", height=max(260, 80 + 40 * len(items)),
                      xaxis_title="importance (sums to 1)", **_LAYOUT)
    return fig


def parallel_coordinates(df: pd.DataFrame, params: Sequence[str], metric: str = "miou",
                         labels: Mapping[str, str] | None = None):
    """One line per trial through its hyperparameter values and its metric, coloured by the metric."""
    import plotly.graph_objects as go

    labels = dict(labels or {})
    d = df[pd.to_numeric(df[metric], errors="coerce").notna()]
    if not len(d) or not params:
        return None
    dims = []
    for p in params:
        col = d[p]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            v = pd.to_numeric(col, errors="coerce")
            dims.append(dict(label=labels.get(p, p), values=list(v.fillna(v.min() if v.notna().any() else 0))))
        else:
            cats = sorted({fmt for fmt in col.map(lambda v: "–" if is_missing(v) else str(norm_value(v)))})
            code = {c: i for i, c in enumerate(cats)}
            dims.append(dict(label=labels.get(p, p), values=[code["–" if is_missing(v) else str(norm_value(v))] for v in col],
                             tickvals=list(range(len(cats))), ticktext=cats))
    m = pd.to_numeric(d[metric], errors="coerce")
    dims.append(dict(label=_mlabel(metric), values=list(m)))
    fig = go.Figure(go.Parcoords(line=dict(color=list(m), colorscale="Viridis", showscale=True,
                                           colorbar=dict(title=_mlabel(metric))), dimensions=dims))
    fig.update_layout(title=f"Parallel coordinates: {len(d)} trials", height=420, template="plotly_white",
                      margin=dict(t=80, b=40, l=60, r=60))
    return fig


def cost_per_trial(df: pd.DataFrame, cfg_cols: Sequence[str] = (), varying: Sequence[str] = (),
                   group: str | None = "method", labels: Mapping[str, str] | None = None):
    """Wall seconds (Tune, start-up included) and training seconds (the method loop) per trial."""
    import plotly.graph_objects as go

    d = _order(df)
    wall = pd.to_numeric(d.get("wall_seconds", pd.Series(dtype=float)), errors="coerce")
    train = pd.to_numeric(d.get("train_seconds", pd.Series(dtype=float)), errors="coerce")
    if not len(d) or (wall.notna().sum() == 0 and train.notna().sum() == 0):
        return None
    names = [config_label(r, cfg_cols, varying, group, labels) + (f", seed {r['seed']}" if not is_missing(r.get("seed")) else "")
             for r in d.to_dict("records")]
    y = [f"{n} ({t.rsplit('_', 1)[-1]})" for t, n in zip(d["trial_id"], names)]
    gpu = d["gpu"].fillna("?").astype(str) if "gpu" in d else pd.Series(["?"] * len(d))
    iters = d["iterations"].astype("Float64").fillna(np.nan).to_numpy(dtype=float) if "iterations" in d else np.full(len(d), np.nan)
    custom = np.stack([gpu.to_numpy(dtype=object), iters.astype(object)], axis=1)
    fig = go.Figure()
    # horizontal bars: one trial per line, its name read left to right however many trials there are
    fig.add_trace(go.Bar(y=y, x=list(wall), orientation="h", name="wall seconds (trial, start-up included)",
                         marker_color="#7f7f7f", customdata=custom,
                         hovertemplate="%{y}<br>%{x:.0f} s wall<br>GPU: %{customdata[0]}<br>"
                                       "iterations: %{customdata[1]}<extra></extra>"))
    fig.add_trace(go.Bar(y=y, x=list(train), orientation="h", name="training seconds (method loop)",
                         marker_color="#1f77b4", customdata=custom,
                         hovertemplate="%{y}<br>%{x:.0f} s training<br>GPU: %{customdata[0]}<extra></extra>"))
    use, what = (wall, "wall") if wall.notna().any() else (train, "training")
    total_h = float(np.nansum(use.to_numpy(dtype=float))) / 3600
    devices = ", ".join(sorted(set(gpu) - {"?"})) or "unknown"
    fig.update_layout(barmode="group", height=160 + 26 * len(d), xaxis_title="seconds",
                      title=f"Cost per trial: {total_h:.2f} trial-hours ({what}) in all, device: {devices}",
                      **{**_LAYOUT, "margin": dict(t=90, b=60, l=40, r=40),
                         "legend": dict(orientation="h", yanchor="bottom", y=1.0, x=0)})
    fig.update_yaxes(automargin=True, autorange="reversed")
    return fig


def _determined_by(df: pd.DataFrame, group: str | None, col: str) -> bool:
    """Whether each value of `group` comes with a single value of `col` in df."""
    if not group or group == col or group not in df or col not in df:
        return False
    pairs = {(repr(norm_value(g)), repr(norm_value(v))) for g, v in zip(df[group], df[col])}
    return len(pairs) == len({g for g, _ in pairs})


def learning_curves(hist: pd.DataFrame, df: pd.DataFrame, metric: str = "miou", cfg_cols: Sequence[str] = (),
                    varying: Sequence[str] = (), group: str | None = "method",
                    labels: Mapping[str, str] | None = None):
    """metric vs training iteration, one line per configuration (seeds pooled: mean at each
    iteration, ±1 std band where more than one seed reported it). hist: store.load_histories;
    df: the trials frame, which maps trial_id to its configuration. None when no configuration
    has two evaluations (e.g. a schedule that evaluates only at its end)."""
    import plotly.graph_objects as go

    if hist is None or not len(hist) or metric not in hist or "iteration" not in hist:
        return None
    h = hist[["trial_id", "iteration", metric]].copy()
    h["iteration"] = pd.to_numeric(h["iteration"], errors="coerce")
    h[metric] = pd.to_numeric(h[metric], errors="coerce")
    h = h.dropna().drop_duplicates(["trial_id", "iteration"], keep="last")  # a resumed trial re-reports
    keys: dict[tuple, list[str]] = {}
    names: dict[tuple, str] = {}
    # a legend entry names the group and only the columns the group does not already determine
    # ("LR only, crop_ratio=0.5", not "mode=lr, ..., self_training=✓, LR only")
    shown = [c for c in varying if not _determined_by(df, group, c)]
    order = ([group] if group in cfg_cols else []) + [c for c in cfg_cols if c != group]
    for row in df.to_dict("records"):
        key = tuple(norm_value(row.get(c)) for c in cfg_cols)
        keys.setdefault(key, []).append(str(row["trial_id"]))
        names.setdefault(key, config_label(row, order, shown, group, labels))
    fig = go.Figure()
    drawn = 0
    for i, (key, tids) in enumerate(keys.items()):
        sub = h[h["trial_id"].isin(tids)]
        if sub["iteration"].nunique() < 2:
            continue
        stats = sub.groupby("iteration")[metric].agg(["mean", "std", "count"]).reset_index()
        color = PALETTE[i % len(PALETTE)]
        name = names[key]
        band = stats[stats["count"] > 1]
        if len(band) > 1:
            up, lo = band["mean"] + band["std"], band["mean"] - band["std"]
            fig.add_trace(go.Scatter(x=list(band["iteration"]) + list(band["iteration"])[::-1],
                                     y=list(up) + list(lo)[::-1], fill="toself", fillcolor=_band(color),
                                     mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                                     legendgroup=name, name=f"{name} ±std"))
        fig.add_trace(go.Scatter(x=stats["iteration"], y=stats["mean"], mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color),
                                 customdata=np.stack([stats["std"].fillna(0).to_numpy(float),
                                                      stats["count"].to_numpy(float)], axis=1),
                                 hovertemplate=f"iteration %{{x}}<br>{_mlabel(metric)}=%{{y:.2f}} ± "
                                               f"%{{customdata[0]:.2f}}<br>seeds=%{{customdata[1]}}<extra>{name}</extra>"))
        drawn += 1
    if not drawn:
        return None
    fig.update_layout(title=f"Learning curves: {_mlabel(metric)} on the target during training (mean over seeds)",
                      xaxis_title="iteration", yaxis_title=f"{_mlabel(metric)} (%)", height=460, **_LAYOUT)
    return fig
