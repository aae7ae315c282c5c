"""The local runner: a study's grid without Ray, the same trial configs, the same report.

For a machine that has no Ray (a lone GPU box) or too few cores for Ray's own processes (a
2-core laptop, where a Ray study thrashes). `python studies/<study>.py --local --jobs 2` runs
every row x seed of the grid with the config a Tune trial would get (`trials.trial_run_config`),
`--jobs` runs at a time, each in its own process:

    <results>/<study>_local/
      udalab_study.json                  the options (a re-run with other options is refused)
      runs.jsonl                         one line per finished run: trial_id, config, every report
      _train/train-<trial_id>/checkpoint_local/   the run's checkpoint: its last one stays, as a Ray
                                         study keeps each run's (`udalab predict` reads the model,
                                         store.load_history the history)
      trials.parquet                     the finished runs' table, rewritten as each run finishes
                                         (so `udalab report` reads a study stopped half-way)
      report.html                        as a Ray study writes it, at the end of the invocation

Re-running the command resumes: finished runs are read back from runs.jsonl and a run killed
half-way continues from its checkpoint. A run that fails is not written to runs.jsonl (a re-run
retries it); its error is printed with the run's id and the exit status is 1. While runs run,
the progress line shows each one's iteration of its total and its time left (from the history
its checkpoint holds).
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

from udalab.core import layout
from udalab.studies.run import progress
from udalab.studies.run.trials import grid, open_study_dir, trial_run_config, trial_settings, write_study_report
from udalab.studies.study import Study

def local_trials(study: Study, args, settings: dict) -> list[tuple[str, dict]]:
    """(trial_id, the method's config) of every grid row x seed, in the grid's order."""
    rows, seeds = grid(study, args)
    index = study.grid_rows()
    return [(layout.grid_trial_id(index.index(row), seed), trial_run_config({"row": row, "seed": seed}, settings))
            for row in rows for seed in seeds]


def checkpoint_dir(study_dir: Path, trial_id: str) -> Path:
    return study_dir / layout.TRAIN_DIR / layout.train_run_name(trial_id) / layout.LOCAL_CHECKPOINT


def run_one(trial_id: str, config: dict, checkpoint: str, threads: int) -> dict:
    """One run in a pool process: the method's loop through engine.run_local, resumable from `checkpoint`.
    Its `reports` are the whole run's: a resumed run's evaluations of the processes before this one
    (its checkpoint's history) and then this process's reports (a run resumed from its last checkpoint
    reports its final metrics again; they are kept once)."""
    started = time.time()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from udalab.methods import run_local

    earlier = read_history(Path(checkpoint))
    reports = run_local(config["method"], config, checkpoint_dir=checkpoint)
    first = reports[0].get("iteration") if reports else None
    earlier = [r for r in earlier if first is None or r.get("iteration", first) < first]
    return {"trial_id": trial_id, "config": config, "reports": earlier + reports, "started": started,
            "wall_seconds": time.time() - started}


def read_history(checkpoint: Path) -> list[dict]:
    """The reports a run's checkpoint folder holds (none before its first checkpoint, or while one is
    being written)."""
    try:
        return json.loads((checkpoint / layout.HISTORY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return []


def read_runs(study_dir: Path) -> dict[str, dict]:
    """{trial_id: run} of the runs finished so far (a half-written last line is skipped)."""
    runs = {}
    path = study_dir / layout.RUNS_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                run = json.loads(line)
            except json.JSONDecodeError:
                continue
            runs[run["trial_id"]] = run
    return runs


def runs_frame(runs: list[dict], settings: dict, rows: list[dict]):
    """The trials table of finished local runs (store.load_trials's columns), each run's config as
    a Tune trial's: its grid row (`rows`, the study's grid_rows, by the row index in its id) and
    seed, the fixed values beneath; a run whose id names no row of `rows`: its config less what
    every trial shares."""
    from udalab.analysis import store

    out = []
    for run in runs:
        result = {**run["reports"][-1], "time_total_s": run["wall_seconds"]} if run["reports"] else {}
        row, seed = grid_order(run["trial_id"])
        config = ({"row": rows[row], "seed": seed} if row < len(rows) else
                  {k: v for k, v in run["config"].items() if k not in ("data_root", "preset", "source", "target")})
        out.append(store.trial_row(run["trial_id"], "TERMINATED", config, result, settings["fixed"]))
    return store.trials_frame(out)


def grid_order(trial_id: str) -> tuple[int, int]:
    """(row, seed) of a run's id, row<i>-seed<s>: the grid's order."""
    return layout.grid_position(trial_id) or (sys.maxsize, 0)


def running_progress(futures: dict[Future, str], study_dir: Path, jobs: int) -> list[progress.TrialProgress]:
    """The progress of the runs the pool runs now, from the last report in each one's checkpoint."""
    out = []
    for tid in [tid for fut, tid in futures.items() if fut.running()][:jobs]:
        history = read_history(checkpoint_dir(study_dir, tid))
        out.append(progress.TrialProgress.of_report(tid, history[-1] if history else None))
    return out


def write_table(study_dir: Path, done: dict[str, dict], settings: dict, rows: list[dict]):
    """trials.parquet of every run finished in this folder (earlier --rows / --seeds too), in grid order."""
    from udalab.analysis import store

    df = runs_frame(sorted(done.values(), key=lambda run: grid_order(run["trial_id"])), settings, rows)
    store.write_trials(str(study_dir), df)
    return df


def run_pool(name: str, study_dir: Path, trials: list[tuple[str, dict]], done: dict[str, dict], jobs: int,
             threads: int, every_s: float = 10.0, after_each: Callable[[], object] = lambda: None) -> list[str]:
    """Run every trial not in `done`, `jobs` at a time; each finished one is appended to runs.jsonl
    at once (and to `done`), then `after_each` is called. Returns the errors, one line each. The
    progress line's time left counts the runs this folder finished before (a resumed study's)."""
    durations = {tid: done[tid]["wall_seconds"] for tid, _ in trials if "wall_seconds" in done.get(tid, {})}
    errors = []
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_one, tid, cfg, str(checkpoint_dir(study_dir, tid)), threads): tid
                   for tid, cfg in trials if tid not in done}
        pending = set(futures)
        while pending:
            ended, pending = wait(pending, timeout=every_s, return_when=FIRST_COMPLETED)
            for fut in ended:
                tid = futures.pop(fut)
                try:
                    run = fut.result()
                except Exception as e:
                    errors.append(f"{tid}: {type(e).__name__}: {e}")
                    print(f"ERROR in run {tid}: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                with (study_dir / layout.RUNS_FILE).open("a") as f:
                    f.write(json.dumps(run, default=str) + "\n")
                done[run["trial_id"]] = run
                durations[tid] = run["wall_seconds"]
                after_each()
            running = running_progress(futures, study_dir, jobs)
            finished = sum(t in done for t, _ in trials)
            shown = {t.name for t in running}
            waiting = [t for t in futures.values() if t not in shown]
            progress.show(progress.progress_line(name, len(trials), finished, len(errors), len(running), durations,
                                                 jobs, running, waiting))
    return errors


def run(study: Study, args) -> int:
    """Run (or resume) the study's grid (--rows, --seeds, --smoke) in local processes; the exit
    status: 0 when every run finished, 1 when one failed (a re-run retries it)."""
    if args.optuna or args.asha:
        raise SystemExit("--local runs the study's grid; --optuna and --asha need Ray Tune (leave --local off)")
    if args.workers != 1:
        raise SystemExit(f"--local runs each run in one process; --workers {args.workers} (data-parallel workers "
                         f"per trial) needs Ray Train: leave --local off")
    if "://" in args.results:
        raise SystemExit(f"--local writes to a folder of this machine; --results {args.results} is a URI: give a "
                         f"folder, or leave --local off (Ray Tune writes to URIs)")
    settings = trial_settings(study, args)
    name, folder = open_study_dir(study, args, settings, grid_recorded=False)
    study_dir = Path(folder)
    # the grid may grow (--rows, --seeds): finished runs are found by their row and seed
    trials = local_trials(study, args, settings)
    done = read_runs(study_dir)
    jobs, threads = max(1, args.jobs), max(1, int(args.cpus_per_trial))
    print(f"{name}: {len(trials)} runs, {sum(t in done for t, _ in trials)} already finished in "
          f"{study_dir / layout.RUNS_FILE}; {jobs} at a time, {threads} thread(s) each")
    errors = run_pool(name, study_dir, trials, done, jobs, threads,
                      after_each=lambda: write_table(study_dir, done, settings, study.grid_rows()))
    df = write_table(study_dir, done, settings, study.grid_rows())
    print(f"{name}: {sum(t in done for t, _ in trials)} of this grid's {len(trials)} runs finished, {len(df)} in all "
          f"-> {study_dir / layout.TRIALS_FILE}")
    if study.report is not None and not args.no_report and len(df):
        report = write_study_report(study, str(study_dir), df, settings["preset"],
                                    static_figures=False if args.no_figures else None)
        print(f"report: {report}")
    if errors:
        print(f"{len(errors)} run(s) failed; run the same command again to retry them.", file=sys.stderr)
        return 1
    return 0
