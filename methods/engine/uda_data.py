"""The datasets of an unsupervised domain adaptation run: labelled source, unlabelled target
(train split; its labels are never read by the methods), target val (the split settings are
chosen on: Tune and Optuna see its metrics) and target test (held out: scored at the end of
each stage, reported as test.*; nothing is tuned on it).

Target test is the mini twins' labelled `test` split. Real Cityscapes withholds its test
labels and VOC publishes none, so on real data (a data_root given) there is no test split
unless the config names one (`test_split`, e.g. part of val held out as "test"); the papers
report val there."""
from __future__ import annotations

from dataclasses import dataclass

from udalab.datasets import build_dataset, root_key


@dataclass
class UDAData:
    source: object
    target: object
    target_val: object
    target_test: object | None  # held-out split: scored at the end of each stage (None: none)
    num_classes: int
    class_names: tuple
    eval_classes: tuple | None = None  # train ids scored (None: all), e.g. SYNTHIA->Cityscapes: 16 of 19


def data_root(config: dict, name: str) -> str | None:
    """The folder config["data_root"] gives dataset `name` (by its name, else its root key); None: the mini twin."""
    roots = config.get("data_root") or {}
    return roots.get(name, roots.get(root_key(name)))


def build_uda_data(config: dict, source_size, target_size, crop=None, flip: bool = False) -> UDAData:
    """Datasets named by config['source'] / config['target']; config['data_root'] maps a
    dataset's root key (root_key(name): the name, or "mfnet" for every MFNet view) to its
    folder (absent or None: the embedded mini twin).

    eval_classes: the target's own subset if its name selects one ("mfnet_thermal@3"), else the
    source's when the source labels fewer classes (SYNTHIA -> Cityscapes: 16), else None (all).
    It is also set on target_val, so that the shared evaluator scores only those classes."""
    src_name, tgt_name = config.get("source", "gta5"), config.get("target", "cityscapes")
    tgt_root = data_root(config, tgt_name)
    source = build_dataset(src_name, root=data_root(config, src_name), split="train", size=source_size, crop=crop,
                           flip=flip)
    target = build_dataset(tgt_name, root=tgt_root, split="train", size=target_size, crop=crop, flip=flip)
    # validation labels at their native resolution; the evaluator resizes the image only
    target_val = build_dataset(tgt_name, root=tgt_root, split="val")
    test_split = config.get("test_split", "test" if tgt_root is None else None)
    target_test = build_dataset(tgt_name, root=tgt_root, split=test_split) if test_split else None
    if source.num_classes != target.num_classes:
        raise ValueError(f"{src_name} has {source.num_classes} classes but {tgt_name} has {target.num_classes}")
    eval_classes = target_val.eval_classes
    src_eval = source.eval_classes
    if eval_classes is None and src_eval is not None and len(src_eval) < source.num_classes:
        eval_classes = tuple(src_eval)
    for split in (target_val, target_test):
        if split is not None:
            split.eval_classes = eval_classes
    return UDAData(source, target, target_val, target_test, target.num_classes, tuple(target.class_names),
                   eval_classes)
