"""The result store: a study's Ray Tune experiment directory -> one pandas DataFrame / trials.parquet.

What is read (docs/architecture.md, results layout), local paths or URIs (s3://...) alike,
through `pyarrow.fs.FileSystem.from_uri`:

* the newest `experiment_state-<timestamp>.json` of the study directory (Ray Tune's own
  choice: the largest name). Its `trial_data` is a list of `[trial_json, runtime_json]`
  string pairs: the first holds `trial_id`, `status`, the resolved `config` and
  `relative_logdir` (the trial folder, relative to the study directory); the second holds
  `last_result` (the last result Tune had when it saved the state) and `error_filename`.
* each trial folder's `result.json` (one JSON object per report; the last complete line is
  the newest result, fresher than the state file while a study runs) and, for ERROR trials,
  its `error.txt` (the exception line of the traceback goes into the `error` column).

Rows are in the order Tune created the trials. Trial folders are only ever found through the
experiment state. The study may still be
running: statuses are then those of the last state save (pass `live_status` to override),
metrics those of the latest report. No Ray import, no `ray.init`.

    df = load_trials("results/intrada_split")       # one row per trial
    write_trials("results/intrada_split")           # -> results/intrada_split/trials.parquet
    load_history("results/intrada_split", trial_id) # learning curve (history.json of the Train checkpoint)
    load_histories("results/intrada_split")          # every trial's, one long frame with trial_id
"""
from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from udalab.core import layout
from udalab.core.storage import fs_path, is_dir, is_file, is_local, join_path, list_dir, read_text, uri_join

__all__ = ["SCHEMA_COLUMNS", "METRIC_COLUMNS", "TRIALS_FILE", "PROVENANCE_PREFIX", "is_metric", "load_trials", "write_trials", "read_trials",
           "load_history", "load_histories", "load_pictures", "trial_row", "trials_frame", "config_columns", "metric_columns", "param_series", "StoreError",
           "is_state_file"]

# The fixed columns of trials.parquet (docs/architecture.md). Between `method` and `seed` sit the
# searched hyperparameters (named as in the search space), between `pixel_acc` and `iterations`
# the `iou.<class>` columns, in the order the method reports them.
SCHEMA_COLUMNS: tuple[str, ...] = ("trial_id", "status", "method", "seed", "miou", "pixel_acc",
                                   "iterations", "train_seconds", "wall_seconds", "gpu", "error")
SCHEMA_VERSION = 2  # stored in trials.parquet's metadata (key b"udalab"); bump on a breaking change
# Scalar metrics kept when reported (iiou: the multi-decoder study's instance-level IoU; test.*: the
# held-out split, scored once at the end of a run, methods/engine/uda_data.py).
METRIC_COLUMNS: tuple[str, ...] = ("miou", "pixel_acc", "iiou", "test.miou", "test.pixel_acc")
TEST_PREFIX = "test."
VAL_PREFIX = "val."     # a report's name for the validation metrics when it shows the held-out split (held_out_view)
# Scalar metrics of a part of the evaluation (MML / MS-UDA: day.miou, night.miou, rgb.miou and their
# test.* twins) are kept too: any reported key ending in one of these.
VIEW_METRIC_SUFFIXES = (".miou", ".pixel_acc", ".iiou")


PROVENANCE_PREFIX = "provenance."   # what a trial's result depends on (methods/engine/provenance.py): str columns


def is_metric(name: str) -> bool:
    """A metric column of the trials table (not a hyperparameter)."""
    name = str(name)
    return (name in METRIC_COLUMNS or name.startswith(("iou.", TEST_PREFIX + "iou.", VAL_PREFIX + "iou."))
            or (name.endswith(VIEW_METRIC_SUFFIXES) and ".iou." not in name))


def held_out_view(df: pd.DataFrame, metric: str = "miou", complete: bool = True) -> pd.DataFrame | None:
    """The frame as a report of the held-out split shows it: test.<m> under the plain name <m>,
    every validation metric (the split the settings were chosen on) as val.<m>; nothing else renamed.

    complete: None unless every finished trial scored test.<metric> (a study without a held-out
    split, or with trials run before it existed, keeps its validation numbers). Histories (learning
    curves, scored on val) are renamed with complete=False."""
    if complete:
        test = TEST_PREFIX + metric
        done = df["status"].astype(str) == "TERMINATED" if "status" in df else pd.Series(True, index=df.index)
        if test not in df or not done.any() or pd.to_numeric(df.loc[done, test], errors="coerce").isna().any():
            return None
    return df.rename(columns={c: c[len(TEST_PREFIX):] if c.startswith(TEST_PREFIX) else VAL_PREFIX + c
                              for c in df.columns if is_metric(c)})

TRIALS_FILE = layout.TRIALS_FILE
_STATE_RE = re.compile(r"^experiment_state-.*\.json$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_STRING_COLUMNS = ("trial_id", "status", "method", "gpu", "error")


class StoreError(Exception):
    """The study directory cannot be read; the message names the path and the fix."""


# ---------------------------------------------------------------------------------------
# Ray Tune's files.

def is_state_file(name: str) -> bool:
    """A Tune experiment state file name (experiment_state-<timestamp>.json): its folder is a study."""
    return bool(_STATE_RE.match(name))



STUDY_OPTIONS_FILE = layout.OPTIONS_FILE


def study_options(fs: pafs.FileSystem, study_path: str) -> dict:
    """The study's recorded options ({"preset", "source", "target", "data_root", "fixed", ...});
    {} when absent or unreadable."""
    text = read_text(fs, join_path(study_path, STUDY_OPTIONS_FILE))
    try:
        options = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    if not isinstance(options, dict):
        return {}
    return options


def _experiment_state(fs: pafs.FileSystem, study_path: str) -> dict | None:
    """The newest readable experiment_state-*.json (older ones if the newest is half written)."""
    names = sorted((i.base_name for i in list_dir(fs, study_path) if is_state_file(i.base_name)), reverse=True)
    for name in names:
        text = read_text(fs, join_path(study_path, name))
        if not text:
            continue
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue
    return None


def _loads(x: Any) -> dict:
    if isinstance(x, dict):
        return x
    if isinstance(x, str):
        try:
            out = json.loads(x)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


def _trial_entries(state: dict) -> list[tuple[dict, dict]]:
    out = []
    for entry in state.get("trial_data", []) or []:
        if isinstance(entry, (list, tuple)):
            trial = _loads(entry[0]) if entry else {}
            runtime = _loads(entry[1]) if len(entry) > 1 else {}
        else:
            trial, runtime = _loads(entry), {}
        if trial.get("trial_id"):
            out.append((trial, runtime))
    return sorted(out, key=_creation_order)


def _creation_order(entry: tuple[dict, dict]) -> tuple[float, str]:
    """Trials in the order Tune created them: the counter that starts Tune's experiment_tag
    ("2_lambda_split=0.7152,..."; searchers' trial ids are random), then the trial id."""
    trial = entry[0]
    m = re.match(r"^(\d+)(_|$)", str(trial.get("experiment_tag") or ""))
    return (float(m.group(1)) if m else math.inf, str(trial["trial_id"]))


def _last_json_line(text: str | None) -> dict | None:
    if not text:
        return None
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if isinstance(obj, dict):
            return obj
    return None


def _error_line(text: str | None) -> str | None:
    """The exception line ('ValueError: ...') of a Ray error.txt traceback."""
    if not text:
        return None
    lines = [_ANSI_RE.sub("", l).rstrip() for l in text.splitlines()]
    lines = [l for l in lines if l.strip()]
    if not lines:
        return None
    for line in reversed(lines):
        if not line[0].isspace() and not line.startswith(("Traceback", "File ", "Failure #", "ray::")):
            if not set(line.strip()) <= set("^~ "):
                return line.strip()
    return lines[-1].strip()


def _scalar(v: Any) -> Any:
    """A config value as a Parquet-friendly scalar (lists/dicts/pickled values -> JSON text)."""
    if isinstance(v, dict) and v.get("_type") == "CLOUDPICKLE_FALLBACK":
        return "<pickled value>"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _flatten_config(config: Mapping) -> tuple[str | None, Any, dict]:
    """(method, seed, {hyperparameter: value}) of a trial config; a grid `row` dict is flattened."""
    params: dict[str, Any] = {}
    for k, v in config.items():
        if k in ("row", "seed", "method"):
            continue
        params[k] = _scalar(v)
    row = config.get("row")
    method = config.get("method")
    if isinstance(row, dict):
        for k, v in row.items():
            if k == "method":
                method = v
            elif k == "seed":
                continue
            else:
                params[k] = _scalar(v)  # the row wins over a top-level key, as in the trial's run config
    seed = config.get("seed", row.get("seed") if isinstance(row, dict) else None)
    return (None if method is None else str(method)), seed, params


# ---------------------------------------------------------------------------------------
# Columns.


def _num(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return float("nan") if v is None else float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _int_or_none(v: Any) -> int | None:
    f = _num(v)
    return None if math.isnan(f) or math.isinf(f) else int(f)


def param_series(values: list) -> pd.Series:
    """A hyperparameter column with the narrowest dtype that holds all its values."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return pd.Series(values, dtype="float64")
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return pd.Series(values, dtype="boolean")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present):
        return pd.Series([_num(v) for v in values], dtype="float64")
    if all(isinstance(v, str) for v in present):
        return pd.Series(values, dtype="str")
    return pd.Series([None if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
                      for v in values], dtype="str")


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Metric columns of a trials frame: miou, pixel_acc (iiou), iou.<class> and their test.* twins."""
    return [c for c in df.columns if is_metric(c)]


def config_columns(df: pd.DataFrame) -> list[str]:
    """Columns that identify a configuration: method and the searched hyperparameters (not seed)."""
    fixed = set(SCHEMA_COLUMNS) | set(METRIC_COLUMNS)
    rest = [c for c in df.columns if c not in fixed and not is_metric(c)
            and not str(c).startswith((TEST_PREFIX, PROVENANCE_PREFIX))]
    return (["method"] if "method" in df.columns else []) + rest


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": pd.Series([], dtype="str"), "status": pd.Series([], dtype="str"),
        "method": pd.Series([], dtype="str"), "seed": pd.Series([], dtype="Int64"),
        "miou": pd.Series([], dtype="float64"), "pixel_acc": pd.Series([], dtype="float64"),
        "iterations": pd.Series([], dtype="Int64"), "train_seconds": pd.Series([], dtype="float64"),
        "wall_seconds": pd.Series([], dtype="float64"), "gpu": pd.Series([], dtype="str"),
        "error": pd.Series([], dtype="str"),
    })


# ---------------------------------------------------------------------------------------
# Public API.


def load_trials(study_dir: str | os.PathLike, live_status: Mapping[str, str] | None = None,
                filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """One row per trial of the study's Tune experiment directory (also while it runs); of a folder
    without a Tune state (a `--local` study), the trials.parquet it holds.

    Columns: trial_id, status, method, <hyperparameters as named in the search space, and those the
    study fixed for every trial (udalab_study.json)>, seed, miou, pixel_acc, [iiou], iou.<class>...,
    iterations, train_seconds, wall_seconds, gpu, error.
    dtypes: strings as pandas "str", seed/iterations "Int64" (nullable: a trial without a
    report has none), metrics float64 in percent (NaN when absent), hyperparameters the
    narrowest of boolean / Int64 / float64 / str (lists and dicts as JSON text).
    train_seconds: seconds inside the method loop (summed over resumes); wall_seconds: Tune's
    wall time of the trial (time_total_s, Ray Train start-up included); gpu: the device the
    trial reported ("NVIDIA H100 80GB HBM3", "cpu"; null before the first report).

    live_status: {trial_id: status} overriding the state file's (e.g. from a Tune callback,
    whose `trials` are newer than the last state save).
    filesystem: a pyarrow FileSystem that `study_dir` is a path in (default: from the URI, s3://...,
    or the local file system).
    """
    fs, path = fs_path(study_dir, filesystem)
    if not is_dir(fs, path):
        raise StoreError(f"study directory {study_dir} does not exist; run the study first or pass the "
                         f"folder that holds experiment_state-*.json (results/<study>)")
    state = _experiment_state(fs, path)
    if state is None:  # no Tune state: the table a --local study wrote (studies/local.py), or none yet
        return read_trials(study_dir, filesystem) if is_file(fs, join_path(path, TRIALS_FILE)) else _empty_frame()

    rows: list[dict] = []
    fixed = study_options(fs, path).get("fixed") or {}   # what every trial ran with (--set, budget, Study.fixed)
    for trial, runtime in _trial_entries(state):
        tid = str(trial["trial_id"])
        status = str((live_status or {}).get(tid) or trial.get("status") or "PENDING")
        config = trial.get("config") or {}
        logdir = trial.get("relative_logdir")
        trial_path = join_path(path, logdir) if logdir else None
        result = _last_json_line(read_text(fs, join_path(trial_path, "result.json"))) if trial_path else None
        if not result:
            last = runtime.get("last_result")
            result = last if isinstance(last, dict) and last else {}
        error = None
        if status == "ERROR" and trial_path:
            error_file = runtime.get("error_filename") or "error.txt"
            error = _error_line(read_text(fs, join_path(trial_path, error_file)))
            if error is None:
                error = f"trial failed; see {join_path(trial_path, error_file)}"
        rows.append(trial_row(tid, status, config, result, fixed, error=error))
    return trials_frame(rows)


def trial_row(trial_id: str, status: str, config: Mapping, result: Mapping, fixed: Mapping | None = None,
              error: str | None = None) -> dict:
    """One trial as `trials_frame` takes it: its config (a grid `row` flattened, `fixed` beneath it)
    and its last report `result` (metrics, iteration, train_seconds, gpu; Tune adds time_total_s)."""
    method, seed, params = _flatten_config(config if isinstance(config, Mapping) else {})
    params = {**{k: _scalar(v) for k, v in (fixed or {}).items()}, **params}   # a row or search value wins
    result = dict(result or {})
    gpu = result.get("gpu")
    return dict(trial_id=str(trial_id), status=status, method=method, params=params, seed=seed, result=result,
                iterations=result.get("iteration"),
                train_seconds=result.get("train_seconds", result.get("time_total_s")),
                wall_seconds=result.get("time_total_s"), gpu=None if gpu is None else str(gpu), error=error)


def trials_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """The trials table (columns and dtypes as `load_trials` documents) of `trial_row`s."""
    if not rows:
        return _empty_frame()
    param_order: list[str] = []
    iou_order: list[str] = []
    view_order: list[str] = []          # day.miou, rgb.miou, test.night.miou, ... in report order
    prov_order: list[str] = []
    for r in rows:
        prov_order += [k for k in r["result"] if isinstance(k, str) and k.startswith(PROVENANCE_PREFIX)
                       and k not in prov_order]
        param_order += [k for k in r["params"] if k not in param_order]
        iou_order += [k for k in r["result"] if isinstance(k, str) and k.startswith(("iou.", "test.iou."))
                      and k not in iou_order]
        view_order += [k for k in r["result"] if isinstance(k, str) and is_metric(k) and k not in METRIC_COLUMNS
                       and not k.startswith(("iou.", "test.iou.")) and k not in view_order]
    cols: dict[str, pd.Series] = {
        "trial_id": pd.Series([r["trial_id"] for r in rows], dtype="str"),
        "status": pd.Series([r["status"] for r in rows], dtype="str"),
        "method": pd.Series([r["method"] for r in rows], dtype="str"),
    }
    for k in param_order:
        if k in cols or k in SCHEMA_COLUMNS:
            continue
        cols[k] = param_series([r["params"].get(k) for r in rows])
    cols["seed"] = pd.Series([_int_or_none(r["seed"]) for r in rows], dtype="Int64")
    for k in ("miou", "pixel_acc"):
        cols[k] = pd.Series([_num(r["result"].get(k)) for r in rows], dtype="float64")
    for k in ("iiou", "test.miou", "test.pixel_acc"):   # when some trial reports them
        if any(k in r["result"] for r in rows):
            cols[k] = pd.Series([_num(r["result"].get(k)) for r in rows], dtype="float64")
    for k in view_order + iou_order:
        cols[k] = pd.Series([_num(r["result"].get(k)) for r in rows], dtype="float64")
    cols["iterations"] = pd.Series([_int_or_none(r["iterations"]) for r in rows], dtype="Int64")
    cols["train_seconds"] = pd.Series([_num(r["train_seconds"]) for r in rows], dtype="float64")
    cols["wall_seconds"] = pd.Series([_num(r["wall_seconds"]) for r in rows], dtype="float64")
    cols["gpu"] = pd.Series([r["gpu"] for r in rows], dtype="str")
    cols["error"] = pd.Series([r["error"] for r in rows], dtype="str")
    for k in prov_order:
        cols[k] = pd.Series([r["result"].get(k) for r in rows], dtype="str")
    return pd.DataFrame(cols)


def write_trials(study_dir: str | os.PathLike, df: pd.DataFrame | None = None,
                 live_status: Mapping[str, str] | None = None,
                 filesystem: pafs.FileSystem | None = None) -> Path | str:
    """Write `<study_dir>/trials.parquet` (atomically: a temporary file, then a rename).

    Returns the file's Path (its URI string for a remote study directory).
    """
    if df is None:
        df = load_trials(study_dir, live_status=live_status, filesystem=filesystem)
    fs, path = fs_path(study_dir, filesystem)
    fs.create_dir(path, recursive=True)
    target = join_path(path, TRIALS_FILE)
    tmp = join_path(path, f".{TRIALS_FILE}.{os.getpid()}.tmp")
    table = pa.Table.from_pandas(df, preserve_index=False)
    # plain `string` (not pandas' default large_string) for readers other than pyarrow
    meta = dict(table.schema.metadata or {})
    meta[b"udalab"] = json.dumps({"schema_version": SCHEMA_VERSION,
                                  "study": str(study_dir).rstrip("/").rsplit("/", 1)[-1]}).encode()
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema],
                       metadata=meta)
    table = table.cast(schema)
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, target)
    if filesystem is None and is_local(study_dir):
        return Path(target)
    return uri_join(study_dir, TRIALS_FILE)


def read_trials(study_dir: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """The study's trials.parquet as written by write_trials (no Tune files read)."""
    fs, path = fs_path(study_dir, filesystem)
    return pd.read_parquet(join_path(path, TRIALS_FILE), filesystem=fs)


def _trial_logdir(fs: pafs.FileSystem, path: str, trial_id: str) -> str | None:
    state = _experiment_state(fs, path)
    for trial, _runtime in _trial_entries(state or {}):
        if str(trial["trial_id"]) == str(trial_id) and trial.get("relative_logdir"):
            return join_path(path, trial["relative_logdir"])
    return None


def load_history(study_dir: str | os.PathLike, trial_id: str, filesystem: pafs.FileSystem | None = None
                 ) -> pd.DataFrame:
    """The learning curve of one trial: one row per report, columns as reported.

    Read from the latest checkpoint's `history.json` under `_train/train-<trial_id>/checkpoint_*/`
    (complete across resumes); without one, from the Tune trial folder's progress.csv (which a
    resume restarts).
    """
    fs, path = fs_path(study_dir, filesystem)
    train_dir = join_path(path, layout.TRAIN_DIR, layout.train_run_name(trial_id))
    for name in _checkpoints(fs, train_dir):
        text = read_text(fs, join_path(train_dir, name, layout.HISTORY_FILE))
        if text is None:
            continue
        try:
            history = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(history, list):
            return pd.DataFrame(history)
    logdir = _trial_logdir(fs, path, trial_id)
    if logdir is not None:
        text = read_text(fs, join_path(logdir, "progress.csv"))
        if text:
            df = pd.read_csv(io.StringIO(text))
            return df[[c for c in df.columns if not str(c).startswith("config/")]]
    raise StoreError(f"no history for trial {trial_id}: neither {train_dir}/checkpoint_*/history.json nor a "
                     f"progress.csv in its Tune trial folder (is the trial id right? see the trial_id column "
                     f"of load_trials({str(study_dir)!r}))")


def _checkpoints(fs: pafs.FileSystem, train_dir: str) -> list[str]:
    """The checkpoint folders of a trial's Train run, newest first (checkpoint_local: a --local run)."""
    return layout.newest_first([i.base_name for i in list_dir(fs, train_dir) if i.type == pafs.FileType.Directory])


def load_pictures(study_dir: str | os.PathLike, trial_id: str, filesystem: pafs.FileSystem | None = None
                  ) -> dict | None:
    """The pictures a trial kept at its final evaluation (methods/engine/pictures.py), from its newest
    checkpoint that has them: {"index": index.json, "files": {file name: PNG bytes}}; None when
    it has none (still running, or written before pictures were kept)."""
    fs, path = fs_path(study_dir, filesystem)
    train_dir = join_path(path, layout.TRAIN_DIR, layout.train_run_name(trial_id))
    for name in _checkpoints(fs, train_dir):
        folder = join_path(train_dir, name, layout.PICTURES_DIR)
        text = read_text(fs, join_path(folder, layout.PICTURES_INDEX))
        if text is None:
            continue
        try:
            index = json.loads(text)
        except json.JSONDecodeError:
            continue
        files = {}
        for info in list_dir(fs, folder):
            if info.base_name.endswith(".png"):
                with fs.open_input_stream(join_path(folder, info.base_name)) as f:
                    files[info.base_name] = f.read()
        return {"index": index, "files": files}
    return None


def load_histories(study_dir: str | os.PathLike, trial_ids: Sequence[str] | None = None,
                   filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """The learning curves of many trials (default: every trial of load_trials) in one long frame:
    a `trial_id` column plus the history columns (`iteration`, metrics, losses). Trials without a
    history yet (pending, or failed before their first report) are left out."""
    if trial_ids is None:
        trial_ids = list(load_trials(study_dir, filesystem=filesystem)["trial_id"].astype(str))
    frames = []
    for tid in trial_ids:
        try:
            h = load_history(study_dir, tid, filesystem=filesystem)
        except StoreError:
            continue
        if len(h):
            frames.append(h.assign(trial_id=str(tid)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "iteration"])
