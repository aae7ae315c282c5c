"""The same loader contract on every mini twin and view: length, split counts, shapes, dtypes,
ignore index 255, label ranges, transforms; plus what is special to each dataset (SYNTHIA's
16-bit labels, MFNet's views and day/night filter, VOC's palette, void and pseudo depth)."""
import numpy as np
import pytest
import torch
from PIL import Image

from udalab.datasets import DATASETS, DatasetError, build_dataset, mini, root_key
from udalab.datasets.mfnet import EVAL_3, MFNet, time_of
from udalab.datasets.synthia import EVAL_13, EVAL_16, SYNTHIA


# name, split, images, channels, classes, train ids that must occur in the sampled labels
CASES = [
    ("gta5", "train", 300, 3, 19, {0, 1, 2, 10, 13}),
    ("cityscapes", "val", 90, 3, 19, {0, 1, 2, 10, 13}),
    ("cityscapes", "test", 45, 3, 19, {0, 1, 2, 8, 10, 11, 13}),
    ("synthia", "train", 300, 3, 19, {0, 1, 2, 5, 8, 10, 11, 13}),
    ("mfnet_rgb", "train", 200, 3, 9, {0, 1, 2, 3, 4}),
    ("mfnet_thermal", "val", 60, 3, 9, {0, 1, 2, 4}),
    ("mfnet_rgbt", "test", 60, 4, 9, {0, 1, 2, 4}),
    ("mfnet_rgb_day", "train", 100, 3, 9, {0, 1, 2, 4}),
    ("mfnet_thermal_night", "train", 100, 3, 9, {0, 1, 2, 4}),
    ("voc", "train", 200, 3, 21, {0}),
    ("voc", "val", 80, 3, 21, {0}),
    ("voc", "test", 40, 3, 21, {0}),
    ("voc_depth", "train", 200, 3, 21, {0}),
]


@pytest.fixture(scope="module")
def cache(fresh_twins):
    """The temporary cache every twin was generated into (conftest.py)."""
    return fresh_twins["gta5"].parent


@pytest.mark.parametrize("name, split, n, channels, num_classes, expected", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_loader_contract(cache, monkeypatch, name, split, n, channels, num_classes, expected):
    monkeypatch.setenv("UDALAB_DATA_CACHE", str(cache))
    ds = build_dataset(name, split=split, size=(96, 64))
    assert isinstance(ds, DATASETS[name]) and ds.root == cache / f"{root_key(name)}-v{mini.VERSIONS[root_key(name)]}"
    assert len(ds) == n == len(ds.files) and all(i.is_file() and lb.is_file() for i, lb in ds.files)
    assert ds.num_classes == num_classes == len(ds.class_names) and ds.ignore_index == 255
    s = ds[0]
    assert s["name"] == ds.files[0][0].name
    assert s["image"].dtype == torch.float32 and s["image"].shape == (channels, 64, 96)
    assert s["label"].dtype == torch.int64 and s["label"].shape == (64, 96)
    assert abs(float(s["image"].mean())) < 1.5 and float(s["image"].std()) > 0.1  # normalised
    values = set()
    for i in range(0, n, max(1, n // 25)):
        values |= set(np.unique(ds.load_label(i)).tolist())
    assert values <= set(range(num_classes)) | {255}
    assert expected <= values, sorted(values)
    torch.manual_seed(0)
    c = build_dataset(name, split=split, size=(80, 60), crop=(48, 40), flip=True)[1]
    assert c["image"].shape == (channels, 40, 48) and c["label"].shape == (40, 48)
    assert set(c["label"].unique().tolist()) <= set(range(num_classes)) | {255}
    if name == "voc_depth":
        assert s["depth"].dtype == torch.float32 and s["depth"].shape == (1, 64, 96) and float(s["depth"].min()) > 0
        assert c["depth"].shape == (1, 40, 48)


def test_mini_twins_are_deterministic_and_versioned(tmp_path):
    # drawing v2: same colours across domains, the realism gap, held-out test splits; v3 (street and MFNet
    # twins): small classes drawn learnable. The files' version is the cache key: Cityscapes 4 adds train_extra
    assert set(mini.VERSIONS) == set(mini.RENDERERS) == set(mini.MINI_DATASETS) and mini.VERSION == 3
    assert mini.RENDERERS == {"gta5": 3, "cityscapes": 3, "synthia": 3, "mfnet": 3, "voc": 2}
    assert mini.VERSIONS == {**mini.RENDERERS, "cityscapes": 4}
    for name, count in (("synthia", {"train": 3}), ("mfnet", {"train": 4}), ("voc", {"train": 3})):
        a, b = mini.make_mini(name, tmp_path / f"{name}a", count=count), mini.make_mini(name, tmp_path / f"{name}b", count=count)
        c = mini.make_mini(name, tmp_path / f"{name}c", count=count, seed=1)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
        assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix in (".png", ".jpg"))
    with pytest.raises(DatasetError, match="no split 'val'"):
        mini.make_mini("synthia", tmp_path / "x", count={"val": 2})


@pytest.mark.parametrize("name, n, cities", [("cityscapes", 45, {"berlin", "bielefeld", "bonn"}), ("mfnet_rgbt", 60, None),
                                             ("voc", 40, None)])
def test_target_twins_hold_out_a_labelled_test_split(cache, monkeypatch, name, n, cities):
    """Nothing is tuned on `test`: its own images (names and bytes disjoint from train and val), labelled like val."""
    import hashlib

    monkeypatch.setenv("UDALAB_DATA_CACHE", str(cache))
    test = build_dataset(name, split="test")
    assert len(test) == n
    digest = lambda ds: {hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in ds.files}  # noqa: E731
    for other in ("train", "val"):
        ds = build_dataset(name, split=other)
        assert not {p.name for p, _ in ds.files} & {p.name for p, _ in test.files}
        assert not digest(ds) & digest(test)
    if cities:
        assert {p.parent.name for p, _ in test.files} == cities
        assert not cities & {p.parent.name for p, _ in build_dataset(name, split="val").files}
    classes = set()
    for i in range(n):
        label = test.load_label(i)
        assert (label != 255).mean() > 0.5, test.files[i][1]  # real labels, not a void placeholder
        classes |= set(np.unique(label).tolist()) - {255}
    assert len(classes) >= {"cityscapes": 12, "mfnet_rgbt": 6, "voc": 12}[name], sorted(classes)
    if name == "voc":
        sets = test.voc / "ImageSets" / "Segmentation"
        assert not set(sets.joinpath("trainval.txt").read_text().split()) & set(sets.joinpath("test.txt").read_text().split())
    if name == "mfnet_rgbt":
        assert {p.stem[-1] for p, _ in test.files} == {"D", "N"}


# --------------------------------------------------------------------------- SYNTHIA


def test_synthia_labels_are_16bit_and_read_unchanged(cache):
    ds = SYNTHIA(cache / f"synthia-v{mini.VERSION}")
    path = ds.files[0][1]
    pil = np.array(Image.open(path))  # PIL's default mode: 8-bit RGB, the high byte only
    assert pil.ndim == 3 and pil[..., 0].max() == 0
    from udalab.datasets.base import read_png_unchanged

    raw = read_png_unchanged(path)
    assert raw.dtype == np.uint16 and raw.shape[2] == 3 and 3 in raw[..., 0]  # road is SYNTHIA id 3
    assert raw[..., 1].max() > 255  # the instance channel needs all 16 bits
    assert np.array_equal(ds.load_label(0), ds.encode(raw[..., 0], path))


def test_synthia_id_mapping_and_eval_subsets(tmp_path):
    from udalab.datasets.base import write_png16

    root = tmp_path / "syn"
    (root / "RGB").mkdir(parents=True)
    (root / "GT" / "LABELS").mkdir(parents=True)
    ids = np.array([[3, 4, 2, 21, 5, 7, 15, 9], [6, 1, 10, 17, 8, 19, 12, 11], [0, 13, 14, 16, 18, 20, 22, 0]])
    gt = np.zeros(ids.shape + (3,), np.uint16)
    gt[..., 0] = ids
    gt[..., 1] = 4000
    write_png16(root / "GT" / "LABELS" / "0000000.png", gt)
    Image.fromarray(np.zeros((3, 8, 3), np.uint8)).save(root / "RGB" / "0000000.png")
    label = SYNTHIA(root)[0]["label"].tolist()
    assert label == [[0, 1, 2, 3, 4, 5, 6, 7], [8, 10, 11, 12, 13, 15, 17, 18], [255] * 8]
    assert len(EVAL_16) == 16 and not {9, 14, 16} & set(EVAL_16)
    assert len(EVAL_13) == 13 and not {3, 4, 5, 9, 14, 16} & set(EVAL_13)
    assert SYNTHIA(root).eval_classes == EVAL_16
    assert build_dataset("synthia@13", root=root).eval_classes == EVAL_13
    with pytest.raises(DatasetError, match="no evaluation subset '12'"):
        build_dataset("synthia@12", root=root)
    gt[0, 0, 0] = 40
    write_png16(root / "GT" / "LABELS" / "0000000.png", gt)
    with pytest.raises(DatasetError, match=r"\[40\].*0\.\.22"):
        SYNTHIA(root)[0]


# --------------------------------------------------------------------------- MFNet


def test_mfnet_day_night_filter_and_views(cache):
    root = cache / f"mfnet-v{mini.VERSION}"
    both = MFNet(root, "train")
    day = DATASETS["mfnet_rgb_day"](root, "train")
    night = DATASETS["mfnet_thermal_night"](root, "train")
    assert len(day) + len(night) == len(both) == 200
    assert all(p.stem.endswith("D") and time_of(p.name) == "day" for p, _ in day.files)
    assert all(p.stem.endswith("N") for p, _ in night.files)
    names = (root / "train.txt").read_text().split()
    assert [p.stem for p, _ in both.files] == names
    raw = np.array(Image.open(both.files[0][0]))
    assert raw.shape[2] == 4  # RGBA: RGB + thermal
    rgb, th, rgbt = (DATASETS[v](root, "train").load(0)[0] for v in ("mfnet_rgb", "mfnet_thermal", "mfnet_rgbt"))
    assert torch.equal(rgb, torch.from_numpy(raw[..., :3]).permute(2, 0, 1))
    assert th.shape[0] == 3 and torch.equal(th[0], th[2]) and torch.equal(th[1], torch.from_numpy(raw[..., 3]))
    assert torch.equal(rgbt, torch.from_numpy(raw).permute(2, 0, 1))
    assert build_dataset("mfnet_thermal@3", root=root, split="val").eval_classes == EVAL_3 == (1, 2, 3)
    import pickle

    again = pickle.loads(pickle.dumps(night))  # DataLoader workers / Ray may pickle a view's dataset
    assert type(again) is type(night) and again.files == night.files and again.time == "night"
    assert root_key("mfnet_rgb_day@3") == "mfnet"
    from udalab.datasets.mfnet import CITYSCAPES_TO_MFNET

    cs_pred = np.array([[13, 11, 12, 18], [17, 0, 10, 255]])
    assert CITYSCAPES_TO_MFNET[cs_pred].tolist() == [[1, 2, 2, 3], [3, 0, 0, 255]]


def test_mfnet_modalities_differ_as_designed(cache):
    """Night RGB is dark; thermal: persons warm, sky cold; night thermal has its own distribution."""
    root = cache / f"mfnet-v{mini.VERSION}"
    stats = {}
    for view in ("mfnet_rgb_day", "mfnet_rgb_night", "mfnet_thermal_day", "mfnet_thermal_night"):
        ds = DATASETS[view](root, "train")
        img = torch.stack([ds.load(i)[0][0].float() for i in range(20)])
        lab = torch.stack([torch.from_numpy(ds.load_label(i).astype(np.int64)) for i in range(20)])
        sky = torch.zeros_like(lab, dtype=torch.bool)
        sky[:, :10] = lab[:, :10] == 0  # the top rows: sky
        stats[view] = {"mean": img.mean(), "person": img[lab == 2].mean(), "sky": img[sky].mean(),
                       "road_like": img[lab == 4].mean()}
    assert stats["mfnet_rgb_night"]["mean"] < 0.5 * stats["mfnet_rgb_day"]["mean"]
    for view in ("mfnet_thermal_day", "mfnet_thermal_night"):
        assert stats[view]["person"] > stats[view]["sky"] + 100
    assert stats["mfnet_thermal_night"]["road_like"] < stats["mfnet_thermal_day"]["road_like"] - 20   # curbs: colder at night


def test_mfnet_pseudo_labels_round_trip(tmp_path):
    from udalab.datasets.mfnet import write_pseudo_labels

    root = mini.make_mini("mfnet", tmp_path / "mf", count={"train": 4})
    ds = DATASETS["mfnet_rgb_day"](root, "train")

    def expert(image):  # a stand-in expert: "car" where the image is red, else no label
        img = image.numpy().astype(int)
        return np.where(img[0] > img[2] + 60, 1, 255)

    out = write_pseudo_labels(ds, expert, "stand_in")
    assert out == root / "pseudo" / "stand_in" and len(list(out.glob("*.png"))) == 2
    pl = DATASETS["mfnet_rgb_day"](root, "train")
    pl.__init__(root, "train", label_dir="pseudo/stand_in")
    assert np.array_equal(pl.load_label(0), expert(ds.load(0)[0]).astype(np.uint8))
    with pytest.raises(DatasetError, match="pseudo/other"):
        MFNet(root, "train", label_dir="pseudo/other")


# --------------------------------------------------------------------------- VOC


def test_voc_palette_void_instances_and_depth(cache):
    from udalab.datasets.voc import PALETTE, VOC

    ds = VOC(cache / f"voc-v{mini.VERSIONS['voc']}", "train")
    im = Image.open(ds.files[0][1])
    assert im.mode == "P" and np.array_equal(np.array(im.getpalette()[:63]).reshape(21, 3), PALETTE[:21])
    assert tuple(PALETTE[15]) == (192, 128, 128) and tuple(PALETTE[255]) == (224, 224, 192)  # person; void
    present = set()
    for i in range(len(ds)):
        present |= set(np.unique(ds.load_label(i)).tolist())
    assert present == set(range(21)) | {255}  # all 20 classes, background and void
    voids = sum(int((ds.load_label(i) == 255).any()) for i in range(20))
    assert voids == 20  # every object has its void outline
    inst = ds.load_instances(0)
    lab = ds.load_label(0)
    assert ((inst > 0) & (inst < 255) == (lab > 0) & (lab < 255)).all()
    assert (inst[lab == 255] == 255).all()
    d = ds.load_depth(0)
    assert d.shape == lab.shape and d.dtype == np.float32 and 0.5 < d.min() and d.max() <= 60.0 + 1e-3
    assert len({ds.load(i)[0].shape for i in range(30)}) > 1  # image sizes vary, as in VOC


def test_voc_hand_made_palette_label(tmp_path):
    from udalab.datasets.voc import PALETTE, VOC

    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000001\n")
    Image.fromarray(np.full((2, 3, 3), 128, np.uint8)).save(voc / "JPEGImages/2007_000001.jpg")
    lab = Image.fromarray(np.array([[0, 15, 255], [20, 1, 0]], np.uint8), mode="L").convert("P")
    lab.putpalette(PALETTE.flatten().tolist())
    lab.save(voc / "SegmentationClass/2007_000001.png")
    assert VOC(tmp_path, "val")[0]["label"].tolist() == [[0, 15, 255], [20, 1, 0]]
    assert VOC(voc, "val").voc == voc  # the VOC2012 folder itself works as root
    with pytest.raises(DatasetError, match="pseudo-depth"):
        DATASETS["voc_depth"](tmp_path, "val")[0]
    arr = np.array([[0, 21, 255], [20, 1, 0]], np.uint8)
    Image.fromarray(arr).save(voc / "SegmentationClass/2007_000001.png")
    with pytest.raises(DatasetError, match=r"\[21\].*255 = void"):
        VOC(tmp_path, "val")[0]
    with pytest.raises(DatasetError, match="trainval.txt"):
        VOC(tmp_path, "train")
