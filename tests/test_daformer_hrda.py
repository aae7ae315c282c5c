"""DAFormer / HRDA pieces: MiT against Hugging Face's SegFormer, crop geometry, fusion, EMA,
ClassMix, and the DACS loop's resume with the teacher it had."""
import math

import numpy as np
import pytest
import torch

from udalab.methods.parts.crops import Box, balanced_box, crop, random_box
from udalab.methods.parts.ema import EMATeacher
from udalab.methods import run_local
from udalab.methods.engine import ConfigError
from udalab.methods.engine.config import make_hparams
from udalab.methods.daformer import PRESETS as DAFORMER_PRESETS
from udalab.methods.daformer import DAFormerConfig, FeatureDistance, draw_crops, margin_mask
from udalab.methods.hrda import PRESETS, HRDAConfig, HRDASegmentor, fuse
from udalab.methods.parts.mixing import classmix_masks, mix, strong_augment
from udalab.methods.nets.backbones import load_mit
from udalab.methods.nets.mit import MiT, convert_mit_state

SMOKE = {"preset": "smoke", "seed": 0}


# -- MiT ----------------------------------------------------------------------------------

def test_mit_stage_strides_and_widths():
    enc = MiT("b0").eval()
    feats = enc(torch.randn(2, 3, 64, 96))
    assert [f.shape[1] for f in feats] == [32, 64, 160, 256]
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    with pytest.raises(ValueError, match="unknown MiT variant 'b9'"):
        MiT("b9")


def test_mit_matches_hugging_face_segformer_with_converted_weights():
    """The same function as transformers' SegformerModel once its weights are converted."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256,
                                       num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
                                       drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    hf = transformers.SegformerModel(cfg).eval()
    ours = MiT("b0", drop_path_rate=0.0).eval()
    missing, unexpected = ours.load_state_dict(convert_mit_state(hf.state_dict()), strict=True), None
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        out = ours(x)
    for a, b in zip(ref, out):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-3)


def test_missing_imagenet_weights_mean_random_init_said_in_the_log(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("UDALAB_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    enc = MiT("b0")
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with caplog.at_level("WARNING", logger="udalab"):
        load_mit(enc, "imagenet")
    assert "RANDOM INITIALISATION" in caplog.text and "mit_b0.pth" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    with pytest.raises(FileNotFoundError, match="nope.pth do not exist"):
        load_mit(MiT("b0"), str(tmp_path / "nope.pth"))


def test_pretrained_release_file_loads(tmp_path, monkeypatch):
    """A checkpoint in the SegFormer release's names (patch_embed1, block1.0.attn.q, ...) loads."""
    src = MiT("b0")
    inverse = {}
    for k, v in src.state_dict().items():
        stage = int(k.split(".")[1])
        rest = k.split(".", 2)[2]
        if rest.startswith("patch_embed."):
            name = f"patch_embed{stage + 1}." + rest.removeprefix("patch_embed.")
        elif rest.startswith("blocks."):
            name = f"block{stage + 1}." + rest.removeprefix("blocks.").replace("attn.sr_conv", "attn.sr").replace(
                "mlp.dwconv", "mlp.dwconv.dwconv")
        else:
            name = f"norm{stage + 1}." + rest.removeprefix("norm.")
        inverse[name] = v
    torch.save({"state_dict": inverse}, tmp_path / "mit_b0.pth")
    monkeypatch.setenv("UDALAB_WEIGHTS", str(tmp_path))
    dst = MiT("b0")
    load_mit(dst, "imagenet")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


# -- crops and HRDA geometry ----------------------------------------------------------------

def test_random_boxes_lie_anywhere_inside_the_image():
    gen = torch.Generator().manual_seed(0)
    boxes = [random_box(100, 80, 96, 64, gen) for _ in range(400)]
    assert {b.y for b in boxes} == set(range(5)) and {b.x for b in boxes} == set(range(17))   # every offset
    assert all((b.h, b.w) == (96, 64) for b in boxes)
    with pytest.raises(ValueError, match="does not fit"):
        random_box(64, 64, 65, 32, gen)


def test_balanced_box_avoids_a_dominating_class():
    label = torch.zeros(64, 64, dtype=torch.long)
    label[:, 48:] = 1  # a crop of 16 columns left of 48 is all class 0
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        b = balanced_box(label, 64, 16, gen, cat_max_ratio=0.75, tries=50)
        counts = torch.bincount(crop(label, b).flatten(), minlength=2)
        assert counts.max() <= 0.75 * counts.sum()


def test_hrda_crops_follow_the_grid_and_detail_lies_inside_context():
    hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_ratio": 0.75}, PRESETS)
    k = hp.grid
    assert k == 8  # s * o = 2 * 4
    cw, ch = hp.train_crop()
    dw, dh = hp.detail_crop()
    assert (cw, ch) == (96, 96) and (dw, dh) == (48, 48)
    seg = HRDASegmentor(hp, 19)
    gen = torch.Generator().manual_seed(1)
    for _ in range(100):
        for b in seg.draw(4, ch, cw, gen):
            assert b.y % k == 0 and b.x % k == 0
            assert 0 <= b.y and b.y + b.h <= ch and 0 <= b.x and b.x + b.w <= cw
            assert (b.h, b.w) == (dh, dw)
    assert make_hparams(HRDAConfig, {"preset": "paper"}, PRESETS).detail_crop() == (512, 512)
    with pytest.raises(ConfigError, match="mode must be one of"):
        make_hparams(HRDAConfig, {"preset": "mini", "mode": "hd"}, PRESETS)


def test_fused_output_is_the_lr_output_where_attention_is_zero():
    torch.manual_seed(0)
    s, o = 2, 4
    lr = torch.randn(2, 5, 8, 8)           # context 64x64 at LR -> 8x8 output
    hr = torch.randn(2, 5, 8, 8)           # detail 32x32 at HR -> 8x8 output
    boxes = [Box(16, 8, 32, 32), Box(0, 32, 32, 32)]
    up = torch.nn.functional.interpolate(lr, size=(16, 16), mode="bilinear", align_corners=False)
    # attention 0 everywhere: the upsampled LR prediction
    torch.testing.assert_close(fuse(lr, torch.zeros(2, 5, 8, 8), hr, boxes, s, o), up)
    # attention 1 everywhere: masked to the detail window, so outside it still LR ...
    fused = fuse(lr, torch.ones(2, 1, 8, 8), hr, boxes, s, o)
    b = boxes[0]
    torch.testing.assert_close(fused[0, :, :, :1], up[0, :, :, :1])                # left of the window
    # ... and inside the window (away from its border) the HR prediction
    y0, x0 = b.y // o, b.x // o
    torch.testing.assert_close(fused[0, :, y0 + 1:y0 + 7, x0 + 1:x0 + 7], hr[0, :, 1:7, 1:7])


def test_hrda_loss_weights_fused_and_detail_terms():
    hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_size": [64, 64], "hr_loss_weight": 0.0}, PRESETS)
    seg = HRDASegmentor(hp, 19).eval()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    gen = torch.Generator().manual_seed(0)
    boxes = seg.draw(2, 64, 64, gen)
    only_fused = seg(x, y, None, boxes)["loss"]
    seg.hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_size": [64, 64], "hr_loss_weight": 1.0}, PRESETS)
    only_detail = seg(x, y, None, boxes)["loss"]
    seg.hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_size": [64, 64], "hr_loss_weight": 0.1}, PRESETS)
    both = seg(x, y, None, boxes)["loss"]
    torch.testing.assert_close(both, 0.9 * only_fused + 0.1 * only_detail)
    assert seg.predict(x).shape == (2, 19, 64, 64)


# -- EMA and mixing -------------------------------------------------------------------------

def test_ema_teacher_follows_the_schedule():
    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher = EMATeacher(student, alpha=0.99)
    assert [teacher.decay(t) for t in (0, 1, 9, 1000)] == [0.0, 0.5, 0.9, 0.99]
    with torch.no_grad():
        student[0].weight.fill_(1.0)
    teacher.update(student, 0)                        # t = 0 copies the student
    assert torch.equal(teacher.model[0].weight, student[0].weight)
    before = teacher.model[0].weight.clone()
    with torch.no_grad():
        student[0].weight.fill_(3.0)
        student[1].running_mean.fill_(7.0)
    teacher.update(student, 1)                        # α_1 = 0.5
    torch.testing.assert_close(teacher.model[0].weight, 0.5 * before + 0.5 * 3.0)
    # the reference averages parameters only: BatchNorm statistics are not copied from the student
    assert not torch.equal(teacher.model[1].running_mean, student[1].running_mean)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_ema_teacher_predicts_with_batch_statistics_and_no_dropout():
    """DAFormer's teacher: BatchNorm normalises by the target batch, dropout and drop-path are off."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Dropout2d(0.5))
    teacher = EMATeacher(net, alpha=0.99)
    x = torch.randn(4, 3, 8, 8) * 5 + 3
    with torch.no_grad(), teacher.predicting() as model:
        out, again = model(x), model(x)
    torch.testing.assert_close(out, again)                                  # no dropout
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(4) + model[1].bias, atol=1e-4, rtol=0)  # batch stats
    assert not teacher.model[1].training                                    # eval again afterwards


def test_classmix_masks_take_half_the_classes_whole():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 255], [4, 4, 3, 255]]).unsqueeze(0).repeat(3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    masks = classmix_masks(label, gen)
    assert masks.shape == (3, 1, 3, 4)
    for m, lb in zip(masks[:, 0], label):
        chosen = set(lb[m.bool()].tolist())
        assert len(chosen) == 3                           # ceil(6 / 2) of the batch's 6 values (255 counts)
        for c in chosen:
            assert m[lb == c].all()                       # a chosen class is pasted whole
    assert not torch.equal(masks[0], masks[1]) or not torch.equal(masks[1], masks[2])
    a, b = torch.zeros(3, 3, 3, 4), torch.ones(3, 3, 3, 4)
    mixed = mix(masks, a, b)
    assert torch.equal(mixed[:, 0], 1 - masks[:, 0])
    assert torch.equal(mix(masks, label, torch.full_like(label, 9)), torch.where(masks[:, 0].bool(), label, 9))


def test_classmix_draws_from_the_classes_of_the_whole_batch():
    """DAFormer's get_class_masks: torch.unique over the batch, so an image may get classes it lacks."""
    label = torch.stack([torch.tensor([[0, 1]]), torch.tensor([[2, 3]])])      # disjoint classes
    own = set()
    for seed in range(20):
        m = classmix_masks(label, torch.Generator().manual_seed(seed))[0, 0]
        own.add(int(m.sum()))                                                  # of image 0's 2 classes
    assert own == {0, 1, 2}          # per image it would always be exactly 1 of its own 2


def test_colour_jitter_fires_with_the_reference_probability():
    """The reference applies colour jitter to the whole batch when U(0,1) > 0.2: in 80 % of the batches,
    each image then with its own parameters."""
    hp = make_hparams(DAFormerConfig, {"preset": "paper"}, {})
    x = torch.rand(1, 3, 4, 4).repeat(2, 1, 1, 1)                      # two copies of one image
    gen = torch.Generator().manual_seed(0)
    fired = []
    for _ in range(300):
        out = strong_augment(x, gen, hp.color_jitter, hp.color_jitter_p, blur=False)
        changed = ((out - x).abs().flatten(1).amax(1) > 1e-5).tolist()
        assert changed[0] == changed[1]                                   # one decision per batch
        assert not changed[0] or not torch.allclose(out[0], out[1])       # per-image parameters
        fired.append(changed[0])
    assert abs(sum(fired) / len(fired) - 0.8) < 0.06


def test_strong_augment_is_seeded_and_keeps_shape():
    x = torch.randn(2, 3, 16, 16)
    a = strong_augment(x, torch.Generator().manual_seed(3), jitter_p=1.0)
    b = strong_augment(x, torch.Generator().manual_seed(3), jitter_p=1.0)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


# -- the loops ------------------------------------------------------------------------------

@pytest.mark.parametrize("method, extra", [("daformer", {}), ("daformer", {"self_training": False}),
                                           ("hrda", {}), ("hrda", {"mode": "hr"})])
def test_dacs_loops_report_contract_metrics(method, extra, mini_data):
    reports = run_local(method, {"method": method, **SMOKE, **extra})
    last = reports[-1]
    assert last["done"] is True and last["iteration"] == 4
    assert "iou.road" in last
    assert all(math.isfinite(v) for k, v in last.items() if k.startswith("loss."))
    assert ("loss.mix" in last) == extra.get("self_training", True)


def test_feature_distance_is_a_reported_loss_of_the_loop(mini_data):
    reports = run_local("daformer", {"method": "daformer", **SMOKE, "fd_lambda": 0.005, "iterations": 2})
    assert math.isfinite(reports[-1]["loss.fd"])


def test_daformer_resume_keeps_the_teacher(tmp_path, mini_data, killed_after):
    """Stop after the checkpoint at iteration 2, resume: the teacher and every metric equal an
    uninterrupted run's (the reference restarts the EMA on resume)."""
    config = {"method": "daformer", **SMOKE, "seed": 2}
    full_dir, ckpt = tmp_path / "full", tmp_path / "ckpt"
    full = run_local("daformer", config, checkpoint_dir=full_dir)
    with killed_after(2):
        run_local("daformer", config, checkpoint_dir=ckpt)
    mid = torch.load(ckpt / "state.pt", weights_only=False)
    assert mid["iteration"] == 2 and "teacher" in mid["state"]
    resumed = run_local("daformer", config, checkpoint_dir=ckpt)
    assert [r["iteration"] for r in resumed] == [4]
    from udalab.methods.engine.run import without_timings as strip
    assert strip(resumed[-1]) == pytest.approx(strip(full[-1]))
    end_full = torch.load(full_dir / "state.pt", weights_only=False)
    end_resumed = torch.load(ckpt / "state.pt", weights_only=False)
    for k, v in end_full["state"]["teacher"].items():
        torch.testing.assert_close(end_resumed["state"]["teacher"][k], v, rtol=0, atol=0)


# -- crops: rare classes, synchronized windows, pseudo-label margins, the test window -----------

def _batch(label):
    n = label.shape[0]
    return {"image": torch.randn(n, 3, *label.shape[-2:]), "label": label}


def test_rare_class_crop_shows_the_sampled_class():
    """The reference re-draws the crop (10x) until it holds > min_pixels x min_crop_ratio of the class."""
    hp = make_hparams(DAFormerConfig, {"preset": "mini", "rcs_min_pixels": 50}, DAFORMER_PRESETS)
    label = torch.zeros(1, 90, 160, dtype=torch.long)
    label[:, 60:90, 130:160] = 12                      # a rare class in the bottom-right corner
    target = _batch(torch.zeros(1, 64, 128, dtype=torch.long))
    shown = {None: 0, 12: 0}
    for seed in range(100):
        for sampled in shown:
            src = _batch(label)
            if sampled is not None:
                src["sampled_class"] = torch.tensor([sampled])
            _, ys, _, _ = draw_crops(src, target, hp, torch.Generator().manual_seed(seed))
            shown[sampled] += int((ys == 12).sum()) > hp.rcs_min_pixels * hp.rcs_min_crop_ratio
    assert shown[None] < 30 and shown[12] > 80, shown


def test_synchronized_crops_reach_the_whole_source_image():
    """HRDA's synchronized crop: each domain is cropped on its own, then one window position is
    shared, so a source image larger than the target stays reachable to its bottom-right corner."""
    hp = make_hparams(HRDAConfig, {"preset": "mini", "sync_crop": True, "crop_ratio": 0.5, "flip": False,
                                  "source_cat_max_ratio": 1.0}, PRESETS)
    codes = torch.arange(180 * 320).view(1, 180, 320)   # each pixel its own value: a crop says where it was
    src = {"image": torch.randn(1, 3, 180, 320), "label": codes}
    tgt = _batch(torch.zeros(1, 128, 256, dtype=torch.long))
    bottom = right = 0
    for seed in range(200):
        _, ys, xt, _ = draw_crops(src, tgt, hp, torch.Generator().manual_seed(seed), sync_crop=True)
        assert ys.shape[-2:] == xt.shape[-2:] == (64, 64)
        y, x = divmod(int(ys[0, -1, -1]), 320)           # the crop's bottom-right source pixel
        bottom, right = max(bottom, y), max(right, x)
    assert bottom >= 150 and right >= 280                 # far beyond the target's 128 x 256 extent


def test_pseudo_label_margins_of_the_crop_and_of_the_image():
    # DAFormer: the top 2 and bottom 15 rows of every 64-px mini crop
    hp = make_hparams(DAFormerConfig, {"preset": "mini"}, DAFORMER_PRESETS)
    src, tgt = _batch(torch.zeros(2, 90, 160, dtype=torch.long)), _batch(torch.zeros(2, 64, 128, dtype=torch.long))
    *_, valid = draw_crops(src, tgt, hp, torch.Generator().manual_seed(0))
    assert valid.shape == (2, 64, 64)
    assert (valid[:, :2] == 0).all() and (valid[:, -15:] == 0).all() and (valid[:, 2:-15] == 1).all()
    # HRDA: margins of the whole 256x128 target image (4, 30, 4, 4): only crops at its border lose them
    hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_ratio": 0.5}, PRESETS)
    src, tgt = _batch(torch.zeros(1, 180, 320, dtype=torch.long)), _batch(torch.zeros(1, 128, 256, dtype=torch.long))
    lost = []
    for seed in range(60):
        *_, valid = draw_crops(src, tgt, hp, torch.Generator().manual_seed(seed), margins_of="image")
        lost.append(float((valid == 0).float().mean()))
    assert min(lost) == 0.0 and max(lost) > 0.0
    whole = margin_mask(128, 256, hp.pl_margins, "cpu")[0]
    assert whole[:4].eq(0).all() and whole[-30:].eq(0).all() and whole[:, :4].eq(0).all() and whole[:, -4:].eq(0).all()
    assert whole[4:-30, 4:-4].eq(1).all()


def test_hrda_test_window_does_not_follow_the_training_crop():
    windows = []
    for ratio in (0.25, 0.5, 1.0):
        hp = make_hparams(HRDAConfig, {"preset": "mini", "crop_ratio": ratio}, PRESETS)
        windows.append(HRDASegmentor(hp, 19).prediction(hp, 19).window)
    assert windows == [(128, 128)] * 3


def test_feature_distance_covers_exactly_the_thing_classes():
    """FD averages the feature distance over bottleneck cells of the reference's thing classes
    [6, 7, 11, ..., 18] (pole, 5, is stuff)."""
    from udalab.datasets.labels import CLASS_NAMES, THING_CLASSES

    things = [CLASS_NAMES.index(c) for c in THING_CLASSES]
    assert things == [6, 7, 11, 12, 13, 14, 15, 16, 17, 18]
    hp = make_hparams(DAFormerConfig, {"preset": "mini", "pretrained": "none"}, DAFORMER_PRESETS)
    fd = FeatureDistance(hp, things, 19)
    class Zeros(torch.nn.Module):                                 # reference features: 0
        def forward(self, image):
            return [torch.zeros(1, 1, 4, 5)]
    fd.encoder = Zeros()
    feat = torch.arange(20.0).view(1, 1, 4, 5)                    # cell c's distance = c
    label = torch.arange(20).remainder(19).view(1, 4, 5).repeat_interleave(8, 1).repeat_interleave(8, 2)
    expected = sum(c for c in range(20) if c % 19 in things) / sum(1 for c in range(20) if c % 19 in things)
    assert float(fd(torch.zeros(1, 3, 32, 40), feat, label)) == pytest.approx(expected)


@pytest.mark.parametrize("mode, ratio", [("lr+hr", 1.0), ("lr+hr", 0.5), ("hr", 0.25)])
def test_the_crop_picture_draws_the_training_windows_at_their_sizes(mode, ratio):
    """HRDA's crop picture: a yellow outline of the training crop (context) and, for LR+HR, a red one
    of the detail window inside it, at the sizes the crop ratio gives, on the context's grid."""
    hp = make_hparams(HRDAConfig, {"preset": "mini", "pretrained": "none", "mode": mode, "crop_ratio": ratio}, PRESETS)
    pic = HRDASegmentor(hp, 19).crop_picture(torch.zeros(3, 64, 128))    # a mid-grey image, any size
    assert pic.shape == (hp.target_size[1], hp.target_size[0], 3)

    def outline(colour):
        ys, xs = np.nonzero((pic == colour).all(-1))
        return (ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) if len(ys) else None

    cy, cx, ch, cw = outline((255, 220, 0))
    assert (cw, ch) == hp.train_crop()
    detail = outline((230, 30, 30))
    if mode != "lr+hr":
        assert detail is None
    else:
        dy, dx, dh, dw = detail
        assert (dw, dh) == hp.detail_crop() and cy <= dy and cx <= dx and dy + dh <= cy + ch and dx + dw <= cx + cw
        assert (dy - cy) % hp.grid == 0 and (dx - cx) % hp.grid == 0   # the detail corner on the context's grid
