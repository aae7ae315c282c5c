"""A study's grid without Ray: the same trial configs through the local runner, the same report.

For a machine that has no Ray (a lone GPU box) or too few cores for Ray's own processes (a
2-core laptop, where a Ray study thrashes). `python studies/<study>.py --local --jobs 2` runs
every row x seed of the grid with the config a Tune trial would get (`study.trial_run_config`),
`--jobs` runs at a time, each in its own process:

    <results>/<study>_local/
      udalab_study.json                  the options (a re-run with other options is refused)
      runs.jsonl                         one line per finished run: trial_id, config, every report
      _train/train-<trial_id>/checkpoint_local/   the run's checkpoint while it runs, then its
                                         history.json only (store.load_history reads it)
      trials.parquet, report.html        as a Ray study writes them

Re-running the command resumes: finished runs are read back from runs.jsonl and a run killed
half-way continues from its checkpoint. A run that fails is not written to runs.jsonl (a re-run
retries it); its error is printed with the run's id and the exit status is 1.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

RUNS_FILE = "runs.jsonl"


def local_trials(study, args, settings: dict) -> list[tuple[str, dict]]:
    """(trial_id, the method's config) of every grid row x seed, in the grid's order."""
    from udalab.studies.study import grid, trial_run_config

    rows, seeds = grid(study, args)
    index = study.grid_rows()
    return [(f"row{index.index(row)}-seed{seed}", trial_run_config({"row": row, "seed": seed}, settings))
            for row in rows for seed in seeds]


def _run(trial_id: str, config: dict, checkpoint_dir: str, threads: int) -> dict:
    started = time.time()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from udalab.methods import run_local

    reports = run_local(config["method"], config, checkpoint_dir=checkpoint_dir)
    state = Path(checkpoint_dir) / "state.pt"
    if state.exists():        # finished: the history stays for the learning curves, the weights go
        state.unlink()
    return {"trial_id": trial_id, "config": config, "reports": reports, "started": started,
            "wall_seconds": time.time() - started}


def read_runs(study_dir: Path) -> dict[str, dict]:
    """{trial_id: run} of the runs finished so far (a half-written last line is skipped)."""
    runs = {}
    path = study_dir / RUNS_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                run = json.loads(line)
            except json.JSONDecodeError:
                continue
            runs[run["trial_id"]] = run
    return runs


def runs_frame(runs: list[dict], fixed: dict):
    """The trials table of finished local runs (store.load_trials's columns)."""
    from udalab.analysis import store

    rows = []
    for run in runs:
        result = {**run["reports"][-1], "time_total_s": run["wall_seconds"]} if run["reports"] else {}
        config = {k: v for k, v in run["config"].items() if k not in ("data_root", "preset", "source", "target")}
        rows.append(store.trial_row(run["trial_id"], "TERMINATED", config, result, fixed))
    return store.trials_frame(rows)


def run_local_study(study, args) -> int:
    from udalab.analysis import store
    from udalab.studies.study import (_check_same_options, check_trial_configs, progress_line, study_dir_name,
                                      trial_settings)

    if args.optuna or args.asha:
        raise SystemExit("--local runs the study's grid; --optuna and --asha need Ray Tune (leave --local off)")
    settings = trial_settings(study, args)
    check_trial_configs(study, args, settings)
    name = study_dir_name(study, args)
    study_dir = Path(args.results).resolve() / name
    if args.restart and study_dir.exists():
        moved = study_dir.with_name(f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        study_dir.rename(moved)
        print(f"--restart: the previous results were moved to {moved}")
    # the grid may grow (--rows, --seeds): finished runs are found by their row and seed
    options = {k: settings[k] for k in ("preset", "data_root", "fixed", "source", "target")}
    _check_same_options(str(study_dir), options)

    trials = local_trials(study, args, settings)
    done = read_runs(study_dir)
    todo = [(tid, cfg) for tid, cfg in trials if tid not in done]
    jobs = max(1, args.jobs)
    threads = max(1, int(args.cpus_per_trial))
    print(f"{name}: {len(trials)} runs, {len(trials) - len(todo)} already finished in {study_dir / RUNS_FILE}; "
          f"{jobs} at a time, {threads} thread(s) each")
    durations, errors = [], []
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(_run, tid, cfg, str(study_dir / "_train" / f"train-{tid}" / "checkpoint_local"),
                               threads): tid for tid, cfg in todo}
        for fut in as_completed(futures):
            tid = futures[fut]
            try:
                run = fut.result()
            except Exception as e:
                errors.append(f"{tid}: {type(e).__name__}: {e}")
                print(f"ERROR in run {tid}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            with (study_dir / RUNS_FILE).open("a") as f:
                f.write(json.dumps(run, default=str) + "\n")
            done[tid] = run
            durations.append(run["wall_seconds"])
            finished = sum(t in done for t, _ in trials)
            print(progress_line(name, len(trials), finished, len(errors),
                                min(jobs, len(trials) - finished - len(errors)), durations, jobs), flush=True)

    # the table holds every run finished in this folder (earlier --rows / --seeds too), in grid order
    order = lambda run: (int(run["trial_id"].split("-")[0][3:]), run["config"].get("seed", 0))  # noqa: E731
    df = runs_frame(sorted(done.values(), key=order), settings["fixed"])
    print(f"{name}: {sum(t in done for t, _ in trials)} of this grid's {len(trials)} runs finished, {len(df)} in all "
          f"-> {store.write_trials(str(study_dir), df)}")
    if study.report is not None and not args.no_report and len(df):
        from udalab.analysis.report import write_report

        print(f"report: {write_report(str(study_dir), study.report, df=df, preset=settings['preset'])}")
    if errors:
        print(f"{len(errors)} run(s) failed; run the same command again to retry them.", file=sys.stderr)
        return 1
    return 0
