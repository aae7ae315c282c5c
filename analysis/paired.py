"""Paired differences: each configuration against its own baseline on the same seed.

A trials frame has one row per trial: the configuration's label, the label of the configuration it
is measured against (its baseline; null for a baseline itself), the seed and the metrics. Two runs
of one seed share the initialisation and the batches, so the per-seed difference removes what the
seed does to both; its mean ± std over seeds is the effect, and the unpaired difference of the means
is set against twice the larger of the two seed stds (the bar a difference, either way, must clear
before it is read as a finding). Runs of two machines are never paired: with a `machine` column, a configuration
is paired only with baseline runs of its own machine, and a configuration whose baseline was measured
on another machine is an error.

    table = paired(trials, "test.miou")          # one row per configuration, in order of appearance
"""
from __future__ import annotations

import math
import statistics

import pandas as pd

__all__ = ["paired", "mean_std", "PairingError"]

COLUMNS = ["configuration", "baseline", "seeds", "values", "mean", "std", "base_mean", "base_std", "delta",
           "paired", "paired_mean", "paired_std", "bar", "clears"]


class PairingError(ValueError):
    """A configuration cannot be paired with its baseline; the message names both and why."""


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (NaN std for a single value; NaN both for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def _by_seed(rows: pd.DataFrame, metric: str, seed: str, label: str) -> dict:
    """{seed: value} of one configuration's trials; two trials of one seed are an error."""
    dup = rows[seed][rows[seed].duplicated()]
    if len(dup):
        raise PairingError(f"configuration {label!r} has more than one trial of seed {dup.iloc[0]}: "
                           f"give each repetition a configuration label of its own")
    return dict(sorted(zip(rows[seed].astype(int), rows[metric].astype(float))))


def _machine_of(rows: pd.DataFrame, machine: str, label: str) -> str | None:
    if machine not in rows:
        return None
    kinds = sorted(set(rows[machine].astype(str)))
    if len(kinds) > 1:
        raise PairingError(f"configuration {label!r} holds runs of {len(kinds)} machines ({'; '.join(kinds)}): "
                           f"split it into one configuration per machine")
    return kinds[0]


def paired(trials: pd.DataFrame, metric: str, *, configuration: str = "configuration", baseline: str = "baseline",
           seed: str = "seed", machine: str = "machine") -> pd.DataFrame:
    """One row per configuration (order of first appearance): its seeds and per-seed values, mean ±
    std, and against its baseline: the difference of the means (`delta`), the per-seed differences on
    the seeds both have (`paired`, with their mean ± std), `bar` = 2 × the larger seed std and whether
    |`delta`| clears it. A configuration without a baseline has NaN there."""
    missing = [c for c in (configuration, baseline, seed, metric) if c not in trials]
    if missing:
        raise KeyError(f"the trials frame has no column {', '.join(map(repr, missing))} "
                       f"(it has {', '.join(map(str, trials.columns))})")
    trials = trials[[configuration, baseline, seed, metric] + ([machine] if machine in trials else [])]
    labels = list(dict.fromkeys(trials[configuration]))
    groups = {label: trials[trials[configuration] == label] for label in labels}
    out = []
    for label in labels:
        rows = groups[label]
        values = _by_seed(rows, metric, seed, label)
        m, s = mean_std(values.values())
        row = {"configuration": label, "baseline": None, "seeds": tuple(values), "values": tuple(values.values()),
               "mean": m, "std": s, "base_mean": math.nan, "base_std": math.nan, "delta": math.nan, "paired": (),
               "paired_mean": math.nan, "paired_std": math.nan, "bar": math.nan, "clears": None}
        bases = set(rows[baseline].dropna())
        if len(bases) > 1:
            raise PairingError(f"configuration {label!r} names {len(bases)} baselines: {sorted(bases)}")
        if bases:
            row.update(_against(groups, label, bases.pop(), values, (m, s), metric, seed, machine))
        out.append(row)
    return pd.DataFrame(out, columns=COLUMNS)


def _against(groups: dict, label: str, base: str, values: dict, stats: tuple, metric: str, seed: str,
             machine: str) -> dict:
    if base not in groups:
        raise PairingError(f"configuration {label!r} is measured against {base!r}, which has no trials here")
    if _machine_of(groups[label], machine, label) != _machine_of(groups[base], machine, base):
        raise PairingError(f"configuration {label!r} and its baseline {base!r} ran on two machines "
                           f"({_machine_of(groups[label], machine, label)} / {_machine_of(groups[base], machine, base)}): "
                           f"runs of two machines are not paired; measure the baseline on the same machine")
    base_values = _by_seed(groups[base], metric, seed, base)
    bm, bs = mean_std(base_values.values())
    diffs = tuple(values[s] - base_values[s] for s in values if s in base_values)
    pm, ps = mean_std(diffs)
    # a side of one seed has no std: the larger of the two is unknown, so there is no bar
    bar = math.nan if math.isnan(stats[1]) or math.isnan(bs) else 2 * max(stats[1], bs)
    delta = stats[0] - bm
    return {"baseline": base, "base_mean": bm, "base_std": bs, "delta": delta, "paired": diffs, "paired_mean": pm,
            "paired_std": ps, "bar": bar, "clears": None if math.isnan(bar) else bool(abs(delta) > bar)}
