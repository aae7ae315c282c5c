"""Records of measured runs and the docs tables generated from them (analysis/records.py): every
table in docs/*.md is what its records give, every manifest is complete, docs/ holds no data, a
record written by write_record reads back, and paired differences pair what they should."""
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from udalab.analysis import records
from udalab.analysis.paired import PairingError, paired

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DATA = {".json", ".jsonl", ".parquet", ".csv"}


def test_every_docs_table_equals_what_its_records_give():
    differences = records.render(check=True)
    assert not differences, "tables that differ from their records (run `udalab records render`):\n" + \
        "\n\n".join(differences)


def test_the_docs_show_tables_and_every_table_has_a_renderer():
    used = records.uses()
    assert len(used) >= 30
    assert set(used) <= set(records.tables())


def test_a_hand_edited_number_in_a_table_fails_the_check(tmp_path):
    for md in DOCS.glob("*.md"):
        shutil.copy(md, tmp_path / md.name)
    doc = tmp_path / "results.md"
    text = doc.read_text(encoding="utf-8")
    start = text.index("<!-- table: mini_adaptation -->")
    number = re.compile(r"\d+\.\d").search(text, start)
    edited = text[:number.start()] + str(int(number.group()[0]) + 1 if number.group()[0] != "9" else 1) + \
        text[number.start() + 1:]
    doc.write_text(edited, encoding="utf-8")
    differences = records.render(check=True, docs=tmp_path)
    assert [d.splitlines()[0] for d in differences] == ["results.md: table mini_adaptation"]
    assert doc.read_text(encoding="utf-8") == edited            # check writes nothing
    assert records.render(docs=tmp_path) == ["results.md: table mini_adaptation"]
    assert doc.read_text(encoding="utf-8") == text              # render restores the generated table


def test_a_table_without_a_renderer_is_an_error_naming_it(tmp_path):
    (tmp_path / "x.md").write_text("<!-- table: no_such_table -->\n| a |\n<!-- /table -->\n", encoding="utf-8")
    with pytest.raises(records.RecordError, match="no_such_table"):
        records.render(check=True, docs=tmp_path)


def test_every_record_has_a_complete_manifest_listing_files_that_exist():
    folders = sorted(p for p in (ROOT / "records").iterdir() if p.is_dir())
    assert folders and [p.name for p in folders] == records.list_records()
    for folder in folders:
        assert records.check_manifest(folder / "manifest.json") == [], folder.name
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        assert all(Path(f).suffix in DATA for f in manifest["files"])


def test_a_manifest_with_a_missing_key_or_file_is_reported(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "stray.jsonl").write_text("{}\n")
    (folder / "manifest.json").write_text(json.dumps({"experiment": "other", "description": "d", "command": ["c"],
                                                      "commit": "abc", "machine": {}, "date": "yesterday",
                                                      "cpu_hours": None, "files": ["runs.jsonl"]}))
    problems = "\n".join(records.check_manifest(folder / "manifest.json"))
    for expected in ("'other' is not the folder's name", "commit 'abc'", "machine must name", "date 'yesterday'",
                     "lists 'runs.jsonl'", "stray.jsonl: a data file the manifest does not list"):
        assert expected in problems


def test_docs_hold_no_data_files():
    assert [str(p.relative_to(ROOT)) for p in DOCS.rglob("*") if p.suffix in DATA] == []


def _runs_file(path: Path) -> Path:
    runs = [{"row": "source only", "method": "source_only", "config": {"preset": "smoke", "seed": s, "lr": [1, 2]},
             "reports": [{"iteration": 1, "miou": 10.0 + s, "train_seconds": 60.0},
                         {"iteration": 2, "miou": 11.0 + s, "test.miou": 12.0 + s, "train_seconds": 1800.0,
                          "provenance.device": "Some CPU (AVX2), 2 CPU threads"}]} for s in (0, 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return path


def test_write_record_round_trips_and_fills_commit_machine_date(tmp_path):
    src = _runs_file(tmp_path / "out.jsonl")
    folder = records.write_record("smoke_runs", {"runs.jsonl": src}, "python bench.py --out out.jsonl",
                                  "two smoke runs", root=tmp_path / "records")
    rec = records.read_record("smoke_runs", root=tmp_path / "records")
    m = rec.manifest
    assert folder == tmp_path / "records" / "smoke_runs" and m["files"] == ["runs.jsonl"]
    assert m["command"] == ["python bench.py --out out.jsonl"] and m["description"] == "two smoke runs"
    assert re.match(r"^[0-9a-f]{12}(-dirty)?$|^unknown: ", m["commit"])
    assert set(m["machine"]) == {"cpu", "isa", "cores", "gpu"} and m["machine"]["cores"] >= 1
    assert m["date"].endswith("Z")
    assert m["cpu_hours"] == pytest.approx(2 * 1800 * 2 / 3600)        # last reports, 2 threads each
    ids = [dict(json.loads(line), trial_id=f"row0-seed{i}") for i, line in enumerate(src.read_text().splitlines())]
    src.write_text("".join(json.dumps(r) + "\n" for r in ids))
    pd.DataFrame({"trial_id": ["row0-seed0", "row0-seed1", "row1-seed0"], "train_seconds": [1800.0, 1800.0, 900.0],
                  "provenance.device": ["Some CPU (AVX2), 2 CPU threads"] * 3}).to_parquet(tmp_path / "trials.parquet")
    both = records.write_record("both_files", [src, tmp_path / "trials.parquet"], "c", "d", root=tmp_path / "records")
    # the two runs both files hold count once, the parquet's third run too
    assert json.loads((both / "manifest.json").read_text())["cpu_hours"] == pytest.approx((2 * 1800 + 900) * 2 / 3600)
    runs = rec.runs()
    assert list(runs["seed"]) == [0, 1] and list(runs["test.miou"]) == [12.0, 13.0]
    assert list(runs["lr"]) == ["[1, 2]"] * 2 and set(runs["machine"]) == {records.machine_label(m)}
    assert len(rec.reports()) == 4
    with pytest.raises(records.RecordError, match="replace=True"):
        records.write_record("smoke_runs", [src], "c", "d", root=tmp_path / "records")
    records.write_record("smoke_runs", [src], "c", "d", root=tmp_path / "records", replace=True)
    assert records.read_record("smoke_runs", root=tmp_path / "records").manifest["files"] == ["out.jsonl"]


def test_a_wall_time_checkpoint_between_evaluations_is_no_evaluation_of_the_record(tmp_path):
    """The engine reports a checkpoint between two evaluations with the last evaluation's metrics
    repeated (`between_evaluations`); a record's readers leave it out: a table's evaluation steps are
    the run's evaluations."""
    src = _runs_file(tmp_path / "out.jsonl")
    runs = [json.loads(line) for line in src.read_text().splitlines()]
    first = runs[0]["reports"][0]
    runs[0]["reports"].insert(1, {"iteration": 1, "miou": first["miou"], "done": False, "between_evaluations": True})
    src.write_text("".join(json.dumps(r) + "\n" for r in runs))
    records.write_record("smoke_runs", [src], "c", "d", root=tmp_path / "records")
    rec = records.read_record("smoke_runs", root=tmp_path / "records")
    reports = rec.reports()
    assert len(reports) == 4 and list(reports[reports["run"] == 0]["iteration"]) == [first["iteration"], 2]
    assert "between_evaluations" not in reports and list(rec.runs()["reports"]) == [2, 2]


def test_two_cpus_of_one_generic_name_are_two_machines():
    """A virtual machine's CPU name can be generic: the family, model and stepping go with it into the
    manifest's `cpu` (and a run's provenance.device), so that records of two such CPUs never pair."""
    from udalab.core.machine import cpu_model

    info = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\n"
            "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_model(info) == "Intel(R) Xeon(R) Processor (family 6, model 167, stepping 1)"
    assert cpu_model(info.replace("167", "143")) != cpu_model(info)
    assert cpu_model("model name\t: Some CPU\n") == "Some CPU"


def test_write_record_refuses_bad_names_and_missing_files_before_writing(tmp_path):
    with pytest.raises(records.RecordError, match="lower-case"):
        records.write_record("Run 2026-12-01", [], "c", "d", root=tmp_path)
    with pytest.raises(records.RecordError, match="does not exist"):
        records.write_record("x", [tmp_path / "missing.jsonl"], "c", "d", root=tmp_path)
    assert not (tmp_path / "x").exists()


def _trials(rows):
    return pd.DataFrame(rows, columns=["configuration", "baseline", "seed", "m", "machine"])


def test_paired_differences_are_per_seed_and_set_against_twice_the_larger_std():
    df = _trials([("base", None, 0, 10.0, "a"), ("base", None, 1, 12.0, "a"), ("base", None, 2, 11.0, "a"),
                  ("method", "base", 0, 13.0, "a"), ("method", "base", 1, 14.0, "a"), ("method", "base", 2, 16.0, "a")])
    out = paired(df, "m").set_index("configuration")
    assert out.loc["method", "paired"] == (3.0, 2.0, 5.0) and out.loc["method", "paired_mean"] == pytest.approx(10 / 3)
    assert out.loc["method", "delta"] == pytest.approx(43 / 3 - 11)
    assert out.loc["method", "bar"] == pytest.approx(2 * pd.Series([13.0, 14.0, 16.0]).std())
    assert bool(out.loc["method", "clears"]) is True and out.loc["base", "clears"] is None
    # one seed of the method so far: its std is unknown, so there is no bar to clear (however far
    # its one value lies from the baseline's mean)
    one = paired(df[(df["configuration"] == "base") | (df["seed"] == 0)].assign(m=lambda d: d["m"] + 10 * d["baseline"].notna()),
                 "m").set_index("configuration")
    assert one.loc["method", "paired"] == (13.0,) and math.isnan(one.loc["method", "bar"])
    assert one.loc["method", "clears"] is None


def test_paired_refuses_runs_of_two_machines_and_a_missing_baseline():
    two = _trials([("base", None, 0, 10.0, "xeon"), ("method", "base", 0, 11.0, "epyc")])
    with pytest.raises(PairingError, match="two machines"):
        paired(two, "m")
    with pytest.raises(PairingError, match="no trials"):
        paired(_trials([("method", "base", 0, 11.0, "a")]), "m")


@pytest.mark.parametrize("table, module, names", [("preflight_memory_cpu", "record_tables_preflight", "MEMORY_RECORDS"),
                                                   ("suite_time", "record_tables_other", "SUITE_RECORDS"),
                                                   ("udas_data_semantic_v3", "record_tables_studies", "UDAS_DATA_SEMANTIC"),
                                                   ("udas_data_consistency_v3", "record_tables_studies",
                                                    "UDAS_DATA_ONE_MACHINE")])
def test_a_table_of_two_records_refuses_records_of_two_machines(tmp_path, table, module, names):
    """Tables that put two records' numbers side by side pair runs of one machine only."""
    import importlib

    pair = list(getattr(importlib.import_module(f"udalab.analysis.{module}"), names))
    for name in pair:
        shutil.copytree(ROOT / "records" / name, tmp_path / name)
    assert "|" in records.tables()[table](records.RecordSet(tmp_path))
    manifest = tmp_path / pair[-1] / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["machine"]["cpu"] = "another CPU"
    manifest.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="machines"):
        records.tables()[table](records.RecordSet(tmp_path))


def test_the_udas_variant_table_pairs_each_row_with_supervised_on_its_own_labels(tmp_path):
    """udas_data_notranslate_v3: UDAS − ST and Supervised at half its steps each paired with Supervised
    on the same labels and seeds, UDAS − ST also with the short Supervised; UDAS − ST's first stage's
    end beside; the per-class table pairs UDAS − ST with the full Supervised alone."""
    def run(method, seed, test, **config):
        stages = [("uda", 600, test - 1), ("round1", 900, test)] if method == "udas" else [(None, 600, test)]
        return {"config": {"method": method, "labelled": 50, "seed": seed, **config},
                "reports": [{"iteration": it, "stage": stage, "miou": m, "test.miou": m, "test.iou.road": m,
                             "train_seconds": 1.0} for stage, it, m in stages]}
    runs = ([run("supervised", s, v) for s, v in zip((0, 1, 2), (20.0, 22.0, 24.0))]
            + [run("supervised", s, v, iterations=300) for s, v in zip((0, 1, 2), (19.0, 21.0, 22.0))]
            + [run("udas", s, v, translate=False) for s, v in zip((0, 1, 2), (15.0, 18.0, 19.0))])
    src = tmp_path / "runs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in runs))
    records.write_record("udas_data_notranslate_v3", [src], "c", "d", root=tmp_path / "records")
    recs = records.RecordSet(tmp_path / "records")
    rows = {line.split(" | ")[0].strip("| "): line for line in records.tables()["udas_data_notranslate_v3"](recs).splitlines()}
    assert "−1.0, −1.0, −2.0" in rows["Supervised at 300 steps, 50"]          # against Supervised, 50
    udas = rows["UDAS − ST, 50"]
    assert "−5.0, −4.0, −5.0" in udas and "−4.0, −3.0, −3.0" in udas and "16.3 ± 2.1" in udas   # stage end: 14, 17, 18
    classes = records.tables()["udas_data_notranslate_classes_v3"](recs).splitlines()
    assert classes[0].startswith("| labelled images: (UDAS − ST) − Supervised") and classes[2:] == ["| 50 | 0, 1, 2 | −4.7 |"]


def test_the_consistency_table_names_each_udas_variant_and_pairs_it_with_supervised_and_its_lambda_1_row(tmp_path):
    """udas_data_consistency_v3: a run's variant is read from its config (translate, lambda_st_kl); each
    UDAS variant is paired with Supervised on its labels (Supervised at half its steps left out), its
    round's gain is its final test mIoU minus its first stage's end, and a variant without the
    consistency term is paired with the same variant with it; the variant direction tables compare
    Supervised with that variant's rows alone, over the records of one machine; a longer round and a
    first stage without its UDA step are left to tables of their own."""
    def run(method, seed, test, labelled=50, **config):
        stages = [("uda", 600, test - 1 - seed), ("round1", 900, test)] if method == "udas" else [(None, 600, test)]
        return {"config": {"method": method, "labelled": labelled, "seed": seed, **config},
                "reports": [{"iteration": it, "stage": stage, "miou": m, "test.miou": m, "train_seconds": 1.0}
                            for stage, it, m in stages]}
    seeds_ = (0, 1, 2)
    older = ([run("supervised", s, 20.0 + s) for s in seeds_] + [run("supervised", s, 5.0, iterations=300) for s in seeds_]
             + [run("udas", s, 15.0 + s, translate=False) for s in seeds_]
             + [run("supervised", s, 26.0 - s, labelled=100) for s in seeds_])
    newer = ([run("udas", s, 18.0 + 2 * s, translate=False, lambda_st_kl=0) for s in seeds_]
             + [run("udas", s, 14.0, lambda_st_kl=0) for s in seeds_] + [run("udas", s, 30.0) for s in seeds_]
             + [run("udas", s, 25.0, translate=False, lambda_st_kl=0, st_iterations=600) for s in seeds_])
    translated = ([run("udas", s, 27.0, labelled=100) for s in seeds_]
                  + [run("udas", s, 28.0 + s, labelled=100, lambda_st_kl=0) for s in seeds_])
    no_uda = [run("udas", s, 16.0, translate=False, uda=False, lambda_st_kl=0) for s in seeds_]
    for name, runs in (("udas_data_notranslate_v3", older), ("udas_data_consistency_v3", newer),
                       ("udas_data_consistency_translated_v3", translated), ("udas_data_no_uda_v3", no_uda)):
        src = tmp_path / f"{name}.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in runs))
        records.write_record(name, {"runs.jsonl": src}, "c", "d", root=tmp_path / "records")
    recs = records.RecordSet(tmp_path / "records")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")
            for line in records.tables()["udas_data_consistency_v3"](recs).splitlines()[2:]}
    assert list(rows) == ["Supervised, 100", "UDAS, 100", "UDAS, λ_st_kl 0, 100",
                          "Supervised, 50", "UDAS − ST, 50", "UDAS − ST, λ_st_kl 0, 50", "UDAS, 50", "UDAS, λ_st_kl 0, 50"]
    assert rows["UDAS, λ_st_kl 0, 100"][10].strip(" |") == "+1.0, +2.0, +3.0 (+2.0 ± 1.0)"
    kl0 = rows["UDAS − ST, λ_st_kl 0, 50"]
    assert kl0[5] == "−2.0, −1.0, +0.0 (−1.0 ± 1.0)"                 # against Supervised: 20, 21, 22
    assert kl0[9] == "+1.0, +2.0, +3.0 (+2.0 ± 1.0)"                 # final minus the first stage's end
    assert kl0[10].strip(" |") == "+3.0, +4.0, +5.0 (+4.0 ± 1.0)"    # against UDAS − ST (λ_st_kl 1)
    assert rows["UDAS, λ_st_kl 0, 50"][10].strip(" |") == "−16.0, −16.0, −16.0 (−16.0 ± 0.0)"
    directions = records.tables()["directions_udas_data_notranslate_consistency"](recs)
    assert "| UDAS − ST, λ_st_kl 0, 50 − Supervised, 50 |" in directions and "(−2.0, −1.0, +0.0)" in directions
    # the preset's UDAS rows of the variants' records against Supervised, at each count they ran
    preset = records.tables()["directions_udas_data_preset_rerun"](recs)
    assert "| UDAS, 100 − Supervised, 100 | test mIoU | −0.6 | +2.0 ± 2.0 (+1.0, +2.0, +3.0) | disagrees" in preset
    assert "| UDAS, 50 − Supervised, 50 | test mIoU | +5.9 | +9.0 ± 2.0 (+10.0, +9.0, +8.0) | **agrees** |" in preset
    assert "1 / 2 agree" in preset and "λ_st_kl" not in preset
    plain = records.tables()["directions_udas_data_notranslate"](recs)
    assert "| UDAS − ST, 50 − Supervised, 50 |" in plain and "(−5.0, −5.0, −5.0)" in plain
    # a longer round is a table of its own: beside the same row at the preset's round and Supervised
    longer = [line.split(" | ") for line in records.tables()["udas_data_long_round_v3"](recs).splitlines()[2:]]
    assert [r[0].strip("| ") for r in longer] == ["Supervised, 50", "UDAS − ST, λ_st_kl 0, 50",
                                                  "UDAS − ST, λ_st_kl 0, round of 600 steps, 50"]
    assert longer[2][-1].strip(" |") == "+7.0, +5.0, +3.0 (+5.0 ± 2.0)"
    # so is a first stage without its UDA step: beside the same row with it, its first stage's end
    nouda = [line.split(" | ") for line in records.tables()["udas_data_no_uda_v3"](recs).splitlines()[2:]]
    assert [r[0].strip("| ") for r in nouda] == ["Supervised, 50", "UDAS − ST, λ_st_kl 0, 50",
                                                 "UDAS − ST − UDA, λ_st_kl 0, 50"]
    assert nouda[2][-3] == "14.0 ± 1.0"                                  # its first stage's end: 16 − 1 − seed
    assert nouda[2][-1].strip(" |") == "−2.0, −4.0, −6.0 (−4.0 ± 2.0)"  # 16 against 18, 20, 22


def test_the_multidecoder_tables_read_the_schedule_length_and_each_rows_evaluations(tmp_path):
    """multidecoder_schedule_2400_voc_v2: the table's header names the record's schedule, not the
    study's 600 steps; the curve puts each row's seed-mean val mIoU under the steps it was evaluated
    at, with the stage that trained then, and leaves the other steps empty."""
    def run(schedule, seed, evaluations):
        return {"config": {"method": "multidecoder", "schedule": schedule, "seed": seed},
                "reports": [{"iteration": it, "stage": stage, "miou": m + seed, "test.miou": m + seed,
                             "train_seconds": 1.0} for it, stage, m in evaluations]}
    single = [(1200, "1-s", 30.0), (2400, "1-s", 40.0)]
    staged = [(800, "1-d", 0.0), (1600, "2-s", 20.0), (2400, "3-b", 38.0)]
    runs = [run("s", s, single) for s in (0, 1, 2)] + [run("d>s>b", s, staged) for s in (0, 1, 2)]
    src = tmp_path / "runs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in runs))
    records.write_record("multidecoder_schedule_2400_voc_v2", [src], "c", "d", root=tmp_path / "records")
    recs = records.RecordSet(tmp_path / "records")
    schedule = records.tables()["multidecoder_schedule_2400_voc_v2"](recs).splitlines()
    assert schedule[0].startswith("| schedule (2400 steps) |")
    assert "−2.0, −2.0, −2.0" in next(line for line in schedule if line.startswith("| depth first, s→b"))
    curve = records.tables()["multidecoder_curve_2400_voc_v2"](recs).splitlines()
    assert curve[0] == "| schedule | step 800 | step 1200 | step 1600 | step 2400 |"
    assert curve[2:] == ["| depth first, s→b | 1.0 (d) |  | 21.0 (s) | 39.0 (b) |",
                         "| single decoder |  | 31.0 (s) |  | 41.0 (s) |"]


def test_the_intrada_grid_table_pairs_each_lambda_with_advent_and_advent_with_source_only(tmp_path):
    """intrada_split_grid_v3: the rows in the study's order (source only, ADVENT, λ ascending), each λ
    paired per seed with the ADVENT model its stage 3 starts from, ADVENT with source only."""
    from udalab.analysis.record_tables_directions import INTRADA_GRID

    def run(method, seed, test, **config):
        return {"config": {"method": method, "seed": seed, **config},
                "reports": [{"iteration": 600, "stage": "inter", "miou": test, "test.miou": test, "train_seconds": 1.0}]}
    runs = ([run("intrada", s, v, lambda_split=1.0) for s, v in zip((0, 1, 2), (16.0, 15.0, 17.0))]
            + [run("source_only", s, v) for s, v in zip((0, 1, 2), (14.0, 14.0, 15.0))]
            + [run("intrada", s, v, lambda_split=0.6) for s, v in zip((0, 1, 2), (15.5, 14.0, 16.0))]
            + [run("advent", s, v) for s, v in zip((0, 1, 2), (15.0, 14.5, 16.0))])
    src = tmp_path / "runs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in runs))
    records.write_record(INTRADA_GRID, [src], "c", "d", root=tmp_path / "records")
    lines = records.tables()[INTRADA_GRID](records.RecordSet(tmp_path / "records")).splitlines()[2:]
    rows = {line.split(" | ")[0].strip("| "): line for line in lines}
    assert list(rows) == ["source only", "ADVENT", "IntraDA λ 0.6", "IntraDA λ 1"]
    assert rows["source only"].endswith("|  |")
    assert "+1.0, +0.5, +1.0" in rows["ADVENT"] and rows["ADVENT"].endswith("| source only |")
    assert "+0.5, −0.5, +0.0" in rows["IntraDA λ 0.6"] and rows["IntraDA λ 0.6"].endswith("| ADVENT |")
    assert "+1.0, +0.5, +1.0" in rows["IntraDA λ 1"]
