"""studies/hrda_crop_size.py end to end on Ray: DDP over 2 Ray Train workers per trial (gloo on
CPU), the crop-size rows in trials.parquet, the grouped report."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "hrda_crop_size.py"


def test_hrda_crop_size_smoke_with_two_workers(tmp_path, mini_data):
    """DDP over 2 Ray Train workers (gloo on CPU), each trial taking all CPUs: the second trial only
    starts if the first one's worker placement group was freed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "--smoke", "--workers", "2",
                          "--cpus-per-trial", "2"], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = tmp_path / "hrda_crop_size_smoke"
    df = pd.read_parquet(study / "trials.parquet")
    assert set(df["status"]) == {"TERMINATED"} and len(df) == 2
    assert sorted(df["mode"]) == ["lr", "lr+hr"] and set(df["crop_ratio"]) == {1.0}
    assert df["sync_crop"].all()
    assert df["miou"].between(0, 100).all() and (df["iterations"] == 4).all()
    html = (study / "report.html").read_text()
    assert "LR only" in html and "LR+HR" in html and "relative crop size" in html.lower()
