"""Predictions in each dataset's own format (SegmentationDataset.write_prediction) and `udalab eval`
reading them back: Cityscapes scored as cityscapesScripts scores it (its own evaluation, run on the
same folder), MFNet and VOC written and read back with their loaders' conventions."""
import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udalab.analysis.score_predictions import EvaluationError, add_eval_arguments, evaluate_predictions, run_eval
from udalab.core import layout
from udalab.datasets import DatasetError, build_dataset, mini
from udalab.datasets.base import read_predictions_info, write_predictions_info
from udalab.datasets.labels import LABELS, PALETTE
from udalab.datasets.metrics import ConfusionMatrix, InstanceIoU, connected_components

NEEDS_CITYSCAPESSCRIPTS = "cityscapesscripts is not installed: pip install -e '.[dev]'"


def _perturbed(label: np.ndarray, i: int, num_classes: int) -> np.ndarray:
    """The train-id label with deterministic mistakes: ignored pixels filled, shifted 1-3 columns, one
    row band of a single class, and (every third / fourth image) car -> truck, person -> rider."""
    pred = np.where(label == 255, i % num_classes, label.astype(np.int64))
    pred = np.roll(pred, 1 + i % 3, axis=1)
    if i % 3 == 0:
        pred[pred == 13] = 14
    if i % 4 == 1:
        pred[pred == 11] = 12
    pred[np.arange(pred.shape[0]) % 7 == i % 7] = (i * 5) % num_classes
    return pred


def _ground_truth_with_instances(ds, out):
    """gtFine/<split> of `ds` copied under `out`, with the *_gtFine_instanceIds.png cityscapesScripts
    needs for iIoU (the mini twin has none): each instance class's 4-connected components, numbered
    label id * 1000 + k as in Cityscapes."""
    instance_ids = [label.id for label in LABELS if label.has_instances]
    for _image, label_path in ds.files:
        d = out / "gtFine" / ds.split / label_path.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(label_path, d / label_path.name)
        ids = np.array(Image.open(label_path)).astype(np.int64)
        inst = ids.copy()
        for label_id in instance_ids:
            comps, _n = connected_components(ids == label_id)
            inst[comps > 0] = label_id * 1000 + comps[comps > 0] - 1
        Image.fromarray(inst.astype(np.uint16)).save(d / label_path.name.replace("labelIds", "instanceIds"))
    return out


def _cityscapesscripts(gt_root, pred_dir, split, tmp_path, monkeypatch, instances: bool = True):
    """cityscapesScripts' evalPixelLevelSemanticLabeling on gt_root and pred_dir (its result dict);
    instances=False: without its iIoU (which reads *_gtFine_instanceIds.png)."""
    # cityscapesscripts 2.3.0 (the latest release) calls np.in1d, which numpy 2.4 removed
    # (mcordts/cityscapesScripts#196 replaces it with np.isin): give it the old function.
    monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False)
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    settings = {"cityscapesPath": str(gt_root), "predictionPath": str(pred_dir), "predictionWalk": None,
                "exportFile": str(tmp_path / "cityscapesscripts.json"), "quiet": True,
                "evalInstLevelScore": instances}
    for name, value in settings.items():  # its settings are one module global: restored after the test
        monkeypatch.setattr(cs.args, name, value)
    gts = sorted(str(p) for p in (gt_root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    return cs.evaluateImgLists([cs.getPrediction(cs.args, gt) for gt in gts], gts, cs.args)


def test_cityscapes_predictions_score_as_cityscapesscripts_scores_them(tmp_path, mini_data, monkeypatch):
    pytest.importorskip("cityscapesscripts", reason=NEEDS_CITYSCAPESSCRIPTS)
    ds = build_dataset("cityscapes", mini_data["cityscapes"], "val")
    gt_root = _ground_truth_with_instances(ds, tmp_path / "cityscapes")
    out = tmp_path / "pred"
    for i in range(len(ds)):
        written = ds.write_prediction(i, _perturbed(ds.load_label(i), i, ds.num_classes), out,
                                      colour_dir=tmp_path / "colour")
    assert written == out / ds.files[-1][0].parent.name / ds.files[-1][0].name  # <city>/<stem>_leftImg8bit.png
    assert len(list((tmp_path / "colour").rglob("*.png"))) == len(ds)
    write_predictions_info(ds, out, "cityscapes", run="a test")
    ours = evaluate_predictions(gt_root, "val", out)
    theirs = _cityscapesscripts(gt_root, out, "val", tmp_path, monkeypatch)

    assert 20 < ours["miou"] < 90 and 10 < ours["iiou"] < 90  # the mistakes count
    pairs = [("miou", theirs["averageScoreClasses"]), ("iiou", theirs["averageScoreInstClasses"]),
             ("category_miou", theirs["averageScoreCategories"]),
             ("category_iiou", theirs["averageScoreInstCategories"])]
    pairs += [(f"iou.{k}", v) for k, v in theirs["classScores"].items() if f"iou.{k}" in ours]
    pairs += [(f"iiou.{k}", v) for k, v in theirs["classInstScores"].items() if f"iiou.{k}" in ours]
    pairs += [(f"category_iou.{k}", v) for k, v in theirs["categoryScores"].items() if k != "void"]
    pairs += [(f"category_iiou.{k}", v) for k, v in theirs["categoryInstScores"].items() if v == v]
    assert len(pairs) == 4 + 19 + 8 + 7 + 2
    for key, value in pairs:
        assert ours[key] == pytest.approx(100 * value, abs=0.01, nan_ok=True), key


def test_label_ids_of_no_evaluated_class_count_as_cityscapesscripts_counts_them(tmp_path, monkeypatch):
    """Label-id predictions from elsewhere: caravan (29) on cars is wrong for car but a vehicle for
    the category iIoU, not for the category IoU; parking (9) on road is wrong for both."""
    pytest.importorskip("cityscapesscripts", reason=NEEDS_CITYSCAPESSCRIPTS)
    root = mini.make_mini("cityscapes", tmp_path / "mini", count={"val": 4})
    ds = build_dataset("cityscapes", root, "val")
    gt_root = _ground_truth_with_instances(ds, tmp_path / "cityscapes")
    out = tmp_path / "pred"
    for i, (image, label_path) in enumerate(ds.files):
        ids = np.array(Image.open(label_path))
        ids[(ids == 26) & (np.arange(ids.shape[1]) % (2 + i) == 0)] = 29
        ids[(ids == 7) & (np.arange(ids.shape[0])[:, None] % 3 == i % 3)] = 9
        (out / image.parent.name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids, mode="L").save(out / image.parent.name / f"{label_path.name[:-20]}_pred.png")
    ours = evaluate_predictions(gt_root, "val", out, pred_format="labelid")
    theirs = _cityscapesscripts(gt_root, out, "val", tmp_path, monkeypatch)
    assert ours["category_iiou.vehicle"] > ours["iiou.car"] + 5
    for key, value in [("category_iiou.vehicle", theirs["categoryInstScores"]["vehicle"]),
                       ("category_iou.vehicle", theirs["categoryScores"]["vehicle"]),
                       ("category_iou.flat", theirs["categoryScores"]["flat"]),
                       ("iiou.car", theirs["classInstScores"]["car"]), ("iou.road", theirs["classScores"]["road"]),
                       ("miou", theirs["averageScoreClasses"]), ("iiou", theirs["averageScoreInstClasses"])]:
        assert ours[key] == pytest.approx(100 * value, abs=0.01), key


def test_the_info_file_says_label_ids_where_the_values_cannot(tmp_path):
    """Predictions of road, sidewalk and building only: label ids 7, 8, 11, which the value rule
    would take for train ids. predictions.json tells `udalab eval` what they are."""
    root = mini.make_mini("cityscapes", tmp_path / "cs", count={"val": 2})
    ds = build_dataset("cityscapes", root, "val")
    out = tmp_path / "pred"
    for i in range(len(ds)):
        ds.write_prediction(i, np.minimum(ds.load_label(i), 2), out)
    guessed = evaluate_predictions(root, "val", out)
    write_predictions_info(ds, out, "cityscapes")
    assert read_predictions_info(out)["values"] == "labelid"
    told = evaluate_predictions(root, "val", out)
    assert told == pytest.approx(evaluate_predictions(root, "val", out, pred_format="labelid"), nan_ok=True)
    assert told["iou.road"] > 50 and guessed["iou.road"] < 1 and told["miou"] != guessed["miou"]
    with pytest.raises(EvaluationError, match="predictions of 'cityscapes'"):
        evaluate_predictions(None, "val", out, dataset="voc")


@pytest.mark.parametrize("name, key", [("mfnet_rgb", "mfnet"), ("voc", "voc")])
def test_writers_round_trip_through_the_loaders_conventions(tmp_path, name, key):
    ds = build_dataset(name, mini.make_mini(key, tmp_path / key, count={"val": 4}), "val")
    out = tmp_path / "pred"
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, ds.num_classes, ds.load_label(i).shape) for i in range(len(ds))]
    for i, pred in enumerate(preds):
        path = ds.write_prediction(i, pred, out, colour_dir=tmp_path / "colour")
        assert path == out / f"{ds.files[i][0].stem}.png"
        # read as the loader reads a label file of the dataset
        assert np.array_equal(ds.encode(ds.read_label(path), path), pred)
        assert np.array_equal(ds.read_prediction(path), pred)
        with Image.open(path) as im:
            assert im.mode == ("P" if key == "voc" else "L")
            if key == "voc":
                assert np.array_equal(np.array(im.getpalette()[:63]).reshape(21, 3), ds.palette[:21])
        colour = np.array(Image.open(tmp_path / "colour" / path.name))
        assert np.array_equal(colour, ds.palette[pred])
    # the ground truth written as a prediction is the label file itself, less its void (VOC 255 -> 0)
    label = ds.load_label(0)
    ds.write_prediction(0, np.where(label == 255, 0, label), out)
    stored = np.array(Image.open(ds.files[0][1]))
    assert np.array_equal(np.array(Image.open(out / ds.prediction_name(0))), np.where(stored == 255, 0, stored))


@pytest.mark.parametrize("name, key", [("mfnet_thermal@3", "mfnet"), ("voc", "voc")])
def test_eval_reads_the_folder_back(tmp_path, name, key, capsys):
    root = mini.make_mini(key, tmp_path / key, count={"val": 4})
    ds = build_dataset(name, root, "val")
    out = tmp_path / "pred"
    cm = ConfusionMatrix(ds.num_classes)
    inst = InstanceIoU(ds.num_classes)
    for i in range(len(ds)):
        label = ds.load_label(i)
        pred = _perturbed(label, i, ds.num_classes)
        ds.write_prediction(i, pred, out)
        cm.update(pred, label)
        if key == "voc":
            inst.update(pred, label, ds.load_instances(i))
    write_predictions_info(ds, out, name)
    args = add_eval_arguments(argparse.ArgumentParser()).parse_args(
        ["--dataset", name, "--root", str(root), "--pred-dir", str(out)])
    s = run_eval(args)
    assert s == pytest.approx(evaluate_predictions(root, "val", out, dataset=name), nan_ok=True)
    expected = cm.summary(ds.class_names, eval_classes=ds.eval_classes)
    assert {k: s[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    assert ("iiou" in s) == (key == "voc") and (key != "voc" or s["iiou"] == pytest.approx(inst.summary()["iiou"]))
    text = capsys.readouterr().out
    assert "mIoU" in text and ds.class_names[1] in text and ("iIoU" in text) == (key == "voc")
    (out / ds.prediction_name(1)).unlink()
    with pytest.raises(EvaluationError, match="no prediction for"):
        evaluate_predictions(root, "val", out, dataset=name)


def test_bad_predictions_are_refused(tmp_path):
    root = mini.make_mini("cityscapes", tmp_path / "cs", count={"val": 1})
    ds = build_dataset("cityscapes", root, "val")
    label = ds.load_label(0).astype(np.int64)
    out = tmp_path / "pred"
    with pytest.raises(ValueError, match="upsample the logits"):
        ds.write_prediction(0, label[::2], out)
    with pytest.raises(ValueError, match=r"\[19, 255\].*0\.\.18"):
        ds.write_prediction(0, np.where(label == 255, 255, 19), out)
    with pytest.raises(ValueError, match="float"):
        ds.write_prediction(0, label.astype(np.float32), out)
    with pytest.raises(ValueError, match="inside the prediction folder"):
        ds.write_prediction(0, np.zeros_like(label), out, colour_dir=out / "colour")
    gta = build_dataset("gta5", mini.make_mini("gta5", tmp_path / "g", count={"train": 1}), "train")
    with pytest.raises(DatasetError, match="no prediction format"):
        gta.write_prediction(0, np.zeros_like(gta.load_label(0)), out)
    voc = build_dataset("voc", mini.make_mini("voc", tmp_path / "v", count={"val": 1}), "val")
    path = out / "voc" / voc.prediction_name(0)
    path.parent.mkdir(parents=True)
    Image.fromarray(np.full(voc.load_label(0).shape, 30, np.uint8), mode="L").save(path)
    with pytest.raises(DatasetError, match="not in VOC's label encoding"):
        voc.read_prediction(path)
    Image.fromarray(PALETTE[np.zeros(voc.load_label(0).shape, np.int64)]).save(path)
    with pytest.raises(DatasetError, match="single-channel"):
        voc.read_prediction(path)


# ---------------------------------------------------------------------------------------
# `udalab predict`: a trained run's predictions, written by the dataset, scored by `udalab eval`.


def test_a_smoke_studys_trial_predicted_scores_as_it_evaluated_and_as_cityscapesscripts_scores_it(
        tmp_path, mini_data, monkeypatch, capsys):
    """The HRDA row of a smoke study (sliding-window inference) run by the local runner; `udalab
    predict` of its trial onto the mini Cityscapes val split; `udalab eval` of the folder gives the
    trial's own final val mIoU (the prediction path is its evaluation path) and cityscapesScripts'
    evaluation of the same folder the same mIoU."""
    pytest.importorskip("cityscapesscripts", reason=NEEDS_CITYSCAPESSCRIPTS)
    from udalab.methods import load_trained
    from udalab.studies import cli
    from udalab.studies.run import local

    results = tmp_path / "results"
    assert cli.main(["run", "hrda_crop_size", "--smoke", "--local", "--rows", "10", "--results", str(results),
                     "--no-report"]) == 0
    study = results / "hrda_crop_size_smoke_local"
    final = local.read_runs(study)["row10-seed0"]["reports"][-1]
    run = study / layout.TRAIN_DIR / layout.train_run_name("row10-seed0")
    assert load_trained(run, device="cpu").prediction.window is not None        # HRDA predicts in windows
    out, colour = tmp_path / "pred", tmp_path / "colour"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                                     # as the runner's run
    try:
        assert cli.main(["predict", str(run), "--dataset", "cityscapes", "--out", str(out), "--colour", str(colour),
                         "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    val = build_dataset("cityscapes", None, "val")
    assert len(list(out.rglob("*.png"))) == len(list(colour.rglob("*.png"))) == len(val)
    assert f"{len(val)}/{len(val)}" in capsys.readouterr().err                    # the progress bar
    info = read_predictions_info(out)
    assert (info["method"], info["iteration"], info["root"]) == ("hrda", final["iteration"], str(val.root))

    assert cli.main(["eval", "--dataset", "cityscapes", "--split", "val", "--pred-dir", str(out),
                     "--json", str(tmp_path / "eval.json")]) == 0
    ours = json.loads((tmp_path / "eval.json").read_text())
    assert ours["miou"] == pytest.approx(final["miou"], abs=1e-6)
    assert ours["pixel_acc"] == pytest.approx(final["pixel_acc"], abs=1e-6)
    theirs = _cityscapesscripts(Path(val.root), out, "val", tmp_path, monkeypatch, instances=False)
    assert ours["miou"] == pytest.approx(100 * theirs["averageScoreClasses"], abs=0.01)


def test_a_voc_run_predicted_and_scored_gives_its_val_miou_and_wrong_asks_are_refused(tmp_path, capsys):
    """A VOC run on a small twin (its config's data_root): predicted from its state.pt onto that
    root (the default), scored by `udalab eval`: the run's final val mIoU. A dataset of other
    classes, an unknown name and a folder without a checkpoint are refused with the fix."""
    from udalab.methods import run_local
    from udalab.studies import cli

    root = mini.make_mini("voc", tmp_path / "voc", count={"train": 4, "val": 6})
    config = {"preset": "smoke", "source": "voc", "target": "voc", "data_root": {"voc": str(root)}, "iterations": 1}
    last = run_local("source_only", config, checkpoint_dir=tmp_path / "run")[-1]
    out = tmp_path / "pred"
    assert cli.main(["predict", str(tmp_path / "run" / layout.STATE_FILE), "--dataset", "voc", "--out", str(out),
                     "--no-progress", "--device", "cpu"]) == 0
    assert read_predictions_info(out)["root"] == str(root) and "predict voc" not in capsys.readouterr().err
    scores = evaluate_predictions(root, "val", out, dataset="voc")
    assert scores["miou"] == pytest.approx(last["miou"], abs=1e-6) and "iiou" in scores

    for argv, message in [(["--dataset", "cityscapes"], "predicts 21 classes.*cityscapes has 19.*--dataset voc"),
                          (["--dataset", "vocc"], "unknown dataset 'vocc'"),
                          (["--dataset", "voc", "--split", "nope"], "no split 'nope'")]:
        assert cli.main(["predict", str(tmp_path / "run"), *argv, "--out", str(tmp_path / "x")]) == 2
        assert re.search(message, capsys.readouterr().err), message
    assert cli.main(["predict", str(tmp_path), "--dataset", "voc", "--out", str(tmp_path / "x")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_mfnet_view_of_other_channels_than_the_runs_is_refused(tmp_path):
    from udalab.datasets.mfnet import CLASS_NAMES
    from udalab.methods.engine.evaluate import Prediction
    from udalab.methods.engine.predict import PredictError, check_dataset
    from udalab.methods.engine.registry import Trained

    root = mini.make_mini("mfnet", tmp_path / "mfnet", count={"val": 1})
    trained = Trained({"method": "mml", "target": "mfnet@3"}, None, Prediction(lambda x: x, len(CLASS_NAMES)), [],
                      tuple(CLASS_NAMES))
    check_dataset(trained, build_dataset("mfnet_rgbt", root, "val"), "mfnet_rgbt")
    with pytest.raises(PredictError, match="the run saw rgbt images.*--dataset mfnet$"):
        check_dataset(trained, build_dataset("mfnet_thermal", root, "val"), "mfnet_thermal")


def _tune_study(tmp_path: Path) -> Path:
    """A study folder laid out as Ray Tune and Train write it: a trial folder (result.json lines name
    its trial id), its Train run under _train/ with an older checkpoint and a newer one still being
    written (no state.pt yet)."""
    study = tmp_path / "study"
    trial = study / "trial_1a2b3_00000_0_row=method_hrda,seed=0_2026-01-01_00-00-00"
    trial.mkdir(parents=True)
    (trial / layout.TUNE_PARAMS_FILE).write_text('{"row": {"method": "hrda"}, "seed": 0}')
    (trial / layout.TUNE_RESULT_FILE).write_text('{"iteration": 2, "trial_id": "1a2b3_00000"}\n{"iteration": 4, "tr')
    run = study / layout.TRAIN_DIR / layout.train_run_name("1a2b3_00000")
    for name in ("checkpoint_2026-01-01_00-00-10.000001", "checkpoint_2026-01-01_00-00-20.000002"):
        (run / name).mkdir(parents=True)
    (run / "checkpoint_2026-01-01_00-00-10.000001" / layout.STATE_FILE).write_bytes(b"")
    return study


def test_a_run_is_found_from_any_of_its_folders(tmp_path):
    study = _tune_study(tmp_path)
    trial = next(study.glob("trial_*"))
    checkpoint = study / "_train" / "train-1a2b3_00000" / "checkpoint_2026-01-01_00-00-10.000001"
    for path in (trial, checkpoint.parent, checkpoint, checkpoint / layout.STATE_FILE):
        assert layout.checkpoint_folder(path) == checkpoint, path
    (trial / layout.TUNE_RESULT_FILE).write_text("")                        # no report yet: the folder's name
    assert layout.checkpoint_folder(trial) == checkpoint
    with pytest.raises(layout.CheckpointError, match="study's results folder.*train-1a2b3_00000"):
        layout.checkpoint_folder(study)
    with pytest.raises(layout.CheckpointError, match="does not exist"):
        layout.checkpoint_folder(study / "nope")
    (checkpoint / layout.STATE_FILE).unlink()
    with pytest.raises(layout.CheckpointError, match="holds no checkpoint.*checkpoint_2026-01-01_00-00-20"):
        layout.checkpoint_folder(trial)
    shutil.rmtree(checkpoint.parent)
    with pytest.raises(layout.CheckpointError, match="no Train run under"):
        layout.checkpoint_folder(trial)
    for seed in (0, 1):       # a search scored over seeds: one Train run per seed
        (study / "_train" / layout.train_run_name("1a2b3_00000", seed) / "checkpoint_1").mkdir(parents=True)
    with pytest.raises(layout.CheckpointError, match="per seed: train-1a2b3_00000-seed0, train-1a2b3_00000-seed1"):
        layout.checkpoint_folder(trial)
