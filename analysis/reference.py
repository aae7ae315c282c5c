"""Published numbers of the papers udalab reproduces, for the reports to put beside the measured ones.

The numbers live in `reference_data.json` (package data), transcribed from the papers (see
each row's `source`); all IoU / accuracy values are in percent (the multi-decoder paper's
fractions were multiplied by 100). One reference = one published table on one benchmark:

    reference("intrada")      # label, method, lambda_split, entropy_norm, miou, benchmark, source, note
    REFERENCES                # all names
    reference_info("intrada") # title, benchmark, notes, config / metric column names, facts
    matching_rows("intrada", {"method": "intrada", "lambda_split": 0.67})   # -> the 46.3 row

A row carries the udalab configuration it corresponds to in its config columns (NaN where
a column does not apply); a row with no config values (e.g. "AdvEnt + intra-domain
adaptation") has no udalab counterpart and is only listed.
"""
from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["REFERENCES", "reference", "reference_info", "matching_rows", "config_matches", "is_missing", "values_equal"]

_DATA_FILE = "reference_data.json"


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("udalab.analysis").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)["references"]


REFERENCES: tuple[str, ...] = tuple(_data())


def _get(name: str) -> dict:
    refs = _data()
    if name not in refs:
        raise KeyError(f"no published reference named {name!r}; available: {', '.join(refs)}")
    return refs[name]


def reference_info(name: str) -> dict:
    """Title, benchmark, notes, facts and the config / metric column names of one reference."""
    ref = _get(name)
    return {k: v for k, v in ref.items() if k != "rows"} | {"name": name}


def reference(name: str) -> pd.DataFrame:
    """The published rows of one reference: label, config columns, metric columns, benchmark, source, note."""
    ref = _get(name)
    config, metrics = list(ref["config"]), list(ref["metrics"])
    columns = ["label", *config, *metrics, "benchmark", "source", "note"]
    df = pd.DataFrame([{c: r.get(c) for c in columns} for r in ref["rows"]], columns=columns)
    for c in metrics:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in ("label", "benchmark", "source", "note"):
        df[c] = df[c].astype("str")
    return df


def is_missing(v: Any) -> bool:
    """None, pandas' NA or a float NaN: a value a table cell or a config leaves unset."""
    try:
        return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
    except TypeError:
        return False


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def values_equal(a: Any, b: Any) -> bool:
    """Config values equal as a published row means them: booleans by truth, numbers within 1e-9,
    anything else as text; a missing value equals nothing."""
    if is_missing(a) or is_missing(b):
        return False
    if _as_bool(a) is not None or _as_bool(b) is not None:
        return _as_bool(a) is not None and _as_bool(a) == _as_bool(b)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def config_matches(ref_row: Mapping, config: Mapping, config_columns) -> bool:
    """True when every config value the published row sets is present and equal in `config`."""
    wanted = {c: ref_row.get(c) for c in config_columns if not is_missing(ref_row.get(c))}
    if not wanted:
        return False
    return all(c in config and values_equal(config[c], v) for c, v in wanted.items())


def matching_rows(name: str, config: Mapping) -> pd.DataFrame:
    """The published rows of `name` that correspond to one udalab configuration (dict of column -> value)."""
    df = reference(name)
    cols = reference_info(name)["config"]
    mask = [config_matches(row, config, cols) for row in df.to_dict("records")]
    return df[pd.Series(mask, index=df.index, dtype=bool)]
