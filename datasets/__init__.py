"""Dataset loaders in the datasets' own on-disk layouts, and their embedded mini twins.

Dataset names (a run config's "source" / "target"):

    gta5, cityscapes, synthia, voc, voc_depth,
    mfnet_rgb, mfnet_thermal, mfnet_rgbt (+ _day / _night), mfnet (= mfnet_rgbt)

A name may carry an evaluation subset, "<name>@<subset>" (e.g. "synthia@13",
"mfnet_thermal@3"): it sets the dataset's `eval_classes` from its class's EVAL_SUBSETS.
`root_key(name)` is the key of config["data_root"] for the name (all MFNet views: "mfnet",
voc_depth: "voc") and the name of its mini twin.

Beside the loaders (one module each; base.py: what they share, the split-file reader included):

    labels     the Cityscapes label table, ID_TO_TRAIN_ID, IGNORE_INDEX (255: the one declaration)
    metrics    scoring: ConfusionMatrix (IoU / mIoU / pixel accuracy, label subsets), InstanceIoU (iIoU);
               methods evaluate with it and `udalab eval` (analysis/score_predictions.py) scores saved PNGs
    rcs        class statistics and rare-class sampling
    mini*      the mini twins;  cli: `udalab data ...`;  pseudo_depth: VOC's pseudo-depth folder
"""
from __future__ import annotations

from udalab.datasets.cityscapes import Cityscapes
from udalab.datasets.errors import DatasetError
from udalab.datasets.gta5 import GTA5
from udalab.datasets.mfnet import VIEWS as MFNET_VIEWS
from udalab.datasets.mfnet import MFNet
from udalab.datasets.mini import mini_root
from udalab.datasets.synthia import SYNTHIA
from udalab.datasets.voc import VOC, VOCDepth

DATASETS = {"gta5": GTA5, "cityscapes": Cityscapes, "synthia": SYNTHIA, "voc": VOC, "voc_depth": VOCDepth,
            **MFNET_VIEWS}

__all__ = ["DATASETS", "DatasetError", "build_dataset", "mini_root", "root_key", "Cityscapes", "GTA5", "SYNTHIA",
           "MFNet", "VOC"]


def split_name(name: str) -> tuple[str, str | None]:
    """'synthia@13' -> ('synthia', '13'); 'gta5' -> ('gta5', None)."""
    base, sep, subset = name.partition("@")
    return base, (subset if sep else None)


def root_key(name: str) -> str:
    """The data_root key / mini twin of a dataset name: 'mfnet_thermal_day@3' -> 'mfnet'."""
    base = split_name(name)[0]
    if base.startswith("mfnet"):
        return "mfnet"
    if base.startswith("voc"):
        return "voc"
    return base


def build_dataset(name: str, root=None, split: str = "train", size=None, crop=None, flip: bool = False):
    """A dataset by name; root=None means the embedded mini twin (generated on first use)."""
    base, subset = split_name(name)
    if base not in DATASETS:
        raise DatasetError(f"unknown dataset {base!r}; available: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[base]
    if subset is not None and subset not in cls.EVAL_SUBSETS:
        raise DatasetError(f"dataset {base!r} has no evaluation subset {subset!r}; available: "
                           f"{', '.join(cls.EVAL_SUBSETS) or 'none'}")
    ds = cls(root if root is not None else mini_root(root_key(name)), split=split, size=size, crop=crop, flip=flip)
    if subset is not None:
        ds.eval_classes = tuple(cls.EVAL_SUBSETS[subset])
    return ds
