"""Loaders on their mini twins, the generator, transforms and every planted error."""
import hashlib
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udalab.datasets import DatasetError, build_dataset
from udalab.datasets.cityscapes import Cityscapes
from udalab.datasets.gta5 import GTA5
from udalab.datasets.labels import ID_TO_TRAIN_ID, NUM_CLASSES
from udalab.datasets.mini import make_mini, mini_root


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.png")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    make_mini("gta5", root / "gta5", count={"train": 6})
    make_mini("cityscapes", root / "cityscapes", count={"train": 6, "val": 3})
    return root


def test_generator_is_deterministic_and_seeded(small, tmp_path):
    make_mini("gta5", tmp_path / "again", count={"train": 6})
    make_mini("gta5", tmp_path / "other", seed=1, count={"train": 6})
    assert _digest(tmp_path / "again") == _digest(small / "gta5")
    assert _digest(tmp_path / "other") != _digest(small / "gta5")


def test_real_layouts_and_encodings(small):
    gta_label = Image.open(small / "gta5" / "labels" / "00001.png")
    assert gta_label.mode == "P"  # palette PNG of label ids, as the real GTA5
    cs = sorted((small / "cityscapes" / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    assert len(cs) == 3 and {p.parent.name for p in cs} == {"frankfurt", "lindau", "munster"}
    ids = np.unique(np.array(Image.open(cs[0])))
    assert ids.max() <= 33


@pytest.mark.parametrize("name, split, n", [("gta5", "train", 300), ("cityscapes", "train", 300),
                                             ("cityscapes", "val", 90)])
def test_loader_contract_on_full_mini_twin(name, split, n, mini_data):
    ds = build_dataset(name, split=split, size=(128, 64))
    assert len(ds) == n and ds.num_classes == NUM_CLASSES and ds.ignore_index == 255
    s = ds[0]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 64, 128)
    assert s["label"].dtype == torch.int64 and s["label"].shape == (64, 128)
    values = torch.cat([ds[i]["label"].unique() for i in range(0, n, max(n // 10, 1))]).unique()
    assert set(values.tolist()) <= set(range(NUM_CLASSES)) | {255}
    assert {0, 2, 10, 13} <= set(values.tolist())  # road, building, sky, car
    assert abs(float(s["image"].mean())) < 2.0  # ImageNet-normalised


def test_cityscapes_ego_vehicle_is_ignored(mini_data):
    ds = build_dataset("cityscapes", split="val")
    assert any((ds[i]["label"] == 255).any() for i in range(5))


def test_label_id_mapping_on_a_hand_made_label(tmp_path):
    root = tmp_path / "cs"
    (root / "leftImg8bit/val/x").mkdir(parents=True)
    (root / "gtFine/val/x").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(root / "leftImg8bit/val/x/x_0_0_leftImg8bit.png")
    ids = np.array([[7, 8, 11, 26], [0, 1, 33, 24]], np.uint8)
    Image.fromarray(ids, mode="L").save(root / "gtFine/val/x/x_0_0_gtFine_labelIds.png")
    label = Cityscapes(root, "val")[0]["label"]
    assert label.tolist() == [[0, 1, 2, 13], [255, 255, 18, 11]]
    assert ID_TO_TRAIN_ID[ids].tolist() == label.tolist()


def test_flip_keeps_image_and_label_aligned(small):
    ds = GTA5(small / "gta5", flip=True)
    plain = GTA5(small / "gta5")
    seen_flip = False
    for seed in range(8):
        torch.manual_seed(seed)
        s = ds[0]
        ref = plain[0]
        if torch.equal(s["label"], ref["label"].flip(-1)):
            assert torch.allclose(s["image"], ref["image"].flip(-1))
            seen_flip = True
        else:
            assert torch.equal(s["label"], ref["label"]) and torch.allclose(s["image"], ref["image"])
    assert seen_flip


def test_crop_and_resize_sizes(small):
    torch.manual_seed(0)
    s = GTA5(small / "gta5", size=(128, 72), crop=(64, 32))[0]
    assert s["image"].shape == (3, 32, 64) and s["label"].shape == (32, 64)


def _copy(small, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(small / name, dst)
    return dst


def test_missing_root_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "nowhere")):
        build_dataset("cityscapes", root=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown dataset 'kitti'"):
        build_dataset("kitti")


def test_image_without_label(small, tmp_path):
    root = _copy(small, tmp_path, "gta5")
    (root / "labels" / "00003.png").unlink()
    with pytest.raises(DatasetError, match=r"00003\.png has no label: expected .*labels/00003\.png"):
        GTA5(root)


def test_corrupt_png_names_the_file(small, tmp_path):
    root = _copy(small, tmp_path, "cityscapes")
    img = sorted((root / "leftImg8bit" / "val").glob("*/*.png"))[0]
    img.write_bytes(img.read_bytes()[:100])
    with pytest.raises(DatasetError, match=f"cannot decode image {img}"):
        Cityscapes(root, "val")[0]
    lbl = sorted((root / "gtFine" / "val").glob("*/*.png"))[1]
    lbl.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"cannot decode label {lbl}"):
        Cityscapes(root, "val")[1]


def test_unknown_label_id_names_file_and_ids(small, tmp_path):
    root = _copy(small, tmp_path, "gta5")
    path = root / "labels" / "00002.png"
    arr = np.array(Image.open(path))
    arr[0, :5] = 40
    Image.fromarray(arr, mode="L").save(path)
    with pytest.raises(DatasetError, match=rf"{path} holds ids \[40\] outside"):
        GTA5(root)[1]


def test_size_mismatch_names_both_sizes(small, tmp_path):
    root = _copy(small, tmp_path, "gta5")
    path = root / "labels" / "00001.png"
    Image.open(path).resize((128, 72), Image.NEAREST).save(path)
    with pytest.raises(DatasetError, match=r"size mismatch: image .*00001\.png is 256x144 but label .* is 128x72"):
        GTA5(root)[0]


def _ask(cache):
    import os

    os.environ["UDALAB_DATA_CACHE"] = cache
    from udalab.datasets import mini

    mini.SPECS = {**mini.SPECS, "gta5": {**mini.SPECS["gta5"], "splits": {"train": 4}}}
    return str(mini.mini_root("gta5"))


def test_concurrent_first_use_yields_one_complete_folder(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_ask, [str(tmp_path)] * 2)
    assert a == b and (Path(a) / ".complete").exists()
    assert len(list((Path(a) / "images").glob("*.png"))) == 4
    assert not list(tmp_path.glob(".tmp-*"))  # the loser cleaned up
