"""The embedded mini data: miniature GTA5, Cityscapes, SYNTHIA, MFNet and PASCAL VOC, generated
deterministically in the real datasets' on-disk layouts and label encodings, so they go
through the real loaders. This module holds the cache logic and the writers; the scenes
are rendered by mini_street.py (GTA5, Cityscapes, SYNTHIA), mini_mfnet.py and mini_voc.py.

The domains differ the way the real ones do, not by colour: a class keeps its colours in
every domain (one palette), and the gap is rendering (game vs photograph: texture, sensor
noise, exposure, blur, vignetting, lighting), camera (height, focal length, horizon) and
layout statistics (object sizes, class frequencies, shapes); see mini_street.py. The gap
this leaves is measured by studies/mini_gap.py (records/mini_gap_v3, docs/datasets.md);
realism.py's `colour_check` shows that colour alone no longer tells the domains apart.

Every target twin has a labelled held-out split that nothing is tuned on: Cityscapes
`test` (45 images, the distribution of val; real Cityscapes' test labels are withheld),
MFNet `test.txt`, VOC `ImageSets/Segmentation/test.txt`.

The Cityscapes twin also has `train_extra`: images without labels, as real Cityscapes' train_extra
(the unlabelled pool UDAS self-trains on); 100 images, a third of train (the real one is 6.7x train).

The cache folder of a twin is `$UDALAB_DATA_CACHE/<name>-v<VERSIONS[name]>`: bump it on any change
that alters the files, and every cache regenerates on first use. RENDERERS[name], the version of the
scenes' drawing, is part of every image's seed: a twin that gains a split keeps its other images.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from udalab.datasets.cityscapes import Cityscapes
from udalab.datasets.errors import DatasetError
from udalab.datasets.labels import LABELS
from udalab.datasets.mini_street import LANE_MARK, render_scene

# 2 = same colours across domains, realism gap, held-out test splits; 3 (street and MFNet twins) = every class
# drawn large enough to be learnt at the methods' training sizes (mini_street.THICK, mini_mfnet)
VERSION = 3  # of the street and MFNet twins' drawing
RENDERERS = {"gta5": VERSION, "cityscapes": VERSION, "synthia": VERSION, "mfnet": VERSION, "voc": 2}
# the twins' files: 4 (Cityscapes) = drawing 3 + train_extra
VERSIONS = {**RENDERERS, "cityscapes": 4}
MINI_DATASETS = ("gta5", "cityscapes", "synthia", "mfnet", "voc")
SPECS = {
    "gta5": {"size": (256, 144), "splits": {"train": 300}},
    "cityscapes": {"size": (256, 128), "splits": {"train": 300, "val": 90, "test": 45, "train_extra": 100},
                   "cities": {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster"),
                              "test": ("berlin", "bielefeld", "bonn"), "train_extra": ("augsburg", "bad-honnef")}},
    "synthia": {"size": (256, 152), "splits": {"train": 300}},   # 1280x760 / 5
    "mfnet": {"size": (160, 120), "splits": {"train": 200, "val": 60, "test": 60}},  # 640x480 / 4
    "voc": {"size": None, "splits": {"train": 200, "val": 80, "test": 40}},  # sizes vary per image, as in VOC
}


def mini_cache() -> Path:
    return Path(os.environ.get("UDALAB_DATA_CACHE", Path.home() / ".cache" / "udalab" / "mini"))


def mini_root(name: str) -> Path:
    """Folder of the mini twin `name`, generated on first use (safe for concurrent callers)."""
    _check_name(name)
    version = VERSIONS[name]
    final = mini_cache() / f"{name}-v{version}"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        make_mini(name, tmp)
        (tmp / ".complete").write_text(f"udalab mini {name} v{version}\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, final)  # atomic; fails if another process finished first
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / ".complete").exists():
            raise DatasetError(f"cannot create the mini data folder {final} ({e}); if it exists without its "
                               f".complete marker it is left over from an interrupted run: delete it and retry, "
                               f"or point UDALAB_DATA_CACHE at a writable folder") from e
    return final


def _check_name(name: str) -> None:
    if name not in MINI_DATASETS:
        raise DatasetError(f"no mini twin of {name!r}; available: {', '.join(MINI_DATASETS)} "
                           f"(other datasets need --data-root)")


def make_mini(name: str, out_dir, seed: int = 0, count: dict | None = None, size: tuple | None = None) -> Path:
    """Write the mini twin `name` into out_dir. count overrides images per split, size (W, H) the
    twin's image size (VOC, whose sizes vary: that of its first shape, 160x120; the others scale with it)."""
    _check_name(name)
    out = Path(out_dir)
    spec = SPECS[name] if size is None else {**SPECS[name], "size": tuple(size)}
    for split in count or {}:
        if split not in spec["splits"]:
            raise DatasetError(f"mini {name} has no split {split!r}; use {', '.join(spec['splits'])}")
    counts = count or spec["splits"]
    if name == "mfnet":
        from udalab.datasets.mini_mfnet import make_mfnet

        make_mfnet(out, spec["size"], counts, seed, RENDERERS[name], hash_name(name))
        return out
    if name == "voc":
        from udalab.datasets.mini_voc import make_voc

        make_voc(out, counts, seed, RENDERERS[name], hash_name(name), size)
        return out
    W, H = spec["size"]
    version = RENDERERS[name]
    for split, n in counts.items():
        split_index = list(spec["splits"]).index(split)
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, version, hash_name(name), split_index, i]))
            label, image = render_scene(rng, W, H, name)
            if name == "gta5":
                _write_gta5(out, i + 1, image, label)
            elif name == "synthia":
                _write_synthia(out, i, image, label)
            else:
                city = spec["cities"][split][i % len(spec["cities"][split])]
                _write_cityscapes(out, split, city, i, image, label)
    return out


def hash_name(name: str) -> int:
    return sum((k + 1) * ord(c) for k, c in enumerate(name))


# ---------------------------------------------------------------------------------------
# Writers in the real formats.


def _palette() -> list[int]:
    pal = np.zeros((256, 3), np.uint8)
    for label in LABELS:
        pal[label.id] = label.color
    return pal.flatten().tolist()


def _write_gta5(out: Path, index: int, image: np.ndarray, label: np.ndarray) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "images" / f"{index:05d}.png")
    lab = Image.fromarray(label, mode="L").convert("P")
    lab.putpalette(_palette())
    lab.save(out / "labels" / f"{index:05d}.png")


def _synthia_lut() -> np.ndarray:
    """Canvas (Cityscapes label id) -> SYNTHIA class id; unmapped -> 0 (void)."""
    from udalab.datasets.synthia import TRAIN_TO_SYNTHIA

    lut = np.zeros(256, np.uint16)
    for label in LABELS:
        if label.train_id in TRAIN_TO_SYNTHIA:
            lut[label.id] = TRAIN_TO_SYNTHIA[label.train_id]
    lut[LANE_MARK] = 22
    return lut


def _write_synthia(out: Path, i: int, image: np.ndarray, label: np.ndarray) -> None:
    """RGB/NNNNNNN.png and GT/LABELS/NNNNNNN.png: 16-bit, class in channel 0, an instance id in channel 1."""
    from udalab.datasets.base import write_png16

    (out / "RGB").mkdir(parents=True, exist_ok=True)
    (out / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "RGB" / f"{i:07d}.png")
    cls = _synthia_lut()[label]
    gt = np.zeros(label.shape + (3,), np.uint16)
    gt[..., 0] = cls
    things = np.isin(cls, (8, 10, 11, 12, 17, 19))  # car, pedestrian, bicycle, motorcycle, rider, bus
    gt[..., 1] = np.where(things, 1000 + cls, 0)    # an instance-like id > 255: only a 16-bit read keeps it
    write_png16(out / "GT" / "LABELS" / f"{i:07d}.png", gt)


def _write_cityscapes(out: Path, split: str, city: str, i: int, image: np.ndarray, label: np.ndarray) -> None:
    """leftImg8bit and gtFine label ids; an unlabelled split (train_extra) gets its image only."""
    stem = f"{city}_{i // 3:06d}_{19 + i:06d}"
    img_dir = out / "leftImg8bit" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(img_dir / f"{stem}_leftImg8bit.png")
    if split not in Cityscapes.UNLABELLED_SPLITS:
        gt_dir = out / "gtFine" / split / city
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
