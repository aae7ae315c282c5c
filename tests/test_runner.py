"""Study runner plumbing without starting Ray: cluster defaults, data roots, trial configs, CLI
(cluster.yaml itself: tests/test_cluster_yaml.py)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from udalab.core import layout
from udalab.studies.intrada_split import STUDY
from udalab.studies.run import command, local, progress, ray_tune, trials
from udalab.studies.study import Study

ROOT = Path(__file__).resolve().parents[1]


def test_trial_config_merges_row_seed_and_study_options():
    settings = {"method": "intrada", "source": "gta5", "target": "cityscapes", "data_root": None,
                "preset": "mini", "fixed": {"iterations": 10}}
    cfg = trials.trial_run_config({"row": {"method": "advent"}, "seed": 2}, settings)
    assert cfg == {"iterations": 10, "seed": 2, "method": "advent", "source": "gta5", "target": "cityscapes",
                   "data_root": None, "preset": "mini"}
    optuna = trials.trial_run_config({"method": "intrada", "lambda_split": 0.3, "seed": 0}, settings)
    assert optuna["lambda_split"] == 0.3 and optuna["method"] == "intrada"


def test_a_set_key_reaches_the_rows_whose_method_reads_it_and_one_no_row_reads_is_refused():
    """`--set d_layers=4` on ADVENT and its source-only baseline: ADVENT's discriminator changes, the
    baseline (no discriminator) runs as it is; both get `iterations`; a key neither reads stops the run."""
    import argparse

    from udalab.studies.mini_adaptation import STUDY as MINI

    args = argparse.Namespace(preset=None, smoke=False, set=["d_layers=4", "iterations=20"], data_root=None,
                              rows=[0, 1], seeds=None, optuna=False)
    settings = trials.trial_settings(MINI, args)
    trials.check_trial_configs(MINI, args, settings)
    baseline, advent = (trials.trial_run_config({"row": MINI.grid_rows()[i], "seed": 0}, settings) for i in (0, 1))
    assert "d_layers" not in baseline and baseline["iterations"] == 20
    assert advent["d_layers"] == 4 and advent["iterations"] == 20
    args.set = ["d_layer=4"]
    with pytest.raises(SystemExit, match=r"no row of this run reads 'd_layer'.*advent, source_only.*no trial"):
        trials.check_trial_configs(MINI, args, trials.trial_settings(MINI, args))


def test_intrada_study_declares_the_table():
    rows = STUDY.grid_rows()
    assert rows[0] == {"method": "source_only"} and rows[1] == {"method": "advent"}
    lambdas = [r["lambda_split"] for r in rows if r["method"] == "intrada"]
    assert lambdas[0] == 0.0 and lambdas[-1] == 1.0 and 0.67 in lambdas
    assert [rows[i]["method"] for i in STUDY.smoke_rows] == ["source_only", "intrada"]


def test_data_root_layout_is_checked(tmp_path):
    (tmp_path / "gta5").mkdir()
    with pytest.raises(SystemExit, match=r"expected the cityscapes dataset in .*cityscapes"):
        trials.data_roots(str(tmp_path), ("gta5", "cityscapes"))
    (tmp_path / "cityscapes").mkdir()
    assert trials.data_roots(str(tmp_path), ("gta5", "cityscapes")) == {
        "gta5": str(tmp_path / "gta5"), "cityscapes": str(tmp_path / "cityscapes")}


def test_changed_options_on_resume_are_refused(tmp_path):
    study_dir = str(tmp_path / "s")
    trials.check_same_options(study_dir, {"preset": "mini", "fixed": {}})
    trials.check_same_options(study_dir, {"preset": "mini", "fixed": {}})  # same: fine
    with pytest.raises(SystemExit, match=r"other options \(preset: was \{'preset': 'mini'\}"):
        trials.check_same_options(study_dir, {"preset": "paper", "fixed": {}})


def test_bad_set_value_is_a_clear_error():
    assert trials.parse_sets(["iterations=20", "variant=minent"]) == {"iterations": 20, "variant": "minent"}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        trials.parse_sets(["iterations"])


def test_udalab_command_lists_and_trains(tmp_path, mini_data, capsys):
    """`udalab train` as a user types it (a process of its own: JSON reports on stdout, a progress bar on
    stderr); listing and a refused config in this one."""
    from udalab.studies.cli import main as udalab

    assert udalab(["studies"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == sorted(
        p.stem for p in (ROOT / "studies").glob("*.py") if p.stem not in ("__init__", "study", "cli"))
    assert udalab(["methods"]) == 0
    assert set(capsys.readouterr().out.split()) >= {"source_only", "advent", "intrada"}
    out = subprocess.run([sys.executable, "-m", "udalab.studies.cli", "train", "source_only", "--set", "preset=smoke",
                          "--set", "seed=3", "--checkpoint-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    reports = [json.loads(line) for line in out.stdout.strip().splitlines()]   # stdout: the reports alone
    last = reports[-1]
    assert last["done"] and last["iteration"] == 4 and (tmp_path / "state.pt").exists()
    # stderr: the progress bar of the iterations (done of total, time taken < time left, rate)
    bar = re.search(r"train: +100%\|[^|]*\| 4/4 \[\d+:\d\d<\d+:\d\d, +[\d.]+(it/s|s/it)\]", out.stderr)
    assert bar, out.stderr[-2000:]
    assert udalab(["train", "advent", "--set", "preset=smoke", "--set", "lamda_adv_main=1"]) != 0
    assert "does not read 'lamda_adv_main'" in capsys.readouterr().err


def test_hrda_study_grid_budget_and_seeds_option():
    from udalab.methods.engine.config import make_hparams
    from udalab.methods.hrda import PRESETS, HRDAConfig
    from udalab.studies.hrda_crop_size import STUDY as HRDA

    rows = HRDA.grid_rows()
    assert {r["method"] for r in rows} == {"hrda"} and len(rows) == 11
    assert [(r["mode"], r["crop_ratio"]) for r in (rows[i] for i in HRDA.smoke_rows)] == [("lr", 1.0), ("lr+hr", 1.0)]
    for row in rows:  # every row is a valid configuration at both presets
        for preset in ("mini", "paper"):
            make_hparams(HRDAConfig, {**row, **HRDA.fixed, **HRDA.budget.get(preset, {}), "preset": preset}, PRESETS)
    args = command.build_parser(HRDA).parse_args(["--seeds", "4", "5"])
    space, _ = ray_tune.search(HRDA, args, max_concurrent=1)
    assert space["seed"] == {"grid_search": [4, 5]} and len(space["row"]["grid_search"]) == 11
    space, _ = ray_tune.search(HRDA, command.build_parser(HRDA).parse_args([]), max_concurrent=1)
    assert space["seed"] == {"grid_search": [0, 1, 2]}


def test_hrda_s_is_set_from_set_and_from_a_study_row():
    """`scale` is HRDA's s (the preset has its own name), so neither --set nor a row is overwritten."""
    from udalab.methods.engine.config import make_hparams
    from udalab.methods.hrda import PRESETS, HRDAConfig
    from udalab.studies.hrda_crop_size import STUDY as HRDA

    settings = trials.trial_settings(HRDA, command.build_parser(HRDA).parse_args(["--set", "scale=4"]))
    cfg = trials.trial_run_config({"row": {"mode": "lr+hr"}, "seed": 0}, settings)
    assert cfg["scale"] == 4 and cfg["preset"] == "mini"
    assert make_hparams(HRDAConfig, cfg, PRESETS).grid == 16           # k = s·o = 4·4
    cfg = trials.trial_run_config({"row": {"mode": "lr+hr", "scale": 1}, "seed": 0}, settings)
    assert make_hparams(HRDAConfig, cfg, PRESETS).scale == 1


def test_a_study_trains_on_the_data_it_declares(mini_data):
    """SYNTHIA -> Cityscapes, declared by the study or by --set, reaches the method: it trains on
    SYNTHIA and scores the 16 classes SYNTHIA labels."""
    from udalab.datasets.synthia import SYNTHIA
    from udalab.methods import run_local
    from udalab.methods.engine.uda_data import build_uda_data

    synthia = Study(name="s", method="source_only", source="synthia", target="cityscapes")
    gta = Study(name="g", method="source_only")
    for study, argv in ((synthia, []), (gta, ["--set", "source=synthia"])):
        settings = trials.trial_settings(study, command.build_parser(study).parse_args(["--smoke", *argv]))
        cfg = trials.trial_run_config({"row": {"method": "source_only"}, "seed": 0}, settings)
        assert (cfg["source"], cfg["target"], cfg["preset"]) == ("synthia", "cityscapes", "smoke")
        assert "source" not in settings["fixed"]
    data = build_uda_data(cfg, (64, 32), (64, 32))
    assert isinstance(data.source, SYNTHIA) and len(data.eval_classes) == 16
    last = run_local("source_only", {**cfg, "iterations": 2})[-1]
    scored = [last[f"iou.{data.class_names[c]}"] for c in data.eval_classes]
    assert last["miou"] == pytest.approx(np.nanmean(scored))
    assert not {"iou.terrain", "iou.truck", "iou.train"} & set(last)   # the 3 classes SYNTHIA does not label


def test_progress_line_counts_trials_and_estimates_the_time_left():
    line = progress.progress_line("hrda_crop_size", 33, 10, 1, 2, {"a1": 120.0, "a2": 180.0}, 2)
    # 22 left at 2.5 min each, 2 at once: 11 waves -> 27.5 min
    assert line.startswith("hrda_crop_size: 10/33 trials finished, 1 errored, 2 running; ~28 min left")
    assert "2.5 min a trial, 2 at once" in line
    assert "after the first trial" in progress.progress_line("s", 4, 0, 0, 2, {}, 2)
    done = {f"row{r}-seed{s}": 60.0 for r in range(2) for s in range(2)}
    assert progress.progress_line("s", 4, 4, 0, 0, done, 2) == "s: 4/4 trials finished, 0 running"


def test_the_time_left_counts_each_row_at_its_own_cost():
    """A grid's rows differ in cost (an LR + HR row against an LR-only one): a trial not started is
    estimated by its row's finished trials, a row with none by the mean of all finished."""
    done = {"row0-seed0": 60.0, "row0-seed1": 60.0, "row1-seed0": 600.0}
    assert progress.row_of("row10-seed2") == "row10" and progress.row_of("a1b2c3") is None
    # row0-seed2 60 s + row1-seed1/2 600 s each + row2-seed0 at the mean of all (240 s), 1 at once: 1500 s
    line = progress.progress_line("s", 7, 3, 0, 0, done, 1, (), ["row0-seed2", "row1-seed1", "row1-seed2", "row2-seed0"])
    assert line.endswith("; ~25 min left (4.0 min a trial, 1 at once)")
    # the same trials without their names (a Tune search): each at the mean, 4 x 240 s
    assert progress.progress_line("s", 7, 3, 0, 0, done, 1).endswith("; ~16 min left (4.0 min a trial, 1 at once)")
    # a running trial before its first report counts at its row's cost too
    line = progress.progress_line("s", 4, 3, 0, 1, done, 1, [progress.TrialProgress("row1-seed1")])
    assert line.endswith("; ~10 min left (4.0 min a trial, 1 at once)")


def test_local_study_runs_the_grid_without_ray_and_resumes(tmp_path, mini_data, monkeypatch):
    """--local: every row x seed with the config a Tune trial gets, one runs.jsonl line each, the
    trials table and report as a Ray study writes them; a re-run finishes nothing twice."""
    from udalab.analysis import store

    study = Study(name="tiny", method="source_only", rows=[{}, {"lr": 0.01}], seeds=(0, 1), smoke_rows=(0, 1))
    argv = ["--local", "--smoke", "--seeds", "0", "1", "--results", str(tmp_path), "--set", "iterations=2",
            "--no-report"]
    args = command.build_parser(study).parse_args(argv)
    assert command.run_study(study, command.build_parser(study).parse_args([*argv, "--rows", "1"])) == 0
    out = tmp_path / "tiny_smoke_local"
    assert list(local.read_runs(out)) == ["row1-seed0"]            # --rows: a part of the grid, named as in it
    # the rest of the grid joins it; trials.parquet is rewritten as each run finishes (a study
    # stopped half-way keeps the table of what finished), before the invocation's end
    real_pool, tables = local.run_pool, []

    def spy_pool(*a, after_each, **k):
        def after():
            after_each()
            tables.append(store.read_trials(out)["trial_id"].tolist())
        return real_pool(*a, after_each=after, **k)

    real_line, lines_of = progress.progress_line, []

    def spy_line(*a, **k):
        lines_of.append(dict(a[5]))                 # the finished runs' durations it estimates from
        return real_line(*a, **k)

    monkeypatch.setattr(local, "run_pool", spy_pool)
    monkeypatch.setattr(progress, "progress_line", spy_line)
    assert command.run_study(study, args) == 0
    assert tables == [["row0-seed0", "row1-seed0"]]
    runs = local.read_runs(out)
    # the resumed study's time left counts the run finished before it, from the start
    assert lines_of[0]["row1-seed0"] == runs["row1-seed0"]["wall_seconds"]
    assert lines_of[-1] == {t: runs[t]["wall_seconds"] for t in ("row0-seed0", "row1-seed0")}
    settings = trials.trial_settings(study, args)
    # --smoke keeps the first seed only, whatever --seeds says; each run's config is the Tune trial's
    assert list(runs) == ["row1-seed0", "row0-seed0"]
    assert runs["row1-seed0"]["config"] == trials.trial_run_config({"row": study.grid_rows()[1], "seed": 0}, settings)
    df = store.read_trials(out)
    assert list(df["trial_id"]) == ["row0-seed0", "row1-seed0"] and set(df["status"]) == {"TERMINATED"}
    assert df["lr"].isna().tolist() == [True, False] and (df["iterations"] == 2).all()
    assert df["miou"].notna().all() and "test.miou" in df
    assert len(store.load_history(out, "row1-seed0")) == len(runs["row1-seed0"]["reports"])
    assert len(list(out.glob("_train/*/checkpoint_local/state.pt"))) == 2    # the final models stay (udalab predict)
    lines = (out / layout.RUNS_FILE).read_text().splitlines()
    assert command.run_study(study, args) == 0                                  # resumed: nothing to run
    assert (out / layout.RUNS_FILE).read_text().splitlines() == lines
    with pytest.raises(SystemExit, match="other options"):
        command.run_study(study, command.build_parser(study).parse_args([*argv[:-2], "iterations=3", "--no-report"]))
    # `udalab report` rewrites a local study's report from its trials.parquet (it has no Tune state)
    from udalab.studies import cli

    assert store.load_trials(out)["trial_id"].tolist() == ["row0-seed0", "row1-seed0"]
    assert cli.main(["report", "--results", str(tmp_path), "--no-figures"]) == 0
    assert "<b>2 trials:</b> 2 finished" in (out / "report.html").read_text()
    assert layout.study_of_dir("daformer_ablation_optuna_smoke_local") == "daformer_ablation"


def test_a_resumed_local_run_records_the_evaluations_from_before_its_resume(tmp_path, mini_data, killed_after,
                                                                          monkeypatch):
    """runs.jsonl holds a run's every evaluation: a run killed after its first evaluation and resumed
    lists both, with the uninterrupted run's metrics; one resumed from its last checkpoint lists each once."""
    import torch

    from udalab.methods.engine.run import without_timings

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))   # run_one sets it
    threads = torch.get_num_threads()
    config = {"method": "source_only", "preset": "smoke", "seed": 0, "iterations": 4, "eval_every": 2}
    try:
        full = local.run_one("row0-seed0", config, str(tmp_path / "full"), threads)["reports"]
        with killed_after(2):
            local.run_one("row0-seed0", config, str(tmp_path / "cut"), threads)
        resumed = local.run_one("row0-seed0", config, str(tmp_path / "cut"), threads)["reports"]
        again = local.run_one("row0-seed0", config, str(tmp_path / "full"), threads)["reports"]
    finally:
        torch.set_num_threads(threads)
    evaluations = lambda reports: [without_timings(r) for r in reports if "miou" in r]   # noqa: E731
    assert [r["iteration"] for r in evaluations(full)] == [2, 4]
    assert len(evaluations(resumed)) == 2
    for r, f in zip(evaluations(resumed), evaluations(full)):
        assert r == pytest.approx(f, nan_ok=True), r["iteration"]
    assert [r["iteration"] for r in evaluations(again)] == [2, 4]


def test_on_a_cluster_trials_ask_for_the_studys_gpus_and_retry_lost_nodes():
    """The autoscaler only starts GPU nodes that trials ask for: on a cluster a trial requests the
    study's GPUs even while no GPU node is up, trials are not capped by what is up now, and a trial
    restarts from its checkpoint after a lost node; on this machine none of that."""
    study = Study(name="s", method="source_only", gpus_per_worker=1.0, max_failures=3)
    cpu_head = {"CPU": 8.0, ray_tune.DRIVER_RESOURCE: 16.0}                  # cluster.yaml's head, no GPU node yet
    args = command.build_parser(study).parse_args(["--address", "auto", "--workers", "2"])
    assert ray_tune.trial_resources(study, args, cpu_head) == (2.0, None, 3)
    args = command.build_parser(study).parse_args(["--address", "auto", "--gpus-per-trial", "0.5", "--max-failures", "1",
                                                  "--max-concurrent", "4"])
    assert ray_tune.trial_resources(study, args, cpu_head) == (0.5, 4, 1)
    here = command.build_parser(study).parse_args([])
    assert ray_tune.trial_resources(study, here, {"CPU": 2.0, ray_tune.DRIVER_RESOURCE: 2.0}) == (0.0, 2, 0)
    assert ray_tune.trial_resources(study, here, {"CPU": 16.0, "GPU": 1.0, ray_tune.DRIVER_RESOURCE: 16.0}) == (1.0, 1, 0)


def test_a_searched_configuration_is_scored_on_every_seed():
    finals = [{"miou": 20.0, "test.miou": 18.0, "iou.road": 60.0, "iteration": 30, "provenance.device": "cpu"},
              {"miou": 24.0, "test.miou": 22.0, "iou.road": 70.0, "iteration": 30, "provenance.device": "cpu"}]
    out = ray_tune.seed_summary(finals, done=True)
    assert (out["miou"], out["test.miou"], out["iou.road"]) == (22.0, 20.0, 65.0)
    assert out["std.miou"] == pytest.approx(2 ** 0.5 * 2) and out["seeds"] == 2 and out["provenance.device"] == "cpu"
    first = ray_tune.seed_summary(finals[:1], done=False)
    assert "std.miou" not in first and first["done"] is False and out["done"] is True
    study = Study(name="s", method="intrada", seeds=(0, 1, 2))
    parse = command.build_parser(study).parse_args
    assert trials.search_seeds(study, parse(["--optuna"])) == [0, 1, 2]
    assert trials.search_seeds(study, parse(["--optuna", "--smoke"])) == [0]
    assert trials.search_seeds(study, parse(["--optuna", "--smoke", "--seeds", "3", "4"])) == [3, 4]


def test_the_progress_line_shows_each_running_trials_iteration_and_time_left():
    """From a trial's first report on: its iteration of its total and the time left at its own pace;
    before any trial has finished, the study's time left comes from the running trials' estimates."""
    running = progress.TrialProgress.of_report("row4-seed0", {"iteration": 100, "iterations_total": 300,
                                                              "train_seconds": 60.0})
    assert running.seconds_left() == 120.0                                        # 200 left at 0.6 s each
    line = progress.progress_line("s", 5, 0, 0, 2, {}, 2, [running, progress.TrialProgress("row5-seed0")])
    assert "2 running (row4-seed0 100/300 ~2 min, row5-seed0 starting)" in line
    # 120 s of row4 + 4 more trials of its estimated 180 s, 2 at once: 420 s
    assert line.endswith("; ~7 min left (3.0 min a trial, 2 at once)")
    # a report without iterations_total (a result from before it, or a search's mean over seeds)
    bare = progress.TrialProgress.of_report("a1b2", {"iteration": 50, "train_seconds": 10.0})
    assert bare.text() == "a1b2 iteration 50" and bare.seconds_left() is None
    assert progress.progress_line("s", 3, 0, 0, 1, {}, 1, [bare]).endswith("time left: after the first trial reports")
    # finished trials' durations count for the trials not yet started
    line = progress.progress_line("s", 4, 1, 0, 1, {"row5-seed0": 300.0}, 1, [running])
    assert line.endswith("; ~12 min left (5.0 min a trial, 1 at once)")          # 120 + 2 x 300 s


def test_a_resume_with_another_worker_count_is_refused(tmp_path):
    """--workers multiplies the global batch: it is recorded with the study's options and a resume
    with another count is refused like any other option; --local has one worker per run."""
    study = Study(name="w", method="source_only")
    parse = command.build_parser(study).parse_args
    base = ["--smoke", "--results", str(tmp_path)]
    args = parse([*base, "--workers", "2"])
    trials.open_study_dir(study, args, trials.trial_settings(study, args), grid_recorded=True)
    assert json.loads((tmp_path / "w_smoke" / layout.OPTIONS_FILE).read_text())["workers"] == 2
    args = parse(base)
    with pytest.raises(SystemExit, match=r"other options \(workers: was \{'workers': 2\}, now \{'workers': None\}"):
        trials.open_study_dir(study, args, trials.trial_settings(study, args), grid_recorded=True)
    with pytest.raises(SystemExit, match="--local runs each run in one process; --workers 2"):
        command.run_study(study, parse([*base, "--local", "--workers", "2"]))


def test_a_resumed_train_run_drops_the_checkpoint_folders_its_snapshot_does_not_register(tmp_path):
    """A kill between a checkpoint's upload and its registration leaves a folder Ray Train's snapshot
    does not name: the resumed run deletes it (and every folder of a run that has no snapshot yet),
    keeps the registered ones. The snapshot is written with Ray Train's own schema."""
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (_CheckpointManagerState,
                                                                                _TrainingResultState)

    run = tmp_path / "train-a_00001"
    for name in ("checkpoint_1", "checkpoint_2", "checkpoint_3"):
        (run / name).mkdir(parents=True)
        (run / name / layout.STATE_FILE).write_bytes(b"x")
    kept = _TrainingResultState(checkpoint_dir_name="checkpoint_2", metrics={"miou": 1.0})
    pending = _TrainingResultState(checkpoint_dir_name="checkpoint_1", metrics={})
    snapshot = _CheckpointManagerState(checkpoint_results=[kept], checkpoint_report_indices=[3],
                                       latest_checkpoint_result=kept, pending_training_results=[pending],
                                       pending_validation_specs=[False], current_report_index=4,
                                       validated_checkpoint_dir_names=[], timed_out_validation_checkpoint_dir_names=[],
                                       failed_validation_checkpoint_dir_names=[])
    (run / layout.TRAIN_SNAPSHOT_FILE).write_text(snapshot.model_dump_json())
    assert ray_tune.drop_unregistered_checkpoints(str(tmp_path), run.name) == ["checkpoint_3"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_1", "checkpoint_2", layout.TRAIN_SNAPSHOT_FILE]
    assert layout.checkpoint_folder(run).name == "checkpoint_2"      # what `udalab predict` now takes

    (run / layout.TRAIN_SNAPSHOT_FILE).write_text('{"checkpoint_results": [')     # unreadable: nothing deleted
    assert ray_tune.drop_unregistered_checkpoints(str(tmp_path), run.name) == []
    (run / layout.TRAIN_SNAPSHOT_FILE).unlink()                                   # the run starts over
    assert sorted(ray_tune.drop_unregistered_checkpoints(str(tmp_path), run.name)) == ["checkpoint_1", "checkpoint_2"]
    assert list(run.iterdir()) == []
    assert ray_tune.drop_unregistered_checkpoints(str(tmp_path), "train-never-started") == []


def test_a_cluster_study_refuses_results_on_this_nodes_disk_before_anything_starts(tmp_path, monkeypatch):
    """With --address a results folder must reach every node: a URI, or a folder on a shared file
    system (/proc/mounts' type); a node-local one is refused at the start, whatever nodes are up."""
    mounts = ("/dev/vda / ext4 rw 0 0\nfs:/export /mnt/shared nfs4 rw 0 0\n"
              "bucket /mnt/my\\040bucket fuse.s3fs rw 0 0\n/dev/vdb /mnt/shared/scratch xfs rw 0 0\n")
    assert ray_tune.mount_of("/mnt/shared/results/s", mounts) == ("/mnt/shared", "nfs4")
    assert ray_tune.mount_of("/mnt/sharedother", mounts) == ("/", "ext4")
    assert ray_tune.mount_of("/mnt/my bucket/r", mounts) == ("/mnt/my bucket", "fuse.s3fs")
    assert ray_tune.mount_of("/mnt/shared/scratch/r", mounts) == ("/mnt/shared/scratch", "xfs")
    for shared in ("/mnt/shared/results", "/mnt/my bucket/results", "s3://b/results", "file:///mnt/x"):
        ray_tune.check_results_reach_every_node(shared, mounts)
    with pytest.raises(SystemExit, match=r"--results /mnt/shared/scratch/r is on this node's own disk "
                                         r"\(/mnt/shared/scratch/r: mount /mnt/shared/scratch, file system xfs\).*"
                                         r"s3://BUCKET/PREFIX.*file:///mnt/shared/scratch/r"):
        ray_tune.check_results_reach_every_node("/mnt/shared/scratch/r", mounts)

    import ray

    monkeypatch.setattr(ray_tune, "mount_of", lambda path, mounts=None: ("/", "ext4"))
    study = Study(name="c", method="source_only")
    args = command.build_parser(study).parse_args(["--address", "auto", "--results", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="file system ext4"):
        command.run_study(study, args)
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_udalab_report_opens_a_report_from_s3(s3_results, tmp_path, monkeypatch, capsys):
    """`udalab report --open STUDY` copies the study's report.html and the index beside it from the
    results ($UDALAB_RESULTS) to a local folder and prints the path to open."""
    from udalab.core import storage
    from udalab.studies import cli

    fs, root = storage.fs_path(s3_results)
    fs.create_dir(storage.join_path(root, "s_smoke"), recursive=True)
    for name, text in (("s_smoke/report.html", "<html>report</html>"), ("index.html", "<html>index</html>")):
        with fs.open_output_stream(storage.join_path(root, name)) as f:
            f.write(text.encode())
    monkeypatch.setenv("UDALAB_RESULTS", s3_results)
    assert cli.main(["report", "--open", "s_smoke", "--to", str(tmp_path)]) == 0
    opened = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert opened == tmp_path / "udalab" / "results" / "s_smoke" / "report.html"
    assert opened.read_text() == "<html>report</html>"
    assert (opened.parent.parent / "index.html").read_text() == "<html>index</html>"   # its link to the report works
    with pytest.raises(SystemExit, match=r"no report.html in s3://udalab/results/nope\?.*udalab report nope"):
        cli.main(["report", "--open", "nope", "--to", str(tmp_path)])
    (tmp_path / "local" / "s").mkdir(parents=True)
    (tmp_path / "local" / "s" / "report.html").write_text("x")
    assert cli.main(["report", "--open", "s", "--results", str(tmp_path / "local")]) == 0   # a local one: its own path
    assert capsys.readouterr().out.strip() == str(tmp_path / "local" / "s" / "report.html")
