"""Pictures of predictions: palettes, the chosen images, what a trial keeps, the report's grid."""
import re

import numpy as np
import pytest
import torch
from torchvision.io import decode_png

from udalab.analysis import store
from udalab.analysis.report import build_report
from udalab.analysis.report_spec import ReportSpec
from udalab.datasets import mini
from udalab.datasets.labels import IGNORE_COLOR, IGNORE_INDEX, PALETTE, colorize
from udalab.methods.engine import pictures


def _decode(data: bytes) -> np.ndarray:
    return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8)).permute(1, 2, 0).numpy()


def test_each_class_id_gets_its_datasets_colour():
    from udalab.datasets.mfnet import PALETTE as MFNET
    from udalab.datasets.voc import PALETTE as VOC

    ids = np.array([[*range(19), IGNORE_INDEX]], np.uint8)
    rgb = colorize(ids, PALETTE)
    assert (rgb[0, :19] == PALETTE).all() and tuple(rgb[0, 19]) == IGNORE_COLOR
    assert tuple(PALETTE[0]) == (128, 64, 128) and tuple(colorize(np.array([[13]]), PALETTE)[0, 0]) == (0, 0, 142)
    assert tuple(colorize(np.array([[1, 255]]), VOC)[0, 0]) == (128, 0, 0)          # aeroplane
    assert tuple(colorize(np.array([[1, 255]]), VOC)[0, 1]) == (224, 224, 192)      # VOC's own void colour
    assert (colorize(np.arange(9)[None], MFNET)[0] == MFNET).all()


def test_chosen_images_do_not_depend_on_the_file_order(mini_data):
    from udalab.datasets import build_dataset

    ds = build_dataset("cityscapes", split="val")
    picks = pictures.chosen(ds)
    names = [ds.files[i][0].name for i in picks]
    assert len(set(names)) == pictures.NUM_PICTURES
    ds.files = list(reversed(ds.files))
    assert [ds.files[i][0].name for i in pictures.chosen(ds)] == names
    assert names == sorted(names)                       # spread over the sorted names, first and last included
    assert names[0] == min(f[0].name for f in ds.files) and names[-1] == max(f[0].name for f in ds.files)


def test_a_trial_keeps_its_final_predictions_and_a_resume_keeps_them(tmp_path, mini_data, killed_after):
    """The final checkpoint holds the input, ground truth (the label in the palette) and prediction of
    the chosen images; a run killed half-way and resumed keeps the same pictures."""
    from udalab.datasets import build_dataset
    from udalab.methods import run_local

    cfg = {"method": "source_only", "preset": "smoke", "seed": 0, "iterations": 4, "eval_every": 2}
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_local("source_only", cfg, checkpoint_dir=full)
    with killed_after(2):
        run_local("source_only", cfg, checkpoint_dir=resumed)
    assert not (resumed / "pictures").exists()                 # only the final evaluation keeps pictures
    run_local("source_only", cfg, checkpoint_dir=resumed)
    kept = sorted(p.name for p in (full / "pictures").iterdir())
    assert kept == sorted(p.name for p in (resumed / "pictures").iterdir())
    assert kept == sorted(["index.json"] + [f"{k}_{n}.png" for k in range(4) for n in ("image", "label", "pred")])
    for name in kept:
        assert (full / "pictures" / name).read_bytes() == (resumed / "pictures" / name).read_bytes(), name
    val = build_dataset("cityscapes", split="val")
    index = pictures.chosen(val)
    label = val[index[1]]["label"].numpy()
    shown = _decode((full / "pictures" / "1_label.png").read_bytes())
    assert label.shape[1] > pictures.MAX_WIDTH and shown.shape == (label.shape[0] * 192 // label.shape[1], 192, 3)
    assert (shown == pictures.shrink(colorize(label, PALETTE), nearest=True)).all()
    assert set(map(tuple, shown.reshape(-1, 3))) <= set(map(tuple, PALETTE)) | {IGNORE_COLOR}
    pred = _decode((full / "pictures" / "1_pred.png").read_bytes())
    assert pred.shape == shown.shape and set(map(tuple, pred.reshape(-1, 3))) <= set(map(tuple, PALETTE))


def test_pictures_at_every_evaluation_survive_a_resume(tmp_path, mini_data, killed_after):
    """pictures="every": each evaluation's pictures under pictures/iteration-<n>/ of every later
    checkpoint (a resumed run carries the ones from before the kill); the final ones stay where the
    report reads them, the same as the last evaluation's."""
    from udalab.methods import run_local
    from udalab.methods.engine import ConfigError

    cfg = {"method": "source_only", "preset": "smoke", "seed": 0, "iterations": 4, "eval_every": 2,
           "pictures": "every"}
    with killed_after(2):
        run_local("source_only", cfg, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["iteration-000002"]
    run_local("source_only", cfg, checkpoint_dir=tmp_path)
    folder = tmp_path / "pictures"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["iteration-000002", "iteration-000004"]
    final = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert "index.json" in final and final == sorted(p.name for p in (folder / "iteration-000004").iterdir())
    for name in final:
        assert (folder / name).read_bytes() == (folder / "iteration-000004" / name).read_bytes()
    with pytest.raises(ConfigError, match="pictures must be one of"):
        run_local("source_only", {**cfg, "pictures": "sometimes"})


def test_a_classmix_picture_pastes_half_the_source_classes_onto_the_target():
    """DACS's mixed picture: a source of two classes (left red, right green) onto a blue target: one
    class's half comes from the source, the other half is the target's, split where the label is."""
    from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
    from udalab.methods.daformer import mixed_picture

    def normalised(rgb, h, w):
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return ((torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1) / 255).expand(3, h, w) - mean) / std

    src = torch.cat([normalised((255, 0, 0), 16, 12), normalised((0, 255, 0), 16, 12)], dim=2)
    label = torch.zeros(16, 24, dtype=torch.long)
    label[:, 12:] = 1
    pic = mixed_picture({"image": src, "label": label}, normalised((0, 0, 255), 16, 24))
    assert pic.shape == (16, 24, 3)
    left, right = pic[:, :12].reshape(-1, 3), pic[:, 12:].reshape(-1, 3)
    assert len(np.unique(left, axis=0)) == 1 and len(np.unique(right, axis=0)) == 1
    colours = {tuple(left[0]), tuple(right[0])}
    assert colours in ({(255, 0, 0), (0, 0, 255)}, {(0, 0, 255), (0, 255, 0)})


def _pictures(names, extra=()):
    files = {}
    for k in range(len(names)):
        for n in ("image", "label", "pred", *extra):
            files[f"{k}_{n}.png"] = pictures.png(np.full((4, 6, 3), 10 * k, np.uint8))
    return {"index": {"dataset": "Cityscapes", "images": list(names), "pictures": {"pred": "prediction",
            **{e: e for e in extra}}, "legend": [["road", [128, 64, 128]]]}, "files": files}


def test_the_report_grid_has_a_row_per_image_and_a_column_per_configuration():
    rows = [store.trial_row(f"t{i}{s}", "TERMINATED", {"row": {"rcs": rcs}, "method": "daformer", "seed": s},
                            {"miou": 20.0 + i + s}) for i, rcs in enumerate((False, True, None)) for s in (1, 0)]
    df = store.trials_frame(rows)
    names = ["a.png", "b.png", "c.png", "d.png"]
    pics = {r["trial_id"]: _pictures(names, extra=("pseudo",) if r["params"].get("rcs") else ())
            for r in rows}
    spec = ReportSpec(title="t", group=None, baseline={"rcs": True}, name=lambda r: {True: "RCS", False: "no RCS"}
                      .get(r.get("rcs"), "default"))
    html = build_report(df, spec, preset="mini", study_name="s", pictures=pics).html
    section = html[html.index("What the models see"):]
    grid = section[:section.index("</table>")]
    header = re.findall(r"<th>(.*?)</th>", grid)
    assert header == ["image", "input", "ground truth", "RCS (baseline)", "no RCS", "default"]
    body = re.findall(r"<tr><td>(.*?)</td>", grid)
    assert body == names and grid.count("<img") == 4 * (2 + 3)
    assert "(seed 0)" in section                                    # the lowest seed of each configuration
    extra = section[section.index("</table>"):]
    assert "<caption>pseudo</caption>" in extra and extra.count("<img") == 4   # only the RCS trial has it
    assert "What the models see" not in build_report(df, spec, preset="mini", study_name="s").html


def test_a_method_picture_missing_from_the_baseline_still_gets_its_grid():
    """The first column (the baseline) lacks the extra picture (the single decoder has no trained depth
    decoder): the grid still shows it for the columns that have it, with their captions."""
    from udalab.analysis.pictures import picture_grids

    names = ["a.png", "b.png"]
    pics = {"base": _pictures(names), "other": _pictures(names, extra=("depth",))}
    tables, used, notes = picture_grids([("single", "base"), ("two decoders", "other")], pics, "single")
    assert len(tables) == 2 and "<caption>depth</caption>" in tables[1]
    assert re.findall(r"<th>(.*?)</th>", tables[1]) == ["image", "two decoders"] and tables[1].count("<img") == 2
    assert used > 0 and notes == []


def test_each_report_records_what_the_result_depends_on(tmp_path, mini_data):
    """Versions, commit, device and the datasets' fingerprints travel with every report into the
    trials table (as text, not as a configuration) and the report lists them."""
    from udalab.methods import run_local

    reports = run_local("source_only", {"method": "source_only", "preset": "smoke", "seed": 0, "iterations": 2,
                                        "eval_every": 2})
    last = reports[-1]
    assert last["provenance.udalab"].startswith("0.1.0 (") and "CUDA" in last["provenance.torch"]
    v = mini.VERSIONS
    assert f"source GTA5 gta5-v{v['gta5']}:" in last["provenance.data"]
    assert f"target_val Cityscapes cityscapes-v{v['cityscapes']}:" in last["provenance.data"]
    rows = [store.trial_row(f"t{s}", "TERMINATED", {"method": "source_only", "seed": s},
                            {**last, "provenance.device": dev}) for s, dev in ((0, "cpu A"), (1, "cpu B"))]
    df = store.trials_frame(rows)
    assert "provenance.device" in df and "provenance.device" not in store.config_columns(df)
    html = build_report(df, ReportSpec(title="t"), preset="smoke", study_name="s").html
    assert "Provenance" in html and "cpu A (1 trials)" in html and "differ in device" in html
