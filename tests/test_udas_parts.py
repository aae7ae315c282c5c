"""UDAS's pieces: Domain CutMix, K augmented views and their max-confidence pseudo labels."""
import json

import pytest
import torch

from udalab.datasets.labels import IGNORE_INDEX
from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from udalab.methods.parts.mixing import cutmix_box, domain_cutmix
from udalab.methods.parts.views import PhotometricAutoAugment, augmented_views, keep_confident, max_confidence


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.75, 0.96, 1.0])
def test_cutmix_box_covers_one_minus_lambda_of_the_image(lam):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        y0, x0, h, w = cutmix_box(90, 160, lam, gen)
        assert 0 <= y0 and y0 + h <= 90 and 0 <= x0 and x0 + w <= 160     # wholly inside
        assert h * w / (90 * 160) == pytest.approx(1 - lam, abs=0.02)


def test_domain_cutmix_takes_the_box_from_the_target_with_its_labels():
    gen = torch.Generator().manual_seed(1)
    x_s, x_t = torch.zeros(3, 3, 32, 48), torch.ones(3, 3, 32, 48)
    y_s, y_t = torch.full((3, 32, 48), 4), torch.full((3, 32, 48), 7)
    x, y, m = domain_cutmix(x_s, y_s, x_t, y_t, gen, lam=0.75)
    assert torch.equal(x[:, 0] == 1, m[:, 0] == 0) and torch.equal(y == 7, m[:, 0] == 0)
    assert ((1 - m).mean(dim=(1, 2, 3)) == pytest.approx(torch.full((3,), 0.25), abs=0.02))
    x, y, m = domain_cutmix(x_s, y_s, x_t, y_t, torch.Generator().manual_seed(2))     # λ ~ U(0, 1)
    assert len({round(float(v), 3) for v in (1 - m).mean(dim=(1, 2, 3))}) == 3         # one λ per pair
    with pytest.raises(ValueError, match="one size"):
        domain_cutmix(x_s, y_s, x_t[:, :, :16], y_t[:, :16], gen)


def _image(n=2, h=24, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, h, w, generator=g)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def test_photometric_autoaugment_keeps_every_pixel_in_place():
    """No view moves a pixel: away from the block edges (which sharpness may touch), the output is a
    function of the input pixel's own value; any rotate / shear / translate would break that."""
    aug = PhotometricAutoAugment()
    assert aug._policies and all(op[0] not in ("Rotate", "ShearX", "TranslateY") for sub in aug._policies for op in sub)
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([10, 60, 110, 160, 210, 250], dtype=torch.uint8)
    blocks = values[torch.randint(6, (8, 8), generator=g)]
    img = blocks.repeat_interleave(5, 0).repeat_interleave(5, 1).expand(3, 40, 40).clone()
    inner = torch.zeros(40, 40, dtype=torch.bool)
    for k in range(8):
        inner[5 * k + 1:5 * k + 4] = True
    inner &= inner.clone().T                                       # the 3x3 centre of each 5x5 block
    changed = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = aug(img)
        for v in values:
            at = (img[0] == v) & inner
            assert len(torch.unique(out[:, at], dim=1).T) == 1, (seed, int(v))
        changed += int(not torch.equal(out, img))
    assert changed > 10                                               # and the views do change the image


def test_each_views_prediction_comes_back_to_the_original_grid():
    """A 'model' that reads the image's content (textured right half, flat left half) and predicts a
    known label map from it: each of the K views, flipped or not, brings back exactly that map."""
    n, h, w, k = 2, 24, 40, 5
    label = (torch.arange(w).view(1, 1, w) * 19 // w).expand(n, h, w)          # 19 classes across x
    rgb = torch.full((n, 3, h, w), 0.5)
    checker = (torch.arange(h).view(-1, 1) + torch.arange(w // 2).view(1, -1)) % 2
    rgb[..., w // 2:] = (60 + 130 * checker) / 255        # 60 / 190: no photometric op merges them
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = (rgb - mean) / std

    def predict(x):   # the texture's side tells the orientation; the map follows it
        cols = torch.arange(x.shape[-1]) * 19 // x.shape[-1]
        one_hot = 50.0 * torch.nn.functional.one_hot(cols, 19).T.float()                # (19, W)
        mirrored = x[..., : w // 2].std(dim=(1, 2, 3)) > x[..., w // 2:].std(dim=(1, 2, 3))
        return torch.stack([one_hot.flip(-1) if m else one_hot for m in mirrored])[:, :, None].expand(-1, -1, h, -1)

    views, flipped = augmented_views(images, k, torch.Generator().manual_seed(3))
    assert views.shape == (k, n, 3, h, w) and flipped[0].sum() == 0 and flipped.any() and not flipped.all()
    for view, flips in zip(views, flipped):
        conf, lab = max_confidence(predict, view[None], flips[None])
        assert torch.equal(lab, label) and conf.min() > 0.999
    assert not torch.equal(views[1], views[0])                                  # the views do differ
    again, _ = augmented_views(images, k, torch.Generator().manual_seed(3))     # the same seed, the same views
    assert torch.equal(again, views)


def test_max_confidence_takes_the_most_confident_view_per_pixel():
    a, b = torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    a[0, 0, 0, 0], a[0, 1, 0, 1] = 5.0, 1.0      # view a: sure of class 0 at pixel 0, unsure at pixel 1
    b[0, 2, 0, 0], b[0, 2, 0, 1] = 1.0, 5.0      # view b: unsure at pixel 0, sure of class 2 at pixel 1
    logits = iter([a, b])
    conf, lab = max_confidence(lambda x: next(logits), torch.zeros(2, 1, 3, 1, 2), torch.zeros(2, 1, dtype=torch.bool))
    assert lab.tolist() == [[[0, 2]]] and conf.min() > 0.95


def test_kept_fraction_falls_as_tau_rises():
    conf = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(0))
    label = torch.randint(19, (4, 32, 32), generator=torch.Generator().manual_seed(1))
    kept = [float((keep_confident(conf, label, tau) != IGNORE_INDEX).float().mean()) for tau in (0.3, 0.6, 0.8, 0.95)]
    assert kept == sorted(kept, reverse=True) and kept[0] - kept[-1] > 0.5
    assert torch.equal(keep_confident(conf, label, 0.6)[conf >= 0.6], label[conf >= 0.6])
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="τ"):
            keep_confident(conf, label, bad)
    with pytest.raises(ValueError, match="K"):
        augmented_views(_image(), 0, torch.Generator())


# ---------------------------------------------------------------------------------------
# CycleGAN


def _cyclegan_run(tmp_path, iterations):
    """The CycleGAN stage as a run of its own (mini GTA5 -> mini Cityscapes, 32-px crops): its reports
    and its trained step."""
    from udalab.methods import train_loop
    from udalab.methods.engine.run import LocalSession

    config = {"method": "cyclegan", "preset": "paper", "seed": 0, "ngf": 8, "ndf": 8, "n_blocks": 1, "lr": 1e-3,
              "batch_size": 2, "iterations": iterations, "pool_size": 4, "load_size": (64, 32), "crop_size": (32, 32)}
    session = LocalSession(tmp_path)
    step = train_loop(config, session)
    return session.reports, step


def test_cyclegan_cycle_loss_falls_and_translates_in_the_sources_layout(tmp_path, mini_data):
    from udalab.datasets import build_dataset, mini
    from udalab.methods.cyclegan import write_translated

    reports, step = _cyclegan_run(tmp_path / "ckpt", 40)
    # a fifth below its first report: the curve's last point differs between CPUs (their float
    # kernels), and a margin at the edge of one CPU's curve fails on another
    assert reports[-1]["loss.cycle"] < 0.8 * reports[0]["loss.cycle"], [r["loss.cycle"] for r in reports]
    assert reports[-1]["cycle_l1"] < reports[0]["cycle_l1"]
    assert {"loss.gan", "loss.identity", "loss.d_a", "loss.d_b"} <= set(reports[-1])

    src_root = mini.make_mini("gta5", tmp_path / "gta5", count={"train": 3})
    source = build_dataset("gta5", root=src_root, split="train")
    assert write_translated(step.G_AB, source, tmp_path / "out") == 3
    out = build_dataset("gta5", root=tmp_path / "out", split="train")
    assert len(out) == 3
    for k in range(3):
        a, b = source[k], out[k]
        assert torch.equal(a["label"], b["label"]) and a["image"].shape == b["image"].shape
        assert not torch.allclose(a["image"], b["image"], atol=0.05)           # the images were translated


def test_cyclegan_resumes_inside_its_stage_bit_for_bit(tmp_path, killed_after, mini_data):
    """Killed after its checkpoint at 10 of 20 iterations (image pools, schedules and all), the
    resumed stage ends where the uninterrupted one does."""
    full, _ = _cyclegan_run(tmp_path / "full", 20)
    with killed_after(10):
        _cyclegan_run(tmp_path / "resumed", 20)
    resumed, _ = _cyclegan_run(tmp_path / "resumed", 20)
    from udalab.methods.engine.run import without_timings as strip
    assert [r["iteration"] for r in resumed] == [15, 20]
    assert strip(resumed[-1]) == pytest.approx(strip(full[-1]), nan_ok=True)


def test_semantic_consistency_trains_a_label_flipping_generator_to_keep_what_f_S_sees():
    """CyCADA's L_sem under a fixed f_S that reads classes off colour: a generator that starts by
    inverting colours (every pixel's f_S class flipped) learns, from L_sem alone, to keep f_S's
    class on almost every pixel; f_S itself gets no gradient."""
    from udalab.methods.cyclegan import semantic_consistency
    from udalab.methods.engine import Prediction

    torch.manual_seed(0)
    f = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        f.weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]).view(2, 3, 1, 1))    # class 0 where red is high
        f.bias.zero_()
    f.requires_grad_(False)
    f_S = Prediction(f, 2, modules=(f,))
    G = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        G.weight.copy_(-torch.eye(3).view(3, 3, 1, 1))                                  # x -> -x: a label flip
        G.bias.zero_()
    real = torch.rand(4, 3, 16, 16) * 2 - 1

    def kept() -> float:
        with torch.no_grad():
            return (f(G(real)).argmax(1) == f(real).argmax(1)).float().mean().item()

    assert kept() < 0.05
    opt = torch.optim.Adam(G.parameters(), 0.05)
    for _ in range(60):
        opt.zero_grad()
        semantic_consistency(f_S, real, G(real)).backward()
        opt.step()
    assert kept() > 0.95 and f.weight.grad is None


def test_plain_cyclegans_artifact_key_is_unchanged_by_the_semantic_term():
    """Without f_S the translation's key holds exactly CycleGAN's own settings (stored translations
    stay valid); with one, λ_sem is in it and f_S's storage path is not."""
    from udalab.methods.cyclegan import CycleGANConfig

    plain = CycleGANConfig().key()
    assert "lambda_sem" not in plain and "semantic_model" not in plain and {"ngf", "lambda_cyc", "crop_size"} <= set(plain)
    semantic = CycleGANConfig(semantic_model="/somewhere/f_S", lambda_sem=2.0).key()
    assert semantic == {**plain, "lambda_sem": 2.0}


def test_udas_with_cyclegan_semantic_translates_under_the_no_adaptation_model(tmp_path, monkeypatch, mini_data):
    """cyclegan_semantic > 0: f_S is the no-adaptation row's model at the CycleGAN's seed (an artifact
    that `load_trained` reads, its metrics those of that row's run), the CycleGAN reports L_sem, and
    its translation is stored apart from the plain CycleGAN's. f_S sees no labelled target image (they
    reach step 1 only through Domain CutMix), so a trial at another labelled count reuses both."""
    from udalab.methods import run_local
    from udalab.methods.engine.registry import load_trained
    from udalab.methods.engine.run import without_timings as strip

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    st = {"method": "udas", "preset": "smoke", "seed": 1, "uda": False, "cutmix": False, "rounds": 0}
    run_local("udas", {**st, "cyclegan_semantic": 1.0})
    (f_S,) = (tmp_path / "artifacts").glob("udas_source_model-*/")
    trained = load_trained(f_S)
    assert (trained.config["translate"], trained.config["uda"], trained.config["seed"]) == (False, False, 0)
    assert trained.config["labelled"] == 0
    no_adaptation = run_local("udas", {**st, "seed": 0, "translate": False})       # the preset's 4 labelled
    assert strip(trained.history[-1]) == pytest.approx(strip(no_adaptation[-1]), nan_ok=True)
    (semantic,) = (tmp_path / "artifacts").glob("cyclegan-*/meta.json")
    assert json.loads(semantic.read_text())["last_report"]["loss.semantic"] > 0

    run_local("udas", {**st, "labelled": 2, "cyclegan_semantic": 1.0})
    assert [p.name for p in (tmp_path / "artifacts").glob("udas_source_model-*/")] == [f_S.name]
    assert [p.parent for p in (tmp_path / "artifacts").glob("cyclegan-*/meta.json")] == [semantic.parent]

    run_local("udas", st)                                 # plain CycleGAN: a second translation
    assert len(list((tmp_path / "artifacts").glob("cyclegan-*/meta.json"))) == 2
    assert len(list((tmp_path / "artifacts").glob("udas_source_model-*/"))) == 1


# ---------------------------------------------------------------------------------------
# The UDAS method and its study


def test_udas_reuses_its_translation_and_resumes_inside_a_self_training_round(tmp_path, monkeypatch, killed_after,
                                                                             mini_data):
    """One smoke run builds the CycleGAN translation (an artifact); a second trial trains no CycleGAN
    step and, killed inside its self-training round, resumes to the uninterrupted run's metrics."""
    from udalab.methods import cyclegan
    from udalab.methods import run_local

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": "udas", "preset": "smoke", "seed": 0, "st_iterations": 4}
    full = run_local("udas", config)
    assert [(r["iteration"], r["stage"]) for r in full] == [(2, "uda"), (4, "uda"), (6, "round1"), (8, "round1")]
    assert {"loss.kl", "loss.pseudo", "loss.labelled", "loss.consistency", "test.miou"} <= set(full[-4]) | set(full[-1])
    built = list((tmp_path / "artifacts").glob("cyclegan-*/data/images/*.png"))
    assert len(built) == 300 and not list((tmp_path / "artifacts").glob(".partial-*"))

    cyclegan_steps = []
    monkeypatch.setattr(cyclegan.CycleGANStep, "train_step", lambda *a: cyclegan_steps.append(1))
    with killed_after(6):
        run_local("udas", config, checkpoint_dir=tmp_path / "ckpt")
    resumed = run_local("udas", config, checkpoint_dir=tmp_path / "ckpt")
    assert cyclegan_steps == []
    from udalab.methods.engine.run import without_timings as strip
    assert len(resumed) == 1 and strip(resumed[0]) == pytest.approx(strip(full[-1]), nan_ok=True)
    # its pictures: the K-view pseudo labels, and step 0's source image beside its translation
    index = json.loads((tmp_path / "ckpt" / "pictures" / "index.json").read_text())
    assert {"pseudo", "source", "translated"} <= set(index["pictures"])
    for k in range(len(index["images"])):
        src, tr = ((tmp_path / "ckpt" / "pictures" / f"{k}_{n}.png").read_bytes() for n in ("source", "translated"))
        assert src != tr


def test_trials_that_differ_only_in_self_training_share_one_uda_stage(tmp_path, monkeypatch, killed_after,
                                                                      mini_data):
    """A τ / K search pays for the UDA stage once per seed: the first trial trains it as an artifact
    (killed inside that stage, it resumes there), a trial with another τ and K reads it without one
    UDA step, reading it ends with the metrics of training the stage inside the trial, and a trial
    with another UDA setting trains its own."""
    from udalab.methods import udas
    from udalab.methods import run_local
    from udalab.methods.engine.run import without_timings as strip

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": "udas", "preset": "smoke", "seed": 0, "translate": False, "st_iterations": 4}
    own = run_local("udas", {**config, "share_uda": False})
    with killed_after(2):                                # inside the shared UDA stage's build
        run_local("udas", config)
    assert list((tmp_path / "artifacts").glob(".partial-udas_uda-*/state.pt"))
    assert not list((tmp_path / "artifacts").glob("udas_uda-*/"))
    shared = run_local("udas", config)
    assert len(list((tmp_path / "artifacts").glob("udas_uda-*/state.pt"))) == 1
    assert [r["stage"] for r in shared] == ["uda", "uda", "round1", "round1"]
    assert all(r["shared_from"].startswith("udas_uda-") for r in shared[:2]) and "shared_from" not in shared[-1]
    unmarked = [{k: v for k, v in strip(r).items() if k != "shared_from"} for r in shared]
    assert len(unmarked) == len(own)
    for mine, theirs in zip(unmarked, own):
        assert mine == pytest.approx(strip(theirs), nan_ok=True)

    def no_uda_step(*args):
        raise AssertionError("a UDA step ran")

    monkeypatch.setattr(udas.UDAStep, "train_step", no_uda_step)
    other = run_local("udas", {**config, "tau": 0.9, "views": 1})
    for mine, theirs in zip(other[:2], shared[:2]):
        assert strip(mine) == pytest.approx(strip(theirs), nan_ok=True)
    assert other[-1]["done"] and 0 <= other[-1]["stat.q"] <= 1      # the kept fraction, reported
    with pytest.raises(AssertionError, match="a UDA step ran"):
        run_local("udas", {**config, "lambda_kl": 0.5})


def test_udas_kl_is_the_symmetric_kl_and_the_printed_formula_adds_both_entropies():
    """Sec. 3.3 names L_kl a KL divergence; its printed formula is a symmetric cross entropy. The default
    is the symmetric KL: KL(aux||main) + KL(main||aux), zero where the two classifiers agree; the printed
    one is that plus H(aux) + H(main), so it is not zero at agreement (it rewards confident maps)."""
    import torch.nn.functional as F

    from udalab.methods.udas import KL_TERMS, UDASConfig, symmetric_ce, symmetric_kl

    assert UDASConfig().kl == "symmetric_kl" and KL_TERMS["printed"] is symmetric_ce
    g = torch.Generator().manual_seed(0)
    main, aux = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    lm, la = F.log_softmax(main, 1), F.log_softmax(aux, 1)
    kl = lambda log_p, log_q: (log_p.exp() * (log_p - log_q)).sum(1).mean()      # KL(p||q) per pixel, mean
    entropy = lambda log_p: -(log_p.exp() * log_p).sum(1).mean()
    assert symmetric_kl(main, aux) == pytest.approx((kl(la, lm) + kl(lm, la)).item(), rel=1e-5)
    assert symmetric_kl(main, main).item() == pytest.approx(0.0, abs=1e-6)
    assert symmetric_ce(main, aux) == pytest.approx((symmetric_kl(main, aux) + entropy(lm) + entropy(la)).item(),
                                                    rel=1e-5)
    assert symmetric_ce(main, main) > 1.0                                         # 2 H(main) at agreement


@pytest.mark.parametrize("bad, match", [({"tau": 0.0}, "tau"), ({"tau": 1.2}, "tau"), ({"views": 0}, "views"),
                                        ({"labelled": 301}, "only 300 images"), ({"kl": "js"}, "kl must be one of")])
def test_udas_bad_configs_name_the_value(bad, match, tmp_path, monkeypatch, mini_data):
    from udalab.methods import check_config
    from udalab.methods.engine import ConfigError

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path))
    config = {"method": "udas", "preset": "smoke", "translate": False, **bad}
    with pytest.raises(ConfigError, match=match):
        check_config(config, data=True)          # what a study runs before any trial starts
    if "labelled" in bad:                         # the count needs the data: the config alone passes
        check_config(config)


def test_udas_study_rows_are_the_papers_steps_and_bad_values_stop_before_any_trial():
    from types import SimpleNamespace

    from udalab.studies.run.trials import check_trial_configs, trial_settings
    from udalab.studies.udas_ablation import STUDY, step_of

    rows = STUDY.grid_rows()
    assert [step_of(r) for r in rows] == ["no_adaptation", "uda", "st", "st+uda", "st+da+ssl", None, None]
    assert [step_of(rows[i]) for i in STUDY.smoke_rows] == ["no_adaptation", "uda", "st", "st+uda", "st+da+ssl"]
    args = SimpleNamespace(preset=None, smoke=True, data_root=None, set=[], optuna=False)
    check_trial_configs(STUDY, args, trial_settings(STUDY, args))        # the declared rows are valid
    args.set = ["tau=1.5"]
    with pytest.raises(SystemExit, match="tau .*no trial was started"):
        check_trial_configs(STUDY, args, trial_settings(STUDY, args))
    args.set = ["labelled=301"]                                           # the smoke target split holds fewer
    with pytest.raises(SystemExit, match="labelled=301 but the target train split has only .*no trial was started"):
        check_trial_configs(STUDY, args, trial_settings(STUDY, args))
    args.set, args.optuna = [], True
    check_trial_configs(STUDY, args, trial_settings(STUDY, args))        # both ends of every searched range
    from udalab.methods.udas import SELF_TRAINING_KEYS
    assert set(STUDY.search) <= set(SELF_TRAINING_KEYS)     # every searched config of a seed reads one UDA stage


def test_supervised_trains_on_the_labelled_target_images_only(mini_data, monkeypatch):
    """The data-dependency table's "Supervised" row: its only stream is the `labelled` target images
    UDAS labels (the same indices), and a count of 0 stops before any trial."""
    from udalab.methods import check_config, supervised
    from udalab.methods import run_local
    from udalab.methods.engine import ConfigError
    from udalab.methods.udas import split_target

    streams = []
    real_fit = supervised.fit

    def spy(run, step, **kw):
        streams.append({name: s.dataset for name, s in step.streams().items()})
        return real_fit(run, step, **kw)

    monkeypatch.setattr(supervised, "fit", spy)
    config = {"method": "supervised", "preset": "smoke", "seed": 0, "labelled": 10}
    reports = run_local("supervised", config)
    [only] = streams
    assert list(only) == ["source"]
    hp = check_config(config)
    labelled, _ = split_target(hp, only["source"].dataset)
    assert only["source"].indices == labelled        # a Subset of the target train split
    assert len(labelled) == 10 and reports[-1]["stage"] == "supervised" and "test.miou" in reports[-1]
    with pytest.raises(ConfigError, match="labelled must be >= 1"):
        check_config({**config, "labelled": 0}, data=True)


def test_udas_with_every_train_image_labelled_self_trains_on_train_extra(tmp_path, monkeypatch, mini_data):
    """2975 of 2975 in the paper (300 of 300 mini): the round pseudo-labels Cityscapes' train_extra
    (the twin's 100 images) and reports how many images and pixels it labelled; with none labelled
    the pool is every train image plus train_extra, and the round trains on pseudo labels alone."""
    from udalab.methods import run_local

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    base = {"method": "udas", "preset": "smoke", "seed": 0, "translate": False, "st_iterations": 2}
    last = run_local("udas", {**base, "labelled": 300})[-1]
    assert last["stage"] == "round1" and "loss.labelled" in last and "loss.consistency" in last
    assert "loss.pseudo" in last and last["stat.pool_images"] == 100
    assert 0 < last["stat.pseudo_images"] <= 100 and last["stat.pseudo_pixels"] > 0
    assert last["stat.pseudo_pixels"] <= 100 * 64 * 36                      # of the pool's pixels at 64x36
    none = run_local("udas", {**base, "labelled": 0})[-1]            # every train image and train_extra
    assert none["stat.pool_images"] == 300 + 100 and "loss.pseudo" in none and "loss.labelled" not in none


def test_udas_rounds_without_an_unlabelled_image_are_refused_before_training(tmp_path, mini_data):
    """Every train image labelled and no train_extra folder: a config with rounds > 0 is refused by
    the check the study runner makes before any trial, and by the run before any stage, naming the
    folder and the fixes; rounds=0 is accepted."""
    from udalab.datasets.mini import make_mini
    from udalab.methods import run_local
    from udalab.methods.engine import ConfigError
    from udalab.methods.engine.registry import check_config

    root = make_mini("cityscapes", tmp_path / "cityscapes", count={"train": 6, "val": 2}, size=(64, 32))
    config = {"method": "udas", "preset": "smoke", "seed": 0, "translate": False, "labelled": 6,
              "data_root": {"cityscapes": str(root)}}
    for refused in (lambda: check_config(config, data=True),
                    lambda: run_local("udas", config, checkpoint_dir=tmp_path / "run")):
        with pytest.raises(ConfigError) as e:
            refused()
        for part in ("rounds=1", "labelled=6", "all 6 images", str(root / "leftImg8bit" / "train_extra"),
                     "leftImg8bit_trainextra.zip", "label fewer", "rounds=0"):
            assert part in str(e.value), (part, str(e.value))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    check_config({**config, "rounds": 0}, data=True)
    check_config({**config, "labelled": 5}, data=True)


def test_udas_data_study_declares_both_curves_at_the_mini_counts():
    from types import SimpleNamespace

    from udalab.studies.run.trials import check_trial_configs, trial_settings
    from udalab.studies.udas_data import MINI_COUNTS, STUDY

    rows = STUDY.grid_rows()
    assert [r["labelled"] for r in rows if r["method"] == "udas"] == list(MINI_COUNTS)
    assert [r["labelled"] for r in rows if r["method"] == "supervised"] == [n for n in MINI_COUNTS if n]
    assert [(rows[i]["method"], rows[i]["labelled"]) for i in STUDY.smoke_rows] == [("supervised", 10), ("udas", 10)]
    args = SimpleNamespace(preset=None, smoke=False, data_root=None, set=[], optuna=False)
    check_trial_configs(STUDY, args, trial_settings(STUDY, args))        # every count fits the mini split


def test_the_no_adaptation_row_never_sees_an_unlabelled_target_image(mini_data, monkeypatch):
    """Without UDA the step has no target stream: BatchNorm's statistics come from the source
    alone (a target forward pass, even at adversarial weight 0, would adapt them)."""
    from udalab.methods import udas
    from udalab.methods import run_local

    seen = []
    real_fit = udas.fit
    monkeypatch.setattr(udas, "fit", lambda run, step, **kw: (seen.append(set(step.streams())),
                                                               real_fit(run, step, **kw))[1])
    row = {"method": "udas", "preset": "smoke", "seed": 0, "translate": False, "uda": False, "cutmix": False,
           "rounds": 0}
    reports = run_local("udas", row)
    assert seen == [{"source"}] and "loss.adv_main" not in reports[-1] and "loss.seg_main" in reports[-1]
    seen.clear()
    run_local("udas", {**row, "uda": True})
    assert seen == [{"source", "target"}]


def test_a_set_reaches_the_rows_that_read_it_and_one_no_running_row_reads_stops_the_run():
    """--set lambda_kl=0 names a UDAS hyperparameter: over the whole grid it reaches the UDAS rows and
    leaves the AdaptSegNet and ADVENT comparison rows as they are; with --rows 5 6 (those two alone) no
    row that runs reads it, and the run stops before any trial, naming it."""
    from types import SimpleNamespace

    from udalab.studies.run.trials import check_trial_configs, trial_run_config, trial_settings
    from udalab.studies.udas_ablation import STUDY

    args = SimpleNamespace(preset=None, smoke=False, data_root=None, set=["lambda_kl=0"], optuna=False, rows=None)
    settings = trial_settings(STUDY, args)
    check_trial_configs(STUDY, args, settings)
    configs = [trial_run_config({"row": row, "seed": 0}, settings) for row in STUDY.grid_rows()]
    assert [c.get("lambda_kl") for c in configs] == [0.0] * 5 + [None, None]
    args.rows = [5, 6]
    with pytest.raises(SystemExit, match="no row of this run reads 'lambda_kl'.*no trial was started"):
        check_trial_configs(STUDY, args, trial_settings(STUDY, args))


def test_pseudo_label_benchmark_thresholds_the_labels_self_training_trains_on(tmp_path, monkeypatch, mini_data):
    """benchmarks/udas_pseudo_labels.py reads the study's shared UDA stage and draws round 1's views:
    at the run's τ its kept fraction is that of `udas.label_targets` on the same model, and a τ above
    1 keeps nothing; precision and recall are scored against the target's own labels."""
    import importlib.util
    from pathlib import Path


    from udalab.datasets.labels import IGNORE_INDEX
    from udalab.methods.advent import build_model
    from udalab.methods.engine import Run
    from udalab.methods import get_method
    from udalab.methods.engine.run import LocalSession
    from torch.utils.data import Subset

    from udalab.methods.udas import label_targets, shared_uda, split_target

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    spec = importlib.util.spec_from_file_location(
        "udas_pseudo_labels", Path(__file__).resolve().parents[1] / "benchmarks" / "udas_pseudo_labels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(0, [0.6, 1.01], preset="smoke", overrides={"translate": False})
    at_tau, above = result["taus"]["0.6"], result["taus"]["1.01"]
    assert above == {"q": 0.0, "precision": 0.0, "recall": 0.0, "miou": 0.0}
    assert 0 < at_tau["q"] <= 100 and 0 <= at_tau["recall"] <= at_tau["precision"] <= 100
    assert 0 <= at_tau["miou"] <= 100

    config = json.loads((tmp_path / "artifacts" / result["artifact"] / "config.json").read_text())["udas_uda_stage"]
    method = get_method("udas")
    hp = method.hparams(config)
    run = Run(config, LocalSession(device="cpu"))
    data = method.data(config, hp)
    G = build_model(run, hp, data.num_classes)
    G.load_state_dict(shared_uda(config, data)()[0]["G"])
    scored = Subset(data.target, split_target(hp, data.target)[1])
    labels = label_targets(run, hp, G, scored, seed=1)   # round 1, seed 0
    assert 100 * float((labels != IGNORE_INDEX).double().mean()) == pytest.approx(at_tau["q"], abs=1e-9)

