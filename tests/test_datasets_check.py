"""`udalab data`: check reports (never crashes on) planted problems, each with the file's path;
stats; make-mini; pseudo-depth (missing transformers / weights, the writer with a stand-in model)."""
import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from udalab.datasets import DATASETS, DatasetError, mini
from udalab.datasets.base import read_png_unchanged, write_png16
from udalab.datasets.cli import check_dataset, progress
from udalab.studies.cli import main


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    return {
        "gta5": mini.make_mini("gta5", root / "gta5", count={"train": 5}),
        "synthia": mini.make_mini("synthia", root / "synthia", count={"train": 5}),
        "mfnet": mini.make_mini("mfnet", root / "mfnet", count={"train": 6, "val": 2, "test": 2}),
        "voc": mini.make_mini("voc", root / "voc", count={"train": 5, "val": 2}),
    }


def _pairs(name, root):
    ds = DATASETS[name](root, "train")
    return ds, ds.files


def _plant(name, root):
    """A corrupted image, a missing label, an out-of-range id and a size mismatch; returns their paths."""
    ds, files = _pairs(name, root)
    (img0, _), (_, lbl1), (_, lbl2), (_, lbl3) = files[:4]
    img0.write_bytes(img0.read_bytes()[:150])                           # truncated image
    lbl1.unlink()                                                      # missing label
    bad_id = {"gta5": 40, "synthia": 77, "mfnet": 12, "voc": 33}[name]
    if name == "synthia":
        raw = read_png_unchanged(lbl2)
        raw[0, :3, 0] = bad_id
        write_png16(lbl2, raw)
    else:
        im = Image.open(lbl2)
        arr = np.array(im)
        arr[0, :3] = bad_id
        out = Image.fromarray(arr)
        if im.mode == "P":
            out = Image.fromarray(arr, mode="L").convert("P")
            out.putpalette(im.getpalette())
        out.save(lbl2)
    if name == "synthia":
        raw = read_png_unchanged(lbl3)
        write_png16(lbl3, raw[: raw.shape[0] // 2])
    else:
        im = Image.open(lbl3)
        im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(lbl3)
    return {"corrupt": img0, "missing": lbl1, "bad_id": lbl2, "size": lbl3, "bad_value": bad_id}


@pytest.mark.parametrize("name", ["gta5", "synthia", "mfnet", "voc"])
def test_check_reports_every_planted_problem(small, tmp_path, capsys, name):
    root = shutil.copytree(small[name], tmp_path / name)
    assert main(["data", "check", name, "--root", str(root), "--quiet"]) == 0
    assert "no problems found" in capsys.readouterr().out

    planted = _plant(name, root)
    rep = check_dataset(name, root)
    assert len(rep["problems"]) == 4, rep["problems"]
    text = "\n".join(rep["problems"])
    for key in ("corrupt", "missing", "bad_id", "size"):
        assert str(planted[key]) in text, (key, text)
    assert "cannot decode image" in text and "re-extract" in text
    assert "has no label" in text and "Restore the label file" in text
    assert f"[{planted['bad_value']}]" in text
    assert "size mismatch" in text and "replace the broken pair" in text

    assert check_dataset(name, root, workers=2)["problems"] == rep["problems"]  # same report, same order
    assert main(["data", "check", name, "--root", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s)" in out and all(str(planted[k]) in out for k in ("corrupt", "missing", "bad_id", "size"))
    assert "train" in out and "images" in out


SPLIT_FILE = {"gta5": "val.txt", "synthia": "val.txt", "mfnet": "val.txt",
              "voc": "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"}


@pytest.mark.parametrize("name", ["gta5", "synthia", "mfnet", "voc"])
def test_split_file_problems_get_the_same_error_in_every_dataset(small, tmp_path, name):
    """One split-file rule: a missing or empty split file always raises; a listed image that does
    not exist raises with strict=True and is a `missing` pair with strict=False (reported by check)."""
    root = shutil.copytree(small[name], tmp_path / name)
    cls, split_file = DATASETS[name], root / SPLIT_FILE[name]
    img, lbl = cls(root, "train").files[0]
    listed = (lambda p: p.name) if name in ("gta5", "synthia") else (lambda p: p.stem)  # the layouts' name forms
    gone = img.with_stem("99999N")

    split_file.unlink(missing_ok=True)
    for strict in (True, False):
        with pytest.raises(DatasetError, match="has no split 'val'") as e:
            cls(root, "val", strict=strict)
        assert f"split file {split_file} is missing; " in str(e.value)

    split_file.write_text("\n")
    for strict in (True, False):
        with pytest.raises(DatasetError) as e:
            cls(root, "val", strict=strict)
        assert f"split file {split_file} lists no images; write the image names of split 'val'" in str(e.value)

    split_file.write_text(f"{listed(img)}\n{listed(gone)}\n")
    with pytest.raises(DatasetError) as e:
        cls(root, "val")
    msg = str(e.value)
    assert msg.replace(str(split_file), "<split file>").replace(str(gone), "<image>") == \
        ("<split file> lists image <image>, which does not exist; restore the image or remove its name from the "
         "split file")
    ds = cls(root, "val", strict=False)
    assert ds.files == [(img, lbl)] and [p for p, _ in ds.missing] == [gone] and ds.split_file == split_file
    assert ds.missing_problem(*ds.missing[0]) == msg
    rep = check_dataset(name, root, splits=["val"])
    assert rep["problems"] == [msg] and rep["splits"]["val"]["images"] == 2 and rep["splits"]["val"]["ok"] == 1


def test_check_layout_problems(tmp_path, small, capsys):
    rep = check_dataset("cityscapes", tmp_path / "nowhere")
    assert rep["problems"] and "does not exist" in rep["problems"][0]
    root = shutil.copytree(small["mfnet"], tmp_path / "mf")
    (root / "val.txt").write_text("00007D\n99999N\n")
    (root / "test.txt").unlink()
    rep = check_dataset("mfnet", root, splits=["train", "val", "test"])
    text = "\n".join(rep["problems"])
    assert str(root / "images" / "99999N.png") in text and str(root / "test.txt") in text
    # a 3-channel PNG where MFNet wants RGB + thermal
    img = root / "images" / "00001D.png"
    Image.open(img).convert("RGB").save(img)
    rep = check_dataset("mfnet", root, splits=["train"])
    assert any(str(img) in p and "4-channel" in p for p in rep["problems"])
    assert main(["data", "check", "kitti", "--root", str(root)]) == 2
    assert "unknown dataset 'kitti'" in capsys.readouterr().err


def test_stats_and_make_mini(small, tmp_path, monkeypatch, capsys):
    assert main(["data", "stats", "synthia", "--root", str(small["synthia"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 5 images" in out and "road" in out and "(not evaluated)" in out
    assert main(["data", "stats", "mfnet_rgb", "--root", str(small["mfnet"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 6 images" in out and "val: 2 images" in out and "day 3, night 3" in out
    monkeypatch.setenv("UDALAB_DATA_CACHE", str(tmp_path / "cache"))
    assert main(["data", "make-mini", "voc"]) == 0
    assert (tmp_path / "cache" / f"voc-v{mini.VERSIONS['voc']}" / ".complete").is_file()
    assert str(tmp_path / "cache") in capsys.readouterr().out


def test_progress_bar_writes_to_its_stream():
    class Tty:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

        def isatty(self):
            return True

    s = Tty()
    assert list(progress(range(5), "walk", stream=s)) == list(range(5))
    assert "walk: 100%" in s.text and "5/5" in s.text and s.text.endswith("\n")      # tqdm's bar, closed
    assert progress(range(5), "walk", stream=s, quiet=True) == range(5)


# --------------------------------------------------------------------------- pseudo depth


def test_pseudo_depth_errors(small, tmp_path, monkeypatch, capsys):
    from udalab.datasets.pseudo_depth import load_estimator

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(DatasetError, match=r"not installed.*pip install 'transformers"):
        load_estimator("depth-anything/Depth-Anything-V2-Small-hf")
    assert main(["data", "pseudo-depth", "--root", str(small["voc"]), "--model", "x/y"]) == 2
    err = capsys.readouterr().err
    assert "transformers" in err and "huggingface-cli download" in err
    monkeypatch.undo()
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError, match="weights are not on this machine"):
        load_estimator("depth-anything/Depth-Anything-V2-Small-hf")
    with pytest.raises(DatasetError, match="no config.json"):
        load_estimator(str(tmp_path))


def test_pseudo_depth_writer_on_the_mini_twin(small, tmp_path):
    from udalab.datasets.pseudo_depth import fill_pseudo_depth
    from udalab.datasets.voc import DEPTH_DIR, VOC

    root = shutil.copytree(small["voc"], tmp_path / "voc")
    shutil.rmtree(root / "VOCdevkit" / "VOC2012" / DEPTH_DIR)
    calls = []

    def stand_in(image):  # a "model" at half resolution: depth = 1 + column / 10
        calls.append(image.size)
        w, h = image.width // 2, image.height // 2
        return np.tile(1.0 + np.arange(w, dtype=np.float32) / 10, (h, 1))

    out = fill_pseudo_depth(root, stand_in, model="stand-in", kind="relative")
    assert out["written"] == 7 and out["skipped"] == 0 and len(calls) == 7
    meta = json.loads((root / "VOCdevkit/VOC2012" / DEPTH_DIR / "depth.json").read_text())
    assert meta["model"] == "stand-in" and meta["kind"] == "relative" and len(meta["scales"]) == 7
    ds = DATASETS["voc_depth"](root, "train")
    name = ds.files[0][0].stem
    png = read_png_unchanged(root / "VOCdevkit/VOC2012" / DEPTH_DIR / f"{name}.png", "depth")
    assert png.dtype == np.uint16 and png.max() == 65535  # full 16-bit range per image
    d = ds.load_depth(0)
    assert d.shape == ds.load_label(0).shape
    assert d[:, 0].mean() == pytest.approx(1.0, abs=0.1) and np.all(np.diff(d[0]) >= -1e-3)  # increases along x
    assert abs(d.max() - (1 + (ds.load(0)[0].shape[2] // 2 - 1) / 10)) < 0.05
    assert np.allclose(png / meta["scales"][name], d)
    assert ds[0]["depth"].shape[0] == 1
    again = fill_pseudo_depth(root, stand_in, model="stand-in", kind="relative")
    assert again == {"written": 0, "skipped": 7, "folder": out["folder"]}
    assert fill_pseudo_depth(root, stand_in, model="stand-in", splits=["val"], overwrite=True)["written"] == 2
    assert VOC(root, "val").depth_meta()["scales"].keys() == meta["scales"].keys()


def test_pseudo_depth_command_with_a_tiny_local_dinov2_depth_model(small, tmp_path, capsys):
    """The whole `udalab data pseudo-depth` path with a randomly initialised, tiny Depth Anything
    (DINOv2 backbone) saved to a local folder: loading from local files, inference, writing."""
    T = pytest.importorskip("transformers")
    from udalab.datasets.voc import DEPTH_DIR

    bb = T.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=56, patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False)
    cfg = T.DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=32, neck_hidden_sizes=[16, 32],
                                reassemble_factors=[2, 1], fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    model_dir = tmp_path / "tiny-depth-anything"
    T.DepthAnythingForDepthEstimation(cfg).save_pretrained(model_dir)
    T.DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=False, do_pad=False).save_pretrained(model_dir)
    root = shutil.copytree(small["voc"], tmp_path / "voc")
    shutil.rmtree(root / "VOCdevkit" / "VOC2012" / DEPTH_DIR)
    assert main(["data", "pseudo-depth", "--root", str(root), "--model", str(model_dir), "--device", "cpu",
                 "--split", "val", "--quiet"]) == 0
    assert "2 written" in capsys.readouterr().out
    ds = DATASETS["voc_depth"](root, "val")
    meta = ds.depth_meta()
    assert meta["model"] == str(model_dir) and meta["kind"] == "relative" and len(meta["scales"]) == 2
    s = ds[1]
    assert s["depth"].shape == (1,) + s["label"].shape and np.isfinite(s["depth"].numpy()).all()
