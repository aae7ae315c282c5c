"""The report's sections, each made by one function from the study's `ReportData` (its trials
prepared once by `report_data`); `report_sections` lists them in order, analysis.report assembles
them into the page. A `Section` is a heading, HTML fragments and `Plot`s, and the tables it exports.
Top to bottom:

    header_section            title, status line (finished / running / errored / pending trials), a
                              banner for the mini or smoke preset, the description, notes, provenance
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
    pictures_section          "What the models see": the pictures the trials kept
    learning_curves_section   metric vs iteration per configuration (when the histories are given)
    cost_section              cost per trial
    errors_section            the errored trials and their exception lines
    published_section         the published table (with a reference)
    files_section             the files beside the report and the static figure export's note
                              (added by analysis.report, after the export)

Without trials only the header (saying so) and the published table are there.
Running trials count with their latest evaluation (marked), NaN metrics show as "–".
A grid whose finished trials all scored the held-out split reports that split (store.held_out_view:
test.* under the plain names, val.* beside, learning curves on val); a search reports val, its selector.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from udalab.analysis import figures as F
from udalab.analysis import pictures as P
from udalab.analysis import store
from udalab.analysis import tables as T
from udalab.analysis.reference import reference, reference_info
from udalab.analysis.report_spec import ReportSpec
from udalab.analysis.paired import paired
from udalab.analysis.tables import aggregate, is_missing, values_equal

__all__ = ["ReportData", "report_data", "is_search", "Section", "Plot", "report_sections", "files_section",
           "header_section", "reproduction_section", "search_section", "metric_section", "results_section",
           "class_section", "pictures_section", "learning_curves_section", "cost_section", "errors_section",
           "published_section", "reproduction_summary", "escape", "fmt_mean_std"]

_BANNERS = {
    "mini": ("mini data: compare the shape, not the level, with the published numbers. These trials ran on "
             "udalab's embedded miniature datasets (tiny images, short schedules); the published numbers come "
             "from full-size data and schedules."),
    "smoke": ("smoke run: a seconds-scale schedule on the mini data. The numbers only show that the pipeline "
              "works; compare neither shape nor level with the published numbers."),
}


# ---------------------------------------------------------------------------------------
# Helpers.


def escape(text: Any) -> str:
    """Any value as HTML text (quotes escaped too, for attributes)."""
    return html.escape(str(text), quote=True)


def _fmt(v: Any, digits: int = 1, signed: bool = False) -> str:
    if is_missing(v) or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_mean_std(mean: Any, std: Any) -> str:
    """mean ± std, the std left out when missing (one seed)."""
    return _fmt(mean) + ("" if is_missing(std) else f" ± {_fmt(std)}")


def _html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """headers: plain text (escaped here); rows: cells already HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _sources(t: T.Table) -> str:
    """The table as Markdown and LaTeX, to copy into a paper or a README."""
    return ("<details><summary>Markdown / LaTeX</summary>"
            f"<pre>{escape(t.to_markdown())}</pre><pre>{escape(t.to_latex())}</pre></details>")


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


def is_search(study_name: str) -> bool:
    """Whether a study folder's name marks an Optuna search (layout.study_dir_name(optuna=True))."""
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
    search = is_search(study_name) if search is None else search
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
    body = [f"<h1>{escape(spec.title)}</h1>",
            f'<div class="meta">study {escape(d.study_name)} · data: {escape(d.preset)} · generated {when}'
            + (f" · device: {escape(', '.join(devices))}" if devices else "")
            + (f" · reference: {escape(info['title'])} ({escape(info['benchmark'])})" if info else "") + "</div>",
            f'<div class="status"><b>{len(df)} trials:</b> {done} finished, {running} running, '
            f"{errored} errored, {pending} pending</div>"]
    if d.preset in _BANNERS:
        body.append(f'<div class="banner">{escape(_BANNERS[d.preset])}</div>')
    if spec.description:
        body.append(f"<p>{escape(spec.description)}</p>")
    if d.held_out:
        body.append('<p class="note">Results on the held-out test split, which nothing was tuned on; the '
                    "val columns and the learning curves are the validation split, which settings were chosen on.</p>")
    if d.ref_error:
        body.append(f'<p class="note">{escape(d.ref_error)}</p>')
    if spec.x and spec.x not in df.columns and len(df):
        body.append(f'<p class="note">The x column of the curve, {escape(spec.x)}, is not among the results\' '
                    f"columns ({escape(', '.join(d.cfg_cols))}); showing configurations instead.</p>")
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
            items.append(f"<li><b>{escape(name)}</b>: {escape(counts.index[0])}</li>")
        else:
            differ.append(name)
            items.append(f"<li><b>{escape(name)}</b>: " + "; ".join(f"{escape(v)} ({n} trials)" for v, n in counts.items())
                         + "</li>")
    warn = (f'<p class="note cellnote">The trials differ in {escape(", ".join(differ))}: compare their results with '
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
    parts = ['<div class="summary">', f"<p><b>{escape(s['verdict'])}</b></p>"]
    if s["pairs"]:
        rows = []
        for label, mean, std, n, pub, plabel in s["pairs"]:
            ms = fmt_mean_std(mean, std)
            delta = _fmt(mean - pub, signed=True) if d.preset == "paper" else "(levels differ)"
            rows.append(f"<tr><td>{escape(label)}</td><td>{escape(ms)} (n={n})</td><td>{escape(f'{pub:g}')}</td>"
                        f"<td>{escape(plabel)}</td><td>{escape(delta)}</td></tr>")
        m = T.metric_label(d.spec.metric)
        parts.append(f'<div class="scroll"><table class="paper"><thead><tr><th>configuration</th>'
                     f"<th>measured {d.label(d.spec.metric)}</th><th>published {m}</th><th>published row</th><th>Δ</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table></div>")
    if s.get("ambiguous"):
        parts.append(f'<p class="note">Not compared, the published configuration is not pinned down by the reference '
                     f"data: {escape('; '.join(s['ambiguous']))}.</p>")
    for what, measured, published in s["facts"]:
        parts.append(f"<p>{escape(what)}: measured <b>{escape(measured)}</b>, published <b>{escape(published)}</b>.</p>")
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
    return (f'<p class="summary"><b>Best trial {escape(best["trial_id"])}: {m} {_fmt(best[spec.metric], 2)}</b> at {escape(ps)}'
            f" (seed {escape(T.fmt_value(best.get('seed')))}; {len(done)} of {len(df)} trials reported).{escape(imp_txt)}</p>")


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


def _pair_labels(df: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """The trials of the pairs' rows, each labelled with its row's name and its baseline's: a trial is
    a row's when it has that row's value (or none) of every key any paired row sets."""
    name = spec.name or (lambda r: ", ".join(f"{k}={T.fmt_value(v)}" for k, v in sorted(r.items())))
    # (row, its baseline's name): every measured row, then every baseline row not measured itself
    rows = [(row, name(base)) for row, base in spec.pairs]
    rows += [(base, None) for _, base in spec.pairs if all(base != r for r, _ in rows)]
    keys = sorted({k for r, _ in rows for k in r})

    def same(a, b) -> bool:
        return (is_missing(a) and is_missing(b)) or (not is_missing(a) and not is_missing(b) and values_equal(a, b))

    out = []
    for trial in df.to_dict("records"):
        match = next(((r, base) for r, base in rows if all(same(trial.get(k), r.get(k)) for k in keys)), None)
        if match is not None and not is_missing(trial.get(spec.metric)):
            out.append({"configuration": name(match[0]), "baseline": match[1], "seed": trial["seed"],
                        spec.metric: trial[spec.metric]})
    return pd.DataFrame(out, columns=["configuration", "baseline", "seed", spec.metric])


def paired_section(d: ReportData) -> Section | None:
    """Each paired row against its own baseline on the same seed (analysis.paired): the per-seed Δ and
    their mean ± std, the difference of the means and the bar it must clear, 2 × the larger seed std."""
    if not d.spec.pairs or d.search or "seed" not in d.df.columns:
        return None
    trials = _pair_labels(d.df, d.spec)
    table = paired(trials, d.spec.metric)
    table = table[table["baseline"].notna()]
    if not len(table):
        return None
    rows = [[escape(r.configuration), escape(r.baseline), escape(", ".join(_fmt(v, 2, True) for v in r.paired)),
             fmt_mean_std(r.paired_mean, r.paired_std), _fmt(r.delta, 1, True), _fmt(r.bar),
             "–" if r.clears is None else ("yes" if r.clears else "no")] for r in table.itertuples()]
    headers = ["configuration", "baseline", "Δ per seed", "paired Δ (mean ± std)", "Δ of the means",
               "2 × larger std", "Δ clears it?"]
    note = (f"<p class='note'>{escape(d.label(d.spec.metric))}: each seed's run against the same seed's baseline "
            "run (same initialisation and batches). A difference is read as a finding only when the difference "
            "of the means is larger than twice the larger seed std of the two rows.</p>")
    return Section("Each row against its own baseline, seed by seed", [note, _html_table(headers, rows, "paired")])


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
    body = [f'<p class="note">The same {len(index.get("images", []))} validation images ({escape(index.get("dataset", ""))}) '
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
        rows.append([escape(r["trial_id"]), escape(cfg + seed), f'<span class="err">{escape(r.get("error") or "")}</span>'])
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
        cells = [escape(T.fmt_value(r[c])) for c in cols]  # published precision as printed (%g)
        cells.append(escape(r["benchmark"]))
        cells.append(escape(r["source"]) + ("" if is_missing(r.get("note")) or r.get("note") in ("None", "nan")
                                        else f'<br><span class="note">{escape(r["note"])}</span>'))
        rows.append(cells)
    headers = [c[4:] if c.startswith("iou.") else c for c in cols] + ["benchmark", "source"]
    notes = f'<p class="note">{escape(info.get("notes", ""))}</p>' if info.get("notes") else ""
    return Section(f"Published: {info['title']}", [_html_table(headers, rows, "published") + "\n" + notes])


def files_section(notes: Sequence[str]) -> Section:
    """Notes on the files beside the report (plain text, one paragraph each)."""
    return Section("Files", ["".join(f'<p class="note">{escape(n)}</p>' for n in notes)])


def report_sections(d: ReportData) -> list[Section]:
    """The sections of the report, in order (without the files section, which needs the export's note)."""
    sections = [header_section(d)]
    if len(d.df):
        sections += [reproduction_section(d), search_section(d), metric_section(d), results_section(d),
                     paired_section(d), class_section(d), pictures_section(d), learning_curves_section(d), cost_section(d),
                     errors_section(d)]
    sections.append(published_section(d))
    return [s for s in sections if s is not None]

