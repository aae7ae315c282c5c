"""iIoU (instance-level IoU, background excluded) on hand-made arrays."""
import numpy as np
import pytest

from udalab.datasets.metrics import InstanceIoU, connected_components


def test_connected_components():
    m = np.array([[1, 1, 0, 1],
                  [0, 1, 0, 1],
                  [1, 0, 0, 1],
                  [1, 1, 1, 1]], bool)
    ids, n = connected_components(m)
    assert n == 2  # the top-left L and the ring on the right/bottom (4-connectivity: (2,0) is not joined to (1,1))
    assert ids[0, 0] == ids[1, 1] != ids[2, 0] == ids[3, 3] == ids[0, 3]
    assert (ids[~m] == 0).all()
    spiral = np.zeros((9, 9), bool)
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = spiral[2:7, 6] = True
    assert connected_components(spiral)[1] == 1


def test_small_objects_count_as_much_as_large_ones():
    # class 1: a 4x4 object fully found and a 1x1 object missed; background 0
    target = np.zeros((6, 8), np.int64)
    target[0:4, 0:4] = 1
    target[5, 7] = 1
    pred = np.zeros_like(target)
    pred[0:4, 0:4] = 1
    m = InstanceIoU(2).update(pred, target)
    # mean size 8.5; weights 8.5/16 and 8.5/1: iTP = 8.5, iFN = 8.5, FP = 0 -> 0.5
    assert m.iiou()[1] == pytest.approx(0.5)
    assert np.isnan(m.iiou()[0])  # background excluded
    # plain IoU of class 1 would be 16/17
    assert m.summary(["bg", "cat"]) == {"iiou": pytest.approx(50.0), "iiou.cat": pytest.approx(50.0)}


def test_false_positives_unweighted_and_ignore():
    target = np.array([[1, 1, 0, 255],
                       [1, 1, 0, 0]])
    pred = np.array([[1, 1, 1, 1],
                     [1, 0, 0, 0]])
    m = InstanceIoU(2).update(pred, target)
    # one instance of 4 px, TP 3, FN 1, weight 1; FP: (0,2) only -> (255) ignored
    assert m.iiou()[1] == pytest.approx(3 / 5)


def test_instance_map_separates_touching_objects_and_averages_classes():
    # two touching persons (class 2) given by the instance map, one car (class 1)
    target = np.array([[2, 2, 2, 2, 0, 1],
                       [2, 2, 2, 2, 0, 1]])
    inst = np.array([[1, 1, 2, 2, 0, 3],
                     [1, 1, 2, 2, 0, 3]])
    pred = np.array([[2, 2, 0, 0, 0, 1],
                     [2, 2, 0, 0, 0, 1]])
    m = InstanceIoU(3).update(pred, target, inst)
    assert m.iiou()[2] == pytest.approx(0.5) and m.iiou()[1] == pytest.approx(1.0)
    assert m.mean() == pytest.approx(0.75)
    # without the map the two persons are one component: still 4 found of 8
    assert InstanceIoU(3).update(pred, target).iiou()[2] == pytest.approx(0.5)
    # weighting by size across images: a second, small person, missed
    t2, p2 = np.array([[2, 0]]), np.array([[0, 0]])
    m.update(p2, t2)
    # sizes 4, 4, 1 -> mean 3; weights .75 .75 3; iTP = .75*4 = 3; iFN = .75*4 + 3*1 = 6 -> 1/3
    assert m.iiou()[2] == pytest.approx(1 / 3)
    assert m.iiou(avg_sizes={2: 1.0})[2] == pytest.approx(1.0 / (1.0 + 1.0 + 1.0 + 0))  # fixed mean size


def test_voc_mini_twin_instances(tmp_path):
    from udalab.datasets import mini
    from udalab.datasets.voc import VOC, CLASS_NAMES

    ds = VOC(mini.make_mini("voc", tmp_path / "v", count={"val": 3}), "val")
    m = InstanceIoU(21)
    for i in range(len(ds)):
        label = ds.load_label(i)
        m.update(label, label, ds.load_instances(i))  # perfect prediction
    s = m.summary(CLASS_NAMES)
    assert s["iiou"] == pytest.approx(100.0) and "iiou.background" not in s
    with pytest.raises(ValueError, match="outside"):
        m.update(np.zeros((1, 1)), np.array([[30]]))


def test_shared_evaluator_reports_iiou_beside_miou(tmp_path):
    import torch

    from udalab.datasets import mini
    from udalab.datasets.voc import CLASS_NAMES, VOC
    from udalab.methods.engine.evaluate import Prediction, evaluate

    ds = VOC(mini.make_mini("voc", tmp_path / "v", count={"val": 3}), "val")
    labels = iter([ds[i]["label"] for i in range(len(ds))])

    def oracle(image):  # predicts the ground truth (void as background)
        lab = next(labels).clone()
        lab[lab == 255] = 0
        return torch.nn.functional.one_hot(lab, 21).permute(2, 0, 1)[None].float()

    out = evaluate(Prediction(oracle, 21), ds, class_names=CLASS_NAMES, device="cpu", iiou=True)
    assert out["miou"] == pytest.approx(100.0) and out["iiou"] == pytest.approx(100.0)
    assert "iiou.background" not in out and "iou.background" in out
    assert "iiou" not in evaluate(Prediction(lambda x: torch.zeros(1, 21, *x.shape[-2:]), 21), ds,
                                  class_names=CLASS_NAMES, device="cpu")
