"""`udalab predict`: a trained run's predictions of a dataset split, in the dataset's own format.

The run comes back through `load_trained`: the model its method evaluates, predicting the way
it evaluates (sliding windows for HRDA, the thermal stream for MML, ...). Every image of the
split, as the dataset loads it at its native size, goes through `evaluate.predictions`, the very
path the run's evaluation scores, and the dataset writes each prediction at its label's size in
its own label ids and naming (`write_prediction`: Cityscapes label ids as cityscapesScripts finds
them, MFNet class indices, VOC palette PNGs), with predictions.json beside them for `udalab eval`.

    info = predict_run("results/hrda_crop_size/_train/train-1a2b3_00000", "cityscapes", "preds/",
                       root="/data/cityscapes", split="val")
"""
from __future__ import annotations

import sys
from pathlib import Path

from udalab.datasets import DATASETS, DatasetError, build_dataset, split_name
from udalab.datasets.base import SegmentationDataset, write_predictions_info
from udalab.methods.engine.evaluate import predictions
from udalab.methods.engine.registry import Trained, get_method, load_trained
from udalab.methods.engine.uda_data import data_root


class PredictError(ValueError):
    """A dataset the run cannot predict (other classes, other image channels); the message says which fits."""


def run_target(trained: Trained) -> str:
    """The target dataset the run was trained for (its config's, else its method's default)."""
    return trained.config.get("target") or get_method(trained.config["method"]).datasets[1]


def check_dataset(trained: Trained, dataset: SegmentationDataset, name: str) -> None:
    """Refuse a dataset whose classes differ from the run's (a Cityscapes model asked for VOC), or an
    MFNet view of another modality than the run's images (an RGB-T model asked for RGB images)."""
    target = run_target(trained)
    names = trained.classes
    if trained.prediction.num_classes != dataset.num_classes or (names is not None and
                                                                 tuple(names) != tuple(dataset.class_names)):
        shown = ", ".join((names or ())[:4]) + ", ..." if names else "names unrecorded"
        raise PredictError(f"the run ({trained.config['method']} on {target}) predicts "
                           f"{trained.prediction.num_classes} classes ({shown}); {name} has {dataset.num_classes} "
                           f"({', '.join(dataset.class_names[:4])}, ...): predict a dataset with the run's classes, "
                           f"e.g. its target --dataset {target}")
    seen = getattr(DATASETS.get(split_name(target)[0]), "MODALITY", None)
    given = getattr(dataset, "modality", None)
    if seen is not None and given is not None and seen != given:
        raise PredictError(f"the run saw {seen} images ({target}); {name} gives {given} images: predict an MFNet view "
                           f"of the run's modality, e.g. --dataset {split_name(target)[0]}")


def write_predictions(trained: Trained, dataset: SegmentationDataset, name: str, out_dir, colour_dir=None,
                      progress: bool = True) -> Path:
    """Predict every image of `dataset` with `trained` and write them (and colour pictures into
    colour_dir) under out_dir, with a tqdm bar over the images on stderr; returns predictions.json."""
    from tqdm.auto import tqdm

    check_dataset(trained, dataset, name)
    if len(dataset):
        dataset.prediction_name(0)      # a dataset with no prediction format (GTA5, SYNTHIA) refuses before any work
    bar = tqdm(total=len(dataset), desc=f"predict {name} {dataset.split}", unit="image", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    for index, pred, _label in predictions(trained.prediction, dataset, device=trained.device):
        dataset.write_prediction(index, pred[0], out_dir, colour_dir)
        bar.update()
    bar.close()
    last = trained.history[-1] if trained.history else {}
    return write_predictions_info(dataset, out_dir, name, run=str(trained.checkpoint),
                                  method=trained.config["method"], iteration=last.get("iteration"))


def predict_run(run, name: str, out_dir, root=None, split: str = "val", colour_dir=None, device: str | None = None,
                progress: bool = True) -> Path:
    """`udalab predict`: the run `run` names (a Tune trial folder, a Train run folder, a checkpoint
    folder or its state.pt) predicts dataset `name`'s `split` under `root` (None: the folder the
    run's config gives that dataset, else its mini twin) into out_dir; returns predictions.json."""
    if split_name(name)[0] not in DATASETS:        # before the model loads
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    trained = load_trained(run, device=device)
    root = root if root is not None else data_root(trained.config, name)
    dataset = build_dataset(name, root=root, split=split)
    return write_predictions(trained, dataset, name, out_dir, colour_dir, progress)
