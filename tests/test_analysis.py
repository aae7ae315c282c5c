"""analysis: the confusion matrix (datasets.metrics), prediction-PNG scoring, the result store
on a real Tune experiment, published reference numbers, the HTML report."""
from __future__ import annotations

import argparse
import json
import math
import os

for _k, _v in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}.items():
    os.environ.setdefault(_k, _v)

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from udalab.analysis import reference as ref_mod
from udalab.analysis import store
from udalab.core import storage
from udalab.analysis.score_predictions import EvaluationError, add_eval_arguments, evaluate_predictions, run_eval
from udalab.analysis.report import render_report, write_report
from udalab.analysis.report_spec import ReportSpec
from udalab.analysis.sections import learning_curves_section, report_data
from udalab.datasets.labels import CLASS_NAMES, TRAIN_ID_TO_ID
from udalab.datasets.metrics import ConfusionMatrix

INTRADA_SPEC = ReportSpec(title="IntraDA: split ratio λ (GTA5 → Cityscapes)", x="lambda_split",
                          reference="intrada", baseline={"method": "source_only"})

# ---------------------------------------------------------------------------------------
# ConfusionMatrix


def test_confusion_matrix_hand_computed_with_ignore():
    # C = 3; the last pixel is ignored (its prediction 2 must not count as a FP of class 2)
    target = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(3).update(pred, target)
    # class 0: TP 1, FP 1 (gt 2 -> 0), FN 1 (gt 0 -> 1) -> 1/3
    # class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: TP 0, FP 0, FN 1 -> 0
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 3, 0.0])
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    assert cm.total == 5
    assert cm.matrix.dtype == torch.int64 and tuple(cm.matrix.shape) == (3, 4)


def test_confusion_matrix_absent_class_is_nan_and_excluded():
    target = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(4).update(pred, target)
    iou = cm.iou()
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(1 / 3)          # nanmean over the 3 present classes
    s = cm.summary(["a", "b", "c", "d"])
    assert s["miou"] == pytest.approx(100 / 3) and s["pixel_acc"] == pytest.approx(60.0)
    assert math.isnan(s["iou.d"]) and s["iou.b"] == pytest.approx(200 / 3)


def test_confusion_matrix_out_of_range_predictions_are_wrong():
    target = torch.tensor([[0, 0], [1, 255]])
    pred = torch.tensor([[0, 7], [-1, 0]])
    cm = ConfusionMatrix(2).update(pred, target)
    # class 0: TP 1, FN 1 (7), FP 0 -> 1/2; class 1: TP 0, FN 1 (-1) -> 0; no FP from invalid values
    np.testing.assert_allclose(cm.iou(), [0.5, 0.0])
    assert cm.matrix[:, 2].tolist() == [1, 1]
    assert cm.pixel_accuracy() == pytest.approx(1 / 3)


def test_confusion_matrix_torch_numpy_merge_and_errors():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, size=(2, 6, 7))
    t[0, 0, :3] = 255
    p = rng.integers(0, 5, size=t.shape)
    a = ConfusionMatrix(5).update(p[0], t[0])
    b = ConfusionMatrix(5).update(torch.from_numpy(p[1]).to(torch.uint8), torch.from_numpy(t[1]))
    whole = ConfusionMatrix(5).update(torch.from_numpy(p), torch.from_numpy(t))
    assert torch.equal((a + b).matrix, whole.matrix)
    assert torch.equal(sum([a, b]).matrix, whole.matrix)
    a.merge(b)
    assert torch.equal(a.matrix, whole.matrix)
    if torch.cuda.is_available():
        g = ConfusionMatrix(5).update(torch.from_numpy(p).cuda(), torch.from_numpy(t).cuda())
        assert torch.equal(g.matrix.cpu(), whole.matrix)
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(5).update(np.array([0]), np.array([9]))
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(5).update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    s = ConfusionMatrix(19).update(np.zeros(4, int), np.zeros(4, int)).summary()
    assert s["iou.road"] == 100.0 and "iou.traffic light" in s and math.isnan(s["iou.bicycle"])


# ---------------------------------------------------------------------------------------
# evaluate_predictions on a tiny Cityscapes tree

# label ids; 0 = unlabeled (ignored), 7 road, 8 sidewalk, 23 sky, 26 car
GT = {
    ("aachen", "aachen_000000_000019"): [[7, 7, 26, 0], [7, 8, 26, 26]],
    ("bochum", "bochum_000000_000313"): [[23, 23, 0, 0], [7, 7, 7, 7]],
}
# predictions in train ids (0 road, 1 sidewalk, 5 pole, 10 sky, 13 car)
PRED = {
    "aachen_000000_000019": [[0, 1, 13, 5], [0, 1, 0, 13]],
    "bochum_000000_000313": [[10, 10, 10, 10], [0, 0, 0, 0]],
}
# road: TP 6 FP 1 FN 1 -> 6/8; sidewalk: TP 1 FP 1 -> 1/2; car: TP 2 FN 1 -> 2/3; sky: 1
EXPECTED_IOU = {"road": 75.0, "sidewalk": 50.0, "car": 200 / 3, "sky": 100.0}
EXPECTED_MIOU = sum(EXPECTED_IOU.values()) / 4
EXPECTED_ACC = 100 * 11 / 13
# No instanceIds files: the one car instance is its 4-connected component (3 pixels, 2 hit, no car
# false positive) -> car iIoU 2/3; the other instance classes have neither instances nor false
# positives (NaN). Categories: flat 8 hit, 1 false positive (a car pixel predicted road) -> 8/9;
# vehicle 2/3; sky 1; object only predicted on an ignored pixel -> NaN.
EXPECTED_IIOU = 200 / 3
EXPECTED_CATEGORY_IOU = {"flat": 800 / 9, "vehicle": 200 / 3, "sky": 100.0}


def _cityscapes(tmp_path, fmt="trainid", mode="L"):
    root, preds = tmp_path / "cityscapes", tmp_path / f"pred_{fmt}"
    for (city, stem), gt in GT.items():
        d = root / "gtFine" / "val" / city
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.array(gt, np.uint8), mode="L").save(d / f"{stem}_gtFine_labelIds.png")
        pred = np.array(PRED[stem], np.uint8)
        if fmt == "labelid":
            pred = TRAIN_ID_TO_ID[pred]
        (preds / city).mkdir(parents=True, exist_ok=True)  # nested: the search is recursive
        im = Image.fromarray(pred, mode="L")
        if mode == "P":
            im = im.convert("P")
            im.putpalette([v for i in range(256) for v in (i, i, i)])
        im.save(preds / city / f"{stem}_leftImg8bit.png")
    return root, preds


@pytest.mark.parametrize("fmt, mode", [("trainid", "L"), ("labelid", "L"), ("trainid", "P")])
def test_evaluate_predictions_hand_computed(tmp_path, fmt, mode):
    root, preds = _cityscapes(tmp_path, fmt, mode)
    for pred_format in ("auto", fmt):
        s = evaluate_predictions(root, "val", preds, pred_format=pred_format)
        assert s["miou"] == pytest.approx(EXPECTED_MIOU)
        assert s["pixel_acc"] == pytest.approx(EXPECTED_ACC)
        for name, v in EXPECTED_IOU.items():
            assert s[f"iou.{name}"] == pytest.approx(v)
        assert math.isnan(s["iou.bicycle"])
        assert s["iiou.car"] == pytest.approx(EXPECTED_IIOU) and s["iiou"] == pytest.approx(EXPECTED_IIOU)
        assert math.isnan(s["iiou.person"]) and "iiou.road" not in s
        for name, v in EXPECTED_CATEGORY_IOU.items():
            assert s[f"category_iou.{name}"] == pytest.approx(v)
        assert s["category_miou"] == pytest.approx(sum(EXPECTED_CATEGORY_IOU.values()) / 3)
        assert s["category_iiou.vehicle"] == pytest.approx(200 / 3) and math.isnan(s["category_iiou.human"])
        assert s["category_iiou"] == pytest.approx(200 / 3)
        assert len(s) == 2 + len(CLASS_NAMES) + 1 + 8 + 1 + 7 + 1 + 2


def test_evaluate_wrong_format_changes_numbers(tmp_path):
    root, preds = _cityscapes(tmp_path, "labelid")
    s = evaluate_predictions(root, "val", preds, pred_format="trainid")  # label ids read as train ids: wrong
    assert s["miou"] < EXPECTED_MIOU


def test_run_eval_prints_table_and_writes_json(tmp_path, capsys):
    root, preds = _cityscapes(tmp_path, "labelid")
    parser = add_eval_arguments(argparse.ArgumentParser())
    out = tmp_path / "out" / "eval.json"
    args = parser.parse_args(["--dataset", "cityscapes", "--root", str(root), "--pred-dir", str(preds),
                              "--json", str(out)])
    s = run_eval(args)
    text = capsys.readouterr().out
    assert "label ids" in text and "mIoU" in text and "traffic light" in text
    assert "iIoU" in text and "vehicle" in text and "connected components" in text
    saved = json.loads(out.read_text())
    assert saved["miou"] == pytest.approx(s["miou"]) and saved["iou.bicycle"] is None
    # the pixel counts behind the IoUs: ground truth rows, predictions columns (+ one for "other")
    names, pixels = saved["confusion"]["classes"], saved["confusion"]["pixels"]
    assert names == list(CLASS_NAMES) and len(pixels) == 19 and {len(r) for r in pixels} == {20}
    road, sidewalk, sky, car = (names.index(c) for c in ("road", "sidewalk", "sky", "car"))
    assert (pixels[road][road], pixels[road][sidewalk], pixels[car][car], pixels[car][road]) == (6, 1, 2, 1)
    assert (pixels[sidewalk][sidewalk], pixels[sky][sky]) == (1, 2) and sum(map(sum, pixels)) == 13


def test_evaluate_missing_duplicate_and_size_errors(tmp_path):
    root, preds = _cityscapes(tmp_path)
    target = preds / "bochum" / "bochum_000000_000313_leftImg8bit.png"
    dup = preds / "bochum_000000_000313_copy.png"
    dup.write_bytes(target.read_bytes())
    with pytest.raises(EvaluationError, match="2 predictions match") as e:
        evaluate_predictions(root, "val", preds)
    assert "bochum_000000_000313_gtFine_labelIds.png" in str(e.value)
    dup.unlink()
    target.unlink()
    with pytest.raises(EvaluationError, match="no prediction for ground truth") as e:
        evaluate_predictions(root, "val", preds)
    assert "bochum_000000_000313_gtFine_labelIds.png" in str(e.value) and "'bochum_000000_000313'" in str(e.value)
    Image.fromarray(np.zeros((3, 4), np.uint8), mode="L").save(target)
    with pytest.raises(EvaluationError, match="size mismatch") as e:
        evaluate_predictions(root, "val", preds)
    assert str(target) in str(e.value) and "4x3" in str(e.value) and "4x2" in str(e.value)
    with pytest.raises(EvaluationError, match="gtFine"):
        evaluate_predictions(tmp_path / "nowhere", "val", preds)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(target)
    with pytest.raises(EvaluationError, match="single-channel"):
        evaluate_predictions(root, "val", preds)


# ---------------------------------------------------------------------------------------
# The store on a real (tiny) Ray Tune experiment


@pytest.fixture(scope="session")
def tune_study(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray import tune

    # defined here, not at module level: Ray workers cannot import the test module, and cloudpickle
    # ships a nested function by value
    def _trainable(config, study_dir=None):
        from ray import tune

        row, seed = config["row"], config["seed"]
        history = []
        for i in range(2):
            m = {"iteration": 10 * (i + 1), "stage": "source", "miou": 20.0 + 5 * i + seed,
                 "pixel_acc": 70.0 + i, "iou.road": 80.0 + i, "iou.traffic light": float("nan"),
                 "train_seconds": 1.5 * (i + 1), "loss.seg": 0.5, "done": i == 1}
            history.append(m)
            if row["method"] == "intrada" and seed == 1 and i == 1:
                raise ValueError("boom: loss diverged at iteration 20")
            if row["method"] == "intrada" and seed == 0 and i == 1:  # a Train checkpoint with history.json
                tid = tune.get_context().get_trial_id()
                d = os.path.join(study_dir, "_train", f"train-{tid}", "checkpoint_2026-01-01_00-00-0%d.000000" % i)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "history.json"), "w") as f:
                    json.dump(history, f)
            tune.report(m)

    storage = tmp_path_factory.mktemp("results")
    study_dir = storage / "study"
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_parameters(_trainable, study_dir=str(study_dir)),
            param_space={"row": tune.grid_search([{"method": "source_only"},
                                                  {"method": "intrada", "lambda_split": 0.67}]),
                         "seed": tune.grid_search([0, 1])},
            run_config=tune.RunConfig(name="study", storage_path=str(storage), verbose=0),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
    return study_dir


@pytest.mark.ray
def test_store_schema_flattened_rows_and_status(tune_study):
    df = store.load_trials(tune_study)
    assert list(df.columns) == ["trial_id", "status", "method", "lambda_split", "seed", "miou", "pixel_acc",
                                "iou.road", "iou.traffic light", "iterations", "train_seconds", "wall_seconds",
                                "gpu", "error"]
    assert set(store.SCHEMA_COLUMNS) <= set(df.columns) and "row" not in df.columns
    assert df["seed"].dtype == "Int64" and df["iterations"].dtype == "Int64"
    for c in ("miou", "pixel_acc", "iou.road", "train_seconds", "wall_seconds", "lambda_split"):
        assert df[c].dtype == np.float64, c
    for c in ("trial_id", "status", "method", "gpu", "error"):
        assert pd.api.types.is_string_dtype(df[c]), c
    assert len(df) == 4 and df["trial_id"].is_unique
    by = {(r.method, int(r.seed)): r for r in df.itertuples()}
    assert by[("source_only", 0)].status == "TERMINATED" and math.isnan(by[("source_only", 0)].lambda_split)
    assert by[("intrada", 0)].lambda_split == pytest.approx(0.67)
    ok = by[("source_only", 1)]
    assert (ok.miou, ok.iterations, ok.train_seconds) == (26.0, 20, 3.0) and pd.isna(ok.error)
    bad = by[("intrada", 1)]
    assert bad.status == "ERROR" and "ValueError: boom: loss diverged" in bad.error
    assert bad.miou == 21.0 and bad.iterations == 10          # the last report before the failure
    assert df["iou.traffic light"].isna().all()
    assert (df["wall_seconds"] > 0).all() and df["gpu"].isna().all()   # this trainable reports no "gpu"
    assert store.config_columns(df) == ["method", "lambda_split"]
    # URIs go through pyarrow.fs; live statuses override the state file's
    uri_df = store.load_trials(f"file://{tune_study}", live_status={ok.trial_id: "RUNNING"})
    assert uri_df.drop(columns="status").equals(df.drop(columns="status"))
    assert (uri_df["status"] == "RUNNING").sum() == 1


@pytest.mark.ray
def test_store_parquet_round_trip_and_history(tune_study):
    path = store.write_trials(tune_study)
    assert path == tune_study / "trials.parquet" and path.exists()
    df = store.load_trials(tune_study)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    schema = pq.read_schema(path)
    assert schema.field("trial_id").type == pa.string() and schema.field("error").type == pa.string()
    assert schema.field("seed").type == pa.int64() and schema.field("miou").type == pa.float64()
    assert schema.field("gpu").type == pa.string() and schema.field("wall_seconds").type == pa.float64()
    assert json.loads(schema.metadata[b"udalab"]) == {"schema_version": store.SCHEMA_VERSION, "study": "study"}
    intrada0 = df[(df["method"] == "intrada") & (df["seed"] == 0)]["trial_id"].item()
    hist = store.load_history(tune_study, intrada0)                # from the checkpoint's history.json
    assert hist["iteration"].tolist() == [10, 20] and "stage" in hist
    src0 = df[(df["method"] == "source_only") & (df["seed"] == 0)]["trial_id"].item()
    hist = store.load_history(tune_study, src0)                    # fallback: progress.csv
    assert hist["iteration"].tolist() == [10, 20] and hist["miou"].tolist() == [20.0, 25.0]
    with pytest.raises(store.StoreError, match="no history"):
        store.load_history(tune_study, "nope_00000")
    every = store.load_histories(tune_study)                       # one long frame, every trial
    per_trial = every.groupby("trial_id")["iteration"].apply(list).to_dict()
    assert set(per_trial) == set(df["trial_id"])
    failed = df[(df["method"] == "intrada") & (df["seed"] == 1)]["trial_id"].item()
    assert per_trial[failed] == [10] and per_trial[src0] == [10, 20]    # it failed before its second report
    assert store.load_histories(tune_study, ["nope_00000"]).empty


def _state_entry(tid, status, config, logdir, last_result=None):
    trial = {"trial_id": tid, "status": status, "config": config, "relative_logdir": logdir}
    runtime = {"last_result": last_result or {}, "error_filename": None}
    return [json.dumps(trial), json.dumps(runtime)]


def test_store_reads_a_running_optuna_study(tmp_path):
    """Hand-written state in Ray's format: top-level (Optuna) config, a result line being written,
    a pending trial without folder, a trial whose result.json is not there yet."""
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    cfg = lambda lam: {"method": "intrada", "lambda_split": lam, "seed": 0, "crop": [512, 512]}  # noqa: E731
    state = {"trial_data": [
        _state_entry("ab_00001", "PENDING", cfg(0.9), None),
        _state_entry("ab_00000", "RUNNING", cfg(0.3), "t0", {"iteration": 1, "miou": 1.0}),
        _state_entry("ab_00002", "RUNNING", cfg(0.5), "t2", {"iteration": 5, "miou": 3.0, "iou.road": 9.0}),
    ]}
    (tmp_path / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(state))
    (tmp_path / "t0").mkdir()
    lines = [json.dumps({"iteration": i, "miou": float(i), "iou.road": 1.0, "train_seconds": 2.0 * i})
             for i in (10, 20)]
    (tmp_path / "t0" / "result.json").write_text("\n".join(lines) + '\n{"iteration": 30, "mi')
    df = store.load_trials(tmp_path)
    assert df["trial_id"].tolist() == ["ab_00000", "ab_00001", "ab_00002"]
    assert df["status"].tolist() == ["RUNNING", "PENDING", "RUNNING"]
    assert list(df.columns[:6]) == ["trial_id", "status", "method", "lambda_split", "crop", "seed"]
    assert df["crop"].tolist() == ["[512, 512]"] * 3 and df["lambda_split"].tolist() == [0.3, 0.9, 0.5]
    assert df["miou"].tolist()[0] == 20.0 and df["iterations"].tolist()[0] == 20       # last complete line
    assert math.isnan(df["miou"][1]) and pd.isna(df["iterations"][1])                  # pending: nothing yet
    assert df["miou"][2] == 3.0 and df["iou.road"][2] == 9.0                          # state's last_result
    text = render_report(df, INTRADA_SPEC, preset="mini")
    assert "0 finished, 2 running, 0 errored, 1 pending" in text and 'id="fig-metric"' in text


def test_held_out_metrics_are_metrics_not_hyperparameters(tmp_path):
    """test.* (the held-out split, reported at the end of a run) become metric columns beside val's,
    never config columns, and the report's results table shows the test mIoU."""
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [
        _state_entry(f"ab_0000{k}", "TERMINATED", {"method": "intrada", "lambda_split": lam, "seed": 0}, None,
                     {"iteration": 9, "miou": 30.0 + k, "iou.road": 50.0, "test.miou": 20.0 + k,
                      "test.pixel_acc": 60.0, "test.iou.road": 40.0})
        for k, lam in enumerate((0.3, 0.6))]}))
    df = store.load_trials(tmp_path)
    assert df["test.miou"].tolist() == [20.0, 21.0] and df["test.iou.road"].tolist() == [40.0, 40.0]
    assert store.config_columns(df) == ["method", "lambda_split"]
    assert {"miou", "test.miou", "test.pixel_acc", "iou.road", "test.iou.road"} <= set(store.metric_columns(df))
    text = render_report(df, INTRADA_SPEC, preset="mini")
    assert "test mIoU" in text and "21.0" in text


def _held_out_trials(test_of_last: float | None = 23.0) -> pd.DataFrame:
    """Source only and IntraDA λ 0.6, two seeds each: val miou 30 + k, test miou 20 + k."""
    rows = []
    for k, (method, lam, seed) in enumerate([("source_only", None, 0), ("source_only", None, 1),
                                             ("intrada", 0.6, 0), ("intrada", 0.6, 1)]):
        rows.append({"trial_id": f"t{k}", "status": "TERMINATED", "method": method, "lambda_split": lam,
                     "seed": seed, "miou": 30.0 + k, "pixel_acc": 70.0, "iou.road": 50.0 + k,
                     "test.miou": 20.0 + k, "test.pixel_acc": 60.0, "test.iou.road": 40.0 + k,
                     "iterations": 9, "train_seconds": 1.0, "wall_seconds": 2.0, "gpu": "cpu", "error": None})
    rows[-1]["test.miou"] = test_of_last
    return pd.DataFrame(rows)


def test_a_grid_report_shows_the_held_out_split_and_labels_val():
    """A grid whose trials all scored the test split reports test (curve, table, classes, published
    comparison) and keeps val beside it as val.*; the learning curves stay on val, where they were
    scored; a search, or a grid with a trial lacking test, reports val as before."""
    hist = pd.DataFrame([{"trial_id": f"t{k}", "iteration": it, "miou": 10.0 * it + k}
                         for k in range(4) for it in (1, 2)])
    d = report_data(_held_out_trials(), INTRADA_SPEC, "mini", "intrada_split", histories=hist)
    assert d.held_out and d.metrics[:2] == ["miou", "val.miou"]
    agg = d.agg.set_index("method")
    assert agg.loc["intrada", "miou.mean"] == 22.5 and agg.loc["intrada", "val.miou.mean"] == 32.5
    assert agg.loc["intrada", "iou.road"] == 42.5                             # per-class: test too
    assert d.label("miou") == "test mIoU" and d.label("val.miou") == "val mIoU"
    assert store.config_columns(d.df) == ["method", "lambda_split"]           # val.iou.* are metrics
    curves = learning_curves_section(d).figures["fig-curves"]
    assert sorted(y for t in curves.data if t.mode == "lines+markers" for y in t.y) == [10.5, 12.5, 20.5, 22.5]
    assert "val mIoU" in curves.layout.title.text
    text = render_report(_held_out_trials(), INTRADA_SPEC, preset="mini")
    assert "held-out test split" in text and "val mIoU" in text and "measured test mIoU" in text

    for d in (report_data(_held_out_trials(), INTRADA_SPEC, "mini", "intrada_split_optuna"),
              report_data(_held_out_trials(test_of_last=None), INTRADA_SPEC, "mini", "intrada_split")):
        assert not d.held_out and d.agg.set_index("method").loc["intrada", "mean"] == 32.5
        assert "val.miou" not in d.df


def test_store_empty_and_missing(tmp_path):
    empty = store.load_trials(tmp_path)                            # Tune has not saved a state yet
    assert list(empty.columns) == list(store.SCHEMA_COLUMNS) and len(empty) == 0
    with pytest.raises(store.StoreError, match="does not exist"):
        store.load_trials(tmp_path / "missing")


# ---------------------------------------------------------------------------------------
# Published reference numbers


def test_reference_data():
    assert {"intrada", "daformer", "hrda", "udas_steps", "udas_data", "mml_ablation", "mml_comparison",
            "multidecoder", "multidecoder_schedule"} <= set(ref_mod.REFERENCES)
    r = ref_mod.reference("intrada")
    assert {"label", "method", "lambda_split", "miou", "source", "benchmark"} <= set(r.columns)
    assert ref_mod.matching_rows("intrada", {"method": "intrada", "lambda_split": 0.67})["miou"].tolist() == [46.3]
    assert ref_mod.matching_rows("intrada", {"method": "intrada", "lambda_split": 1.0})["miou"].tolist() == [45.5]
    assert ref_mod.matching_rows("intrada", {"method": "source_only"}).empty
    assert (r["benchmark"] == "GTA5→Cityscapes").all() and r["source"].str.len().gt(0).all()
    assert ref_mod.reference_info("intrada")["facts"]["best_lambda_split"] == 0.67
    assert ref_mod.matching_rows("hrda", {"method": "hrda", "mode": "lr+hr", "crop_ratio": 1.0, "self_training": True})["miou"].tolist() == [73.8]
    assert ref_mod.matching_rows("hrda", {"method": "hrda", "mode": "lr", "crop_ratio": 1.0, "self_training": True})["miou"].tolist() == [68.3]
    assert ref_mod.matching_rows("hrda", {"method": "hrda", "mode": "hr", "crop_ratio": 0.5}).empty
    with pytest.raises(KeyError, match="available"):
        ref_mod.reference("nope")


def test_published_rows_agree_with_their_own_per_class_values():
    """A transcription check that needs no second copy: where a row gives every per-class IoU,
    their mean is its mIoU up to the papers' rounding, unless its note says the paper prints
    otherwise; per-class columns are named as the benchmark's dataset names its classes."""
    from udalab.datasets.labels import CLASS_NAMES
    from udalab.datasets.mfnet import CLASS_NAMES as MFNET_CLASSES

    checked = 0
    for name in ref_mod.REFERENCES:
        df = ref_mod.reference(name)
        ious = [c for c in df.columns if c.startswith("iou.")]
        classes = MFNET_CLASSES if "MFNet" in ref_mod.reference_info(name)["benchmark"] else CLASS_NAMES
        assert {c.removeprefix("iou.") for c in ious} <= set(classes), name
        for row in df.to_dict("records"):
            values = [row[c] for c in ious]
            if not values or any(pd.isna(v) for v in values) or pd.isna(row["miou"]):
                continue
            checked += 1
            if abs(np.mean(values) - row["miou"]) > 0.11:
                assert isinstance(row.get("note"), str) and row["note"], (name, row["label"], np.mean(values))
    assert checked >= 20


# ---------------------------------------------------------------------------------------
# Report



@pytest.mark.ray
def test_write_report_on_tune_study(tune_study):
    path = write_report(tune_study, INTRADA_SPEC, preset="mini", static_figures=False)
    assert path == tune_study / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.count("plotly.js v") >= 1 and len(text) > 1_000_000   # plotly.js embedded, opens offline
    assert "<script src=" not in text
    assert 'id="fig-metric"' in text and "Plotly.newPlot" in text
    assert "46.3" in text and "mini data: compare the shape, not the level" in text
    assert "3 finished, 0 running, 1 errored" in text and "ValueError: boom" in text
    assert "Δ mIoU" in text and "<b>" in text and '<tr class="published"' in text
    assert 'id="fig-curves"' in text and "Learning curves" in text     # from the trials' histories


@pytest.mark.ray
def test_experiment_analysis_and_other_file_systems(tune_study):
    """The study folder is a plain Tune experiment (ExperimentAnalysis reads it); the store reads it
    through any pyarrow file system: a SubTreeFileSystem (as an s3 bucket prefix would be) or a file:// URI."""
    from ray.tune import ExperimentAnalysis

    ea = ExperimentAnalysis(str(tune_study))
    df = store.load_trials(tune_study)
    assert sorted(t.trial_id for t in ea.trials) == sorted(df["trial_id"])
    assert {t.trial_id: t.status for t in ea.trials} == dict(zip(df["trial_id"], df["status"]))
    ea_df = ea.dataframe(metric="miou", mode="max")
    assert set(ea_df["trial_id"]) == set(df["trial_id"])

    sub = pafs.SubTreeFileSystem(str(tune_study.parent), pafs.LocalFileSystem())
    via_sub = store.load_trials("study", filesystem=sub)
    pd.testing.assert_frame_equal(via_sub, df)
    assert store.write_trials("study", via_sub, filesystem=sub) == "study/trials.parquet"
    pd.testing.assert_frame_equal(store.read_trials("study", filesystem=sub), df)
    pd.testing.assert_frame_equal(store.read_trials(f"file://{tune_study}"), df)
    hist = store.load_history("study", df["trial_id"][0], filesystem=sub)
    assert hist["iteration"].tolist() == [10, 20]


def _synthetic_trials() -> pd.DataFrame:
    rows = []
    for i, (method, lam, seed, status, miou) in enumerate([
        ("source_only", None, 0, "TERMINATED", 10.0), ("source_only", None, 1, "TERMINATED", 12.0),
        ("intrada", 0.0, 0, "TERMINATED", 11.0), ("intrada", 0.67, 0, "TERMINATED", 14.0),
        ("intrada", 0.67, 1, "RUNNING", float("nan")), ("intrada", 1.0, 0, "PENDING", float("nan")),
    ]):
        rows.append({"trial_id": f"t_{i:05d}", "status": status, "method": method, "lambda_split": lam,
                     "seed": seed, "miou": miou, "pixel_acc": miou + 50, "iou.road": miou + 60,
                     "iterations": None if math.isnan(miou) else 100, "train_seconds": 1.0, "error": None})
    df = pd.DataFrame(rows)
    return df.astype({"seed": "Int64", "iterations": "Int64", "lambda_split": "float64", "error": "str"})


def test_render_report_running_nan_and_escaping(tmp_path):
    df = _synthetic_trials()
    spec = ReportSpec(title="<script>alert('x')</script> & λ", x="lambda_split", reference="intrada",
                      baseline={"method": "source_only"})
    text = render_report(df, spec, preset="paper", study_name="s")
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; λ" in text
    assert "2 finished" not in text and "4 finished, 1 running, 0 errored, 1 pending" in text
    assert "mini data" not in text and 'id="fig-metric"' in text
    assert "<b>14.0</b>" in text and "11.0 ± 1.4" in text and "+3.0" in text   # best, mean ± std, Δ
    assert '<tr class="published"' in text and "<i>" not in text and "46.3" in text and "(1 running)" in text
    # no x: a bar chart per configuration; no reference; no trials at all
    text = render_report(df, ReportSpec(title="t"), preset="smoke")
    assert 'id="fig-metric"' in text and "smoke run" in text
    empty = write_report(tmp_path, ReportSpec(title="t"), df=store.load_trials(tmp_path))
    assert "No trials yet" in empty.read_text(encoding="utf-8")


def test_learning_curves_pool_seeds_per_configuration():
    from udalab.analysis.figures import learning_curves

    df = pd.DataFrame({"trial_id": ["t0", "t1", "t2"], "method": ["daformer", "daformer", "hrda"],
                       "seed": [0, 1, 0]})
    hist = pd.DataFrame({"trial_id": ["t0", "t0", "t1", "t1", "t1", "t2", "t2"],
                         "iteration": [100, 200, 100, 200, 200, 100, 200],
                         "miou": [10.0, 20.0, 12.0, 99.0, 24.0, 5.0, 6.0]})   # t1 re-reported 200 on resume
    fig = learning_curves(hist, df, "miou", ["method"], ["method"], group="method")
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"daformer", "hrda"}
    assert list(lines["daformer"].y) == [11.0, 22.0]                  # mean over seeds, the later report kept
    assert np.allclose(lines["daformer"].customdata[:, 0], [math.sqrt(2), math.sqrt(8)])
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [b.name for b in bands] == ["daformer ±std"]                # one seed: no band
    assert learning_curves(hist[hist["iteration"] == 200], df, "miou", ["method"], ["method"]) is None
    assert learning_curves(pd.DataFrame(columns=["trial_id", "iteration"]), df) is None
    # columns the group determines stay out of the legend; the others are named
    df2 = df.assign(crop=["LR", "LR", "HR"], mode=["lr", "lr", "hr"], crop_ratio=[0.5, 1.0, 0.5])
    cols = ["mode", "crop_ratio", "crop"]
    fig = learning_curves(hist, df2, "miou", cols, cols, group="crop")
    assert {t.name for t in fig.data if t.mode == "lines+markers"} == {"LR, crop_ratio=0.5", "LR, crop_ratio=1",
                                                                        "HR, crop_ratio=0.5"}


@pytest.mark.ray
def test_cli_report_writes_every_study_and_the_index(tune_study, capsys):
    from udalab.studies.cli import main as cli

    assert cli(["report", "--results", str(tune_study.parent), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert str(tune_study / "report.html") in out and str(tune_study.parent / "index.html") in out
    index = (tune_study.parent / "index.html").read_text(encoding="utf-8")
    assert 'href="study/report.html"' in index and "errors" in index and "4: 1 error, 3 terminated" in index
    text = (tune_study / "report.html").read_text(encoding="utf-8")
    assert "<title>study</title>" in text and "ValueError: boom" in text
    assert cli(["report", "missing", "--results", str(tune_study.parent), "--no-figures"]) == 2


def test_uris_keep_their_options_at_the_end_when_joined():
    """An S3-compatible server is named by URI options; every path built from the results URI keeps them."""

    uri = "s3://b/results?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.uri_join(uri, "study", "trials.parquet") == \
        "s3://b/results/study/trials.parquet?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.uri_parent(storage.uri_join(uri, "study")) == uri and storage.uri_name(storage.uri_join(uri, "study")) == "study"
    assert storage.uri_join("/tmp/a?b", "c") == "/tmp/a?b/c"               # a local path is only a path
    assert storage.uri_parent("results") == "." and storage.uri_name("/x/results/") == "results"
    fs, path = storage.fs_path(storage.uri_join(uri, "study"))
    assert path == "b/results/study" and type(fs).__name__ == "S3FileSystem"


def test_paired_section_tells_rows_of_one_method_apart_and_pairs_them_seed_by_seed():
    """DAFormer beside its own source-only row (the same method, self_training off): each trial goes to
    the row whose every paired key it matches (a key a row leaves unset must be unset in the trial);
    the per-seed Δ, their mean and the bar (2 × the larger seed std) are those of the numbers."""
    from udalab.analysis.sections import paired_section

    rows = [("daformer", False, 0, 40.0), ("daformer", False, 1, 42.0), ("daformer", None, 0, 45.0),
            ("daformer", None, 1, 46.0), ("hrda", None, 0, 50.0)]
    df = pd.DataFrame([{"trial_id": f"t{i}", "status": "TERMINATED", "method": m, "self_training": st, "seed": s,
                        "miou": v} for i, (m, st, s, v) in enumerate(rows)])
    base, adapted = {"method": "daformer", "self_training": False}, {"method": "daformer"}
    name = lambda r: "source only" if r.get("self_training") is False else r["method"]  # noqa: E731
    spec = ReportSpec(title="t", baseline=base, name=name, pairs=((adapted, base),))
    section = paired_section(report_data(df, spec))
    html = "".join(b for b in section.body if isinstance(b, str))
    # seed 0: 45 - 40, seed 1: 46 - 42; means 45.5 - 41 = +4.5; bar 2 x std(40, 42) = 2.83
    assert "<td>daformer</td><td>source only</td><td>+5.00, +4.00</td><td>4.5 ± 0.7</td><td>+4.5</td>" \
           "<td>2.8</td><td>yes</td>" in html
    assert "hrda" not in html
