"""The Ray runner: a study as a Ray Tune sweep, each trial one Ray Train run of its method.

    Study -> ray.tune.Tuner (grid_search over rows x seeds, or OptunaSearch; ASHA optional)
          -> one trial = a Tune function that runs a Ray Train TorchTrainer(method's train loop)
          -> results/<study>/ (Tuner.restore target), trials.parquet, report.html

Re-running a study resumes it (Tuner.restore: finished trials kept, errored and unfinished
ones continue from their last checkpoint); --restart moves the old results aside.
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import time
from pathlib import Path

from udalab.core import layout, storage
from udalab.studies.run.trials import (grid, open_study_dir, results_uri, search_seeds, trial_run_config,
                                       trial_settings, write_study_report)
from udalab.studies.study import Study

# Ray settings for this project.
# The artifact store's settings (methods/engine/artifacts.py) travel to a cluster's trials with the job.
ARTIFACT_ENV = ("UDALAB_ARTIFACTS", "UDALAB_ARTIFACT_CACHE", "UDALAB_ARTIFACT_LEASE_S", "UDALAB_ARTIFACT_POLL_S")
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
    # reuse_actors (below): Tune runs the next trial in a finished trial's actor only once that
    # trial's function thread has returned (Ray Train's teardown), and waits 2 s for it by default;
    # a slower teardown (a loaded machine, a restarted worker group) errored the next trial
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
    # a checkpoint between two evaluations (methods/engine/loop.py, checkpoint_minutes) reports before the
    # first evaluation too, without the metric the searcher and the scheduler read
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}
# On this machine only (no --address): what a one-node sweep does not need costs no process or poll
# per trial (docs/performance.md): the preemption watcher actor (a node here is never drained by a
# cloud), Train's Prometheus metrics (nothing scrapes them), and a 2 s wait for a finished worker.
RAY_LOCAL_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
DRIVER_RESOURCE = "TRAIN_DRIVER"  # custom resource that gates how many trial drivers a node hosts

# File systems every node of a cluster can mount as one (a results folder on one of them is shared);
# and any FUSE file system (fuse.s3fs, fuse.gcsfuse, fuse.juicefs, fuse.mountpoint-s3, ...).
SHARED_FILE_SYSTEMS = frozenset({"nfs", "nfs4", "efs", "lustre", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
                                 "gpfs", "beegfs", "wekafs", "panfs"})


# ---------------------------------------------------------------------------------------
# The trial: a Tune function that runs one Ray Train run.


def trial(config: dict, settings: dict) -> None:
    """One Tune trial = one Ray Train run of the method, resumable under a fixed name; in a search
    over several seeds (settings["search_seeds"]), one Train run per seed (see trial_over_seeds)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    if len(settings.get("search_seeds") or ()) > 1:
        return trial_over_seeds(config, settings, trial_id)
    trainer(trial_run_config(config, settings), settings, layout.train_run_name(trial_id), [TuneReportCallback()]).fit()


def train_worker(config: dict) -> None:
    """What each Ray Train worker of a trial runs: the method's run (methods.train_loop), returning
    nothing. Ray Train sends a train function's return value to its controller, and train_loop's is
    the method's last Step: its models, wrapped in DistributedDataParallel on several workers, which
    the controller cannot unpickle (it took that for a worker failure and restarted the run after
    its last report, as many times as max_failures allowed)."""
    from udalab.methods import train_loop

    train_loop(config)


def trainer(method_config: dict, settings: dict, name: str, callbacks: list):
    """The Ray Train run of one method config, named `name` (a re-run under it resumes)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    drop_unregistered_checkpoints(settings["train_storage"], name)
    workers = settings["workers"]
    per_worker = {"CPU": settings["cpus_per_trial"] / workers}
    if settings["gpus_per_trial"]:
        per_worker["GPU"] = settings["gpus_per_trial"] / workers
    return TorchTrainer(
        train_worker,                                    # opens the run config["method"] names
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


def drop_unregistered_checkpoints(train_storage: str, name: str) -> list[str]:
    """Delete the checkpoint folders of Train run `name` that its snapshot does not register; return
    their names. A worker uploads a checkpoint before the controller registers it, so a kill -9
    between the two leaves a folder the resumed run neither restores from nor ever deletes (it is
    not among num_to_keep's), a paper-size one tens of GB, and `udalab predict` would take it for
    the newest. Without a snapshot the run starts over: every folder is such a leftover. A snapshot
    that cannot be read deletes nothing (Ray Train stops on it with its own error)."""
    import json

    import pyarrow.fs as pafs

    fs, run = storage.fs_path(storage.uri_join(train_storage, name))
    folders = [i.base_name for i in storage.list_dir(fs, run)
               if i.type == pafs.FileType.Directory and layout.is_checkpoint_dir(i.base_name)]
    text = storage.read_text(fs, storage.join_path(run, layout.TRAIN_SNAPSHOT_FILE))
    try:
        registered = set() if text is None else _checkpoint_dir_names(json.loads(text))
    except ValueError:
        return []
    leftovers = [f for f in folders if f not in registered]
    for folder in leftovers:
        fs.delete_dir(storage.join_path(run, folder))
    return leftovers


def _checkpoint_dir_names(snapshot) -> set[str]:
    """Every checkpoint_dir_name a Train snapshot holds (its checkpoints, latest and pending ones)."""
    if isinstance(snapshot, dict):
        own = {snapshot["checkpoint_dir_name"]} if isinstance(snapshot.get("checkpoint_dir_name"), str) else set()
        return own.union(*(_checkpoint_dir_names(v) for v in snapshot.values()))
    if isinstance(snapshot, list):
        return set().union(*(_checkpoint_dir_names(v) for v in snapshot))
    return set()


def trial_over_seeds(config: dict, settings: dict, trial_id: str) -> None:
    """A searched configuration scored on every seed of the study: one Train run per seed
    (train-<trial>-seed<s>, each resumable), and after each a report to Tune of the mean over
    the seeds so far (the objective Optuna sees at the end), their sample std (std.miou,
    std.test.miou) and `seeds` done. ASHA, if on, stops a configuration after any seed."""
    import ray.tune

    finals = []
    for seed in settings["search_seeds"]:
        result = trainer(trial_run_config({**config, "seed": seed}, settings), settings,
                         layout.train_run_name(trial_id, seed), []).fit()
        finals.append(dict(result.metrics or {}))
        ray.tune.report(seed_summary(finals, done=len(finals) == len(settings["search_seeds"])))


def seed_summary(finals: list[dict], done: bool) -> dict:
    """The mean over seeds of every numeric metric of the runs' final reports, the sample std of
    the headline ones, the number of seeds; text (provenance, stage) from the last run. `done`
    only after the last seed (Tune ends a trial at a result that says done)."""
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


# ---------------------------------------------------------------------------------------
# The sweep.


def optuna_storage(study_dir: str):
    """The Optuna RDB storage of a search: sqlite:///<study_dir>/optuna.db (local results only;
    None for s3://..., where the searcher keeps its study in memory and in Tune's searcher state).

    OptunaSearch pickles its storage with its state; RDBStorage pickles its URL and reconnects on
    restore, so a resumed study keeps writing to the same file. `optuna-dashboard sqlite:///...` opens it.
    """
    if not storage.is_local(study_dir):
        return None
    import optuna

    path = Path(study_dir.removeprefix("file://")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path / layout.OPTUNA_DB}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def asha(study: Study, args, settings: dict):
    """ASHA on the optimiser steps a trial's reports name (`iteration`, not Tune's count of reports: a
    checkpoint between evaluations reports too, whenever wall time says): its first rung at the first
    evaluation, its last at the run's end (the first grid row's, or the search's base config's)."""
    from ray.tune.schedulers import ASHAScheduler

    from udalab.methods import check_config

    rows, seeds = grid(study, args)
    hp = check_config(trial_run_config({"row": rows[0] if not args.optuna else {}, "seed": seeds[0]}, settings))
    return ASHAScheduler(time_attr="iteration", metric=study.metric, mode=study.mode, grace_period=hp.eval_every,
                         max_t=hp.total_iterations, reduction_factor=2)


def search(study: Study, args, max_concurrent: int | None, study_dir: str | None = None,
           study_name: str | None = None, settings: dict | None = None):
    """(param_space, TuneConfig) of the grid (rows x seeds) or, with --optuna, of the search."""
    from ray import tune
    from ray.tune import TuneConfig

    scheduler = asha(study, args, settings) if args.asha else None
    # reuse_actors: a trial's Tune actor (it only drives Train's controller) runs the next trial too,
    # instead of a new process importing torch and Ray Train again. Not when a scheduler stops trials:
    # a stopped trial's function thread stays inside TorchTrainer.fit() (its Train run goes on), so
    # reusing its actor fails after TUNE_FUNCTION_THREAD_TIMEOUT_S, the next trial errors and the
    # search hangs; an actor that is not reused is ended instead, and the Train controller it owns,
    # with its workers, ends with it
    reuse = scheduler is None
    if args.optuna:
        if not study.search:
            raise SystemExit(f"study {study.name} declares no Optuna search space")
        from ray.tune.search.optuna import OptunaSearch

        seeds = search_seeds(study, args)     # several: each trial runs them all (trial_over_seeds)
        space = {"method": study.method, **study.search, **({"seed": seeds[0]} if len(seeds) == 1 else {})}
        n = args.num_samples or (2 if args.smoke else study.num_samples)
        storage_ = optuna_storage(study_dir) if study_dir else None
        searcher = OptunaSearch(metric=study.metric, mode=study.mode, seed=study.seeds[0], storage=storage_,
                                study_name=study_name or study.name)
        cfg = TuneConfig(search_alg=searcher, num_samples=n, max_concurrent_trials=max_concurrent,
                         scheduler=scheduler, reuse_actors=reuse)
        return space, cfg
    rows, seeds = grid(study, args)
    space = {"row": tune.grid_search(rows), "seed": tune.grid_search(seeds)}
    metric_mode = {} if scheduler else {"metric": study.metric, "mode": study.mode}
    return space, TuneConfig(num_samples=1, max_concurrent_trials=max_concurrent, scheduler=scheduler,
                             reuse_actors=reuse, **metric_mode)


def init_ray(args) -> None:
    import ray

    if ray.is_initialized():
        return
    if args.address:
        # the cluster's processes were not started from this shell: the settings above reach the
        # trials' actors (and, through Ray Train, its controllers and workers) as the job's env
        env = {k: os.environ[k] for k in (*RAY_ENV, *ARTIFACT_ENV) if k in os.environ}
        ray.init(address=args.address, runtime_env={"env_vars": env})
        return
    cpus = os.cpu_count() or 2
    # Each trial's driver holds one TRAIN_DRIVER; as many as trials can run at once.
    # The dashboard must run: Ray Train's placement-group cleaner asks its State API, and
    # without it finished trials' worker resources are never freed. address="local": a Ray of
    # its own even where another runs on this machine (ray.init() alone would join that one
    # through /tmp/ray/ray_current_cluster and refuse num_cpus); --address auto joins it.
    ray.init(address="local", num_cpus=cpus, resources={DRIVER_RESOURCE: cpus}, include_dashboard=True,
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
    concurrent = args.max_concurrent or (None if on_cluster else fits(cluster, args.cpus_per_trial, gpus))
    failures = args.max_failures if getattr(args, "max_failures", None) is not None else (
        study.max_failures if on_cluster else 0)
    return gpus, concurrent, failures


def fits(cluster: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of that size the cluster's resources hold at once (at least one)."""
    n = int(cluster.get("CPU", 1) // max(cpus_per_trial, 1e-9))
    if gpus_per_trial:
        n = min(n, int(cluster.get("GPU", 0) // gpus_per_trial))
    n = min(n, int(cluster.get(DRIVER_RESOURCE, n)))
    return max(n, 1)


# ---------------------------------------------------------------------------------------
# Results every node reaches.


def mount_of(path: str, mounts: str | None = None) -> tuple[str, str]:
    """(mount point, file system type) of the file system that holds `path` (whether it exists
    yet or not), from /proc/mounts (or the `mounts` text in its format); ("/", "unknown") where
    that cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "/", "unknown"
    target = Path(os.path.realpath(path))
    best = ("/", "unknown")
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])   # \040: a space
        if (target == Path(point) or Path(point) in target.parents) and len(point) >= len(best[0]):
            best = (point, fields[2])      # the deepest mount point; of equal ones the last mounted
    return best


def is_shared_file_system(fs_type: str) -> bool:
    return fs_type in SHARED_FILE_SYSTEMS or fs_type.startswith("fuse.")


def check_results_reach_every_node(results: str, mounts: str | None = None) -> None:
    """On a cluster, Ray Train's workers on other nodes write the checkpoints to --results: a
    folder of this node's own disk is refused before anything starts (with min_workers: 0 the
    head is the only node at the start, so counting nodes could not tell). A URI (s3://...,
    file://... for a folder known to be shared) is taken as it is."""
    if "://" in results:
        return
    point, fs_type = mount_of(results, mounts)
    if is_shared_file_system(fs_type):
        return
    path = os.path.realpath(results)
    raise SystemExit(
        f"--results {results} is on this node's own disk ({path}: mount {point}, file system {fs_type}): on a "
        f"cluster (--address) the trials' workers on other nodes cannot write their checkpoints there. Pass "
        f"--results s3://BUCKET/PREFIX (cluster.yaml sets $UDALAB_RESULTS to one), a folder on a file system "
        f"every node mounts ({', '.join(sorted(SHARED_FILE_SYSTEMS))} or fuse.*), or file://{path} if every node "
        f"sees that very folder; docs/cluster.md")


# ---------------------------------------------------------------------------------------
# The study.


def tuner(study: Study, args, study_dir: str, name: str, settings: dict, max_concurrent: int | None,
          callbacks: list):
    """The Tuner of the sweep: restored from `study_dir` when it began before, else a new one."""
    from ray import tune
    from ray.tune import RunConfig, Tuner

    trainable = tune.with_resources(tune.with_parameters(trial, settings=settings), {DRIVER_RESOURCE: 1})
    param_space, tune_config = search(study, args, max_concurrent, study_dir=study_dir, study_name=name,
                                      settings=settings)
    if Tuner.can_restore(study_dir):
        print(f"Resuming {name} from {study_dir} (finished trials are kept; --restart to start over)")
        return Tuner.restore(study_dir, trainable=trainable, resume_unfinished=True, resume_errored=True,
                             param_space=param_space)
    from udalab.studies.run.tune_callbacks import ProgressLine, TrialsTable   # imports ray.tune

    total = tune_config.num_samples if args.optuna else len(param_space["row"]["grid_search"]) * len(
        param_space["seed"]["grid_search"])
    return Tuner(trainable, param_space=param_space, tune_config=tune_config,
                 run_config=RunConfig(name=name, storage_path=results_uri(args.results),
                                      verbose=2 if args.ray_status else 0,
                                      callbacks=[TrialsTable(study_dir),
                                                 ProgressLine(name, total, max_concurrent or 0, study.grid_rows()),
                                                 *callbacks]))


def run(study: Study, args, callbacks: list | None = None) -> int:
    """Run (or resume) `study` as a Ray Tune sweep; `callbacks`: more Ray Tune callbacks
    (benchmarks/sweep_overhead.py times trials with one). The exit status: 0 when every trial
    finished, 1 when one did not (running the same command again resumes it)."""
    if args.address:
        check_results_reach_every_node(args.results)
    for k, v in {**RAY_ENV, **({} if args.address else RAY_LOCAL_ENV)}.items():
        os.environ.setdefault(k, v)
    import ray

    shared = trial_settings(study, args)
    name, study_dir = open_study_dir(study, args, shared, grid_recorded=True)
    init_ray(args)
    gpus, max_concurrent, max_failures = trial_resources(study, args, ray.cluster_resources())
    settings = dict(shared, workers=args.workers, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
                    max_failures=max_failures, train_storage=storage.uri_join(study_dir, layout.TRAIN_DIR),
                    search_seeds=search_seeds(study, args) if args.optuna else None)
    t0 = time.time()
    sweep = tuner(study, args, study_dir, name, settings, max_concurrent, callbacks or []).fit()
    return finish(study, args, study_dir, name, shared["preset"], time.time() - t0, [str(e) for e in sweep.errors])


def finish(study: Study, args, study_dir: str, name: str, preset: str, seconds: float, errors: list[str]) -> int:
    """The trials table and the report of a sweep that ended; its errors; the exit status."""
    from udalab.analysis import store

    store_path = store.write_trials(study_dir)
    df = store.load_trials(study_dir)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print(f"\n{name}: {len(df)} trials {counts} in {seconds:.0f} s -> {store_path}")
    if study.report is not None and not args.no_report:
        report = write_study_report(study, study_dir, df, preset, static_figures=False if args.no_figures else None)
        print(f"report: {report}")
    for error in errors:
        print(f"ERROR in trial: {error}", file=sys.stderr)
    unfinished = int((df["status"] != "TERMINATED").sum()) if len(df) else 0
    if unfinished:
        print(f"{unfinished} trial(s) did not finish; run the same command again to resume them.", file=sys.stderr)
        return 1
    return 0
