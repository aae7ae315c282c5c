"""A multi-node sweep on one machine: ray.cluster_utils.Cluster starts a head and two worker nodes
as separate raylets; a study runs on it as on `ray up` (--address), each trial's two Ray Train
workers spread over the two worker nodes (DDP over gloo), its results on storage every node sees
(a file:// URI standing in for S3 or NFS). One worker node is killed mid-trial, as a spot reclaim
would: the trial's Train run restarts from its last checkpoint on a replacement node. The sweep runs
one row twice with the same seed (trials run one at a time here), so the trial that is not hit is
the uninterrupted run that the hit one must end equal to."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ray.cluster_utils import Cluster

from udalab.methods.engine.run import without_timings
from udalab.studies.run.ray_tune import DRIVER_RESOURCE

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "hrda_crop_size.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300"}
ITERS, EVERY = 16, 4   # per trial; the kill lands at its first registered checkpoint (iteration 4)
ROW = 10               # LR+HR 1.0 (HRDA), one of the study's smoke rows


@pytest.fixture
def cluster(free_port):
    """A head (no CPUs: it hosts the study's driver and the trials' Train controllers, gated by
    the driver resource) and two 1-CPU worker nodes (where the Train workers must go). Its dashboard
    is on a free port: a study running on this machine holds Ray's default 8265."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {DRIVER_RESOURCE: 1},
                                                      "include_dashboard": True, "dashboard_port": free_port})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        c.shutdown()


def _study(results: Path, address: str) -> list[str]:
    """The smoke schedule of row ROW, twice with seed 0 (--preset smoke: --smoke would keep one seed)."""
    return [sys.executable, str(SCRIPT), "--address", address, "--results", f"file://{results}", "--preset", "smoke",
            "--rows", str(ROW), "--seeds", "0", "0", "--no-figures",
            "--workers", "2", "--cpus-per-trial", "2", "--gpus-per-trial", "0", "--max-failures", "2",
            "--set", f"iterations={ITERS}", "--set", f"eval_every={EVERY}"]


def _train_runs(study: Path) -> dict[str, list[str]]:
    """Each Train run's checkpoints that Ray Train has registered (what a restart restores from)."""
    out = {}
    for run in (study / "_train").glob("train-*"):
        snap = run / "checkpoint_manager_snapshot.json"
        text = snap.read_text() if snap.exists() else ""
        out[run.name] = [c.name for c in run.glob("checkpoint_*") if c.is_dir() and c.name in text]
    return out


def _trial_results(study: Path) -> dict[str, list[dict]]:
    """Tune's result.json lines of each trial, keyed by its trial id."""
    out = {}
    for trial_dir in study.iterdir():
        if (trial_dir / "result.json").exists():
            lines = [json.loads(l) for l in (trial_dir / "result.json").read_text().splitlines()]
            out[lines[0]["trial_id"]] = lines
    return out


def test_a_lost_worker_node_restarts_the_trial_from_its_checkpoint(tmp_path, mini_data, cluster):
    c, (lost, kept) = cluster
    study = tmp_path / "sweep" / "hrda_crop_size"
    log = tmp_path / "sweep.log"                    # a file, not a pipe: Ray's output would fill a pipe
    proc = subprocess.Popen(_study(tmp_path / "sweep", c.address), env=ENV, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        runs = _train_runs(study) if (study / "_train").exists() else {}
        hit = [name for name, ckpts in runs.items() if ckpts]
        if hit:
            break
        assert proc.poll() is None, "the study ended before a checkpoint: " + log.read_text()[-3000:]
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no trial wrote a checkpoint")
    c.remove_node(lost, allow_graceful=False)       # a spot reclaim: raylet and its workers gone at once
    c.add_node(num_cpus=1)                          # ... and the autoscaler's replacement
    assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
    # Ray Train decided on one failure, the lost node's: a run that ends hands its controller nothing
    # to unpickle (a DDP-wrapped model it could not read was a failure, and a restart, per run)
    decisions = [line for line in log.read_text().splitlines() if "[FailurePolicy]" in line]
    assert len(decisions) == 1 and "RETRY" in decisions[0], decisions

    df = pd.read_parquet(study / "trials.parquet")
    assert len(df) == 2 and set(df["status"]) == {"TERMINATED"}, df[["trial_id", "status"]]
    assert set(df["mode"]) == {"lr+hr"} and df["sync_crop"].all() and set(df["seed"]) == {0}
    # the hit trial's Train run started twice (the engine's clock restarts with the run) and went on
    # from its checkpoint: its reports never go back to an iteration already reported
    killed_id = hit[0].removeprefix("train-")
    lines = _trial_results(study)[killed_id]
    starts = list(dict.fromkeys(l["time.started"] for l in lines))
    assert len(starts) == 2, f"expected one restart, the run started at {starts}"
    iterations = [l["iteration"] for l in lines]
    assert iterations == sorted(set(iterations)) and iterations[-1] == ITERS, iterations
    restarted = [l["iteration"] for l in lines if l["time.started"] == starts[1]]
    assert restarted[0] > EVERY, f"the restarted run reported iteration {restarted[0]} first: it began at 0"
    # the other trial (same row, same seed) ran whole on the nodes left (its placement group got both
    # worker CPUs), and the hit trial ended at its metrics
    other_id = df.loc[df["trial_id"] != killed_id, "trial_id"].item()
    other_lines = _trial_results(study)[other_id]
    assert len({l["time.started"] for l in other_lines}) == 1
    final, ref_final = without_timings(lines[-1]), without_timings(other_lines[-1])
    metrics = [k for k in ref_final if k == "miou" or k.startswith(("iou.", "test."))]
    assert len(metrics) > 10
    assert {k: final[k] for k in metrics} == pytest.approx({k: ref_final[k] for k in metrics}, abs=1e-6,
                                                                 nan_ok=True)

    html = (study / "report.html").read_text()
    assert "LR+HR" in html and "relative crop size" in html.lower()
    assert not (study / "figures").exists()                     # --no-figures: the report's own figures only
