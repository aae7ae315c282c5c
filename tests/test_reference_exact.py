"""Pieces that follow the reference implementations exactly, pinned on hand-made inputs: DACS's
colour jitter and blur (DAFormer with kornia 0.5.8), HRDA's prediction path, crops and feature-
distance mask (lhoyer/HRDA), the ADVENT family's upsampling in training and evaluation and IntraDA's
entropy ranking (valeoai/ADVENT, feipan664/IntraDA, wasidennis/AdaptSegNet), and rare-class
sampling's candidates."""
import dataclasses
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from udalab.datasets.rcs import ClassStats, RareClassSampler
from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from udalab.methods.engine import Run
from udalab.methods.engine.config import make_hparams
from udalab.methods.engine.run import LocalSession
from udalab.methods.parts.mixing import JitterParams, blur_kernel_size, colour_jitter, draw_jitter, strong_augment

def _pixels(*rgb) -> torch.Tensor:
    """A 1 x len(rgb) image (3, 1, W) of the given RGB triples."""
    return torch.tensor(rgb, dtype=torch.float32).T.unsqueeze(1)


def _normalise(img: torch.Tensor) -> torch.Tensor:
    return (img - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


# -- DACS colour jitter and blur ------------------------------------------------------------

def test_colour_jitter_adds_brightness_multiplies_contrast_and_scales_hsv_saturation():
    """kornia 0.5.8's adjustments by hand on (0.6, 0.4, 0.2) (HSV: h = 1/12 turn, s = 2/3, v = 0.6)
    and a grey, in two orders: brightness +b, contrast ·c, saturation scales S with h and v kept."""
    img = _pixels((0.6, 0.4, 0.2), (0.5, 0.5, 0.5))
    p = JitterParams(brightness=0.1, contrast=0.9, saturation=1.2, hue=0.0, order=(2, 0, 1, 3))
    # S 2/3 -> 0.8: (v, v(1 - s/2), v(1 - s)) = (0.6, 0.36, 0.12); + 0.1; · 0.9
    expected = _pixels((0.63, 0.414, 0.198), (0.54, 0.54, 0.54))
    torch.testing.assert_close(colour_jitter(img, p), expected, atol=1e-5, rtol=0)
    # contrast, brightness, then saturation: (0.64, 0.46, 0.28), S 0.5625 -> 0.675 at h = 1/12
    expected = _pixels((0.64, 0.424, 0.208), (0.55, 0.55, 0.55))
    torch.testing.assert_close(colour_jitter(img, p._replace(order=(1, 0, 2, 3))), expected, atol=1e-5, rtol=0)


def test_colour_jitter_shifts_hue_in_turns_and_clamps():
    img = _pixels((0.6, 0.4, 0.2))
    p = JitterParams(brightness=0.0, contrast=1.0, saturation=1.0, hue=1 / 12, order=(3, 0, 1, 2))
    torch.testing.assert_close(colour_jitter(img, p), _pixels((0.6, 0.6, 0.2)), atol=1e-5, rtol=0)   # h 1/6
    p = p._replace(hue=-1 / 12)
    torch.testing.assert_close(colour_jitter(img, p), _pixels((0.6, 0.2, 0.2)), atol=1e-5, rtol=0)   # h 0
    p = p._replace(hue=-0.5)                                                    # wraps round: h 7/12
    torch.testing.assert_close(colour_jitter(img, p), _pixels((0.2, 0.4, 0.6)), atol=1e-5, rtol=0)
    bright = JitterParams(brightness=0.2, contrast=1.2, saturation=1.0, hue=0.0, order=(0, 1, 2, 3))
    torch.testing.assert_close(colour_jitter(_pixels((0.9, 0.5, 0.1)), bright), _pixels((1.0, 0.84, 0.36)),
                               atol=1e-5, rtol=0)                               # 1.1 -> 1, then 1 · 1.2 -> 1


def test_jitter_parameters_follow_kornia_and_the_order_is_random():
    gen = torch.Generator().manual_seed(0)
    draws = [draw_jitter(gen, 0.2) for _ in range(400)]
    assert all(-0.2 <= d.brightness <= 0.2 and 0.8 <= d.contrast <= 1.2 and 0.8 <= d.saturation <= 1.2
               and -0.2 <= d.hue <= 0.2 for d in draws)
    assert {d.order for d in draws} == set(itertools.permutations(range(4)))   # all 24 orders occur
    strong = [draw_jitter(gen, 1.5) for _ in range(200)]                         # kornia's clamps
    assert all(-1 <= d.brightness <= 1 and d.contrast >= 0 and d.saturation >= 0 and -0.5 <= d.hue <= 0.5
               for d in strong)


@pytest.mark.parametrize("side, size", [(10, 1), (20, 1), (32, 3), (33, 3), (60, 5), (64, 7), (128, 13),
                                        (512, 51), (1024, 103)])
def test_blur_kernel_rounds_an_even_tenth_down(side, size):
    """ceil(0.1 · side), an even value minus 1 (33 px: ceil(3.3) = 4 -> 3)."""
    assert blur_kernel_size(side) == size


def test_blur_of_a_32_px_image_spreads_an_impulse_over_3_px():
    """An even ceil(0.1 · 32) = 4 rounds down to a 3-px kernel (5 px before)."""
    img = torch.full((3, 32, 32), 0.5)
    img[:, 16, 16] = 1.0
    x = _normalise(img)[None]
    for seed in range(50):   # a blurred batch whose σ is wide enough to show a 5-px kernel's reach
        out = strong_augment(x, torch.Generator().manual_seed(seed), jitter=0.0)
        if float((out - x)[0, :, 16, 17].abs().max()) > 0.05:
            break
    moved = (out[0] - x[0]).abs().amax(0) > 1e-4
    rows, cols = moved.nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 17, 15, 17)


# -- HRDA -----------------------------------------------------------------------------------

def _bilinear(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of bilinear resampling with half-pixel centres (align_corners=False)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        w = src - i0
        m[i, i0] += 1 - w
        m[i, min(i0 + 1, n_in - 1)] += w
    return m


class _Const(nn.Module):
    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, *args):
        return self.value


class _FakeNet(nn.Module):
    """LR: fixed logits; HR windows: every 4th pixel of channel 0 (logits on the stride-4 grid)."""

    def __init__(self, lr_logits: torch.Tensor):
        super().__init__()
        self.lr = lr_logits

    def features(self, x):
        return [x]

    def decoder(self, feats):
        return self.lr

    def forward(self, t):
        return t[:, :1, ::4, ::4]


def test_hrda_prediction_fuses_on_the_stride_4_grid_then_upsamples():
    """A 16-px input, s = 2, 8-px detail windows at stride 4: the windows' stride-4 logits average to
    x[::4, ::4] on the 4 x 4 grid; fused there with the 2 x 2 LR logits and attention (each upsampled
    x2), then upsampled x4 (the reference's hrda_head.forward, then encode_decode's resize)."""
    from udalab.methods.hrda import PRESETS, HRDAConfig, HRDASegmentor

    hp = make_hparams(HRDAConfig, {"preset": "smoke", "crop_size": [16, 16]}, PRESETS)
    assert hp.detail_crop() == (8, 8)
    seg = HRDASegmentor(hp, 1).eval()
    lr_logits = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])
    att_logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]]])
    seg.net = _FakeNet(lr_logits)
    seg.attention = _Const(att_logits)
    x = torch.randn(1, 3, 16, 16)
    a, u2, u4 = torch.sigmoid(att_logits)[0, 0], _bilinear(2, 4), _bilinear(4, 16)
    fused = u2 @ ((1 - a) * lr_logits[0, 0]) @ u2.T + (u2 @ a @ u2.T) * x[0, 0, ::4, ::4]
    torch.testing.assert_close(seg.predict(x)[0, 0], u4 @ fused @ u4.T, atol=1e-5, rtol=0)


def test_hrda_detail_crop_offsets_stop_one_grid_step_short():
    """The reference draws randint(0, (margin + 1) // grid) · grid: a 512 detail crop in a 1024 context
    starts at 0..504 (never 512); margins of 50 and 56 px at 0..40 and 0..48; a 7-px one keeps its 0."""
    from udalab.methods.hrda import detail_box

    gen = torch.Generator().manual_seed(0)
    ys = {detail_box(1024, 1024, 512, 512, gen, 8).y for _ in range(2000)}
    assert ys == set(range(0, 505, 8))
    boxes = [detail_box(100, 120, 50, 64, gen, 8) for _ in range(500)]
    assert {b.y for b in boxes} == set(range(0, 41, 8)) and {b.x for b in boxes} == set(range(0, 49, 8))
    assert detail_box(71, 64, 64, 64, gen, 8) == (0, 0, 64, 64)
    assert detail_box(64, 64, 64, 64, gen, 8) == (0, 0, 64, 64)                 # no margin: the corner


def test_hrda_context_crop_lies_anywhere():
    """The context crop is mmseg's RandomCrop in the reference's data pipeline: any pixel offset."""
    from udalab.methods.daformer import draw_crops
    from udalab.methods.hrda import PRESETS, HRDAConfig, HRDASegmentor

    hp = make_hparams(HRDAConfig, {"preset": "mini", "pretrained": "none", "crop_ratio": 0.5, "flip": False},
                      PRESETS)
    seg = HRDASegmentor(hp, 19)
    codes = torch.arange(128 * 256, dtype=torch.float32).view(1, 1, 128, 256).expand(1, 3, -1, -1)
    src = {"image": torch.zeros(1, 3, 180, 320), "label": torch.zeros(1, 180, 320, dtype=torch.long)}
    corners = []
    for seed in range(40):   # the crops as HRDA's DACS step draws them
        _, _, xt, _ = draw_crops(src, {"image": codes}, hp, torch.Generator().manual_seed(seed), seg.sync_crop,
                                 seg.margins_of)
        corners.append(divmod(int(xt[0, 0, 0, 0]), 256))
    assert any(y % hp.grid or x % hp.grid for y, x in corners)


def test_hrda_feature_distance_mask_comes_from_the_full_label():
    """Columns alternate road / person: every 64-px FD cell of the full label is half person (below the
    75 % a cell needs), while the LR label (every 2nd pixel from 1) would be all person."""
    from udalab.datasets.labels import CLASS_NAMES, THING_CLASSES
    from udalab.methods.daformer import FeatureDistance
    from udalab.methods.hrda import PRESETS, HRDAConfig, HRDASegmentor

    hp = make_hparams(HRDAConfig, {"preset": "mini", "pretrained": "none"}, PRESETS)
    seg = HRDASegmentor(hp, 19).eval()
    person = CLASS_NAMES.index("person")
    y = torch.zeros(1, 128, 128, dtype=torch.long)
    y[..., 1::2] = person
    out = seg(torch.randn(1, 3, 128, 128), y, None, seg.draw(1, 128, 128, torch.Generator().manual_seed(0)))
    assert torch.equal(out["fd_label"], y)

    class Zeros(nn.Module):                                    # ImageNet features 0: distance = |feat|
        def forward(self, image):
            return [torch.zeros_like(out["feat"])]

    fd = FeatureDistance(hp, [CLASS_NAMES.index(c) for c in THING_CLASSES], 19)
    fd.encoder = Zeros()
    assert float(fd(out["fd_image"], out["feat"], out["fd_label"]).detach()) == 0.0
    assert float(fd(out["fd_image"], out["feat"], y[..., 1::2, 1::2]).detach()) > 0.0


# -- the ADVENT family ----------------------------------------------------------------------

class _FixedG(nn.Module):
    """A multi-level G whose (main, aux) logits are fixed parameters, whatever the input."""

    def __init__(self, main: torch.Tensor, aux: torch.Tensor):
        super().__init__()
        self.main, self.aux = nn.Parameter(main), nn.Parameter(aux)

    def forward(self, x):
        n = x.shape[0]
        return self.main.expand(n, -1, -1, -1), self.aux.expand(n, -1, -1, -1)

    def backbone_parameters(self):
        return [self.main]

    def head_parameters(self):
        return [self.aux]


def _ramp(left: torch.Tensor, right: torch.Tensor, width: int) -> torch.Tensor:
    """(C, width) values from `left` to `right` (C,) linearly, the end points on the end pixels
    (bilinear upsampling of two columns with align_corners=True)."""
    t = torch.arange(width, dtype=torch.float32) / (width - 1)
    return left[:, None] + (right - left)[:, None] * t


def _run() -> Run:
    return Run({"seed": 0}, LocalSession(device="cpu"))


def test_advent_upsamples_with_aligned_corners():
    """G's 1 x 2 logits reach the 4 x 8 input as a linear ramp between the end pixels (ADVENT's
    nn.Upsample(align_corners=True)) before the segmentation loss and MinEnt."""
    from udalab.methods.advent import PRESETS, AdventConfig, AdventStep, SegmentationStep
    from udalab.methods.parts.losses import entropy_map

    main = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.0]]]])                     # (1, 2 classes, 1, 2)
    aux = torch.tensor([[[[0.5, 0.0]], [[0.0, 0.0]]]])
    hp = make_hparams(AdventConfig, {"preset": "smoke", "variant": "minent"}, PRESETS)
    step = AdventStep(_run(), hp, SimpleNamespace(num_classes=2), _FixedG(main, aux), 1, minent=True)
    x, y = torch.zeros(1, 3, 4, 8), torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]]).repeat(4, 1)[None]
    up_main = _ramp(main[0, :, 0, 0], main[0, :, 0, 1], 8)[:, None].expand(2, 4, 8)
    s_main, _, seg_main, _ = step.segment(x, y)
    torch.testing.assert_close(s_main[0], up_main)
    torch.testing.assert_close(seg_main, F.cross_entropy(up_main[None], y))
    source_only = SegmentationStep(_run(), hp, SimpleNamespace(num_classes=2), _FixedG(main, aux), 1)
    torch.testing.assert_close(source_only.segment(x, y)[0][0], up_main)      # source only's (and supervised's) step
    losses = step.align(x, y, x)
    torch.testing.assert_close(losses["ent_main"], entropy_map(F.softmax(up_main[None], 1)).mean())


def test_intrada_ranks_by_the_entropy_of_the_upsampled_prediction():
    """Image A's two stride-8 cells are sure of opposite classes (margins +10 / -10), image B's both
    fairly sure of one (+4): on the cells A is the easier, but upsampled (as the reference ranks)
    A's prediction crosses the class boundary, uncertain along the way, and B is the easier."""
    from udalab.methods.intrada import rank_by_entropy

    margins = {0: (10.0, -10.0), 1: (4.0, 4.0)}

    class TwoImages(nn.Module):
        def forward(self, x):
            m = torch.tensor([margins[int(v)] for v in x[:, 0, 0, 0]])              # (N, 2)
            logits = torch.stack([m, torch.zeros_like(m)], 1)[:, :, None]         # (N, 2 classes, 1, 2)
            return logits, logits

    target = [{"image": torch.full((3, 8, 16), float(k))} for k in (0, 1)]
    easy, hard, scores = rank_by_entropy(_run(), TwoImages(), target, 0.5)
    assert (easy, hard) == ([1], [0])
    for k, (left, right) in margins.items():
        p = torch.sigmoid(_ramp(torch.tensor([left]), torch.tensor([right]), 16)[0])
        expected = (-(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)).mean()
        assert scores[k] == pytest.approx(float(expected), abs=1e-5)


def test_intrada_pseudo_labels_are_the_argmax_of_the_aligned_upsampling():
    """G_inter's 1 x 2 logits with class-1 margin -1 / +3 upsampled to 8 px with aligned corners cross
    zero at pixel 1.75: pixels 0-1 class 0, the rest class 1 (half-pixel centres would give 0-2)."""
    from udalab.methods.intrada import PRESETS, IntraDAConfig, IntraStep

    logits = torch.tensor([[[[0.0, 0.0]], [[-1.0, 3.0]]]])
    hp = make_hparams(IntraDAConfig, {"preset": "smoke"}, PRESETS)
    step = IntraStep(_run(), hp, SimpleNamespace(num_classes=2), _FixedG(logits, logits))
    seen = []
    step.align = lambda x, pseudo, hard: seen.append(pseudo) or {}
    x = torch.zeros(1, 3, 2, 8)
    step.train_step({"easy": {"image": x}, "hard": {"image": x}}, 0, torch.Generator())
    assert seen[0].tolist() == [[[0, 0, 1, 1, 1, 1, 1, 1]] * 2]


def test_the_advent_family_evaluates_with_aligned_corners_and_udas_rounds_without():
    """ADVENT's eval_UDA.py (and AdaptSegNet's evaluate_cityscapes.py) upsample the logits to the label
    with aligned corners: class-1 margins -1 / +3 on 2 cells cross zero at pixel 1.75 of 8, so the
    label 0 0 1 1 1 1 1 1 is met exactly; UDAS's self-training rounds (no reference code) keep
    half-pixel centres, which cross at pixel 2.5 and miss one pixel in 8 (87.5 %)."""
    from udalab.methods.advent import PRESETS, AdventConfig, AdventStep, trained_model
    from udalab.methods.nets.deeplab import DeepLabV2
    from udalab.methods.udas import PRESETS as UDAS_PRESETS
    from udalab.methods.udas import SelfTrainStep, UDASConfig, trained_udas

    logits = torch.tensor([[[[0.0, 0.0]], [[-1.0, 3.0]]]])
    data = SimpleNamespace(num_classes=2, class_names=("a", "b"))
    dataset = [{"image": torch.zeros(3, 2, 8), "label": torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]] * 2)}]
    hp = make_hparams(AdventConfig, {"preset": "smoke"}, PRESETS)
    advent = AdventStep(_run(), hp, data, _FixedG(logits, logits), 1)
    assert advent.evaluate(dataset)["pixel_acc"] == 100.0
    udas_hp = make_hparams(UDASConfig, {"preset": "smoke"}, UDAS_PRESETS)
    rounds = SelfTrainStep(_run(), udas_hp, data, _FixedG(logits, logits), None, None, 1)
    assert rounds.evaluate(dataset)["pixel_acc"] == 87.5
    # load_trained's hooks predict as the runs evaluated: the UDA stage's G aligned, the rounds' student not
    state = DeepLabV2(2, 18, "none", 16).state_dict()
    assert trained_model(hp, 2, {"G": state}).align_corners
    assert trained_udas(dataclasses.replace(udas_hp, rounds=0), 2, {"G": state}).align_corners
    assert not trained_udas(udas_hp, 2, {"student": state}).align_corners


# -- rare-class sampling --------------------------------------------------------------------

def test_rcs_candidates_hold_more_than_min_pixels():
    """DAFormer's samples_with_class keeps an image for class c when it has > min_pixels of c."""
    counts = np.array([[3000, 5], [3001, 5], [2999, 7000]])
    stats = ClassStats(counts, 2, ("a", "b"))
    assert list(stats.images_with(0, 3000)) == [1]
    assert [list(c) for c in RareClassSampler(stats, min_pixels=3000).candidates] == [[1], [2]]
