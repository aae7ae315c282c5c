"""Evaluation subsets: ConfusionMatrix.summary(eval_classes), the shared evaluator, and
build_uda_data choosing SYNTHIA's 16 classes / MFNet's 3."""

import numpy as np
import pytest
import torch

from udalab.datasets import mini
from udalab.datasets.metrics import ConfusionMatrix
from udalab.datasets.synthia import EVAL_13, EVAL_16
from udalab.methods.engine.evaluate import Prediction, evaluate
from udalab.methods.engine.uda_data import UDAData, build_uda_data


def test_summary_over_a_subset():
    cm = ConfusionMatrix(4)
    target = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    pred = np.array([0, 0, 1, 0, 2, 3, 0, 0])
    cm.update(pred, target)
    iou = cm.iou()  # 0: 2/(2+3)=.4  1: 1/2  2: 1/2  3: 0/(0+1+2)=0
    assert np.allclose(iou, [0.4, 0.5, 0.5, 0.0])
    full = cm.summary(list("abcd"))
    sub = cm.summary(list("abcd"), eval_classes=(1, 2))
    assert full["miou"] == pytest.approx(100 * 1.4 / 4) and sub["miou"] == pytest.approx(50.0)
    assert set(sub) == {"miou", "pixel_acc", "iou.b", "iou.c"} and sub["pixel_acc"] == full["pixel_acc"]
    assert cm.miou((0, 3)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="eval_classes"):
        cm.summary(list("abcd"), eval_classes=(1, 4))


class _Fixed(torch.utils.data.Dataset):
    def __init__(self, label, eval_classes=None):
        self.label = torch.as_tensor(label)
        self.eval_classes = eval_classes

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return {"image": torch.zeros(3, *self.label.shape), "label": self.label, "name": "x"}


def test_evaluator_uses_the_datasets_eval_classes():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    logits = torch.zeros(1, 3, 2, 4)
    logits[0, 0, 0, :2] = logits[0, 1, 0, 2:] = 1  # row 0 right, row 1 predicted as class 0
    predict = Prediction(lambda x: logits, 3)
    kw = dict(class_names=("a", "b", "c"), device="cpu")
    full = evaluate(predict, _Fixed(label), **kw)
    assert full["miou"] == pytest.approx(100 * (2 / 6 + 1 + 0) / 3)
    sub = evaluate(predict, _Fixed(label, eval_classes=(1,)), **kw)
    assert sub["miou"] == pytest.approx(100.0) and "iou.a" not in sub
    over = evaluate(predict, _Fixed(label, eval_classes=(1,)), eval_classes=(0, 1), **kw)
    assert over["miou"] == pytest.approx(100 * (2 / 6 + 1) / 2)


def test_build_uda_data_picks_the_subset(tmp_path):
    roots = {"synthia": mini.make_mini("synthia", tmp_path / "s", count={"train": 2}),
             "cityscapes": mini.make_mini("cityscapes", tmp_path / "c", count={"train": 2, "val": 2}),
             "gta5": mini.make_mini("gta5", tmp_path / "g", count={"train": 2}),
             "mfnet": mini.make_mini("mfnet", tmp_path / "m", count={"train": 4, "val": 2})}
    d = build_uda_data({"source": "synthia", "target": "cityscapes", "data_root": roots}, None, None)
    assert d.eval_classes == EVAL_16 and d.target_val.eval_classes == EVAL_16 and d.num_classes == 19
    d = build_uda_data({"source": "synthia@13", "target": "cityscapes", "data_root": roots}, None, None)
    assert d.eval_classes == EVAL_13
    d = build_uda_data({"source": "gta5", "target": "cityscapes", "data_root": roots}, None, None)
    assert d.eval_classes is None and d.target_val.eval_classes is None
    d = build_uda_data({"source": "mfnet_rgb_day", "target": "mfnet_thermal@3", "data_root": roots}, None, None)
    assert d.eval_classes == (1, 2, 3) and d.num_classes == 9 and len(d.source) == 2 and len(d.target) == 4
    assert d.target_val.files[0][0].parent.parent == roots["mfnet"]
    assert UDAData(1, 2, 3, None, 19, ()).eval_classes is None


def test_the_held_out_test_split(tmp_path, mini_data):
    """Mini data: target test is the twin's own labelled test split, disjoint from val, scored on the
    same classes. Real data (a root given): none unless the config names a split, since real
    Cityscapes withholds its test labels."""
    d = build_uda_data({"source": "synthia", "target": "cityscapes"}, None, None)
    names = lambda ds: {img.name for img, _ in ds.files}  # noqa: E731
    assert len(d.target_test) == 45 and not names(d.target_test) & names(d.target_val)
    assert d.target_test.eval_classes == EVAL_16 == d.target_val.eval_classes
    roots = {"gta5": mini.make_mini("gta5", tmp_path / "g", count={"train": 2}),
             "cityscapes": mini.make_mini("cityscapes", tmp_path / "c", count={"train": 2, "val": 2, "test": 3})}
    d = build_uda_data({"source": "gta5", "target": "cityscapes", "data_root": roots}, None, None)
    assert d.target_test is None
    d = build_uda_data({"source": "gta5", "target": "cityscapes", "data_root": roots, "test_split": "test"}, None, None)
    assert len(d.target_test) == 3


class _Sized(torch.utils.data.Dataset):
    """Images of two native sizes; each label is a fixed function of its image."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        shapes = [(20, 36), (20, 36), (24, 40), (24, 40), (20, 36)]
        self.images = [torch.rand(3, h, w, generator=g) for h, w in shapes]
        self.labels = [(im[0] * 3).long().clamp(max=2) for im in self.images]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "name": str(i)}


@pytest.mark.parametrize("input_size, window", [((40, 24), (12, 20)), (None, None)])
def test_batched_evaluation_scores_as_one_image_at_a_time(input_size, window):
    """Batches form after resizing (or per native size without input_size); every prediction is
    upsampled to its own label and recorded under its own index."""
    from udalab.methods.engine import pictures

    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(1))
    calls = []

    def predict(x):
        calls.append(x.shape[0])
        return conv(x)

    ds = _Sized()
    prediction = Prediction(predict, 3, input_size=input_size, window=window,
                            stride=None if window is None else (6, 10))
    kw = dict(class_names=("a", "b", "c"), device="cpu")
    one_record, many_record = pictures.Recording(ds, [0, 3, 4]), pictures.Recording(ds, [0, 3, 4])
    one = evaluate(prediction, ds, batch_size=1, record=one_record, **kw)
    n_one, calls[:] = len(calls), []
    many = evaluate(prediction, ds, batch_size=4, record=many_record, **kw)
    one_pics, many_pics = one_record.predictions, many_record.predictions
    assert len(calls) < n_one                      # fewer, larger calls
    assert many == pytest.approx(one) and 0 < one["miou"] < 100
    assert sorted(many_pics) == [0, 3, 4]
    for i in many_pics:
        assert many_pics[i].shape == tuple(ds.labels[i].shape) and (many_pics[i] == one_pics[i]).all()
