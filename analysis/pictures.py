"""The report's "What the models see" section: the pictures trials kept at their final evaluation.

Each trial keeps, in its last checkpoint, the input, ground truth and its prediction for the same
few validation images (methods/engine/pictures.py; store.load_pictures reads them). The section lays
them out as the papers' qualitative figures: one row per image, columns image | ground truth |
baseline | every other configuration, each configuration shown by its lowest-seed trial (said in
the caption). A method's own pictures (pseudo labels, depth, RGB-stream predictions) follow, one
grid each. Pictures are embedded as base64 PNGs, at most `BUDGET_BYTES` in all.
"""
from __future__ import annotations

import base64
import html
from typing import Callable, Mapping

import pandas as pd

BUDGET_BYTES = 1_500_000     # embedded pictures per report (about 2 MB of base64): a few ablation rows x 4 images


def _e(x) -> str:
    return html.escape(str(x))


def shown_trials(agg: pd.DataFrame, df: pd.DataFrame, pictures: Mapping[str, dict], baseline_i,
                 name_of: Callable[[pd.Series], str]) -> list[tuple[str, str]]:
    """[(configuration name, trial id)]: each configuration's lowest-seed trial that has pictures,
    the baseline first."""
    order = list(agg.index)
    if baseline_i is not None and baseline_i in order:
        order = [baseline_i] + [i for i in order if i != baseline_i]
    out = []
    for i in order:
        row = agg.loc[i]
        trials = df.loc[row["_rows"]]
        trials = trials[trials["trial_id"].astype(str).isin(pictures)]
        if len(trials):
            pick = trials.sort_values("seed", na_position="last").iloc[0]
            out.append((name_of(row), str(pick["trial_id"])))
    return out


def _img(data: bytes | None, alt: str) -> str:
    if data is None:
        return "<td>–</td>"
    return (f'<td><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"></td>')


def picture_grids(columns: list[tuple[str, str]], pictures: Mapping[str, dict], baseline_name: str | None
                  ) -> tuple[list[str], int, list[str]]:
    """(HTML tables, bytes embedded, notes): the prediction grid and one grid per method picture."""
    first = pictures[columns[0][1]]
    images = first["index"].get("images", [])
    captions: dict[str, str] = {}       # every column's pictures: the baseline may lack one (no depth decoder)
    for _, tid in columns:
        for k, v in pictures[tid]["index"].get("pictures", {}).items():
            captions.setdefault(k, v)
    captions.pop("pred", None)
    used, notes, out = 0, [], []

    def pic(tid: str, name: str, k: int) -> bytes | None:
        nonlocal used
        p = pictures[tid]
        names = p["index"].get("images", [])
        if images[k] not in names:          # another dataset or split: no picture of this image
            return None
        data = p["files"].get(f"{names.index(images[k])}_{name}.png")
        if data is None or used + len(data) > BUDGET_BYTES:
            if data is not None:
                notes.append("over the size budget")
            return None
        used += len(data)
        return data

    head = "".join(f"<th>{_e(n)}{' (baseline)' if n == baseline_name else ''}</th>" for n, _ in columns)
    rows = []
    for k, name in enumerate(images):
        tid0 = columns[0][1]
        cells = [_img(pic(tid0, "image", k), f"{name} image"), _img(pic(tid0, "label", k), f"{name} ground truth")]
        cells += [_img(pic(tid, "pred", k), f"{name} {n}") for n, tid in columns]
        rows.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    out.append('<div class="scroll"><table class="pictures"><caption>Predictions on the same validation images'
               '</caption><tr><th>image</th><th>input</th><th>ground truth</th>' + head + "</tr>"
               + "".join(rows) + "</table></div>")
    for extra, caption in captions.items():
        have = [(n, tid) for n, tid in columns if any(f.endswith(f"_{extra}.png") for f in pictures[tid]["files"])]
        if not have:
            continue
        rows = []
        for k, name in enumerate(images):
            cells = "".join(_img(pic(tid, extra, k), f"{name} {n} {extra}") for n, tid in have)
            rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
        out.append(f'<div class="scroll"><table class="pictures"><caption>{_e(caption)}</caption><tr><th>image</th>'
                   + "".join(f"<th>{_e(n)}</th>" for n, _ in have) + "</tr>" + "".join(rows) + "</table></div>")
    return out, used, sorted(set(notes))


def legend(index: dict) -> str:
    """The class colours as small swatches."""
    items = index.get("legend") or []
    return "".join(f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>{_e(name)} '
                   for name, (r, g, b) in items)
