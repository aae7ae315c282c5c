"""Rare-class sampling: class statistics (counts, cache, invalidation) and the sampler."""
import os
import time

import numpy as np
import pytest
from PIL import Image

from udalab.datasets import rcs
from udalab.datasets.gta5 import GTA5
from udalab.datasets.rcs import ClassStats, RareClassSampler, class_stats


def _gta(root, labels):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k, lab in enumerate(labels, start=1):
        Image.fromarray(np.zeros(lab.shape + (3,), np.uint8)).save(root / "images" / f"{k:05d}.png")
        Image.fromarray(lab.astype(np.uint8)).save(root / "labels" / f"{k:05d}.png")
    return GTA5(root)


def _labels():
    a = np.full((10, 10), 7)        # road everywhere (train id 0)
    a[:2] = 26                      # 20 px car (13)
    b = np.full((10, 10), 23)       # sky (10)
    b[5:, :] = 7                    # 50 road
    b[0, 0] = 0                     # one unlabeled pixel (255): not counted
    c = np.full((10, 10), 7)
    c[9, 9] = 33                    # 1 px bicycle (18)
    return [a, b, c]


def test_counts_frequencies_and_cache(tmp_path, monkeypatch):
    ds = _gta(tmp_path / "g", _labels())
    st = class_stats(ds)
    assert isinstance(st, ClassStats) and st.counts.dtype == np.int64 and st.counts.shape == (3, 19)
    assert st.num_classes == 19 and st.class_names[0] == "road"
    assert st.counts[0, 0] == 80 and st.counts[0, 13] == 20
    assert st.counts[1, 10] == 49 and st.counts[1, 0] == 50 and st.counts[1].sum() == 99
    assert st.counts[2, 18] == 1
    f = st.frequencies()
    assert f.sum() == pytest.approx(1.0) and f[0] == pytest.approx((80 + 50 + 99) / 299)
    cached = list((tmp_path / "g" / ".udalab").glob("class_stats-GTA5-train-*.npz"))
    assert len(cached) == 1

    monkeypatch.setattr(rcs, "count_classes", lambda *a, **k: pytest.fail("recounted a current cache"))
    assert np.array_equal(class_stats(GTA5(tmp_path / "g")).counts, st.counts)
    monkeypatch.undo()

    # a changed label file invalidates the cache; the stale file is replaced
    lab = _labels()[2]
    lab[:5] = 26
    time.sleep(0.01)
    Image.fromarray(lab.astype(np.uint8)).save(tmp_path / "g" / "labels" / "00003.png")
    st2 = class_stats(GTA5(tmp_path / "g"))
    assert st2.counts[2, 13] == 50 and st2.counts[0, 13] == 20
    assert len(list((tmp_path / "g" / ".udalab").glob("*.npz"))) == 1
    # another file list (a split file) is another key
    (tmp_path / "g" / "val.txt").write_text("00001.png\n")
    assert class_stats(GTA5(tmp_path / "g", "val")).counts.shape == (1, 19)


def test_unwritable_root_falls_back_to_user_cache(tmp_path, monkeypatch):
    ds = _gta(tmp_path / "g", _labels())
    (tmp_path / "g" / ".udalab").write_text("not a folder")  # the root's cache folder cannot be made
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    st = class_stats(ds)
    assert len(list((tmp_path / "home" / ".cache" / "udalab" / "stats").glob("*.npz"))) == 1
    assert st.counts[0, 13] == 20
    st3 = class_stats(ds, cache_dir=tmp_path / "mine")
    assert np.array_equal(st3.counts, st.counts) and len(list((tmp_path / "mine").glob("*.npz"))) == 1


def test_sampler_probabilities_follow_daformer():
    counts = np.zeros((4, 5), np.int64)
    counts[:, 0] = 10000                 # frequent class, in every image
    counts[1, 1] = 5000                  # rare class, one image
    counts[2, 2] = 3001                  # more than min_pixels (DAFormer's strict >)
    counts[3, 2] = 100                   # below min_pixels: not a candidate
    counts[3, 3] = 10                    # class 3 never reaches min_pixels: probability 0
    st = ClassStats(counts, 5, tuple("abcde"))
    f = st.frequencies()
    s = RareClassSampler(st, temperature=0.1, min_pixels=3000)
    expected = np.exp((1 - f[:3]) / 0.1)
    expected /= expected.sum()
    assert np.allclose(s.probabilities[:3], expected) and s.probabilities[3] == s.probabilities[4] == 0
    assert s.probabilities[2] > s.probabilities[1] > s.probabilities[0]  # rarer -> more often
    assert [list(c) for c in s.candidates[:4]] == [[0, 1, 2, 3], [1], [2], []]
    # default temperature 0.01: sharper than 0.1
    sharp = RareClassSampler(st)
    assert sharp.probabilities[0] < s.probabilities[0] and sharp.temperature == 0.01 and sharp.min_pixels == 3000

    draws = [s.sample(np.random.default_rng(7)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]  # deterministic given the rng
    rng = np.random.default_rng(0)
    many = [s.sample(rng) for _ in range(4000)]
    for idx, c in many:
        assert counts[idx, c] > 3000
    freq = np.bincount([c for _, c in many], minlength=5) / len(many)
    assert np.allclose(freq, s.probabilities, atol=0.03)
    seq_a = [RareClassSampler(st).sample(np.random.default_rng(3)) for _ in range(2)]
    assert seq_a[0] == seq_a[1]


def test_sampler_errors():
    st = ClassStats(np.ones((2, 3), np.int64), 3, ("a", "b", "c"))
    with pytest.raises(ValueError, match="lower min_pixels"):
        RareClassSampler(st)
    with pytest.raises(ValueError, match="temperature"):
        RareClassSampler(st, temperature=0)


def test_stats_on_a_mini_twin(tmp_path):
    from udalab.datasets import mini
    from udalab.datasets.synthia import SYNTHIA

    root = mini.make_mini("synthia", tmp_path / "s", count={"train": 6})
    st = class_stats(SYNTHIA(root))
    assert st.counts.shape == (6, 19) and st.counts[:, [9, 14, 16]].sum() == 0  # no terrain/truck/train
    assert st.counts[:, 0].min() > 0  # road in every image
    s = RareClassSampler(st, min_pixels=20)
    assert s.probabilities[9] == 0 and s.probabilities.sum() == pytest.approx(1)
    assert os.path.isdir(root / ".udalab")
