"""The study runner end to end on Ray: the real script, a real Tune + Train sweep, resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from udalab.analysis.browser import find_browser
from udalab.methods import run_local
from udalab.methods.engine.config import make_hparams
from udalab.methods.intrada import PRESETS, IntraDAConfig

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "intrada_split.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300"}


def _run(results: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _checkpoints(study: Path) -> dict[str, list[str]]:
    return {run.name: sorted(c.name for c in run.glob("checkpoint_*") if c.is_dir())
            for run in (study / "_train").glob("train-*")}


def _registered(study: Path) -> dict[str, list[str]]:
    """The checkpoints Ray Train has registered (its checkpoint_manager_snapshot.json names them): what
    a resumed run restores from. A checkpoint folder written but not yet registered is not one (Ray's
    contract), so the kill below waits for registration."""
    out = {}
    for run in (study / "_train").glob("train-*"):
        snap = run / "checkpoint_manager_snapshot.json"
        text = snap.read_text() if snap.exists() else ""
        out[run.name] = sorted(c.name for c in run.glob("checkpoint_*") if c.is_dir() and c.name in text)
    return out


def _result_lines(study: Path) -> dict[str, list[dict]]:
    """Tune's result.json lines of each trial, keyed by its method; while the sweep runs, a trial whose
    params.json or last result line Tune is writing at that moment is left out (not there yet)."""
    out = {}
    for trial_dir in study.iterdir():
        if (trial_dir / "result.json").exists():
            try:
                params = json.loads((trial_dir / "params.json").read_text())
                lines = [json.loads(l) for l in (trial_dir / "result.json").read_text().splitlines()]
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            out[params["row"]["method"]] = lines
    return out


def test_results_on_an_s3_compatible_server_resume_and_report(s3_results, mini_data):
    """Tune's experiment, Train's checkpoints, trials.parquet and the report all go through pyarrow's
    S3 file system to the server; a re-run restores the study from there (nothing runs again) and
    `udalab report` reads it back."""
    import pyarrow.fs as pafs

    from udalab.analysis import store

    from udalab.core import storage
    from udalab.studies.cli import main as udalab

    env = {**ENV, **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}}
    run = lambda *more: subprocess.run([sys.executable, str(SCRIPT), "--results", s3_results, "--smoke", "--rows", "0",  # noqa: E731
                                        *more], env=env, capture_output=True, text=True, timeout=900)
    first = run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = storage.uri_join(s3_results, "intrada_split_smoke")
    df = store.load_trials(study)
    assert list(df["method"]) == ["source_only"] and set(df["status"]) == {"TERMINATED"} and df["miou"].notna().all()
    fs, path = storage.fs_path(study)
    checkpoints = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(storage.join_path(path, "_train"),
                                                                            recursive=True))
                         if i.type == pafs.FileType.File and i.base_name == "state.pt")
    assert len(checkpoints) == 1                                # the trial's latest checkpoint, on the server
    assert store.read_trials(study)["trial_id"].tolist() == df["trial_id"].tolist()
    if find_browser():  # kaleido's static export, copied to the server beside the report
        figures = fs.get_file_info(pafs.FileSelector(storage.join_path(path, "figures")))
        assert {"metric.png", "metric.svg"} <= {i.base_name for i in figures}

    again = run("--no-figures")
    assert again.returncode == 0 and "Resuming" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    assert sorted(i.path for i in fs.get_file_info(pafs.FileSelector(storage.join_path(path, "_train"), recursive=True))
                  if i.base_name == "state.pt") == checkpoints    # nothing ran again

    fs.delete_file(storage.join_path(path, "report.html"))
    assert udalab(["report", "intrada_split_smoke", "--results", s3_results, "--no-figures"]) == 0
    with fs.open_input_stream(storage.join_path(path, "report.html")) as f:
        html = f.read().decode()
    assert len(html) > 100_000 and "study intrada_split_smoke" in html and "1 finished" in html


def test_a_study_killed_midway_resumes_reports_and_a_rerun_runs_nothing(tmp_path, mini_data):
    """kill -9 the sweep while the 2nd trial runs; re-run: the 1st is kept, the 2nd continues from
    its checkpoint and ends at the metric of an uninterrupted run with the same seed; the finished
    study has its table, report and tables, is a plain Tune experiment, and a third run resumes
    without running anything (with other options it refuses)."""
    ITERS = 16   # per stage: the kill lands at the 2nd trial's first registered checkpoint, well before its end
    # (IntraDA's first is in stage 3: stage 1 is read from the shared artifact, which has its checkpoints)
    args = ("--smoke", "--max-concurrent", "1", "--set", f"iterations={ITERS}", "--set", f"intra_iterations={ITERS}",
            "--set", "eval_every=2")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--results", str(tmp_path), *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    study = tmp_path / "intrada_split_smoke"
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            ckpts = _registered(study) if (study / "_train").exists() else {}
            first = (_result_lines(study) if study.exists() else {}).get("source_only") or [{}]
            # both trials have a checkpoint Ray knows, and Tune has written the 1st trial's last result
            # (it can start the 2nd trial before that line is on disk: a kill then raced the write)
            if len(ckpts) == 2 and all(ckpts.values()) and first[-1].get("done") is True:
                break
            assert proc.poll() is None, "the study ended before it could be interrupted"
            time.sleep(0.2)
        else:
            pytest.fail("the second trial never wrote a checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = _checkpoints(study)
    lines_before = _result_lines(study)
    assert lines_before["source_only"][-1]["done"] is True  # the first trial had finished

    resumed = _run(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    df = pd.read_parquet(study / "trials.parquet")
    assert set(df["status"]) == {"TERMINATED"} and len(df) == 2

    # the finished trial did not run again: same results, no new checkpoint
    lines_after = _result_lines(study)
    assert lines_after["source_only"] == lines_before["source_only"]
    finished_run = f"train-{lines_before['source_only'][-1]['trial_id']}"
    assert _checkpoints(study)[finished_run] == killed_at[finished_run]
    # the unfinished one continued from its checkpoint, not from iteration 0: the resumed run (its own
    # time.started) reports no iteration again (Tune may keep the lines before the kill: stage 1's,
    # read from the shared artifact without a checkpoint, come before the first checkpoint)
    after = lines_after["intrada"]
    total = make_hparams(IntraDAConfig, {"preset": "smoke", "iterations": ITERS, "intra_iterations": ITERS},
                         PRESETS).total_iterations
    iterations = [r["iteration"] for r in after]
    assert iterations == sorted(set(iterations)), iterations
    resumed_lines = [r["iteration"] for r in after if r["time.started"] == after[-1]["time.started"]]
    assert resumed_lines[0] > ITERS + 2 and len(resumed_lines) < (total - ITERS) // 2, iterations
    assert after[-1]["done"] is True and after[-1]["iteration"] == total

    # ... and reached the same final metric as an uninterrupted run with the same seed
    row = df[df["method"] == "intrada"].iloc[0]
    torch.set_num_threads(1)  # as in the Ray worker (1 CPU)
    uninterrupted = run_local("intrada", {"method": "intrada", "lambda_split": 0.67, "seed": int(row["seed"]),
                                          "preset": "smoke", "iterations": ITERS, "intra_iterations": ITERS,
                                          "eval_every": 2})
    assert row["miou"] == pytest.approx(uninterrupted[-1]["miou"], abs=1e-6)

    # the finished study: its table, report, tables and index
    assert sorted(df["method"]) == ["intrada", "source_only"]
    assert df.loc[df["method"] == "intrada", "lambda_split"].item() == pytest.approx(0.67)
    assert (df["iterations"] > 0).all() and df["miou"].notna().all()
    report = (study / "report.html").read_text(encoding="utf-8")
    assert len(report) > 100_000 and 'id="fig-curves"' in report  # plotly.js embedded; an evaluation every 2 iterations
    assert set(df["gpu"]) == {"cpu"}
    kept = df[df["method"] == "source_only"]     # the trial never killed: Tune's wall clock covers its loop's
    assert (kept["wall_seconds"] >= kept["train_seconds"]).all()
    assert {"results.md", "results.tex", "classes.md", "classes.tex"} <= {p.name for p in (study / "tables").iterdir()}
    assert 'href="intrada_split_smoke/report.html"' in (tmp_path / "index.html").read_text(encoding="utf-8")
    if find_browser():  # kaleido's static export next to the report
        assert {"metric.png", "metric.svg", "classes.png", "cost.svg", "curves.png"} <= \
            {p.name for p in (study / "figures").iterdir()}
    # the study folder is a plain Tune experiment
    from ray.tune import ExperimentAnalysis

    ea = ExperimentAnalysis(str(study))
    assert sorted(t.trial_id for t in ea.trials) == sorted(df["trial_id"])
    assert ea.get_best_trial("miou", "max").last_result["miou"] == pytest.approx(df["miou"].max())
    before = _checkpoints(study)
    assert all(len(kept) == 1 for kept in before.values()), before   # only the latest checkpoint is kept

    # a third run finds everything finished: it resumes, runs nothing; other options are refused
    again = _run(tmp_path, *args, "--no-figures")      # not an option the results are tied to
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming" in again.stdout
    assert _checkpoints(study) == before
    changed = _run(tmp_path, *args[:-1], "eval_every=4")
    assert changed.returncode != 0 and "other options" in changed.stderr + changed.stdout


def test_optuna_variant_searches_lambda(tmp_path, mini_data):
    """Each suggested λ is scored on two seeds (a Train run each); Optuna sees their mean."""
    args = ("--smoke", "--optuna", "--num-samples", "2", "--seeds", "0", "1", "--no-figures")
    out = _run(tmp_path, *args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "intrada_split_optuna_smoke" / "trials.parquet")
    assert len(df) == 2 and set(df["status"]) == {"TERMINATED"} and set(df["method"]) == {"intrada"}
    assert df["lambda_split"].between(0, 1).all() and df["lambda_split"].nunique() == 2
    study = tmp_path / "intrada_split_optuna_smoke"
    assert list(study.glob("searcher-state-*.pkl"))
    # the Optuna study is in optuna.db (what optuna-dashboard opens), the same trials as Tune's
    storage = f"sqlite:///{study / 'optuna.db'}"
    ot = optuna.load_study(study_name="intrada_split_optuna_smoke", storage=storage)
    assert [t.state for t in ot.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.params["lambda_split"] for t in ot.trials) == pytest.approx(sorted(df["lambda_split"]))
    assert sorted(t.value for t in ot.trials) == pytest.approx(sorted(df["miou"]))
    # every configuration ran both seeds; its miou is their mean, their sample std beside it
    for tid, miou, std in zip(df["trial_id"], df["miou"], df["std.miou"]):
        runs = sorted(p.name for p in (study / "_train").glob(f"train-{tid}-seed*"))
        assert runs == [f"train-{tid}-seed0", f"train-{tid}-seed1"]
        seeds = [json.loads((study / "_train" / r / "checkpoint_manager_snapshot.json").read_text())
                 ["checkpoint_results"][-1]["metrics"]["miou"] for r in runs]
        assert miou == pytest.approx(sum(seeds) / 2) and std == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)
    assert df["seed"].isna().all()
    text = (study / "report.html").read_text(encoding="utf-8")
    assert 'id="fig-history"' in text and 'id="fig-parallel"' in text and "optuna.db" in text
    assert not (study / "figures").exists()          # --no-figures: the report's interactive figures only
    # a re-run resumes (the searcher reconnects to the same database) and adds no trial
    again = _run(tmp_path, *args)
    assert again.returncode == 0 and "Resuming" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(optuna.load_study(study_name="intrada_split_optuna_smoke", storage=storage).trials) == 2


_STOP_AT_FIRST_RESULT = """
import sys
import ray.tune.schedulers as schedulers

class StopAtFirstResult(schedulers.FIFOScheduler):
    # stands in for ASHA: stops every trial at its first result, so which trials stop is certain
    def __init__(self, **kwargs):
        super().__init__()

    def on_trial_result(self, tune_controller, trial, result):
        return schedulers.TrialScheduler.STOP

schedulers.ASHAScheduler = StopAtFirstResult
from udalab.studies.intrada_split import STUDY
from udalab.studies.run.command import main

sys.argv = ["intrada_split.py", *sys.argv[1:]]
raise SystemExit(main(STUDY))
"""


def test_a_trial_that_the_scheduler_stops_ends_its_train_run_and_the_sweep_goes_on(tmp_path, mini_data):
    """--asha: a stopped trial's Train run must end with it. When Tune reused the stopped trial's actor,
    its function thread was still inside TorchTrainer.fit(), the reuse failed after the thread timeout,
    the next trial errored, and an Optuna search hung (docs/architecture.md, "Ray")."""
    env = {**ENV, "TUNE_FUNCTION_THREAD_TIMEOUT_S": "3"}
    # IntraDA trains its stage 1 in the trial (share_inter off): a shared one is a run of its own that
    # reports to no scheduler, and the 3000 iterations here are what the stop must cut short
    out = subprocess.run([sys.executable, "-c", _STOP_AT_FIRST_RESULT, "--smoke", "--asha", "--max-concurrent", "1",
                          "--results", str(tmp_path), "--no-report", "--set", "iterations=3000", "--set", "eval_every=4",
                          "--set", "share_inter=false"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = tmp_path / "intrada_split_smoke"
    df = pd.read_parquet(study / "trials.parquet")
    assert sorted(df["method"]) == ["intrada", "source_only"] and set(df["status"]) == {"TERMINATED"}, df[["status", "error"]]
    # each Train run stopped soon after its first report, far from the 3000 iterations it was given
    for run in (study / "_train").glob("train-*"):
        last = max(json.loads((c / "history.json").read_text())[-1]["iteration"] for c in run.glob("checkpoint_*") if c.is_dir())
        assert 4 <= last < 3000, (run.name, last)
