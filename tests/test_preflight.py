"""`udalab preflight` (studies/run/preflight.py): every row of every study becomes a valid preflight run
(every stage cut, every size scaled, random init, the nested expert too); one row of every method trains
to its first checkpoint, is stopped, resumes to the end and is measured; a failing row is reported and
fails the command; the CPU memory measure counts what the block allocated; the cost arithmetic."""
import argparse
import json

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
        if hasattr(paper, "lr"):
            assert hp.lr == pytest.approx(paper.lr * preflight.LR_FACTOR), row
        for key in ("target_size", "crop_size", "size"):
            if getattr(paper, key, None) is not None:  # scaled, each side at least what a discriminator runs on
                for side, full in zip(getattr(hp, key), getattr(paper, key)):
                    assert max(16, round(full * SCALE)) <= side <= max(32, round(full * SCALE)), (row, key)
        if "expert_overrides" in config:
            expert = config["expert_overrides"]
            assert expert["iterations"] == N and expert["pretrained"] == "none" and expert["target_size"] == (64, 32)


# One row of every method, with every stage and switch its study's rows turn on: DAFormer's full row
# (self-training, warm-up, RCS, FD), HRDA's LR+HR with its sliding-window evaluation, IntraDA's two
# stages (ADVENT inside), MML's and MS-UDA's Cityscapes expert (source only inside) and CycleGAN, the
# multi-decoder's three stages with the copy, UDAS's full row (CycleGAN, UDA stage with AdaptSegNet inside,
# Domain CutMix, a self-training round: every train image labelled at the paper's 2975, so its pool is
# Cityscapes' train_extra), and the supervised baseline.
TRAINED = [("daformer_ablation", 4), ("hrda_crop_size", 10), ("intrada_split", 3), ("mml_ablation", 3),
           ("mml_ablation", 4), ("multidecoder_schedule", 0), ("udas_ablation", 4), ("udas_data", 0)]


def _args(**given):
    defaults = dict(size_scale=SCALE, iterations=N, data_root=None, device="cpu", no_progress=True,
                    seconds_per_iteration="measured", set=[])
    return argparse.Namespace(**{**defaults, **given})


CLUSTER = {"gpu_memory_gb": 1e-4, "price_usd_per_hour": 2.0, "boot_minutes": 30.0}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    with preflight.artifact_store(tmp_path_factory.mktemp("preflight-artifacts")):
        yield


@pytest.mark.parametrize("name,index", TRAINED)
def test_a_row_trains_stops_at_its_checkpoint_resumes_and_is_measured(name, index, generated, artifacts, tmp_path):
    """The row runs every stage, stops after its first checkpoint and resumes from it (the resumed run
    starts after that checkpoint's iteration and ends at the last), evaluates, and is measured: its
    networks' parameters, a peak memory, seconds per iteration; fits_gpu compares the peak with the
    GPU's memory, and the costs follow from the paper schedule's iterations."""
    study = load_study(name)
    row = study.grid_rows()[index]
    r = preflight.preflight_row(study, index, row, _settings(study, generated), _args(), tmp_path / "row", CLUSTER)
    assert r["ok"], r["error"]
    assert r["params"] > 0.1 and r["peak_memory_gb"] > 0 and r["seconds_per_iteration"] > 0
    assert r["fits_gpu"] is False  # nothing fits in 0.1 MB
    assert r["resumed_at"] >= 1 and r["metrics"]["done"]
    assert any(k.startswith(("iou.", "iiou.")) for k in r["metrics"]), sorted(r["metrics"])
    if r["metrics"]["stage"].startswith("round"):   # UDAS's round pseudo-labelled train_extra's images
        assert r["metrics"]["stat.pseudo_images"] > 0 and r["metrics"]["stat.pool_images"] == preflight.UNLABELLED_IMAGES
    hours = r["seconds_per_iteration"] * r["paper_iterations"] / 3600
    assert r["trial_hours"] == pytest.approx(hours, abs=1e-3)
    assert r["cost_usd"] == pytest.approx((hours + 0.5) * 2.0, abs=0.01)
    assert not (tmp_path / "row").exists()


def test_the_command_writes_its_table_and_json_and_fails_on_a_failing_row(tmp_path, capsys):
    """`udalab preflight` end to end on its own generated data (one cheap row), then on a data root
    whose dataset folders are empty: the row is reported with its error and the command exits 1."""
    from udalab.studies.cli import main

    out = tmp_path / "pf.json"
    argv = ["preflight", "udas_data", "--rows", "0", "--size-scale", str(SCALE), "--iterations", str(N),
            "--json", str(out), "--no-progress", "--device", "cpu", "--seconds-per-iteration", "published"]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    keys = {"row", "params", "peak_memory_gb", "fits_gpu", "seconds_per_iteration", "device", "trial_hours",
            "cost_usd", "ok", "error", "metrics"}
    assert len(rows) == 1 and keys <= set(rows[0]) and rows[0]["ok"] and rows[0]["error"] is None
    assert rows[0]["trial_hours"] is None and "unknown" in rows[0]["estimate_from"]  # no published time
    assert "udas_data" in capsys.readouterr().out
    for name in ("cityscapes", "gta5"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    assert main([*argv[:-2], "--data-root", str(tmp_path / "empty")]) == 1
    failed = json.loads(out.read_text())["rows"][0]
    assert not failed["ok"] and "empty" in failed["error"] and failed["peak_memory_gb"] is None


def test_the_cpu_memory_measure_counts_what_the_block_allocated():
    """On a CPU the peak resident memory above the block's start: a 64 MiB tensor made and freed inside
    the block is counted, one made before it is not, and memory freed before it and reused inside is."""
    before = torch.ones(16 * 2 ** 20)
    with preflight.peak_memory(torch.device("cpu")) as memory:
        x = torch.ones(16 * 2 ** 20)
        del x
    assert 60 * 2 ** 20 <= memory["bytes"] < 80 * 2 ** 20  # 64 MiB, give or take pages the process let go
    assert "CPU" in memory["how"]
    del before
    freed = [torch.ones(2 ** 14) for _ in range(1024)]  # 64 MiB of small blocks, freed before the block
    del freed
    with preflight.peak_memory(torch.device("cpu")) as memory:
        reused = [torch.ones(2 ** 14) for _ in range(1024)]
        del reused
    assert memory["bytes"] >= 60 * 2 ** 20


def test_costs_and_published_seconds():
    """A trial's hours are the paper schedule at the given seconds; instance-hours add the boot; DAFormer's
    published time is its paper's hours over its iterations; a method without one is unknown."""
    from udalab.analysis.costs import costs, published_seconds

    assert costs(1.8, 40000, 1.5, 30) == {"trial_hours": 20.0, "instance_hours": 20.5, "cost_usd": 30.75}
    assert costs(None, 40000, 1.5, 30)["cost_usd"] is None
    seconds, source = published_seconds("daformer")
    assert seconds == pytest.approx(16 * 3600 / 40000) and "published" in source
    assert published_seconds("advent")[0] is None
