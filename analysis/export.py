"""Static PNG / SVG copies of a report's figures, written with kaleido, which drives a Chromium /
Chrome (analysis.browser.find_browser). Without either the report says that it skipped them.

    files, note = export_figures(report.figures, "results/intrada_split/figures")
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Mapping, Sequence

from udalab.analysis.browser import find_browser
from udalab.core import storage

__all__ = ["export_figures", "export_note"]

log = logging.getLogger("udalab")


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
    scale = 1 if len(items) > 4 else 2
    try:
        pio.write_images(items, paths, width=1100, height=None, scale=scale)
        # kaleido returns a render's error (a timeout on a loaded machine) instead of raising it, and
        # plotly drops it: the file is simply not there. Those figures get one more try, alone.
        for i in [i for i, p in enumerate(paths) if not os.path.isfile(p)]:
            pio.write_images([items[i]], [paths[i]], width=1100, height=None, scale=scale)
    except Exception as e:  # a browser that does not start, a kaleido/plotly mismatch: the report still goes out
        log.warning("static figure export failed: %s", e)
        return [], f"Static PNG/SVG figures skipped: kaleido failed ({type(e).__name__}: {str(e)[:200]})."
    lost = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if lost:
        log.warning("kaleido wrote no %s (twice)", ", ".join(lost))
    paths = [p for p in paths if os.path.isfile(p)]
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
    note = (f"Static figures: {len(written)} files in figures/ ("
            + ", ".join(sorted({os.path.basename(w) for w in written})) + ").")
    if lost:
        note += f" Not written (kaleido gave no file, twice): {', '.join(lost)}; `udalab report` tries again."
    return written, note


def export_note(figures: Mapping[str, Any], study_dir: str | os.PathLike, static_figures: bool | None) -> str:
    """Export the figures to <study>/figures (static_figures None: when a Chromium / Chrome is found);
    the note saying what was written or why not ("" when nothing was asked)."""
    if static_figures is None:
        static_figures = find_browser() is not None
        if not static_figures:
            return ("Static PNG/SVG figures skipped: no Chromium or Chrome found (install Debian's chromium, or set "
                    "BROWSER_PATH). The interactive figures above are unaffected.")
    if not (static_figures and figures):
        return ""
    # the study's URI, local or not: a remote study's path alone (bucket/...) would name a local folder
    return export_figures(figures, storage.uri_join(study_dir, "figures"))[1]
