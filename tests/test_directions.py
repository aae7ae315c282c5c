"""Directions (analysis/directions.py, analysis/record_tables_directions.py): a comparison's direction
is derived from its published rows, a measured comparison is paired per seed and agrees or not, and
every study's docs table is the render of its records."""
import math

import pandas as pd
import pytest

from udalab.analysis import record_tables_directions as rtd
from udalab.analysis import records
from udalab.analysis.directions import DirectionError, NotInRecord, count_line, match, published_comparisons, verdict

PUBLISHED = pd.DataFrame([{"label": "A", "method": "m", "x": 1.0, "miou": 40.0, "iou.road": 90.0, "iou.sky": 70.0,
                           "source": "toy paper, Table 1"},
                          {"label": "B", "method": "m", "x": 2.0, "miou": 42.5, "iou.road": 80.0, "iou.sky": 60.0,
                           "source": "toy paper, Table 1"}])
INFO = {"name": "toy", "config": ["method", "x"], "metrics": ["miou", "iou.road", "iou.sky"]}


def test_a_direction_is_the_sign_of_the_published_difference_of_two_rows():
    comps = published_comparisons(INFO | {"comparisons": [{"a": "A", "b": "B"}, {"a": "B", "b": "A"},
                                                          {"a": "A", "b": "B", "classes": ["road", "sky"]}]},
                                  PUBLISHED)
    assert [c.sign for c in comps] == [-1, 1, 1]
    assert [c.paper_delta for c in comps] == [-2.5, 2.5, 10.0]
    assert comps[0].a == {"method": "m", "x": 1.0} and comps[0].b == {"method": "m", "x": 2.0}
    assert comps[0].name == "A − B" and comps[2].classes == ("road", "sky")
    assert comps[1].source == "toy paper, Table 1" and comps[1].measured == "miou"


def test_a_figure_finding_declares_its_direction_and_rows_never_do():
    declared = {"claim": "x = 2 above x = 1", "a": {"x": 2.0}, "b": {"x": 1.0}, "direction": "-", "source": "Fig. 3"}
    (c,) = published_comparisons(INFO | {"comparisons": [declared]}, PUBLISHED)
    assert c.sign == -1 and math.isnan(c.paper_delta) and c.a == {"x": 2.0}
    with pytest.raises(DirectionError, match="remove `direction`"):
        published_comparisons(INFO | {"comparisons": [{"a": "A", "b": "B", "direction": "+"}]}, PUBLISHED)
    with pytest.raises(DirectionError, match="source"):
        published_comparisons(INFO | {"comparisons": [{k: v for k, v in declared.items() if k != "source"}]},
                              PUBLISHED)
    with pytest.raises(DirectionError, match="'C'"):
        published_comparisons(INFO | {"comparisons": [{"a": "A", "b": "C"}]}, PUBLISHED)
    same = PUBLISHED.assign(miou=40.0)
    with pytest.raises(DirectionError, match="no difference"):
        published_comparisons(INFO | {"comparisons": [{"a": "A", "b": "B"}]}, same)


def test_a_published_configuration_maps_to_exactly_one_record_configuration():
    confs = {"LR 1": {"mode": "lr", "crop_ratio": 1.0}, "HR 0.5": {"mode": "hr", "crop_ratio": 0.5},
             "LR 0.5": {"mode": "lr", "crop_ratio": 0.5}}
    assert match({"mode": "hr", "crop_ratio": 0.5}, confs) == "HR 0.5"
    with pytest.raises(DirectionError, match="2 configurations"):
        match({"mode": "lr"}, confs)
    with pytest.raises(NotInRecord, match="no configuration of the record"):
        match({"mode": "lr+hr"}, confs)


def test_verdicts_and_the_agreement_count():
    assert verdict(1, 2.0, 1.0) == "**agrees**"
    assert verdict(1, 0.5, 1.0) == "agrees, within 2 × std"
    assert verdict(-1, 2.0, 1.0) == "**disagrees**"
    assert verdict(-1, 0.5, 1.0) == "disagrees, within 2 × std"
    line = count_line([verdict(1, 2.0, 1.0), verdict(1, 0.5, 1.0), verdict(-1, 2.0, 1.0), verdict(-1, 0.5, 1.0)])
    assert line.startswith("**2 / 4 agree** in direction (1 of them beyond") and "1 / 4 disagree beyond it" in line


def _crop_trials(hr_075_offset: float) -> pd.DataFrame:
    """A made-up HRDA crop-size record: mIoU grows with the crop, HR 1 above LR at equal size (but
    at 0.75 by `hr_075_offset`), LR 5 above HR on road and sidewalk, LR + HR 1 three above LR 1."""
    rows = []
    configs = [("lr", r) for r in (0.25, 0.5, 0.75, 1.0)] + [("hr", r) for r in (0.25, 0.5, 0.75)] + [("lr+hr", 1.0)]
    for mode, ratio in configs:
        miou = 10 * ratio + {"lr": 0.0, "hr": hr_075_offset if ratio == 0.75 else 1.0, "lr+hr": 3.0}[mode]
        stuff = 50.0 if mode == "lr" else 45.0
        for seed in (0, 1, 2):
            rows.append({"configuration": f"{mode} {ratio}", "method": "hrda", "mode": mode, "crop_ratio": ratio, "self_training": True,
                         "seed": seed, "machine": "m", "test.miou": miou + 0.1 * seed,
                         "test.iou.road": stuff + 0.1 * seed, "test.iou.sidewalk": stuff})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("offset, agree, against", [(1.0, 12, 0), (-1.0, 11, 1)])
def test_a_study_table_counts_the_comparisons_its_record_agrees_with(monkeypatch, offset, agree, against):
    monkeypatch.setitem(rtd.STUDIES, "toy", ("toy_record", ("hrda",), lambda rec: _crop_trials(offset)))
    text = rtd.direction_table({"toy_record": None}, "toy")
    assert f"records/toy_record (mini data not recorded): **{agree} / 12 agree** in direction ({agree} of them beyond" in text
    assert f"{against} / 12 disagree beyond it" in text
    assert "| lr+hr 1.0 − lr 1.0 | test mIoU | +5.5 | +3.0 ± 0.2 (+3.0, +3.0, +3.0) | **agrees** |" in text


def test_a_record_of_some_rows_compares_what_it_ran_and_names_the_rest(monkeypatch):
    """A record without HR 0.75: its three comparisons are "not run", the count is over the other 9."""
    partial = _crop_trials(1.0).query("configuration != 'hr 0.75'")
    monkeypatch.setitem(rtd.STUDIES, "toy", ("toy_record", ("hrda",), lambda rec: partial))
    text = rtd.direction_table({"toy_record": None}, "toy")
    assert text.count("| not run in the record |") == 3
    assert "**9 / 9 agree** in direction" in text and "; 3 not compared (their rows are not in the record)" in text
    monkeypatch.setitem(rtd.STUDIES, "toy", ("toy_record", ("hrda",), lambda rec: partial.assign(mode="lr")))
    with pytest.raises(DirectionError, match="configurations of the record"):        # two rows match: still an error
        rtd.direction_table({"toy_record": None}, "toy")


def test_a_study_without_a_record_says_so(monkeypatch):
    monkeypatch.setitem(rtd.STUDIES, "toy", (None, ("intrada",), None))
    text = rtd.direction_table({}, "toy")
    n = len(rtd.study_comparisons("toy"))
    assert n >= 3 and text.count("| no record | –") == n and f"0 / {n} compared" in text


def test_a_study_table_names_the_mini_data_its_record_ran_on():
    df = pd.DataFrame({"provenance.data": ["source GTA5 gta5-v3: 300 files, 0d8d; target Cityscapes cityscapes-v4: 300 files",
                                           "target_val Cityscapes cityscapes-v4: 90 files, 1ac4", None]})
    assert rtd.mini_data_of(df) == "mini data cityscapes-v4, gta5-v3"
    assert rtd.mini_data_of(pd.DataFrame({"seed": [0]})) == "mini data not recorded"


def test_every_direction_table_is_in_the_docs_and_equals_its_render():
    used = records.uses()
    names = [f"directions_{s}" for s in [*rtd.STUDIES, *rtd.VARIANTS]] + ["method_vs_source_only"]
    assert all(n in used for n in names), [n for n in names if n not in used]
    differences = [d for d in records.render(check=True) if d.split("table ")[1].split("\n")[0] in names]
    assert not differences, "\n\n".join(differences)


def test_by_step_pairs_a_method_with_its_source_only_model_at_every_evaluation():
    """Where along a schedule a method passes its source-only model: val at each evaluation, test at
    the end, each paired per seed against twice the larger seed std."""
    runs = pd.DataFrame([{"run": i, "configuration": c, "seed": s, "machine": "m"}
                         for i, (c, s) in enumerate([(c, s) for c in ("source only", "method") for s in (0, 1, 2)])])
    reports = []
    for run in runs.itertuples():
        gain = 0.0 if run.configuration == "source only" else 1.0
        for step, val in ((100, 10.0), (200, 20.0)):
            reports.append({"run": run.run, "seed": run.seed, "iteration": step,
                            "miou": val + gain * (step / 100 - 1) * 3 + 0.1 * run.seed,
                            **({"test.miou": val + 2 * gain + 0.2 * run.seed} if step == 200 else {})})
    text = rtd.by_step(runs, pd.DataFrame(reports), "method", "source only")
    lines = text.splitlines()[2:]
    assert lines[0] == "| 100 | val | 10.1 | 10.1 | +0.0 (+0.0, +0.0, +0.0) | 0.2 | within 2 × std |"
    assert lines[1] == "| 200 | val | 20.1 | 23.1 | +3.0 (+3.0, +3.0, +3.0) | 0.2 | **above** |"
    assert lines[2] == "| 200 | test | 20.2 | 22.2 | +2.0 (+2.0, +2.0, +2.0) | 0.4 | **above** |"
    assert len(lines) == 3


def test_after_stage_pairs_each_later_evaluation_with_the_same_run_where_the_stage_began():
    """What a later stage adds (IntraDA's stage 3 to its G_inter): each evaluation after the base step
    against the same run's evaluation at it, paired per seed; other configurations stay out."""
    runs = pd.DataFrame([{"run": i, "configuration": c, "seed": s, "machine": "m"}
                         for i, (c, s) in enumerate([(c, s) for c in ("other", "stage") for s in (0, 1, 2)])])
    reports = []
    for run in runs.itertuples():
        for step, val in ((100, 10.0), (200, 12.0), (300, 11.0)):
            gain = 5.0 if run.configuration == "other" else 0.0
            reports.append({"run": run.run, "seed": run.seed, "iteration": step, "miou": val + gain + 0.1 * run.seed,
                            **({"test.miou": val + 0.6 * run.seed} if step in (200, 300) else {})})
    rows = rtd.after_stage(runs, pd.DataFrame(reports), "stage", 200)
    assert rows == [["stage", 300, "val", "12.1", "11.1", "−1.0 (−1.0, −1.0, −1.0)", "0.2", "**below**"],
                    ["stage", 300, "test", "12.6", "11.6", "−1.0 (−1.0, −1.0, −1.0)", "1.2", "within 2 × std"]]
