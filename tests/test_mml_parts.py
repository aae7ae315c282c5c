"""MML's pieces: the attention block against its formulas, the δ ramps."""
import math

import pytest
import torch
import torch.nn.functional as F

from udalab.methods.nets.attention import AttentionBlock, ChannelAttention, KernelAttention
from udalab.methods.parts.losses import seg_ce
from udalab.methods.parts.ramps import ramp


def test_kernel_attention_equals_the_quadratic_form_of_its_formula():
    torch.manual_seed(0)
    kam = KernelAttention(16)
    x = torch.randn(2, 16, 5, 7)
    q = F.softplus(kam.q(x)).flatten(2)       # (B, C', N)
    k = F.softplus(kam.k(x)).flatten(2)
    v = kam.v(x).flatten(2)                    # (B, C, N)
    sim = torch.einsum("bin,bim->bnm", q, k)   # Q~_n · K~_m for every pair: N x N
    naive = torch.einsum("bnm,bcm->bcn", sim / sim.sum(-1, keepdim=True), v).view(2, 16, 5, 7)
    assert torch.allclose(kam.attend(x), naive, atol=1e-5)
    y, out = kam(x)
    assert torch.equal(y, x)                   # γ starts at 0: a fresh block is the identity
    kam.gamma.data.fill_(0.5)
    assert torch.allclose(kam(x)[0], x + 0.5 * naive, atol=1e-5)


def test_channel_attention_equals_its_formula():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 4, 3)
    X = x.flatten(2)
    A = torch.zeros(2, 6, 6)
    for b in range(2):
        for i in range(6):
            e = torch.stack([X[b, i] @ X[b, j] for j in range(6)])
            A[b, i] = torch.softmax(e.max() - e, dim=0)
    expected = (A @ X).view_as(x)
    assert torch.allclose(ChannelAttention.attend(x), expected, atol=1e-5)


def test_attention_block_sums_both_and_keeps_their_maps():
    torch.manual_seed(2)
    block = AttentionBlock(16)
    block.kam.gamma.data.fill_(1.0)
    block.cam.gamma.data.fill_(2.0)
    x = torch.randn(1, 16, 4, 4)
    y = block(x)
    ok, oc = block.maps
    assert torch.allclose(y, (x + ok) + (x + 2 * oc), atol=1e-5)


@pytest.mark.parametrize("shape, values", [
    ("linear", (0.2, 0.6, 1.0)),
    ("sigmoid", (0.2 + 0.8 * math.exp(-5), 0.2 + 0.8 * math.exp(-1.25), 1.0)),
    ("step", (0.2, 1.0, 1.0)),
])
def test_delta_ramp_at_start_middle_and_end(shape, values):
    got = tuple(ramp(p, 0.2, 1.0, shape) for p in (0.0, 0.5, 1.0))
    assert got == pytest.approx(values)
    assert ramp(-1, 0.2, 1.0, shape) == pytest.approx(values[0]) and ramp(2, 0.2, 1.0, shape) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ramp shape"):
        ramp(0.5, 0.2, 1.0, "cosine")


# ---------------------------------------------------------------------------------------
# The MML step


def _step(**over):
    from types import SimpleNamespace

    from udalab.methods.engine import Run
    from udalab.methods.engine.run import LocalSession

    from udalab.methods.engine.config import make_hparams
    from udalab.methods.mml import PRESETS, MMLConfig, MMLStep

    torch.manual_seed(0)
    hp = make_hparams(MMLConfig, {"preset": "smoke", **over}, PRESETS)
    data = SimpleNamespace(num_classes=9, class_names=tuple("abcdefghi"), eval_classes=(1, 2, 3))
    return MMLStep(Run({"seed": 0}, LocalSession(device="cpu")), hp, data, None)


def _grads(step, x, y):
    step.train_step({"pair": {"image": x, "label": y}}, 1, torch.Generator())
    return {part: [p.grad.clone() if p.grad is not None else None for p in getattr(step.net, part).parameters()]
            for part in ("E_rgb", "E_th", "D")}


def _same(a, b):
    return all((u is None and v is None) or (u is not None and v is not None and torch.allclose(u, v, atol=1e-6))
               for u, v in zip(a, b))


def test_each_part_gets_the_gradient_of_its_own_loss():
    """E_rgb <- L_MML(rgb, th); E_th <- L_MML(th, rgb) + γ L_adv; D <- α.. + β.. + γ L_adv + L_att:
    changing β moves only D's gradient, changing α too, changing γ not E_rgb's; E_rgb's gradient is
    exactly that of L_KL(P_rgb, P_th) + δ L_KT(P_rgb) (the thermal teacher detached)."""
    x, y = torch.randn(2, 4, 64, 48), torch.randint(9, (2, 64, 48))
    base = _grads(_step(), x, y)
    for change, moved in (({"beta": 0.9}, "D"), ({"alpha": 0.3}, "D"), ({"gamma": 0.5}, "E_th")):
        other = _grads(_step(**change), x, y)
        assert _same(base["E_rgb"], other["E_rgb"]), change
        assert not _same(base[moved], other[moved]), change
    step = _step()
    out = step.losses(x, y, 1)
    params = list(step.net.E_rgb.parameters())
    expected = torch.autograd.grad(out["mml_rgb"], params, allow_unused=True)
    assert _same(base["E_rgb"], list(expected))
    # L_KL's teacher side is detached: the thermal encoder gets nothing from L_KL(P_rgb, P_th)
    th = [p for p in step.net.E_th.parameters()]
    assert all(g is None or g.abs().max() == 0 for g in torch.autograd.grad(out["kl_rgb"], th, allow_unused=True))


def test_inference_reads_the_thermal_channel_only():
    step = _step()
    step.net.eval()
    x = torch.randn(1, 4, 64, 48)
    nan_rgb = x.clone()
    nan_rgb[:, :3] = float("nan")
    assert torch.equal(step.net.thermal(x), step.net.thermal(nan_rgb))


def test_mml_resumes_mid_training_with_its_delta_position(tmp_path, monkeypatch, killed_after, mini_data):
    from udalab.methods import run_local

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": "mml", "preset": "smoke", "seed": 0}
    full = run_local("mml", config)                  # 4 steps, reports at 2 and 4
    assert [r["stat.delta"] for r in full] == pytest.approx([0.2 + 0.8 * 0.5 / 3, 0.2 + 0.8 * 2.5 / 3])  # mean δ
    assert {"day.miou", "night.miou", "test.miou", "test.night.miou"} <= set(full[-1])
    # the expert artifact says how good the pseudo labels every trial learns from are
    import json
    meta = json.loads(next((tmp_path / "artifacts").glob("expert-*/meta.json")).read_text())
    quality = meta["pseudo_labels_vs_labels"]
    assert set(quality) == {"miou", "iou.car", "iou.person", "iou.bicycle"} and 0 <= quality["miou"] <= 100
    with killed_after(2):
        run_local("mml", config, checkpoint_dir=tmp_path / "ckpt")
    resumed = run_local("mml", config, checkpoint_dir=tmp_path / "ckpt")
    from udalab.methods.engine.run import without_timings as strip
    assert len(resumed) == 1
    for got, want in zip(resumed, full[1:]):
        assert strip(got) == pytest.approx(strip(want), nan_ok=True)


def test_mml_study_declares_table_3_and_checks_its_search_space():
    from types import SimpleNamespace

    from udalab.analysis.reference import reference
    from udalab.studies.mml_ablation import STUDY
    from udalab.studies.run.trials import check_trial_configs, trial_settings

    published = {(r["att_loss"], r["kl_loss"]) for _, r in reference("mml_ablation").iterrows()}
    table_3 = [r for r in STUDY.rows if r.get("method", "mml") == "mml"]
    assert {(r["att_loss"], r["kl_loss"]) for r in table_3} == published
    assert [r for r in STUDY.rows if r not in table_3] == [{"method": "ms_uda"},       # Table 1's baseline
                                                            {"method": "ms_uda", "adapt": False}]  # source only
    assert sorted(STUDY.smoke_rows) == list(range(len(STUDY.rows)))                  # --smoke: every row
    args = SimpleNamespace(preset=None, smoke=False, data_root=None, set=[], optuna=True)
    settings = trial_settings(STUDY, args)
    assert (settings["source"], settings["target"]) == ("mfnet_rgbt_day", "mfnet@3")
    check_trial_configs(STUDY, args, settings)
    args.set = ["delta_shape=\"cosine\""]
    with pytest.raises(SystemExit, match="delta_shape"):
        check_trial_configs(STUDY, args, trial_settings(STUDY, args))


# ---------------------------------------------------------------------------------------
# MS-UDA, the baseline


def _msuda_step(night=None, **over):
    from types import SimpleNamespace

    from udalab.methods.engine import Run
    from udalab.methods.engine.run import LocalSession

    from udalab.methods.engine.config import make_hparams
    from udalab.methods.ms_uda import PRESETS, MSUDAConfig, MSUDAStep, SourceOnlyStep

    torch.manual_seed(0)
    hp = make_hparams(MSUDAConfig, {"preset": "smoke", **over}, PRESETS)
    data = SimpleNamespace(num_classes=9, class_names=tuple("abcdefghi"), eval_classes=(1, 2, 3))
    run = Run({"seed": 0}, LocalSession(device="cpu"))
    return MSUDAStep(run, hp, data, None, night) if hp.adapt else SourceOnlyStep(run, hp, data, None)


def test_ms_uda_teaches_one_way_rgb_to_thermal():
    """E_rgb learns from the expert's labels only: with every pseudo label ignored it gets no
    gradient, while E_th still learns from the RGB stream's argmax; β moves D only, γ not E_rgb."""
    x = torch.randn(2, 4, 64, 48)
    y = torch.randint(9, (2, 64, 48))
    base = _grads(_msuda_step(), x, y)
    for change, moved in (({"beta": 0.9}, "D"), ({"gamma": 0.5}, "E_th")):
        other = _grads(_msuda_step(**change), x, y)
        assert _same(base["E_rgb"], other["E_rgb"]) and not _same(base[moved], other[moved]), change
    ignored = _grads(_msuda_step(), x, torch.full_like(y, 255))
    assert all(g is None or g.abs().max() == 0 for g in ignored["E_rgb"])
    assert any(g is not None and g.abs().max() > 0 for g in ignored["E_th"])
    step = _msuda_step()
    assert not step.net.D.maps() and not any(isinstance(m, AttentionBlock) for m in step.net.modules())


def test_ms_uda_source_only_row_teaches_each_stream_the_expert_labels_alone():
    """adapt=False: E_th's gradient is CE(P_th, y)'s alone (nothing from the RGB stream: with every
    label ignored neither encoder learns), γ and the fake night change nothing, ψ gets no gradient."""
    x = torch.randn(2, 4, 64, 48)
    y = torch.randint(9, (2, 64, 48))
    step = _msuda_step(adapt=False)
    base = _grads(step, x, y)
    assert all(p.grad is None for p in step.psi.parameters())
    net = _msuda_step(adapt=False).net
    seg_ce(net.thermal(x), y).backward()
    assert _same(base["E_th"], [p.grad for p in net.E_th.parameters()])
    assert _same(base["E_rgb"], _grads(_msuda_step(adapt=False, gamma=0.5, p_night=1.0), x, y)["E_rgb"])
    ignored = _grads(_msuda_step(adapt=False), x, torch.full_like(y, 255))
    assert all(g is None or g.abs().max() == 0 for part in ("E_rgb", "E_th") for g in ignored[part])


def test_fake_night_replaces_the_thermal_channel_only():
    from udalab.methods.ms_uda import fake_night

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    x = torch.randn(2, 4, 16, 12).clamp(-2, 2)
    assert torch.allclose(fake_night(Identity(), x), x, atol=1e-5)          # the conversions round-trip
    dark = fake_night(lambda t: torch.full_like(t, -1.0), x)               # a generator that paints black
    assert torch.equal(dark[:, :3], x[:, :3]) and torch.allclose(dark[:, 3], torch.full_like(dark[:, 3], -2.0))
    step = _msuda_step(night=lambda t: torch.full_like(t, -1.0), p_night=1.0)
    x = torch.randn(2, 4, 64, 48)
    losses = step.train_step({"pair": {"image": x, "label": torch.randint(9, (2, 64, 48))}}, 0, torch.Generator())
    assert losses["stat.night"] == 1.0


def test_ms_uda_rejects_a_night_probability_outside_0_1():
    from udalab.methods import check_config
    from udalab.methods.engine import ConfigError

    with pytest.raises(ConfigError, match="p_night"):
        check_config({"method": "ms_uda", "preset": "smoke", "p_night": 1.5})


def test_ms_uda_resumes_mid_training_and_reuses_its_night_generator(tmp_path, monkeypatch, killed_after, mini_data):
    """Killed after step 2 and resumed: the same metrics as one run (the fake-night draws included);
    the day -> night CycleGAN is trained once and read by every later run."""
    from udalab.methods import ms_uda
    from udalab.methods import run_local

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": "ms_uda", "preset": "smoke", "seed": 0, "p_night": 0.5}
    full = run_local("ms_uda", config)
    assert {"miou", "rgb.miou", "night.miou", "test.miou"} <= set(full[-1])
    assert len(list((tmp_path / "artifacts").glob("cyclegan-*/G_day_to_night.pt"))) == 1

    def retrain(*a, **k):
        raise AssertionError("the CycleGAN was trained again")

    monkeypatch.setattr(ms_uda, "train_stage", retrain)
    with killed_after(2):
        run_local("ms_uda", config, checkpoint_dir=tmp_path / "ckpt")
    resumed = run_local("ms_uda", config, checkpoint_dir=tmp_path / "ckpt")
    from udalab.methods.engine.run import without_timings as strip
    assert len(resumed) == 1 and strip(resumed[0]) == pytest.approx(strip(full[-1]), nan_ok=True)


def test_day_labels_mfnet_trains_on_mfnets_own_labels_in_the_experts_label_space(tmp_path, monkeypatch):
    """The control row: MFNet's day labels with every class but car, person and bicycle unlabeled,
    built once as an artifact, and no expert trained; the validation names a bad value."""
    import numpy as np

    from udalab.datasets import mini_root
    from udalab.datasets.mfnet import VIEWS
    from udalab.methods import check_config, mml, run_local
    from udalab.methods.engine import ConfigError

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    root, label_dir = mml.mfnet_day_labels(mini_root("mfnet"))
    truth = VIEWS["mfnet_rgb_day"](mini_root("mfnet"), split="train")
    ours = VIEWS["mfnet_rgb_day"](root, split="train", label_dir=label_dir)
    assert len(ours) == len(truth) > 0
    seen = set()
    for i in range(len(truth)):
        y, got = truth.load_label(i), ours.load_label(i)
        kept = np.isin(y, (1, 2, 3))
        assert np.array_equal(got[kept], y[kept]) and (got[~kept] == 0).all()
        seen |= set(np.unique(got).tolist())
    assert {1, 2, 3} <= seen                       # car, person and bicycle are all in the labels

    def no_expert(*a, **k):
        raise AssertionError("the expert was built for day_labels='mfnet'")

    monkeypatch.setattr(mml, "expert_pseudo_labels", no_expert)
    reports = run_local("mml", {"method": "mml", "preset": "smoke", "seed": 0, "day_labels": "mfnet"})
    assert "miou" in reports[-1]
    assert len(list((tmp_path / "artifacts").glob("day_labels-*"))) == 1
    with pytest.raises(ConfigError, match="day_labels"):
        check_config({"method": "mml", "preset": "smoke", "day_labels": "cityscapes"})
