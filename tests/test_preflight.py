"""`udalab preflight` (studies/run/preflight.py): every row of every study becomes a valid preflight run
(every stage cut, every size scaled, random init, the nested expert too); one row of every method trains
to its first checkpoint, is stopped, resumes to the end and is measured; a failing row is reported and
fails the command; the CPU memory measure counts torch's allocations; the cost arithmetic."""
import argparse
import json
import math

import pytest
import torch

from udalab.studies.cli import load_study, study_names
from udalab.studies.run import preflight

SCALE, N = 0.0625, 2


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every dataset any study reads, generated at its real size x SCALE (a few images a split)."""
    return preflight.generate_data(preflight.REAL_SIZES, SCALE, tmp_path_factory.mktemp("preflight-data"))


def _settings(study, data_root):
    from udalab.studies.run.trials import trial_settings

    ns = argparse.Namespace(preset="paper", smoke=False, set=[], data_root=str(data_root), rows=None, seeds=None)
    return trial_settings(study, ns)


@pytest.mark.parametrize("name", study_names())
def test_every_row_of_every_study_becomes_a_valid_preflight_run(name, generated):
    """Each row's preflight config passes its method's own checks against the generated data (sizes that
    fit the crops, UDAS's labelled count within the split); every stage is at most N long, sizes are scaled,
    the weights random, and MML's expert is shortened, scaled and random too."""
    from udalab.methods import check_config
    from udalab.studies.run.trials import trial_run_config

    study = load_study(name)
    settings = _settings(study, generated)
    for row in study.grid_rows():
        config = preflight.row_config(study, row, settings, N, SCALE, generated=True)
        hp = check_config(config, data=True)
        paper = check_config(trial_run_config({"row": row, "seed": study.seeds[0]}, settings))
        assert hp.total_iterations <= 3 * N < paper.total_iterations, row
        assert getattr(hp, "pretrained", "none") == "none", row
        for key in ("target_size", "crop_size", "size"):
            if getattr(paper, key, None) is not None:
                assert tuple(getattr(hp, key)) == tuple(max(16, round(s * SCALE)) for s in getattr(paper, key)), row
        if "expert_overrides" in config:
            expert = config["expert_overrides"]
            assert expert["iterations"] == N and expert["pretrained"] == "none" and expert["target_size"] == (64, 32)
