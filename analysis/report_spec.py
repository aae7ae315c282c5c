"""What a study's report shows: `ReportSpec` (with `Schedule`, a weight schedule a search tunes).
A study declares one; analysis.report.write_report draws it (sections in analysis.sections).

    ReportSpec(title="IntraDA: split ratio λ", x="lambda_split", reference="intrada",
               baseline={"method": "source_only"})
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from udalab.analysis import tables as T

__all__ = ["ReportSpec", "Schedule"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A weight schedule a search tunes: `fn(progress, *values of params)`, e.g. MML's δ ramp
    (methods.parts.ramps.ramp; params delta_start, delta_end, delta_shape; paper 0.2, 1, linear)."""

    label: str
    params: tuple[str, ...]
    fn: Callable[..., float]
    paper: Mapping[str, Any]


@dataclasses.dataclass
class ReportSpec:
    """What a study's report shows.

    title:        heading of the report
    x:            the numeric hyperparameter of the curve (e.g. "lambda_split", "crop_ratio", "labelled");
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
    pairs:        ((row, its baseline row), ...): grid rows (dicts of their hyperparameters) measured
                  against their own baseline on the same seed, a paired-Δ table each; a study fills it
                  from its `paired` declaration (studies.study.Study.baseline_pairs)
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
    pairs: tuple = ()

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
