"""Method loops on the mini data, without Ray: they learn, resume bit-for-bit, fail loudly."""
import json
import math

import pytest
import torch

from udalab.methods import get_method, list_methods
from udalab.methods import run_local
from udalab.methods.engine import ConfigError, NonFiniteLossError
from udalab.methods.intrada import rank_by_entropy

SMOKE = {"preset": "smoke", "seed": 0}


def test_registry_lists_the_methods():
    assert {"source_only", "advent", "intrada"} <= set(list_methods())
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize("method", ["source_only", "advent", "intrada"])
def test_method_reports_contract_metrics(method, mini_data):
    reports = run_local(method, {"method": method, **SMOKE})
    last = reports[-1]
    assert last["done"] is True
    assert "iou.road" in last and "iou.bicycle" in last
    assert last["iteration"] == (6 if method == "intrada" else 4)
    assert [r["iteration"] for r in reports] == sorted(r["iteration"] for r in reports)
    # the held-out split is scored at the end of each stage (IntraDA: inter at 4, intra at 6), not before
    assert [r["iteration"] for r in reports if "test.miou" in r] == ([4, 6] if method == "intrada" else [4])
    assert "test.iou.road" in last and 0 < last["test.miou"] < 100
    assert last["provenance.weights"] == "resnet18: none (random init)"     # the smoke preset's backbone
    assert all(math.isfinite(v) for k, v in last.items() if k.startswith("loss."))
    if method in ("advent", "adaptsegnet"):
        assert {"loss.adv_main", "loss.d_src", "loss.d_tgt"} <= set(last)


@pytest.mark.parametrize("method", ["advent", "adaptsegnet"])
def test_what_the_discriminators_see(method, monkeypatch, mini_data):
    """AdaptSegNet's discriminators see the segmentation softmax (sums to 1 over classes at every
    pixel); ADVENT's the weighted self-information -p log p / log C (each value in [0, 1/e / log C])."""
    from udalab.methods.nets.discriminator import FCDiscriminator

    seen, forward = [], FCDiscriminator.forward
    monkeypatch.setattr(FCDiscriminator, "forward", lambda self, x: seen.append(x.detach()) or forward(self, x))
    run_local(method, {"method": method, **SMOKE, "iterations": 1, "eval_every": 1})
    assert len(seen) == 6                  # G's adversarial term, D on source, D on target; two levels
    sums = torch.cat([x.sum(1).flatten() for x in seen])
    if method == "adaptsegnet":
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    else:
        assert all(x.min() >= 0 and x.max() <= 1 / math.e / math.log(19) + 1e-6 for x in seen)
        assert not torch.allclose(sums, torch.ones_like(sums), atol=1e-2)


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_a_discriminator_logit_sees_its_receptive_field(layers):
    """The centre logit's gradient reaches exactly a receptive_field(layers)-px square of the map:
    94 px for the reference's four layers (all of a 64-px-high mini map), 10 px for one."""
    from udalab.methods.nets.discriminator import FCDiscriminator, receptive_field

    d = FCDiscriminator(19, ndf=4, layers=layers)
    x = torch.randn(1, 19, 256, 256, requires_grad=True)
    y = d(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows, cols = (x.grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (receptive_field(layers),) * 2
    assert receptive_field(4) == 94 and receptive_field(1) == 10


def test_advent_builds_its_discriminators_with_d_layers(monkeypatch, mini_data):
    from udalab.methods.advent import PRESETS, AdventConfig
    from udalab.methods.nets.discriminator import FCDiscriminator
    from udalab.methods.engine.config import make_hparams

    built, init = [], FCDiscriminator.__init__
    monkeypatch.setattr(FCDiscriminator, "__init__",
                        lambda self, c, ndf=64, layers=4: built.append(layers) or init(self, c, ndf, layers))
    run_local("advent", {"method": "advent", **SMOKE, "iterations": 1, "eval_every": 1, "d_layers": 2})
    assert built == [2, 2]                 # D_main and D_aux
    with pytest.raises(ConfigError, match="d_layers must be 1..4"):
        make_hparams(AdventConfig, {"preset": "mini", "d_layers": 0}, PRESETS)


def test_advent_without_its_adversarial_term_is_source_only_when_bn_target_is_running(mini_data):
    """λ_adv 0 leaves G's gradients source-only's; what the target then still changes is BatchNorm's
    running statistics, and only with bn_target "batch" (the target batch's own statistics)."""
    schedule = {**SMOKE, "iterations": 3, "eval_every": 3}
    config = {**schedule, "lambda_adv_main": 0.0, "lambda_adv_aux": 0.0}
    source_only = run_local("source_only", {"method": "source_only", **schedule})[-1]
    with pytest.raises(ConfigError, match="source_only does not read 'lambda_adv_aux', 'lambda_adv_main'; source_only "
                                          "reads: backbone_depth, batch_size"):
        run_local("source_only", {"method": "source_only", **config})
    running = run_local("advent", {"method": "advent", **config, "bn_target": "running"})[-1]
    batch = run_local("advent", {"method": "advent", **config, "bn_target": "batch"})[-1]
    for key in ("miou", "pixel_acc", "test.miou", "test.pixel_acc"):
        assert running[key] == source_only[key], key
    assert batch["pixel_acc"] != source_only["pixel_acc"]
    with pytest.raises(ConfigError, match="bn_target must be 'batch' or 'running'"):
        run_local("advent", {"method": "advent", **config, "bn_target": "target"})


def test_adaptsegnet_reference_schedule_and_bad_configs():
    from udalab.methods.adaptsegnet import PRESETS, AdaptSegNetConfig
    from udalab.methods.engine.config import make_hparams

    hp = make_hparams(AdaptSegNetConfig, {"preset": "paper"}, PRESETS)
    assert (hp.iterations, hp.poly_iterations, hp.lambda_adv_main, hp.lambda_adv_aux) == (150_000, 250_000, 1e-3, 2e-4)
    for bad, match in (({"gan": "wgan"}, "gan must be"), ({"variant": "minent"}, "does not read 'variant'"),
                       ({"iterations": 300_000}, "poly_iterations")):
        with pytest.raises(ConfigError, match=match):
            make_hparams(AdaptSegNetConfig, {"preset": "paper", **bad}, PRESETS)


@pytest.mark.parametrize("method", ["source_only", "daformer"])   # the DeepLab-v2 and the DACS Step
def test_a_method_learns(method, mini_data):
    """On a fixed seed, 30 smoke-size iterations lower the loss and beat the untrained model (the
    same run with lr 0) on target val."""
    config = {"method": method, **SMOKE, "iterations": 30, "eval_every": 10}
    untrained = run_local(method, {**config, "iterations": 1, "lr": 0.0})[-1]
    reports = run_local(method, config)
    loss = "loss.src" if method == "daformer" else "loss.seg_main"
    assert reports[-1][loss] < reports[0][loss]
    assert reports[-1]["miou"] > untrained["miou"] + 1.0, (reports[-1]["miou"], untrained["miou"])


def _strip_time(reports):
    from udalab.methods.engine.run import without_timings

    return [without_timings(r) for r in reports]


CHECKPOINT_LAYOUT = {"iteration", "stage", "state", "classes", "rng", "train_seconds", "world"}
LAST_STAGE = {"source_only": "source", "advent": "inter", "adaptsegnet": "adapt", "intrada": "intra",
              "daformer": "dacs", "hrda": "dacs"}


@pytest.mark.parametrize("method, stop_after, extra", [
    ("source_only", 2, {}), ("advent", 2, {}), ("adaptsegnet", 2, {}), ("daformer", 2, {}), ("hrda", 2, {}),
    ("intrada", 4, {"share_inter": False}),      # at the end of stage 1 (trained in the run): stage 2 starts fresh
    ("intrada", 6, {"intra_iterations": 4}),     # inside stage 2: stage 1 is skipped, its G_inter restored
])
def test_resume_continues_bit_for_bit(method, stop_after, extra, tmp_path, killed_after, mini_data):
    """Kill after the checkpoint at `stop_after`, resume: same metrics as one uninterrupted run. The
    uninterrupted run's checkpoint has the one layout of every method, and resuming from it (the
    run's very last checkpoint) trains nothing and reports the final metrics again."""
    config = {"method": method, **SMOKE, "seed": 1, **extra}
    full = run_local(method, config, checkpoint_dir=tmp_path / "full")
    last = torch.load(tmp_path / "full" / "state.pt", weights_only=False)
    assert set(last) == CHECKPOINT_LAYOUT
    assert (last["iteration"], last["stage"]) == (full[-1]["iteration"], LAST_STAGE[method])
    optimizers = lambda state: [v for v in state.values() if isinstance(v, dict) and "param_groups" in v]
    assert optimizers(last["state"]) and all(o["state"] == {} for o in optimizers(last["state"]))  # moments dropped
    history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [r["iteration"] for r in history] == [r["iteration"] for r in full]
    again = run_local(method, config, checkpoint_dir=tmp_path / "full")
    assert len(again) == 1 and _strip_time(again)[0] == pytest.approx(_strip_time(full)[-1], nan_ok=True)

    ckpt = tmp_path / "ckpt"
    with killed_after(stop_after):
        run_local(method, config, checkpoint_dir=ckpt)
    mid = torch.load(ckpt / "state.pt", weights_only=False)["state"]
    assert all(o["state"] for o in optimizers(mid))          # a checkpoint to train on from keeps them
    resumed = run_local(method, config, checkpoint_dir=ckpt)
    assert resumed[0]["iteration"] > stop_after  # did not start over
    by_it = {r["iteration"]: r for r in _strip_time(full)}
    for r in _strip_time(resumed):
        assert r == pytest.approx(by_it[r["iteration"]], nan_ok=True), r["iteration"]


def test_nan_loss_stops_with_name_and_iteration(mini_data):
    with pytest.raises(NonFiniteLossError, match=r"loss 'seg_main' is nan at iteration 2"):
        run_local("source_only", {"method": "source_only", **SMOKE, "lr": float("nan")})


def test_unknown_hyperparameter_is_rejected(mini_data):
    with pytest.raises(ConfigError, match="intrada does not read 'lambda_spilt'; intrada reads: .*lambda_split"):
        run_local("intrada", {"method": "intrada", **SMOKE, "lambda_spilt": 0.5})
    with pytest.raises(ConfigError, match="lambda_split must lie in"):
        run_local("intrada", {"method": "intrada", **SMOKE, "lambda_split": 1.5})


def test_entropy_ranking_splits_by_lambda(mini_data):
    from udalab.datasets import build_dataset
    from udalab.methods.nets.deeplab import DeepLabV2
    from udalab.methods.engine import Run
    from udalab.methods.engine.run import LocalSession

    target = torch.utils.data.Subset(build_dataset("cityscapes", split="train", size=(64, 32)), range(12))
    G = DeepLabV2(19, depth=18, pretrained="none", output_stride=16, freeze_bn=False)
    run = Run({"seed": 0}, LocalSession(device="cpu"))
    easy, hard, scores = rank_by_entropy(run, G, target, 0.67)
    assert len(easy) == int(12 * 0.67) and sorted(easy + hard) == list(range(12))
    assert max(scores[i] for i in easy) <= min(scores[i] for i in hard)
    assert rank_by_entropy(run, G, target, 0.0)[0] == []
    assert rank_by_entropy(run, G, target, 1.0)[1] == []


def test_intrada_lambda_zero_ends_with_the_inter_model(mini_data):
    reports = run_local("intrada", {"method": "intrada", **SMOKE, "lambda_split": 0.0})
    assert {r["stage"] for r in reports} == {"inter"}
    assert reports[-1]["done"] is True and reports[-1]["iteration"] == 4


def test_trials_that_differ_only_in_lambda_share_one_inter_stage(tmp_path, monkeypatch, killed_after, mini_data):
    """A λ search pays for stage 1 (ADVENT) once per seed: the first trial trains it as an artifact, the
    study's ADVENT row at that seed (killed inside it, it resumes there); reading it ends with the metrics
    of training the stage inside the trial; a trial with another λ reads it without one ADVENT step, and
    one with another ADVENT setting trains its own."""
    from udalab.methods import advent
    from udalab.methods.engine.run import without_timings as strip

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": "intrada", **SMOKE, "lambda_split": 0.67}
    own = run_local("intrada", {**config, "share_inter": False})
    advent_row = run_local("advent", {"method": "advent", **SMOKE})
    with killed_after(2):                                # inside the shared stage's build
        run_local("intrada", config)
    assert list((tmp_path / "artifacts").glob(".partial-intrada_inter-*/state.pt"))
    assert not list((tmp_path / "artifacts").glob("intrada_inter-*/"))
    shared = run_local("intrada", config)
    built = list((tmp_path / "artifacts").glob("intrada_inter-*/history.json"))
    assert len(built) == 1
    history = json.loads(built[0].read_text())
    assert len(history) == len(advent_row)
    for theirs, row in zip(history, advent_row):
        assert strip(theirs) == pytest.approx(strip(row), nan_ok=True)
    assert [r["stage"] for r in shared] == ["inter", "inter", "intra"]
    assert all(r["shared_from"].startswith("intrada_inter-") for r in shared[:2]) and "shared_from" not in shared[-1]
    unmarked = [{k: v for k, v in strip(r).items() if k != "shared_from"} for r in shared]
    assert len(unmarked) == len(own)
    for mine, theirs in zip(unmarked, own):
        assert mine == pytest.approx(strip(theirs), nan_ok=True)

    def no_advent_step(*args):
        raise AssertionError("an ADVENT step ran")

    monkeypatch.setattr(advent.AdventStep, "train_step", no_advent_step)   # IntraStep has its own
    other = run_local("intrada", {**config, "lambda_split": 1.0, "intra_iterations": 4})
    same_stage = lambda r: {k: v for k, v in strip(r).items() if k != "iterations_total"}  # noqa: E731
    for mine, theirs in zip(other[:2], shared[:2]):
        assert same_stage(mine) == pytest.approx(same_stage(theirs), nan_ok=True)
    assert other[-1]["done"] and other[-1]["iteration"] == 8
    with pytest.raises(AssertionError, match="an ADVENT step ran"):
        run_local("intrada", {**config, "lambda_ent_main": 0.01})


def test_a_methods_algorithm_is_a_few_lines_and_opens_no_run():
    """A method's registered algorithm only declares its Steps and their stages; the run is opened by
    the engine (registry.train_loop) and the loop is fit's: no method file starts a run, builds its
    hyperparameters or its data itself."""
    import inspect
    from pathlib import Path

    from udalab.methods import METHODS

    list_methods()
    for name, method in METHODS.items():
        source = inspect.getsource(method.algorithm)
        assert len(source.splitlines()) <= 15, f"{name}'s algorithm has {len(source.splitlines())} lines"
        assert "for " not in source, f"{name}'s algorithm loops itself; hand a Step to fit"
    methods = Path(inspect.getfile(get_method("advent").algorithm)).parent
    for path in sorted(methods.glob("*.py")):
        text = path.read_text()
        for opening in ("Run.start(", "make_hparams(", "build_uda_data(", "Run("):
            assert opening not in text, f"{path.name} opens a run itself ({opening}); the registry does"


@pytest.mark.parametrize("method", ["source_only", "hrda", "mml"])   # DeepLab-v2, sliding windows, thermal stream
def test_load_trained_predicts_as_the_run_evaluated(method, tmp_path, monkeypatch, mini_data):
    """A finished run's checkpoint comes back as the model the run evaluated, predicting the way its
    method evaluates: scored on the run's val split it gives the run's final val metrics."""
    from udalab.methods import load_trained
    from udalab.methods.engine import evaluate

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    config = {"method": method, **SMOKE}
    last = run_local(method, config, checkpoint_dir=tmp_path / "run")[-1]
    trained = load_trained(tmp_path / "run", device="cpu")
    assert trained.config["method"] == method and trained.history[-1]["iteration"] == last["iteration"]
    m = get_method(method)
    val = m.data(config, m.hparams(config)).target_val
    scores = evaluate(trained.prediction, val, class_names=val.class_names, device="cpu")
    assert scores["miou"] == pytest.approx(last["miou"], abs=1e-6)
    assert scores["pixel_acc"] == pytest.approx(last["pixel_acc"], abs=1e-6)


def test_load_trained_names_what_it_cannot_read(tmp_path):
    from udalab.core.layout import CheckpointError
    from udalab.methods import load_trained

    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_trained(tmp_path)
