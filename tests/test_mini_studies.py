"""The mini studies (studies/mini_adaptation.py, mini_gap.py, mini_hrda.py): rows of several methods
and data in one study, each paired with its own baseline row, run and resumed by the study runner
like every study, with the report every study gets."""
import json

import pytest

from udalab.analysis import store
from udalab.analysis.report import write_report
from udalab.core import layout
from udalab.studies.cli import load_study
from udalab.studies.run import command, trials


def _is_baseline_of(name: str, row: dict, base: dict) -> bool:
    """Each study's rule for a row's baseline: its own family's source-only row (mini_adaptation),
    the pair's source-only row for its target's supervised row (mini_gap), its segmentor's
    source-only row (mini_hrda)."""
    if name == "mini_adaptation":
        family = base["method"] == row["method"] or (base["method"], row["method"]) in {
            ("source_only", "advent"), ("source_only", "intrada")}
        return family and (base["method"] == "source_only" or base.get("self_training") is False) and \
            row.get("self_training") is not False
    if name == "mini_gap":
        return row["source"] == row["target"] == base["target"] != base["source"]
    return (base["method"] == row["method"] and base.get("self_training") is False and "source" not in base
            and (row.get("source") == "cityscapes" or row.get("self_training") is not False))


@pytest.mark.parametrize("name", ["mini_adaptation", "mini_gap", "mini_hrda"])
def test_every_row_is_a_valid_config_and_pairs_with_its_own_baseline(name):
    study = load_study(name)
    for preset in ("mini", "smoke"):    # every row through its method's own checks
        args = command.build_parser(study).parse_args(["--preset", preset])
        trials.check_trial_configs(study, args, trials.trial_settings(study, args))
    pairs = study.baseline_pairs()
    assert pairs and all(_is_baseline_of(name, row, base) for row, base in pairs), pairs
    paired = {i for pair in study.paired for i in pair}
    assert paired == set(range(len(study.rows)))           # every row is measured or a baseline


def _run(study, tmp_path, *argv: str) -> tuple[int, list[str]]:
    args = command.build_parser(study).parse_args(["--local", "--smoke", "--results", str(tmp_path), "--no-report",
                                                   *argv])
    rc = command.run_study(study, args)
    return rc, (tmp_path / trials.study_dir_name(study, args) / layout.RUNS_FILE).read_text().splitlines()


def test_mini_adaptation_runs_each_method_beside_its_baseline_resumes_and_reports(tmp_path, mini_data):
    """A study whose rows mix methods: each row runs its own method (ADVENT beside source only in the
    smoke rows), both scored on the held-out split for the paired Δ; a re-run runs nothing; the
    report renders with its baseline."""
    study = load_study("mini_adaptation")
    rc, lines = _run(study, tmp_path)
    assert rc == 0
    runs = {r["trial_id"]: r for r in map(json.loads, lines)}
    assert {tid: r["config"]["method"] for tid, r in runs.items()} == {"row0-seed0": "source_only",
                                                                       "row1-seed0": "advent"}
    out = tmp_path / "mini_adaptation_smoke_local"
    df = store.read_trials(out)
    assert list(df["method"]) == ["source_only", "advent"] and df["test.miou"].notna().all()
    assert (1, 0) in study.paired                       # ADVENT - source only, on the same seed
    assert _run(study, tmp_path) == (0, lines)          # resumed: nothing ran again
    html = trials.write_study_report(study, str(out), df, "smoke", static_figures=False).read_text(encoding="utf-8")
    assert "ADVENT" in html and "source only" in html and "baseline" in html
    # the paired-Δ table: ADVENT against source only on seed 0, the difference of their test mIoU
    paired = html[html.index("Each row against its own baseline, seed by seed"):]
    delta = df["test.miou"].iloc[1] - df["test.miou"].iloc[0]
    assert f"<td>ADVENT</td><td>source only</td><td>{delta:+.2f}</td>" in paired


def test_mini_gap_rows_train_and_score_on_their_own_data(tmp_path, mini_data):
    """A study whose rows name their own data: GTA5 -> Cityscapes source only beside Cityscapes trained
    on itself, each with its own sizes; the table tells them apart by their source."""
    study = load_study("mini_gap")
    rc, lines = _run(study, tmp_path)
    assert rc == 0
    configs = {r["trial_id"]: r["config"] for r in map(json.loads, lines)}
    assert {tid: (c["source"], c["target"], c["source_size"]) for tid, c in configs.items()} == {
        "row0-seed0": ("gta5", "cityscapes", [128, 72]), "row4-seed0": ("cityscapes", "cityscapes", [128, 64])}
    out = tmp_path / "mini_gap_smoke_local"
    df = store.read_trials(out)
    assert list(df["source"]) == ["gta5", "cityscapes"] and df["miou"].notna().all()
    html = write_report(out, study.report, df=df, static_figures=False).read_text(encoding="utf-8")
    assert "GTA5 -&gt; Cityscapes" in html and "cityscapes target supervised" in html
