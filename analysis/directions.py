"""Directions: what a paper compares, derived from its published table, and whether a measured study
points the same way.

A reference in reference_data.json lists its `comparisons`. One that names two published rows by
label takes its direction from the sign of their published difference (nothing is typed twice);
one published without numbers (a figure) declares two configurations, its `direction` and `source`.

    comps = published_comparisons(reference_info("hrda"), reference("hrda"))
    label = match(comps[0].a, configurations)     # the study's configuration the published row is
    verdict(comps[0].sign, delta, bar)             # "agrees", "disagrees", ... (within 2 × std)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import pandas as pd

from udalab.analysis.reference import config_matches, is_missing

__all__ = ["Comparison", "DirectionError", "NotInRecord", "NOT_RUN", "published_comparisons", "match", "verdict",
           "count_line"]
NOT_RUN = "not run in the record"   # the verdict of a comparison whose rows the record lacks


class DirectionError(ValueError):
    """A comparison that cannot be derived or mapped; the message names it and the fix."""


class NotInRecord(DirectionError):
    """No configuration of the record is the published one: the record ran a subset of the study's rows."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One published comparison: configuration a against configuration b (as the reference's config
    columns give them), the published difference a − b (NaN where only its direction is published),
    its sign, the metric or class subset, and the metric a record holds for it."""
    name: str
    a: dict
    b: dict
    sign: int
    paper_delta: float
    classes: tuple[str, ...]
    metric: str
    measured: str
    source: str


def _row(rows: pd.DataFrame, label: str, ref: str) -> Mapping:
    sel = rows[rows["label"] == label]
    if len(sel) != 1:
        raise DirectionError(f"reference {ref}: a comparison names row {label!r}, which the published table has "
                             f"{len(sel)} times (its labels: {', '.join(rows['label'])})")
    return sel.iloc[0].to_dict()


def _value(row: Mapping, metric: str, classes: tuple[str, ...]) -> float:
    keys = [f"iou.{c}" for c in classes] or [metric]
    values = [row.get(k) for k in keys]
    return math.nan if any(is_missing(v) for v in values) else sum(map(float, values)) / len(values)


def _sign(delta: float) -> int:
    return 0 if math.isnan(delta) or delta == 0 else (1 if delta > 0 else -1)


def _derived(c: Mapping, info: Mapping, rows: pd.DataFrame, metric: str, classes: tuple[str, ...]) -> Comparison:
    ref = info.get("name", info.get("title", "?"))
    if "direction" in c:
        raise DirectionError(f"reference {ref}: comparison {c['a']!r} − {c['b']!r} names two published rows and a "
                             f"direction: the rows give it, remove `direction`")
    ra, rb = _row(rows, c["a"], ref), _row(rows, c["b"], ref)
    delta = _value(ra, metric, classes) - _value(rb, metric, classes)
    if not _sign(delta):
        raise DirectionError(f"reference {ref}: rows {c['a']!r} and {c['b']!r} publish no difference in {metric} "
                             f"({delta}): they give no direction")
    config = lambda r: {k: r[k] for k in info["config"] if k in r and not is_missing(r[k])}  # noqa: E731
    return Comparison(f"{c['a']} − {c['b']}", config(ra), config(rb), _sign(delta), delta, classes, metric,
                      c.get("measured", metric), str(ra.get("source", "")))


def _declared(c: Mapping, info: Mapping, metric: str, classes: tuple[str, ...]) -> Comparison:
    ref = info.get("name", info.get("title", "?"))
    if c.get("direction") not in ("+", "-") or not c.get("source") or not c.get("claim"):
        raise DirectionError(f"reference {ref}: comparison {c!r} names no two published rows, so it needs its "
                             f"`claim`, its published `direction` ('+': a above b, '-': below) and its `source`")
    return Comparison(c["claim"], dict(c["a"]), dict(c["b"]), 1 if c["direction"] == "+" else -1, math.nan, classes,
                      metric, c.get("measured", metric), c["source"])


def published_comparisons(info: Mapping, rows: pd.DataFrame) -> list[Comparison]:
    """The comparisons of one reference (its reference_info and its published rows), each with its
    direction: the sign of the published difference of two rows, or the declared one."""
    out = []
    for c in info.get("comparisons", []):
        metric, classes = c.get("metric", "miou"), tuple(c.get("classes", ()))
        if isinstance(c.get("a"), str) and isinstance(c.get("b"), str):
            out.append(_derived(c, info, rows, metric, classes))
        elif isinstance(c.get("a"), Mapping) and isinstance(c.get("b"), Mapping):
            out.append(_declared(c, info, metric, classes))
        else:
            raise DirectionError(f"reference {info.get('name', '?')}: comparison {c!r} needs `a` and `b`, both "
                                 f"published row labels or both configurations")
    return out


def match(config: Mapping, configurations: Mapping[str, Mapping]) -> str:
    """The one configuration (label -> its config values) whose values equal every value of `config`."""
    found = [label for label, values in configurations.items() if config_matches(config, values, list(config))]
    if not found:
        raise NotInRecord(f"no configuration of the record matches the published configuration {dict(config)}")
    if len(found) != 1:
        raise DirectionError(f"{len(found)} configurations of the record ({', '.join(found) or 'none'}) match the "
                             f"published configuration {dict(config)}: the study's columns must single one out")
    return found[0]


def verdict(sign: int, delta: float, bar: float) -> str:
    """Whether a measured difference points the paper's way, and whether it clears the bar (2 × the
    larger seed std): "agrees", "agrees, within 2 × std", "disagrees, within 2 × std", "**disagrees**"."""
    if math.isnan(delta):
        return "–"
    same = _sign(delta) == sign
    clears = not math.isnan(bar) and abs(delta) > bar
    if same:
        return "**agrees**" if clears else "agrees, within 2 × std"
    return "**disagrees**" if clears else "disagrees, within 2 × std"


def count_line(verdicts: list[str]) -> str:
    """"k / n agree in direction (j of them beyond 2 × the larger seed std); m / n disagree beyond it",
    n counting the comparisons the record ran (and naming those it did not)."""
    skipped = sum(v == NOT_RUN for v in verdicts)
    verdicts = [v for v in verdicts if v != NOT_RUN]
    n = len(verdicts)
    agree = [v for v in verdicts if v.startswith(("**agrees", "agrees"))]
    clear = sum(v == "**agrees**" for v in agree)
    against = sum(v == "**disagrees**" for v in verdicts)
    return (f"**{len(agree)} / {n} agree** in direction ({clear} of them beyond 2 × the larger seed std); "
            f"{against} / {n} disagree beyond it" + (f"; {skipped} not compared (their rows are not in the record)"
                                                     if skipped else ""))
