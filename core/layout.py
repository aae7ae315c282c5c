"""The on-disk layout of udalab's results, in one place: what a run's checkpoint holds, where a
study keeps its trials, and how a results folder is named. Every reader and writer (the engine,
the runners, the result store, the report) goes through these names.

    <results>/                              $UDALAB_RESULTS, a local folder or s3://...
      index.html                            every study's headline (analysis.report)
      _artifacts/                           what trials share, built once (methods/engine/artifacts.py)
      <study>[_optuna][_smoke][_local]/     one folder per study invocation kind (study_dir_name)
        udalab_study.json                   the options the study runs with (a resume must match)
        trials.parquet, report.html         the trials table and the report
        runs.jsonl                          the local runner's finished runs (one JSON line each)
        optuna.db                           an Optuna search's storage (local results only)
        <Tune's experiment files and trial folders>   a trial folder's result.json names its trial_id
        _train/train-<trial_id>[-seed<s>]/  the trial's Train run: its checkpoints
          checkpoint_<n>/ | checkpoint_local/
            state.pt                        {"iteration", "stage", "state", "rng", "train_seconds", "world"}
            history.json                    every report so far (Tune forgets a resumed trial's)
            config.json                     the run's config (what `load_trained` rebuilds it from)
            pictures/                       the final evaluation's pictures (methods/engine/pictures.py)
              iteration-<n>/                one evaluation's pictures (pictures="every")

    records/<experiment>/                   a measured run kept in the repository (udalab.analysis.records)
      manifest.json                         command, commit, machine, date, cpu_hours, files
      runs.jsonl, trials.parquet, *.json    its data files
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

# A run's checkpoint folder.
STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
CONFIG_FILE = "config.json"
PICTURES_DIR = "pictures"
PICTURES_INDEX = "index.json"
ITERATION_PREFIX = "iteration-"        # pictures/iteration-000100/: one evaluation's pictures

# A study's folder.
OPTIONS_FILE = "udalab_study.json"
TRIALS_FILE = "trials.parquet"
REPORT_FILE = "report.html"
INDEX_FILE = "index.html"
RUNS_FILE = "runs.jsonl"
OPTUNA_DB = "optuna.db"
TRAIN_DIR = "_train"
ARTIFACTS_DIR = "_artifacts"           # the artifact store of every study under a URI results folder
CHECKPOINT_PREFIX = "checkpoint_"
TRAIN_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"   # Ray Train's list of a run's registered checkpoints
LOCAL_CHECKPOINT = "checkpoint_local"  # the local runner's one checkpoint folder of a run

STUDY_SUFFIXES = ("_optuna", "_smoke", "_local")

# A Tune trial folder: <trainable>_<trial_id>_<index>_<params>_<date>, trial_id = <5 hex>_<5 digits>.
TUNE_RESULT_FILE = "result.json"        # one JSON line per report, each with its "trial_id"
TUNE_PARAMS_FILE = "params.json"
_TUNE_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_\d+_")

# The repository's records of measured runs.
RECORDS_DIR = "records"
MANIFEST_FILE = "manifest.json"


_GRID_TRIAL = re.compile(r"row(\d+)-seed(-?\d+)")


def grid_trial_id(row: int, seed: int) -> str:
    """A grid trial's name in both runners, row<i>-seed<s> (i: its index in the study's grid rows)."""
    return f"row{row}-seed{seed}"


def grid_position(trial_id: str) -> tuple[int, int] | None:
    """(row, seed) of a grid trial's name; None for another name (a searched trial's Tune id)."""
    match = _GRID_TRIAL.fullmatch(trial_id)
    return (int(match[1]), int(match[2])) if match else None


def train_run_name(trial_id: str, seed: int | None = None) -> str:
    """The Train run's fixed name (a re-run under it resumes): train-<trial_id>[-seed<s>]."""
    return f"train-{trial_id}" + ("" if seed is None else f"-seed{seed}")


def train_runs_of_trial(trial_dir: Path) -> list[Path]:
    """The Train runs of a Tune trial folder: <study>/_train/train-<trial_id> (or one per seed,
    train-<trial_id>-seed<s>, for a search scored over seeds). The trial id is the one its
    result.json reports, else the one in its folder name (a trial that has not reported yet)."""
    trial_id = None
    results = trial_dir / TUNE_RESULT_FILE
    for line in (results.read_text().splitlines() if results.is_file() else []):
        try:
            trial_id = json.loads(line).get("trial_id")
        except (ValueError, AttributeError):   # a line Tune is writing now
            continue
        if trial_id:
            break
    match = _TUNE_TRIAL_ID.search(trial_dir.name)
    trial_id = trial_id or (match[1] if match else None)
    if trial_id is None:
        raise CheckpointError(f"{trial_dir} looks like a Tune trial folder, but neither its {TUNE_RESULT_FILE} nor "
                              f"its name holds a trial id; pass its Train run folder, "
                              f"<study>/{TRAIN_DIR}/{train_run_name('<trial_id>')}, instead")
    train = trial_dir.parent / TRAIN_DIR
    name = train_run_name(trial_id)
    return sorted(p for p in (train / name, *train.glob(f"{name}-seed*")) if p.is_dir())


def checkpoint_folder(path: Path) -> Path:
    """The newest checkpoint (a folder with state.pt) of the run `path` names: a checkpoint folder or
    its state.pt, a Train run folder (its newest checkpoint_* that holds a state.pt), a Tune trial
    folder of a study's results (its Train run under the study's _train/) or a local runner's run
    folder. Anything else, or a run without a state.pt, is a CheckpointError that names the fix."""
    path = Path(path)
    if path.is_file() and path.name == STATE_FILE:
        return path.parent
    if (path / STATE_FILE).is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist; pass a trial's folder in a study's results, its Train run "
                              f"folder under {TRAIN_DIR}/, or a checkpoint folder")
    runs = [path]
    if (path / TUNE_RESULT_FILE).is_file() or (path / TUNE_PARAMS_FILE).is_file():
        runs = train_runs_of_trial(path)
        if not runs:
            raise CheckpointError(f"Tune trial folder {path} has no Train run under {path.parent / TRAIN_DIR}: the "
                                  f"trial never started training, or its study's {TRAIN_DIR}/ was not copied with it")
        if len(runs) > 1:
            raise CheckpointError(f"Tune trial {path} trained one run per seed: {', '.join(p.name for p in runs)}; "
                                  f"pass one of them ({path.parent / TRAIN_DIR}/<run>)")
    elif (path / TRAIN_DIR).is_dir():
        trials = sorted(p.name for p in (path / TRAIN_DIR).iterdir() if p.is_dir())
        raise CheckpointError(f"{path} is a study's results folder; pass one of its trials' folders or Train runs "
                              f"({path / TRAIN_DIR}/: {', '.join(trials[:5]) or 'none yet'}"
                              f"{', ...' if len(trials) > 5 else ''})")
    names = newest_first([p.name for p in runs[0].iterdir() if p.is_dir()])
    for name in names:
        if (runs[0] / name / STATE_FILE).is_file():
            return runs[0] / name
    raise CheckpointError(f"{runs[0]} holds no checkpoint ({STATE_FILE}{' in ' + ', '.join(names) if names else ''}):"
                          f" the run has saved none yet or its weights were removed (train it again); pass a "
                          f"trial's folder in a study's results, its Train run folder under {TRAIN_DIR}/, or a "
                          f"checkpoint folder")


def study_dir_name(study: str, optuna: bool = False, smoke: bool = False, local: bool = False) -> str:
    """The results folder of a study invocation: <study>[_optuna][_smoke][_local]."""
    return study + "_optuna" * optuna + "_smoke" * smoke + "_local" * local


def study_of_dir(dir_name: str) -> str:
    """The study a results folder belongs to: its name less study_dir_name's suffixes."""
    for suffix in reversed(STUDY_SUFFIXES):
        dir_name = dir_name.removesuffix(suffix)
    return dir_name


def is_checkpoint_dir(name: str) -> bool:
    return name.startswith(CHECKPOINT_PREFIX)


def newest_first(names: list[str]) -> list[str]:
    """Checkpoint folder names, newest first (Ray Train numbers them checkpoint_<n>, zero-padded)."""
    return sorted((n for n in names if is_checkpoint_dir(n)), reverse=True)


def pictures_of_iteration(iteration: int) -> str:
    """The folder (under PICTURES_DIR) of one evaluation's pictures."""
    return f"{ITERATION_PREFIX}{iteration:06d}"


# ---------------------------------------------------------------------------------------
# A checkpoint folder on a local disk (Ray Train hands a run its checkpoint as a local folder).


def write_checkpoint(folder: Path, state: dict, history: list[dict], config: dict | None = None,
                     files: dict[str, bytes] | None = None) -> None:
    """Write a checkpoint folder; state.pt last and atomically (a kill never leaves half of one)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / HISTORY_FILE).write_text(json.dumps(history, default=_json_default))
    if config is not None:
        (folder / CONFIG_FILE).write_text(json.dumps(config, default=_json_default, indent=1))
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE_FILE)


class CheckpointError(RuntimeError):
    """A folder that is not a readable udalab checkpoint; the message names it and the fix."""


def read_checkpoint(folder: Path) -> dict:
    """{"state": state.pt's dict, "history": [...], "config": dict | None, "pictures": {relative
    path: bytes} of the per-evaluation pictures} of a checkpoint folder."""
    import torch

    file = folder / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{folder} holds no {STATE_FILE}: not a udalab checkpoint folder")
    state = torch.load(file, map_location="cpu", weights_only=False)
    missing = {"iteration", "stage", "state", "rng"} - set(state)
    if missing:
        raise CheckpointError(f"{file} is not a udalab checkpoint (no {', '.join(sorted(missing))}); it was written "
                              f"by an older version: start the run over (--restart)")
    history = folder / HISTORY_FILE
    config = folder / CONFIG_FILE
    return {"state": state,
            "history": json.loads(history.read_text()) if history.is_file() else [],
            "config": json.loads(config.read_text()) if config.is_file() else None,
            "pictures": {str(f.relative_to(folder)): f.read_bytes()
                         for f in sorted((folder / PICTURES_DIR).glob(f"{ITERATION_PREFIX}*/*"))}}


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return str(o)
