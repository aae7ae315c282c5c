"""Where a sweep's time goes: the same trials of a mini study run through Ray Tune + Train, as
users run them, and in-process (the `--local` runner: a pool of this machine's processes), in one
invocation, with the same trials at once.

    python benchmarks/sweep_overhead.py                     # hrda_crop_size rows 0 4 7 10, seed 0, its mini budget
    python benchmarks/sweep_overhead.py --rows 4 10 --set iterations=100 --json records/sweep_overhead_NAME/sweep.json
    python benchmarks/sweep_overhead.py --modes local       # one mode only

Per trial (mean over the trials, seconds and share of the trial's wall time):

    before the loop   trial start -> the method loop's first line: Tune's trial actor, Train's
                      controller and worker group, placement group, imports (local: the pool
                      worker's imports, once per process)
    setup             the loop's start -> its first iteration: ImageNet stand-in, datasets, model
    data, step, update, evaluate, checkpoint    the loop's phases (methods/engine/__init__.py Clock)
    other (loop)      the loop's time outside those phases (loss bookkeeping, reports' metrics)
    after the loop    the last report -> trial end: the final checkpoint, teardown, Tune's bookkeeping

and per sweep: wall time, the trials' makespan, what runs outside any trial (Ray's start, the trials
table, the report) and the slot time no trial used. The loops' own phases are the same code in both
modes, so their difference is noise and contention; "before" and "after" are the overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("setup", "data", "step", "update", "evaluate", "checkpoint")
ROWS = ("before the loop", *PHASES, "other (loop)", "after the loop", "trial wall")


def _trial_clock_callback():
    from ray.tune import Callback

    class TrialClock(Callback):
        """Unix times a trial started and ended on the driver, and its last result."""

        def __init__(self):
            self.trials: dict[str, dict] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.trials.setdefault(trial.trial_id, {})["start"] = time.time()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.trials.setdefault(trial.trial_id, {})["result"] = dict(result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.trials.setdefault(trial.trial_id, {})["end"] = time.time()

    return TrialClock()


def breakdown(start: float, end: float, result: dict) -> dict:
    """One trial's seconds per row of ROWS from its start / end times and its last report."""
    loop_start, loop_seconds = result["time.started"], result["train_seconds"]
    out = {"before the loop": loop_start - start, "after the loop": end - (loop_start + loop_seconds),
           "trial wall": end - start}
    for p in PHASES:
        out[p] = result.get(f"time.{p}", 0.0)
    out["other (loop)"] = loop_seconds - sum(out[p] for p in PHASES)
    out["step parts"] = {k.removeprefix("time.step."): v for k, v in result.items() if k.startswith("time.step.")}
    return out


def sweep_summary(trials: list[dict], wall: float, slots: int) -> dict:
    """The sweep's wall time, its trials' makespan and busy slot time, what ran outside trials."""
    starts, ends = [t["start"] for t in trials], [t["end"] for t in trials]
    makespan = max(ends) - min(starts)
    busy = sum(t["trial wall"] for t in trials)
    return {"wall": wall, "trials": len(trials), "at once": slots, "makespan": makespan,
            "outside trials": wall - makespan, "idle slots": slots * makespan - busy,
            "trial seconds": busy}


def _study_args(study, ns, results: str, local: bool):
    from udalab.studies.run.command import build_parser

    argv = ["--results", results, "--restart"] + (["--no-report"] if ns.no_report else [])
    argv += ["--rows", *map(str, ns.rows), "--seeds", *map(str, ns.seeds)]
    for item in ns.set:
        argv += ["--set", item]
    argv += ["--local", "--jobs", str(ns.jobs)] if local else ["--max-concurrent", str(ns.jobs)]
    return build_parser(study).parse_args(argv)


def sweep_through_tune(study, ns, results: str) -> dict:
    from udalab.studies.run.command import run_study

    clock = _trial_clock_callback()
    t0 = time.time()
    rc = run_study(study, _study_args(study, ns, results, local=False), callbacks=[clock])
    wall = time.time() - t0
    if rc:
        raise SystemExit(f"the Tune sweep failed (exit {rc}); see its output above")
    import ray

    ray.shutdown()
    trials = [{**breakdown(t["start"], t["end"], t["result"]), "start": t["start"], "end": t["end"], "id": tid}
              for tid, t in clock.trials.items()]
    return {"trials": trials, "sweep": sweep_summary(trials, wall, ns.jobs)}


def sweep_in_process(study, ns, results: str) -> dict:
    from udalab.studies.run.command import run_study
    from udalab.studies.run.local import read_runs
    from udalab.studies.run.trials import study_dir_name

    args = _study_args(study, ns, results, local=True)
    t0 = time.time()
    rc = run_study(study, args)
    wall = time.time() - t0
    if rc:
        raise SystemExit(f"the local sweep failed (exit {rc}); see its output above")
    runs = read_runs(Path(results) / study_dir_name(study, args))
    trials = []
    for tid, run in runs.items():
        start, end = run["started"], run["started"] + run["wall_seconds"]
        trials.append({**breakdown(start, end, run["reports"][-1]), "start": start, "end": end, "id": tid})
    return {"trials": trials, "sweep": sweep_summary(trials, wall, ns.jobs)}


def _mean(trials: list[dict], key: str) -> float:
    return statistics.mean(t[key] for t in trials)


def markdown(out: dict) -> str:
    """The per-trial and per-sweep tables of a run of this benchmark, as docs/performance.md shows them."""
    modes = [m for m in ("tune", "local") if m in out]
    names = {"tune": "Tune + Train", "local": "in-process (--local)"}
    lines = ["| per trial (mean) | " + " | ".join(f"{names[m]} s | % of trial" for m in modes) + " |",
             "|---|" + "---:|---:|" * len(modes)]
    for row in ROWS:
        cells = []
        for m in modes:
            v, wall = _mean(out[m]["trials"], row), _mean(out[m]["trials"], "trial wall")
            cells += [f"{v:.1f}", f"{100 * v / wall:.0f} %"]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "| sweep | " + " | ".join(names[m] for m in modes) + " |", "|---|" + "---:|" * len(modes)]
    for key in ("wall", "makespan", "outside trials", "idle slots", "trial seconds"):
        lines.append(f"| {key} (s) | " + " | ".join(f"{out[m]['sweep'][key]:.0f}" for m in modes) + " |")
    if len(modes) == 2:
        t, l = out["tune"]["sweep"]["wall"], out["local"]["sweep"]["wall"]
        lines.append(f"| overhead: (Tune − in-process) / in-process | {100 * (t - l) / l:.0f} % | |")
    parts = {}
    for m in modes:
        for t in out[m]["trials"]:
            for k, v in t["step parts"].items():
                parts.setdefault(k, {}).setdefault(m, []).append(v)
    if parts:
        lines += ["", "| inside `step` (mean s per trial) | " + " | ".join(names[m] for m in modes) + " |",
                  "|---|" + "---:|" * len(modes)]
        for k, by in parts.items():
            lines.append(f"| {k} | " + " | ".join(f"{statistics.mean(by[m]):.1f}" if m in by else "" for m in modes)
                         + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="hrda_crop_size")
    p.add_argument("--rows", type=int, nargs="+", default=[0, 4, 7, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as the study's --set")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="trials at once in both modes")
    p.add_argument("--modes", nargs="+", default=["tune", "local"], choices=["tune", "local"])
    p.add_argument("--no-report", action="store_true", help="leave the report out of both sweeps")
    p.add_argument("--results", default=None, help="where both sweeps write (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write every trial's numbers here")
    ns = p.parse_args(argv)
    from udalab.studies.cli import load_study

    study = load_study(ns.study)
    results = ns.results or tempfile.mkdtemp(prefix="udalab-overhead-")
    out = {"study": ns.study, "rows": ns.rows, "seeds": ns.seeds, "set": ns.set, "jobs": ns.jobs,
           "cpus": os.cpu_count()}
    for mode in ns.modes:                       # Tune first: the local pool then starts on a quiet machine
        out[mode] = (sweep_through_tune if mode == "tune" else sweep_in_process)(study, ns, results)
    table = markdown(out)
    print("\n" + table)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({**out, "markdown": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
