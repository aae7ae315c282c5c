"""Study runner plumbing without starting Ray: cluster defaults, data roots, trial configs, CLI
(cluster.yaml itself: tests/test_cluster_yaml.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from udalab.studies import study as runner
from udalab.studies.intrada_split import STUDY

ROOT = Path(__file__).resolve().parents[1]


def test_trial_config_merges_row_seed_and_study_options():
    settings = {"method": "intrada", "source": "gta5", "target": "cityscapes", "data_root": None,
                "preset": "mini", "fixed": {"iterations": 10}}
    cfg = runner.trial_run_config({"row": {"method": "advent"}, "seed": 2}, settings)
    assert cfg == {"iterations": 10, "seed": 2, "method": "advent", "source": "gta5", "target": "cityscapes",
                   "data_root": None, "preset": "mini"}
    optuna = runner.trial_run_config({"method": "intrada", "lambda_split": 0.3, "seed": 0}, settings)
    assert optuna["lambda_split"] == 0.3 and optuna["method"] == "intrada"


def test_intrada_study_declares_the_table():
    rows = STUDY.grid_rows()
    assert rows[0] == {"method": "source_only"} and rows[1] == {"method": "advent"}
    lambdas = [r["lambda_split"] for r in rows if r["method"] == "intrada"]
    assert lambdas[0] == 0.0 and lambdas[-1] == 1.0 and 0.67 in lambdas
    assert [rows[i]["method"] for i in STUDY.smoke_rows] == ["source_only", "intrada"]


def test_data_root_layout_is_checked(tmp_path):
    (tmp_path / "gta5").mkdir()
    with pytest.raises(SystemExit, match=r"expected the cityscapes dataset in .*cityscapes"):
        runner._data_roots(str(tmp_path), ("gta5", "cityscapes"))
    (tmp_path / "cityscapes").mkdir()
    assert runner._data_roots(str(tmp_path), ("gta5", "cityscapes")) == {
        "gta5": str(tmp_path / "gta5"), "cityscapes": str(tmp_path / "cityscapes")}


def test_changed_options_on_resume_are_refused(tmp_path):
    study_dir = str(tmp_path / "s")
    runner._check_same_options(study_dir, {"preset": "mini", "fixed": {}})
    runner._check_same_options(study_dir, {"preset": "mini", "fixed": {}})  # same: fine
    with pytest.raises(SystemExit, match=r"other options \(preset: was \{'preset': 'mini'\}"):
        runner._check_same_options(study_dir, {"preset": "paper", "fixed": {}})


def test_bad_set_value_is_a_clear_error():
    assert runner.parse_sets(["iterations=20", "variant=minent"]) == {"iterations": 20, "variant": "minent"}
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        runner.parse_sets(["iterations"])


def test_udalab_command_lists_and_trains(tmp_path, mini_data, capsys):
    """`udalab train` as a user types it (a process of its own); listing and a refused config in this one."""
    from udalab.studies.cli import main as udalab

    assert udalab(["studies"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == sorted(
        p.stem for p in (ROOT / "studies").glob("*.py") if p.stem not in ("__init__", "study", "cli", "local"))
    assert udalab(["methods"]) == 0
    assert set(capsys.readouterr().out.split()) >= {"source_only", "advent", "intrada"}
    out = subprocess.run([sys.executable, "-m", "udalab.studies.cli", "train", "advent", "--set", "preset=smoke",
                          "--set", "seed=3", "--checkpoint-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["done"] and last["iteration"] == 4 and (tmp_path / "state.pt").exists()
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
    args = runner.build_parser(HRDA).parse_args(["--seeds", "4", "5"])
    space, _ = runner._search(HRDA, args, max_concurrent=1)
    assert space["seed"] == {"grid_search": [4, 5]} and len(space["row"]["grid_search"]) == 11
    space, _ = runner._search(HRDA, runner.build_parser(HRDA).parse_args([]), max_concurrent=1)
    assert space["seed"] == {"grid_search": [0, 1, 2]}


def test_hrda_s_is_set_from_set_and_from_a_study_row():
    """`scale` is HRDA's s (the preset has its own name), so neither --set nor a row is overwritten."""
    from udalab.methods.engine.config import make_hparams
    from udalab.methods.hrda import PRESETS, HRDAConfig
    from udalab.studies.hrda_crop_size import STUDY as HRDA

    settings = runner.trial_settings(HRDA, runner.build_parser(HRDA).parse_args(["--set", "scale=4"]))
    cfg = runner.trial_run_config({"row": {"mode": "lr+hr"}, "seed": 0}, settings)
    assert cfg["scale"] == 4 and cfg["preset"] == "mini"
    assert make_hparams(HRDAConfig, cfg, PRESETS).grid == 16           # k = s·o = 4·4
    cfg = runner.trial_run_config({"row": {"mode": "lr+hr", "scale": 1}, "seed": 0}, settings)
    assert make_hparams(HRDAConfig, cfg, PRESETS).scale == 1


def test_a_study_trains_on_the_data_it_declares(mini_data):
    """SYNTHIA -> Cityscapes, declared by the study or by --set, reaches the method: it trains on
    SYNTHIA and scores the 16 classes SYNTHIA labels."""
    from udalab.datasets.synthia import SYNTHIA
    from udalab.methods import run_local
    from udalab.methods.engine.uda_data import build_uda_data
    from udalab.studies.study import Study

    synthia = Study(name="s", method="source_only", source="synthia", target="cityscapes")
    gta = Study(name="g", method="source_only")
    for study, argv in ((synthia, []), (gta, ["--set", "source=synthia"])):
        settings = runner.trial_settings(study, runner.build_parser(study).parse_args(["--smoke", *argv]))
        cfg = runner.trial_run_config({"row": {"method": "source_only"}, "seed": 0}, settings)
        assert (cfg["source"], cfg["target"], cfg["preset"]) == ("synthia", "cityscapes", "smoke")
        assert "source" not in settings["fixed"]
    data = build_uda_data(cfg, (64, 32), (64, 32))
    assert isinstance(data.source, SYNTHIA) and len(data.eval_classes) == 16
    last = run_local("source_only", {**cfg, "iterations": 2})[-1]
    scored = [last[f"iou.{data.class_names[c]}"] for c in data.eval_classes]
    assert last["miou"] == pytest.approx(np.nanmean(scored))
    assert not {"iou.terrain", "iou.truck", "iou.train"} & set(last)   # the 3 classes SYNTHIA does not label


def test_progress_line_counts_trials_and_estimates_the_time_left():
    line = runner.progress_line("hrda_crop_size", 33, 10, 1, 2, [120.0, 180.0], 2)
    # 22 left at 2.5 min each, 2 at once: 11 waves -> 27.5 min
    assert line.startswith("hrda_crop_size: 10/33 trials finished, 1 errored, 2 running; ~28 min left")
    assert "2.5 min a trial, 2 at once" in line
    assert "after the first trial" in runner.progress_line("s", 4, 0, 0, 2, [], 2)
    assert runner.progress_line("s", 4, 4, 0, 0, [60.0] * 4, 2) == "s: 4/4 trials finished, 0 running"


def test_local_study_runs_the_grid_without_ray_and_resumes(tmp_path, mini_data):
    """--local: every row x seed with the config a Tune trial gets, one runs.jsonl line each, the
    trials table and report as a Ray study writes them; a re-run finishes nothing twice."""
    from udalab.analysis import store
    from udalab.studies import local
    from udalab.studies.study import Study

    study = Study(name="tiny", method="source_only", rows=[{}, {"lr": 0.01}], seeds=(0, 1), smoke_rows=(0, 1))
    argv = ["--local", "--smoke", "--seeds", "0", "1", "--results", str(tmp_path), "--set", "iterations=2",
            "--no-report"]
    args = runner.build_parser(study).parse_args(argv)
    assert runner.run_study(study, runner.build_parser(study).parse_args([*argv, "--rows", "1"])) == 0
    out = tmp_path / "tiny_smoke_local"
    assert list(local.read_runs(out)) == ["row1-seed0"]            # --rows: a part of the grid, named as in it
    assert runner.run_study(study, args) == 0                      # the rest of the grid joins it
    runs = local.read_runs(out)
    settings = runner.trial_settings(study, args)
    # --smoke keeps the first seed only, whatever --seeds says; each run's config is the Tune trial's
    assert list(runs) == ["row1-seed0", "row0-seed0"]
    assert runs["row1-seed0"]["config"] == runner.trial_run_config({"row": study.grid_rows()[1], "seed": 0}, settings)
    df = store.read_trials(out)
    assert list(df["trial_id"]) == ["row0-seed0", "row1-seed0"] and set(df["status"]) == {"TERMINATED"}
    assert df["lr"].isna().tolist() == [True, False] and (df["iterations"] == 2).all()
    assert df["miou"].notna().all() and "test.miou" in df
    assert len(store.load_history(out, "row1-seed0")) == len(runs["row1-seed0"]["reports"])
    assert not list(out.glob("_train/*/checkpoint_local/state.pt"))          # weights go once a run is done
    lines = (out / local.RUNS_FILE).read_text().splitlines()
    assert runner.run_study(study, args) == 0                                  # resumed: nothing to run
    assert (out / local.RUNS_FILE).read_text().splitlines() == lines
    with pytest.raises(SystemExit, match="other options"):
        runner.run_study(study, runner.build_parser(study).parse_args([*argv[:-2], "iterations=3", "--no-report"]))
    # `udalab report` rewrites a local study's report from its trials.parquet (it has no Tune state)
    from udalab.studies import cli

    assert store.load_trials(out)["trial_id"].tolist() == ["row0-seed0", "row1-seed0"]
    assert cli.main(["report", "--results", str(tmp_path), "--no-figures"]) == 0
    assert "<b>2 trials:</b> 2 finished" in (out / "report.html").read_text()
    assert runner.study_of_dir("daformer_ablation_optuna_smoke_local") == "daformer_ablation"


def test_on_a_cluster_trials_ask_for_the_studys_gpus_and_retry_lost_nodes():
    """The autoscaler only starts GPU nodes that trials ask for: on a cluster a trial requests the
    study's GPUs even while no GPU node is up, trials are not capped by what is up now, and a trial
    restarts from its checkpoint after a lost node; on this machine none of that."""
    study = runner.Study(name="s", method="source_only", gpus_per_worker=1.0, max_failures=3)
    cpu_head = {"CPU": 8.0, runner.DRIVER_RESOURCE: 16.0}                  # cluster.yaml's head, no GPU node yet
    args = runner.build_parser(study).parse_args(["--address", "auto", "--workers", "2"])
    assert runner.trial_resources(study, args, cpu_head) == (2.0, None, 3)
    args = runner.build_parser(study).parse_args(["--address", "auto", "--gpus-per-trial", "0.5", "--max-failures", "1",
                                                  "--max-concurrent", "4"])
    assert runner.trial_resources(study, args, cpu_head) == (0.5, 4, 1)
    here = runner.build_parser(study).parse_args([])
    assert runner.trial_resources(study, here, {"CPU": 2.0, runner.DRIVER_RESOURCE: 2.0}) == (0.0, 2, 0)
    assert runner.trial_resources(study, here, {"CPU": 16.0, "GPU": 1.0, runner.DRIVER_RESOURCE: 16.0}) == (1.0, 1, 0)


def test_a_searched_configuration_is_scored_on_every_seed():
    finals = [{"miou": 20.0, "test.miou": 18.0, "iou.road": 60.0, "iteration": 30, "provenance.device": "cpu"},
              {"miou": 24.0, "test.miou": 22.0, "iou.road": 70.0, "iteration": 30, "provenance.device": "cpu"}]
    out = runner.seed_summary(finals, done=True)
    assert (out["miou"], out["test.miou"], out["iou.road"]) == (22.0, 20.0, 65.0)
    assert out["std.miou"] == pytest.approx(2 ** 0.5 * 2) and out["seeds"] == 2 and out["provenance.device"] == "cpu"
    first = runner.seed_summary(finals[:1], done=False)
    assert "std.miou" not in first and first["done"] is False and out["done"] is True
    study = runner.Study(name="s", method="intrada", seeds=(0, 1, 2))
    parse = runner.build_parser(study).parse_args
    assert runner.search_seeds(study, parse(["--optuna"])) == [0, 1, 2]
    assert runner.search_seeds(study, parse(["--optuna", "--smoke"])) == [0]
    assert runner.search_seeds(study, parse(["--optuna", "--smoke", "--seeds", "3", "4"])) == [3, 4]
