"""Study declaration and the Ray Tune runner every study script shares.

A study declares what to run; this module runs it:

    Study(method, data, rows/search space, seeds, metric, budget, report)
      -> ray.tune.Tuner (grid_search over table rows x seeds, or OptunaSearch; ASHA optional)
      -> one trial = a Tune function that runs a Ray Train TorchTrainer(method.train_loop)
      -> results/<study>/ (restorable), trials.parquet, report.html

Re-running a study resumes it (Tuner.restore: finished trials kept, errored and unfinished
ones continue from their last checkpoint); --restart moves the old results aside.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("udalab")

# Ray settings for this project (../shared/RAY_NOTES.md).
_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
    # reuse_actors (below): Tune runs the next trial in a finished trial's actor only once that
    # trial's function thread has returned (Ray Train's teardown), and waits 2 s for it by default;
    # a slower teardown (a loaded machine, a restarted worker group) errored the next trial
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
}
# On this machine only (no --address): what a one-node sweep does not need costs no process or poll
# per trial (docs/performance.md): the preemption watcher actor (a node here is never drained by a
# cloud), Train's Prometheus metrics (nothing scrapes them), and a 2 s wait for a finished worker.
_RAY_LOCAL_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
DRIVER_RESOURCE = "TRAIN_DRIVER"  # custom resource that gates how many trial drivers a node hosts


@dataclasses.dataclass
class Study:
    """What a study runs. Only declarations: the runner below does the rest.

    rows:    the table's rows for a grid study; each row is a dict with "method" (default:
             `method`) and hyperparameter overrides named as the method's dataclass fields.
             Every row runs once per seed.
    search:  an Optuna search space {name: tune.uniform(...) ...} over `method`'s
             hyperparameters, `num_samples` trials (used with --optuna).
    fixed:   hyperparameter overrides for every trial.
    budget:  per-preset overrides of every trial ({"mini": {"iterations": 300}}): a shorter mini
             schedule that keeps the paper-scale run (--data-root) at the paper's defaults.
    smoke_rows: indices of the rows --smoke keeps (it also uses one seed and the "smoke" preset).
    gpus_per_worker, max_failures: what a trial asks for on a cluster (see trial_resources).
    source, target: the datasets every trial adapts between; `--set source=...` or a row's
             "source" overrides them (e.g. an oracle row trained on the target).
    """

    name: str
    method: str
    report: Any = None                                   # analysis.report.ReportSpec
    source: str = "gta5"
    target: str = "cityscapes"
    rows: list[dict] = dataclasses.field(default_factory=lambda: [{}])
    seeds: tuple[int, ...] = (0, 1, 2)
    search: dict | None = None
    num_samples: int = 16
    metric: str = "miou"
    mode: str = "max"
    fixed: dict = dataclasses.field(default_factory=dict)
    smoke_rows: tuple[int, ...] = (0, 1)
    description: str = ""
    budget: dict = dataclasses.field(default_factory=dict)  # per preset: {"mini": {"iterations": 300}}
    gpus_per_worker: float = 1.0       # on a cluster: each Train worker asks for this many GPUs
    max_failures: int = 3              # on a cluster: restarts of a trial from its checkpoint (lost nodes)

    def grid_rows(self) -> list[dict]:
        return [{"method": self.method, **row} for row in self.rows]


# ---------------------------------------------------------------------------------------
# Command line.


def build_parser(study: Study | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python studies/{study.name}.py" if study else "udalab run",
        description=(study.description or f"Run the {study.name} study") if study else "Run a study",
    )
    p.add_argument("--smoke", action="store_true", help="seconds-scale run (tiny schedule, one seed, few rows)")
    p.add_argument("--optuna", action="store_true", help="run the study's Optuna search instead of its grid")
    p.add_argument("--asha", action="store_true", help="stop weak trials early with ASHA")
    p.add_argument("--num-samples", type=int, default=None, help="Optuna trials (default: the study's)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the real datasets as <root>/<name> (gta5/, cityscapes/); "
                        "unset: the embedded mini data")
    p.add_argument("--preset", default=None, choices=["mini", "paper", "smoke"],
                   help="hyperparameter preset (default: paper with --data-root, else mini)")
    p.add_argument("--results", default=os.environ.get("UDALAB_RESULTS", "results"),
                   help="results folder, local path or s3://... (default: $UDALAB_RESULTS, else ./results; "
                        "cluster.yaml sets it to the results bucket)")
    p.add_argument("--address", default=None, help="Ray cluster address ('auto' on a cluster started by ray up)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (data-parallel) per trial")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, split over its workers (default: 1 per worker if the cluster has GPUs)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial, split over its workers")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: what fits here; on a cluster, no cap: the autoscaler adds nodes)")
    p.add_argument("--max-failures", type=int, default=None,
                   help="restarts of a trial from its last checkpoint after a failure, e.g. a lost node "
                        "(default: the study's on a cluster, 0 here)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter of every trial (JSON value), e.g. --set iterations=2000")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds of every grid row (default: the study's, e.g. 0 1 2)")
    p.add_argument("--rows", type=int, nargs="+", default=None, metavar="I",
                   help="run only these grid rows (0-based, in the study's order; default: all)")
    p.add_argument("--local", action="store_true",
                   help="run the grid without Ray, --jobs runs at a time in this machine's processes, into "
                        "<results>/<study>_local (for a machine without Ray, such as a lone GPU box)")
    p.add_argument("--jobs", type=int, default=1, help="with --local: runs at once (each --cpus-per-trial threads)")
    p.add_argument("--restart", action="store_true", help="move the old results aside and start over")
    p.add_argument("--no-report", action="store_true", help="skip writing report.html at the end")
    p.add_argument("--ray-status", action="store_true",
                   help="print Ray Tune's full status table instead of the one-line progress")
    return p


def main(study: Study, argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser(study).parse_args(argv)
    return run_study(study, args)


# ---------------------------------------------------------------------------------------
# The trial: a Tune function that runs one Ray Train run.


def _trial(config: dict, settings: dict) -> None:
    """One Tune trial = one Ray Train run of the method, resumable under a fixed name; in a search
    over several seeds (settings["search_seeds"]), one Train run per seed (see _trial_over_seeds)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    if len(settings.get("search_seeds") or ()) > 1:
        return _trial_over_seeds(config, settings, trial_id)
    _trainer(trial_run_config(config, settings), settings, f"train-{trial_id}", [TuneReportCallback()]).fit()


def _trainer(method_config: dict, settings: dict, name: str, callbacks: list):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from udalab.methods import train_loop

    workers = settings["workers"]
    per_worker = {"CPU": settings["cpus_per_trial"] / workers}
    if settings["gpus_per_trial"]:
        per_worker["GPU"] = settings["gpus_per_trial"] / workers
    return TorchTrainer(
        train_loop,                                      # opens the run config["method"] names
        train_loop_config=method_config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(settings["gpus_per_trial"]),
                                     resources_per_worker=per_worker),
        run_config=RunConfig(
            name=name,                                   # fixed name: a re-run resumes this run
            storage_path=settings["train_storage"],
            callbacks=callbacks,
            # a lost node or worker: the run restarts from its latest checkpoint, this many times
            failure_config=FailureConfig(max_failures=settings.get("max_failures", 0)),
            # resume needs the latest checkpoint only (its history.json holds every report): a
            # DAFormer mini trial kept 3 x 43-58 MB before, a paper-size one tens of GB
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )


def _trial_over_seeds(config: dict, settings: dict, trial_id: str) -> None:
    """A searched configuration scored on every seed of the study: one Train run per seed
    (train-<trial>-seed<s>, each resumable), and after each a report to Tune of the mean over
    the seeds so far (the objective Optuna sees at the end), their sample std (std.miou,
    std.test.miou) and `seeds` done. ASHA, if on, stops a configuration after any seed."""
    import ray.tune

    finals = []
    for seed in settings["search_seeds"]:
        result = _trainer(trial_run_config({**config, "seed": seed}, settings), settings,
                          f"train-{trial_id}-seed{seed}", []).fit()
        finals.append(dict(result.metrics or {}))
        ray.tune.report(seed_summary(finals, done=len(finals) == len(settings["search_seeds"])))


def seed_summary(finals: list[dict], done: bool) -> dict:
    """The mean over seeds of every numeric metric of the runs' final reports, the sample std of
    the headline ones, the number of seeds; text (provenance, stage) from the last run. `done`
    only after the last seed (Tune ends a trial at a result that says done)."""
    import statistics

    out = {k: v for k, v in finals[-1].items() if isinstance(v, str)}
    keys = [k for k, v in finals[-1].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for k in keys:
        vals = [f[k] for f in finals if isinstance(f.get(k), (int, float)) and f[k] == f[k]]
        if vals:
            out[k] = statistics.mean(vals)
    for k in ("miou", "test.miou"):
        vals = [f[k] for f in finals if isinstance(f.get(k), (int, float))]
        if len(vals) > 1:
            out[f"std.{k}"] = statistics.stdev(vals)
    out["iteration"] = finals[-1].get("iteration")
    out["seeds"] = len(finals)
    out["done"] = done
    return out


def trial_settings(study: Study, args) -> dict:
    """What every trial of one invocation shares: method, data, preset and fixed hyperparameters.

    The data is the study's own (source, target), unless `--set source=...` / `target=...`
    names another; the data roots cover every dataset a row names too."""
    preset = args.preset or ("smoke" if args.smoke else ("paper" if args.data_root else "mini"))
    fixed = {**study.fixed, **study.budget.get(preset, {}), **parse_sets(args.set)}
    source, target = fixed.pop("source", study.source), fixed.pop("target", study.target)
    names = {source, target} | {row[k] for row in study.rows for k in ("source", "target") if k in row}
    return dict(method=study.method, source=source, target=target, preset=preset, fixed=fixed,
                data_root=_data_roots(args.data_root, sorted(names)))


def trial_run_config(config: dict, settings: dict) -> dict:
    """The method's config of one trial: study defaults < fixed (--set, budget) < searched values
    and seed < the grid row. Nothing overwrites what a row or --set declares."""
    method_config = {"method": settings["method"], "source": settings["source"], "target": settings["target"],
                     "data_root": settings["data_root"], "preset": settings["preset"], **settings["fixed"]}
    method_config.update({k: v for k, v in config.items() if k != "row"})
    method_config.update(config.get("row", {}))
    return method_config


# ---------------------------------------------------------------------------------------
# The runner.


def progress_line(name: str, total: int, finished: int, errored: int, running: int,
                  durations: list[float], concurrent: int) -> str:
    """One line of a sweep's progress: trials finished / total and the time left, estimated from
    the mean wall time of the trials finished so far and the trials that run at once."""
    line = f"{name}: {finished}/{total} trials finished"
    if errored:
        line += f", {errored} errored"
    line += f", {running} running"
    left = total - finished - errored
    if durations and left > 0:
        mean = sum(durations) / len(durations)
        waves = -(-left // max(1, concurrent))        # ceil: trials run `concurrent` at a time
        line += f"; ~{mean * waves / 60:.0f} min left ({mean / 60:.1f} min a trial, {max(1, concurrent)} at once)"
    elif left > 0:
        line += "; time left: after the first trial finishes"
    return line


def _progress_callback():
    import sys

    from ray.tune import Callback

    class ProgressLine(Callback):
        """Prints `progress_line` when a trial ends (and every `every_s` while trials report); on a
        terminal it rewrites one line."""

        def __init__(self, name: str, total: int, concurrent: int, every_s: float = 20.0):
            self.name, self.total, self.concurrent, self.every_s = name, total, concurrent, every_s
            self.started: dict[str, float] = {}
            self.durations: list[float] = []
            self.ended = self.failed = 0
            self._last = 0.0

        def _show(self, trials, force: bool = False) -> None:
            if not force and time.time() - self._last < self.every_s:
                return
            self._last = time.time()
            status = [t.status for t in trials]
            # Tune calls on_trial_complete before it marks the trial TERMINATED: count what this saw end
            finished, errored = max(status.count("TERMINATED"), self.ended), max(status.count("ERROR"), self.failed)
            running = max(0, status.count("RUNNING") - (finished - status.count("TERMINATED"))
                          - (errored - status.count("ERROR")))
            line = progress_line(self.name, max(self.total, len(trials)), finished, errored, running,
                                 self.durations, self.concurrent)
            if sys.stdout.isatty():
                sys.stdout.write("\r" + line.ljust(100))
            else:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.time()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._show(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if trial.trial_id in self.started:
                self.durations.append(time.time() - self.started.pop(trial.trial_id))
            self.ended += 1
            self._show(trials, force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.started.pop(trial.trial_id, None)
            self.failed += 1
            self._show(trials, force=True)

    return ProgressLine


def _trials_table_callback():
    from ray.tune import Callback

    class TrialsTable(Callback):
        """Keeps results/<study>/trials.parquet current while the study runs."""

        def __init__(self, study_dir: str, every_s: float = 30.0):
            self.study_dir, self.every_s, self._last = study_dir, every_s, 0.0

        def _write(self, trials, force: bool = False) -> None:
            if not force and time.time() - self._last < self.every_s:
                return
            self._last = time.time()
            from udalab.analysis import store

            try:
                store.write_trials(self.study_dir, live_status={t.trial_id: t.status for t in trials})
            except Exception as e:  # the table is a convenience while running; never kill the study
                log.warning("could not update trials.parquet: %s", e)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._write(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._write(trials, force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._write(trials, force=True)

    return TrialsTable


def study_dir_name(study: Study, args) -> str:
    """The study's results folder: <study>[_optuna][_smoke][_local] (--local: the grid without Ray)."""
    name = study.name + ("_optuna" if args.optuna else "")
    return name + ("_smoke" if args.smoke else "") + ("_local" if args.local else "")


def study_of_dir(dir_name: str) -> str:
    """The study a results folder belongs to: its name less study_dir_name's suffixes."""
    return dir_name.removesuffix("_local").removesuffix("_smoke").removesuffix("_optuna")


def run_study(study: Study, args, callbacks: list | None = None) -> int:
    """Run (or resume) `study` with the command line's `args`; `callbacks`: more Ray Tune callbacks
    (benchmarks/sweep_overhead.py times trials with one)."""
    if args.local:
        from udalab.studies.local import run_local_study

        return run_local_study(study, args)
    for k, v in {**_RAY_ENV, **({} if args.address else _RAY_LOCAL_ENV)}.items():
        os.environ.setdefault(k, v)
    import ray
    from ray import tune
    from ray.tune import RunConfig, Tuner

    from udalab.analysis import store

    from udalab.core import storage

    TrialsTable, ProgressLine = _trials_table_callback(), _progress_callback()
    results = _abs_uri(args.results)
    name = study_dir_name(study, args)
    study_dir = storage.uri_join(results, name)
    shared = trial_settings(study, args)
    preset = shared["preset"]

    if args.restart and _exists(study_dir):
        moved = storage.uri_join(results, f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        _move(study_dir, moved)
        print(f"--restart: the previous results were moved to {moved}")

    check_trial_configs(study, args, shared)   # a bad value stops here, before Ray or any trial starts
    options = {k: shared[k] for k in ("preset", "data_root", "fixed", "source", "target")}
    if args.seeds:  # recorded only when given, so studies started before this option still resume
        options["seeds"] = list(args.seeds)
    if getattr(args, "rows", None):
        options["rows"] = list(args.rows)
    _check_same_options(study_dir, options)

    _init_ray(args)
    cluster = ray.cluster_resources()
    gpus, max_concurrent, max_failures = trial_resources(study, args, cluster)
    if args.address and "://" not in args.results and len([n for n in ray.nodes() if n.get("Alive")]) > 1:
        raise SystemExit(f"--results {args.results} is a folder on this node only, and this Ray cluster has several "
                         f"nodes: Ray Train's workers cannot write there. Pass --results s3://BUCKET/PREFIX (or a "
                         f"shared file system mounted on every node); docs/cluster.md")
    settings = dict(shared, workers=args.workers, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
                    max_failures=max_failures, train_storage=storage.uri_join(study_dir, "_train"),
                    search_seeds=search_seeds(study, args) if args.optuna else None)
    trainable = tune.with_resources(tune.with_parameters(_trial, settings=settings), {DRIVER_RESOURCE: 1})

    param_space, tune_config = _search(study, args, max_concurrent, study_dir=study_dir, study_name=name)

    if Tuner.can_restore(study_dir):
        print(f"Resuming {name} from {study_dir} (finished trials are kept; --restart to start over)")
        tuner = Tuner.restore(study_dir, trainable=trainable, resume_unfinished=True, resume_errored=True,
                              param_space=param_space)
    else:
        total = tune_config.num_samples if args.optuna else len(param_space["row"]["grid_search"]) * len(
            param_space["seed"]["grid_search"])
        tuner = Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=RunConfig(name=name, storage_path=results, verbose=2 if args.ray_status else 0,
                                           callbacks=[TrialsTable(study_dir),
                                                      ProgressLine(name, total, max_concurrent or 0),
                                                      *(callbacks or [])]))
    t0 = time.time()
    grid = tuner.fit()
    store_path = store.write_trials(study_dir)
    df = store.load_trials(study_dir)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print(f"\n{name}: {len(df)} trials {counts} in {time.time() - t0:.0f} s -> {store_path}")
    if study.report is not None and not args.no_report:
        from udalab.analysis.report import write_report

        report = write_report(study_dir, study.report, df=df, preset=preset)
        print(f"report: {report}")
    unfinished = int((df["status"] != "TERMINATED").sum()) if len(df) else 0
    if grid.errors:
        for error in grid.errors:
            print(f"ERROR in trial: {error}", file=sys.stderr)
    if unfinished:
        print(f"{unfinished} trial(s) did not finish; run the same command again to resume them.", file=sys.stderr)
        return 1
    return 0


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set iterations=2000")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


OPTIONS_FILE = "udalab_study.json"


def _check_same_options(study_dir: str, options: dict) -> None:
    """A resumed study must run with the options it started with, or its rows would mix."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(study_dir)
    file = f"{path}/{OPTIONS_FILE}"
    if fs.get_file_info(file).type == pafs.FileType.File:
        with fs.open_input_stream(file) as f:
            before = json.loads(f.read())
        if before != json.loads(json.dumps(options)):
            changed = sorted(k for k in set(before) | set(options) if before.get(k) != options.get(k))
            raise SystemExit(
                f"{study_dir} was started with other options ({', '.join(changed)}: was "
                f"{ {k: before.get(k) for k in changed} }, now { {k: options.get(k) for k in changed} }). "
                f"Re-run with the same options to resume, or add --restart to start over "
                f"(the old results are moved aside, not deleted).")
        return
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(file) as f:
        f.write(json.dumps(options, indent=1).encode())


OPTUNA_DB = "optuna.db"


def optuna_storage(study_dir: str):
    """The Optuna RDB storage of a search: sqlite:///<study_dir>/optuna.db (local results only;
    None for s3://..., where the searcher keeps its study in memory and in Tune's searcher state).

    OptunaSearch pickles its storage with its state; RDBStorage pickles its URL and reconnects on
    restore, so a resumed study keeps writing to the same file. `optuna-dashboard sqlite:///...` opens it.
    """
    if "://" in study_dir and not study_dir.startswith("file://"):
        return None
    import optuna

    path = Path(study_dir.removeprefix("file://")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path / OPTUNA_DB}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def check_trial_configs(study: Study, args, settings: dict) -> None:
    """The config of every grid row this invocation runs (--rows, --smoke) or, with --optuna, each
    searched value at both ends of its range, through the method's own hyperparameter checks: a
    bad name or value raises SystemExit naming it. (A --set for one method's rows does not trip
    over another method's rows left out by --rows.)"""
    from udalab.methods import check_config
    from udalab.methods.engine import ConfigError

    if args.optuna and study.search:
        configs = []
        for name, domain in study.search.items():
            ends = getattr(domain, "categories", None) or [getattr(domain, "lower", None), getattr(domain, "upper", None)]
            configs += [{name: v} for v in ends if v is not None]
    else:
        configs = [{"row": row} for row in grid(study, args)[0]]
    for config in configs or [{}]:
        method_config = trial_run_config({**config, "seed": study.seeds[0]}, settings)
        try:
            check_config(method_config, data=True)
        except ConfigError as e:
            shown = config.get("row", config)
            raise SystemExit(f"{study.name}: {e} (in {shown}); no trial was started") from e


def search_seeds(study: Study, args) -> list[int]:
    """The seeds each searched configuration is scored on: the study's (or --seeds); --smoke: the
    first, unless --seeds names them."""
    seeds = list(getattr(args, "seeds", None) or study.seeds)
    return seeds if getattr(args, "seeds", None) or not args.smoke else seeds[:1]


def grid(study: Study, args) -> tuple[list[dict], list[int]]:
    """The grid's rows and seeds of one invocation (--smoke: the smoke rows and the first seed)."""
    rows = study.grid_rows()
    seeds = list(getattr(args, "seeds", None) or study.seeds)
    picked = list(getattr(args, "rows", None) or range(len(rows)))
    bad = [i for i in picked if not 0 <= i < len(rows)]
    if bad:
        raise SystemExit(f"--rows {bad}: the study has rows 0..{len(rows) - 1}")
    if args.smoke:
        picked, seeds = [i for i in study.smoke_rows if i in picked] or picked, seeds[:1]
    return [rows[i] for i in picked], seeds


def _search(study: Study, args, max_concurrent: int, study_dir: str | None = None, study_name: str | None = None):
    from ray import tune
    from ray.tune import TuneConfig
    from ray.tune.schedulers import ASHAScheduler

    scheduler = None
    if args.asha:
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=study.metric, mode=study.mode,
                                  grace_period=1, reduction_factor=2)
    # reuse_actors: a trial's Tune actor (it only drives Train's controller) runs the next trial too,
    # instead of a new process importing torch and Ray Train again. Not when a scheduler stops trials:
    # a stopped trial's function thread stays inside TorchTrainer.fit() (its Train run goes on), so
    # reusing its actor fails after TUNE_FUNCTION_THREAD_TIMEOUT_S, the next trial errors and the
    # search hangs (an 8-trial MML search did, 2026-12-01); an actor that is not reused is ended
    # instead, and the Train controller it owns, with its workers, ends with it
    reuse = scheduler is None
    if args.optuna:
        if not study.search:
            raise SystemExit(f"study {study.name} declares no Optuna search space")
        from ray.tune.search.optuna import OptunaSearch

        seeds = search_seeds(study, args)     # several: each trial runs them all (_trial_over_seeds)
        space = {"method": study.method, **study.search, **({"seed": seeds[0]} if len(seeds) == 1 else {})}
        n = args.num_samples or (2 if args.smoke else study.num_samples)
        storage = optuna_storage(study_dir) if study_dir else None
        searcher = OptunaSearch(metric=study.metric, mode=study.mode, seed=study.seeds[0], storage=storage,
                                study_name=study_name or study.name)
        cfg = TuneConfig(search_alg=searcher, num_samples=n, max_concurrent_trials=max_concurrent,
                         scheduler=scheduler, reuse_actors=reuse)
        return space, cfg
    rows, seeds = grid(study, args)
    space = {"row": tune.grid_search(rows), "seed": tune.grid_search(seeds)}
    metric_mode = {} if scheduler else {"metric": study.metric, "mode": study.mode}
    return space, TuneConfig(num_samples=1, max_concurrent_trials=max_concurrent, scheduler=scheduler,
                             reuse_actors=reuse, **metric_mode)


def _init_ray(args) -> None:
    import ray

    if ray.is_initialized():
        return
    if args.address:
        # the cluster's processes were not started from this shell: the settings above reach the
        # trials' actors (and, through Ray Train, its controllers and workers) as the job's env
        ray.init(address=args.address, runtime_env={"env_vars": {k: os.environ[k] for k in _RAY_ENV}})
        return
    cpus = os.cpu_count() or 2
    # Each trial's driver holds one TRAIN_DRIVER; as many as trials can run at once.
    # The dashboard must run: Ray Train's placement-group cleaner asks its State API, and
    # without it finished trials' worker resources are never freed (RAY_NOTES.md).
    ray.init(num_cpus=cpus, resources={DRIVER_RESOURCE: cpus}, include_dashboard=True,
             dashboard_host="127.0.0.1", log_to_driver=True, configure_logging=False)


def trial_resources(study: Study, args, cluster: dict) -> tuple[float, int | None, int]:
    """(GPUs per trial, trials at once, retries of a failed trial) of one invocation.

    On a cluster (--address) a trial asks for the GPUs the study declares (gpus_per_worker x
    --workers) whatever the cluster holds now, so that the autoscaler sees the requests and starts
    GPU nodes; trials are not capped (Tune queues them as nodes arrive); a trial that loses a node
    restarts from its last checkpoint up to study.max_failures times. On this machine: its GPUs
    if it has any, as many trials as fit, and no retry (a failure here is a bug to see at once).
    --gpus-per-trial, --max-concurrent and --max-failures override each."""
    on_cluster = bool(args.address)
    if args.gpus_per_trial is not None:
        gpus = args.gpus_per_trial
    elif on_cluster:
        gpus = study.gpus_per_worker * args.workers
    else:
        gpus = float(args.workers) if cluster.get("GPU", 0) >= 1 else 0.0
    concurrent = args.max_concurrent or (None if on_cluster else _fits(cluster, args.cpus_per_trial, gpus))
    failures = args.max_failures if getattr(args, "max_failures", None) is not None else (
        study.max_failures if on_cluster else 0)
    return gpus, concurrent, failures


def _fits(cluster: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    n = int(cluster.get("CPU", 1) // max(cpus_per_trial, 1e-9))
    if gpus_per_trial:
        n = min(n, int(cluster.get("GPU", 0) // gpus_per_trial))
    n = min(n, int(cluster.get(DRIVER_RESOURCE, n)))
    return max(n, 1)


def _data_roots(root: str | None, names) -> dict | None:
    """{root key: <root>/<root key>} for the datasets named (every MFNet view reads <root>/mfnet)."""
    if not root:
        return None
    from udalab.datasets import root_key

    roots = {root_key(name): str(Path(root) / root_key(name)) for name in names}
    for name, path in roots.items():
        if not Path(path).is_dir():
            raise SystemExit(f"--data-root {root}: expected the {name} dataset in {path} (a folder named "
                             f"'{name}' under the data root); download it there or leave --data-root unset "
                             f"to use the embedded mini data")
    return roots


def _abs_uri(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def _exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(uri)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def _move(src: str, dst: str) -> None:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(src)
    _, q = pafs.FileSystem.from_uri(dst)
    fs.move(p, q)
