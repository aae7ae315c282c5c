"""The three datasets of an unsupervised domain adaptation run: labelled source,
unlabelled target (train split; its labels are never read by the methods) and target val."""
from __future__ import annotations

from dataclasses import dataclass

from udalab.datasets import build_dataset


@dataclass
class UDAData:
    source: object
    target: object
    target_val: object
    num_classes: int
    class_names: tuple


def build_uda_data(config: dict, source_size, target_size, crop=None, flip: bool = False) -> UDAData:
    """Datasets named by config['source'] / config['target']; config['data_root'] maps a
    dataset name to its folder (absent or None: the embedded mini twin)."""
    roots = config.get("data_root") or {}
    src_name, tgt_name = config.get("source", "gta5"), config.get("target", "cityscapes")
    source = build_dataset(src_name, root=roots.get(src_name), split="train", size=source_size, crop=crop, flip=flip)
    target = build_dataset(tgt_name, root=roots.get(tgt_name), split="train", size=target_size, crop=crop, flip=flip)
    # validation labels at their native resolution; the evaluator resizes the image only
    target_val = build_dataset(tgt_name, root=roots.get(tgt_name), split="val")
    if source.num_classes != target.num_classes:
        raise ValueError(f"{src_name} has {source.num_classes} classes but {tgt_name} has {target.num_classes}")
    return UDAData(source, target, target_val, target.num_classes, tuple(target.class_names))
