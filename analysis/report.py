"""The study report: one self-contained HTML file (plotly.js embedded once) that opens offline,
and results/index.html, the list of all studies.

    write_report("results/intrada_split", ReportSpec(title="IntraDA: split ratio λ", x="lambda_split",
                 reference="intrada", baseline={"method": "source_only"}), preset="mini")
    write_index("results")

A study says what its report shows with a ReportSpec (analysis.report_spec); the report's sections
are made from its trials by analysis.sections, and `assemble_report` renders them into one page.
Tables are also written to <study>/tables/*.md|tex, figures to <study>/figures/*.png|svg when a
Chromium / Chrome is there for kaleido (analysis.export; else the report says that it skipped them).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow.fs as pafs

from udalab.analysis import store
from udalab.analysis import tables as T
from udalab.analysis.export import export_note
from udalab.analysis.report_spec import ReportSpec
from udalab.analysis.sections import (Plot, Section, escape, files_section, fmt_mean_std, is_search, report_data,
                                      report_sections)
from udalab.analysis.tables import aggregate
from udalab.core import layout, storage

__all__ = ["write_report", "render_report", "build_report", "assemble_report", "Report", "write_index",
           "render_index", "study_dirs", "study_summary"]

log = logging.getLogger("udalab")

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
            out.append(f"<h2>{escape(s.title)}</h2>")
        for part in s.body:
            if isinstance(part, Plot):
                out.append(part.to_html(include_plotlyjs=first))
                first = False
            else:
                out.append(part)
    body = "\n".join(out)
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f'<meta name="udalab-study" content="{escape(study_name)}">\n'
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
# Writing.


def _write_text(fs, path: str, name: str, text: str) -> str:
    target = storage.join_path(path, name)
    tmp = storage.join_path(path, f".{name.replace('/', '_')}.{os.getpid()}.tmp")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    fs.move(tmp, target)
    return target


def _study_preset(fs, path: str) -> str | None:
    """The preset the study recorded in its options file (layout.OPTIONS_FILE)."""
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


def _file_notes(fs, path: str) -> list[str]:
    """What lies beside the report."""
    files = [f"{layout.TRIALS_FILE}: one row per trial (docs/architecture.md)", "tables/*.md, tables/*.tex: the tables"]
    if storage.is_file(fs, storage.join_path(path, layout.OPTUNA_DB)):
        files.append(f"{layout.OPTUNA_DB}: the Optuna study (optuna-dashboard sqlite:///{path}/{layout.OPTUNA_DB})")
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
    search = is_search(name) or any(i.base_name.startswith("searcher-state-") for i in storage.list_dir(fs, path))
    fs.create_dir(path, recursive=True)

    sections = report_sections(report_data(df, spec, preset, name, search, _histories(study_dir, df),
                                           _pictures(study_dir, df)))
    note = export_note({k: v for s in sections for k, v in s.figures.items()}, study_dir, static_figures)
    sections.append(files_section(_file_notes(fs, path) + ([note] if note else [])))
    report = assemble_report(sections, spec.title, name)

    fs.create_dir(storage.join_path(path, "tables"), recursive=True)
    for tname, table in report.tables.items():
        _write_text(fs, path, f"tables/{tname}.md", table.to_markdown())
        _write_text(fs, path, f"tables/{tname}.tex", table.to_latex())
    target = _write_text(fs, path, layout.REPORT_FILE, report.html)
    if index:
        parent = storage.uri_parent(study_dir)
        try:
            write_index(parent)
        except Exception as e:  # the index is a convenience; never lose the report for it
            log.warning("could not write %s/%s: %s", parent, layout.INDEX_FILE, e)
    if storage.is_local(study_dir):
        return Path(target)
    return storage.uri_join(study_dir, layout.REPORT_FILE)


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
           "report": storage.is_file(fs, storage.join_path(path, layout.REPORT_FILE)),
           "title": name, "best": None, "error": None}
    if out["report"]:
        text = storage.read_text(fs, storage.join_path(path, layout.REPORT_FILE)) or ""
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
    """The index page of study_summary dicts: one row per study, linked to its report."""
    rows = []
    for s in summaries:
        name = escape(s["name"])
        link = f'<a href="{escape(s["name"])}/{layout.REPORT_FILE}">{escape(s.get("title") or s["name"])}</a>' if s.get("report") \
            else escape(s.get("title") or s["name"]) + ' <span class="note">(no report yet: udalab report ' + name + ")</span>"
        if s.get("error"):
            rows.append(f"<tr><td>{name}</td><td>{link}</td><td colspan=5 class=err>{escape(s['error'])}</td></tr>")
            continue
        st = ", ".join(f"{v} {k.lower()}" for k, v in sorted(s["status"].items())) or "–"
        best = "–"
        if s["best"]:
            label, mean, std, n = s["best"]
            best = f"{fmt_mean_std(mean, std)} ({escape(label)}, n={n})"
            if s.get("best_test"):
                t_mean, t_std, t_n = s["best_test"]
                best += f"; test {fmt_mean_std(t_mean, t_std)} (n={t_n})"
        rows.append(f"<tr><td>{name}</td><td style='text-align:left'>{link}</td><td>{escape(s['state'])}</td>"
                    f"<td>{s['trials']}: {escape(st)}</td><td>{best}</td><td>{escape(s['preset'])}</td><td>{escape(s['updated'])}</td></tr>")
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = ("<h1>udalab results</h1>"
            f'<div class="meta">{escape(results_dir)} · {len(summaries)} studies · generated {when}</div>'
            + ('<div class="scroll"><table><thead><tr><th>study</th><th>report</th><th>state</th><th>trials</th>'
               "<th>best configuration by val mIoU (mean ± std over seeds); its held-out test mIoU</th><th>data</th><th>updated</th></tr></thead><tbody>"
               + "\n".join(rows) + "</tbody></table></div>" if summaries else
               '<p class="note">No studies yet: run one, e.g. python studies/intrada_split.py --smoke</p>')
            + '<p class="note">mini / smoke data: compare shapes, not levels, with the papers. Each report opens '
              f"offline; {layout.TRIALS_FILE} in each folder holds the numbers.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>udalab results</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_index(results_dir: str | os.PathLike) -> Path | str:
    """Write <results_dir>/index.html: every study folder with its state and best result."""
    fs, root = storage.fs_path(results_dir)
    summaries = [study_summary(results_dir, n) for n in _study_dirs(fs, root)]
    fs.create_dir(root, recursive=True)
    target = _write_text(fs, root, layout.INDEX_FILE, render_index(summaries, str(results_dir)))
    return Path(target) if storage.is_local(results_dir) else storage.uri_join(results_dir, layout.INDEX_FILE)