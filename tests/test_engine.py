"""Engine pieces: hyperparameters, deterministic batches, finite-loss guard, models, inference."""
import json
import time
from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import Dataset

from udalab.methods.nets.deeplab import DeepLabV2
from udalab.methods.nets.discriminator import FCDiscriminator
from udalab.methods.engine import ConfigError, HParams, Run, Step, Stream, derive_seed, fit
from udalab.methods.engine.batches import batches
from udalab.methods.engine.config import make_hparams
from udalab.methods.engine.loop import NonFiniteLossError, check_finite
from udalab.methods.engine.run import LocalSession
from udalab.methods.engine.evaluate import slide_inference
from udalab.methods.parts.losses import entropy_map, self_information
from udalab.methods.engine.uda_data import UDAData


@dataclass
class HP(HParams):
    lr: float = 0.1          # paper default
    iterations: int = 100
    flag: bool = True
    size: tuple = (8, 4)


def test_hparams_paper_defaults_preset_then_config():
    assert make_hparams(HP, {"preset": "paper"}) == HP()
    hp = make_hparams(HP, {"preset": "mini", "lr": 0.5, "seed": 3, "method": "x"}, {"mini": {"lr": 0.2, "iterations": 7}})
    assert (hp.lr, hp.iterations) == (0.5, 7)
    assert make_hparams(HP, {"size": [16, 8], "preset": "paper"}).size == (16, 8)


@pytest.mark.parametrize("config, message", [
    ({"lrr": 1.0}, "HP does not read 'lrr'; HP reads: flag, iterations, lr, size"),
    ({"iterations": 2.5}, "must be an integer"),
    ({"lr": "fast"}, "must be a number"),
    ({"flag": 1}, "must be true/false"),
    ({"preset": "huge"}, "preset='huge'"),
])
def test_hparams_bad_config_names_the_value(config, message):
    with pytest.raises(ConfigError, match=message):
        make_hparams(HP, {"preset": "paper", **config} if "preset" not in config else config)


class Numbers(Dataset):
    """Sample i = (i, a random draw): shows both the order and the per-sample RNG."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"index": torch.tensor(i), "noise": torch.rand(())}


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_batches_resume_mid_stream_is_identical():
    full = _take(batches(Numbers(), 3, seed=5, stream=0), 8)
    resumed = _take(batches(Numbers(), 3, seed=5, stream=0, start=5), 3)
    for a, b in zip(full[5:], resumed):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["noise"], b["noise"])
    # every epoch is a permutation, epochs differ, streams and seeds differ
    first_epoch = torch.cat([b["index"] for b in full])[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))
    other = _take(batches(Numbers(), 3, seed=6, stream=0), 2)
    assert not torch.equal(torch.cat([b["index"] for b in other]), torch.cat([b["index"] for b in full[:2]]))
    stream1 = _take(batches(Numbers(), 3, seed=5, stream=1), 1)[0]
    assert not torch.equal(stream1["noise"], full[0]["noise"])


def test_batches_do_not_disturb_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _take(batches(Numbers(), 2, seed=1, stream=0), 2)
    assert torch.equal(torch.rand(3), expected)


def test_batches_split_across_workers_without_overlap():
    ranks = [_take(batches(Numbers(), 2, seed=0, stream=0, rank=r, world=2), 2) for r in range(2)]
    seen = torch.cat([b["index"] for r in ranks for b in r]).tolist()
    assert sorted(seen[:8]) == sorted(set(seen[:8]))  # 2 iterations x 2 ranks x 2 = 8 distinct samples


def test_derive_seed_is_stable_and_spreads():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, i) for i in range(100)}) == 100


def test_check_finite_names_loss_and_iteration():
    check_finite({"seg": torch.tensor(1.0)}, 3)
    with pytest.raises(NonFiniteLossError, match=r"loss 'adv_main' is nan at iteration 17 \(stage 'inter'\)"):
        check_finite({"seg": 1.0, "adv_main": torch.tensor(float("nan"))}, 17, "inter")
    with pytest.raises(NonFiniteLossError, match="inf"):
        check_finite({"seg": float("inf")}, 0)


@pytest.mark.parametrize("depth, stride", [(18, 16), (18, 8), (50, 8)])
def test_deeplab_v2_multilevel_shapes(depth, stride):
    model = DeepLabV2(19, depth=depth, pretrained="none", output_stride=stride, freeze_bn=False)
    main, aux = model(torch.randn(2, 3, 64, 128))
    assert main.shape == aux.shape == (2, 19, 64 // stride, 128 // stride)
    assert set(map(id, model.head_parameters())).isdisjoint(map(id, model.backbone_parameters()))


def test_deeplab_frozen_bn_stays_in_eval_and_untrained():
    model = DeepLabV2(5, depth=18, pretrained="none", output_stride=16, freeze_bn=True).train()
    bn = model.stem[1]
    assert not bn.training and not any(p.requires_grad for p in bn.parameters())
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(bn.running_mean, before)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        DeepLabV2(5, depth=18, pretrained=str(tmp_path / "nope.pth"), output_stride=16)


def test_discriminator_patch_output():
    d = FCDiscriminator(19, ndf=8)
    assert d(torch.randn(2, 19, 64, 64)).shape == (2, 1, 2, 2)


def test_entropy_maps():
    uniform = torch.full((1, 4, 2, 2), 0.25)
    onehot = torch.zeros(1, 4, 2, 2)
    onehot[:, 0] = 1
    assert torch.allclose(entropy_map(uniform), torch.ones(1, 2, 2))
    assert torch.allclose(entropy_map(onehot), torch.zeros(1, 2, 2))
    assert self_information(uniform).shape == uniform.shape


def test_slide_inference_covers_every_pixel_and_matches_pointwise_model():
    image = torch.randn(1, 3, 37, 53)
    weight = torch.randn(6, 3, 1, 1)
    predict = lambda x: torch.nn.functional.conv2d(x, weight)  # noqa: E731 - a pointwise "model"
    out = slide_inference(predict, image, 6, window=(16, 24), stride=(8, 12))
    assert torch.allclose(out, predict(image), atol=1e-5)


class _Counting(Step):
    """A Step whose 'model' is one weight; evaluate() tells which dataset it scored."""

    def __init__(self, data):
        self.data, self.w = data, torch.nn.Parameter(torch.zeros(1))
        self.networks = ()

    def streams(self):
        return {"source": Stream(self.data.source, 1, id=0)}

    def train_step(self, batch, it, gen):
        return {"l": self.w.sum() + batch["source"]["x"].sum()}

    def update(self):
        pass

    def evaluate(self, dataset, record=None):
        return {"miou": float(len(dataset)), "split": dataset.name}


def run_loop(loop, config: dict) -> list[dict]:
    """`loop(run)` as a run of this process (a Step the registry does not know); its reports."""
    session = LocalSession()
    loop(Run.start(config, session))
    return session.reports


class _Named(Dataset):
    def __init__(self, name, n):
        self.name, self.n = name, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.zeros(1)}


@pytest.mark.parametrize("with_test", [True, False])
def test_fit_scores_val_at_the_cadence_and_the_held_out_split_at_each_stage_end(with_test):
    data = UDAData(_Named("src", 4), None, _Named("val", 5), _Named("test", 7) if with_test else None, 2, ("a", "b"))
    step = _Counting(data)

    def two_stages(run):
        fit(run, step, stage="a", iterations=4, eval_every=2, last=False)
        fit(run, step, stage="b", iterations=4, eval_every=2)

    reports = run_loop(two_stages, {"seed": 0})
    assert [(r["iteration"], r["split"], r["miou"]) for r in reports] == [(2, "val", 5), (4, "val", 5),
                                                                           (6, "val", 5), (8, "val", 5)]
    ends = [r["iteration"] for r in reports if "test.miou" in r]
    assert ends == ([4, 8] if with_test else [])
    if with_test:
        assert reports[-1]["test.split"] == "test" and reports[-1]["test.miou"] == 7 and reports[-1]["done"]


def test_reports_name_the_cpu_instruction_set_their_kernels_ran_with():
    """Two CPUs that differ in it (AVX2 / AVX512) do not repeat each other's runs to the last digit
    (docs/results.md, "Runs reproduce on one machine"): every report says which it was."""
    if torch.cuda.is_available():
        pytest.skip("a GPU run names the GPU")
    data = UDAData(_Named("src", 4), None, _Named("val", 5), None, 2, ("a", "b"))

    def loop(run):
        fit(run, _Counting(data), stage="a", iterations=2, eval_every=2)

    device = run_loop(loop, {"seed": 0})[-1]["provenance.device"]
    assert f"({torch.backends.cpu.get_cpu_capability()})" in device and "CPU thread" in device


def test_dataset_fingerprint_tells_same_names_with_other_bytes_apart(tmp_path):
    """A regenerated or re-encoded dataset keeps its file names: the fingerprint also reads bytes."""
    from udalab.methods.engine.provenance import dataset_fingerprint

    class Pairs:
        def __init__(self, root):
            self.root = root
            self.files = [(root / f"img{i:03d}.png", root / f"lbl{i:03d}.png") for i in range(40)]

    for i in range(40):
        for kind in ("img", "lbl"):
            (tmp_path / f"{kind}{i:03d}.png").write_bytes(bytes([i, 1, 2, 3]))
    before = dataset_fingerprint(Pairs(tmp_path))
    assert before.startswith(f"Pairs {tmp_path.name}: 40 files, ") and ", bytes " in before
    assert dataset_fingerprint(Pairs(tmp_path)) == before
    (tmp_path / "img000.png").write_bytes(bytes([0, 1, 2, 4]))         # the first file is always read
    after = dataset_fingerprint(Pairs(tmp_path))
    assert after != before and after.rsplit(", bytes ", 1)[0] == before.rsplit(", bytes ", 1)[0]


class _Slow(_Counting):
    """Sleeps a known time in each phase fit times (and in one part of its step)."""

    def __init__(self, data, run_clock):
        super().__init__(data)
        self.clock = run_clock

    def train_step(self, batch, it, gen):
        with self.clock("step.part"):
            time.sleep(0.02)
        time.sleep(0.01)
        return super().train_step(batch, it, gen)

    def update(self):
        time.sleep(0.01)

    def evaluate(self, dataset, record=None):
        time.sleep(0.05)
        return super().evaluate(dataset)


def test_reports_carry_the_wall_seconds_of_each_phase():
    """time.<phase> add up what fit spent where (lower bounds: the sleeps; the sum within the loop's
    own wall time), time.started is when the loop began, and a report less its timings is what a
    resumed run must reproduce."""
    from udalab.methods.engine.run import without_timings

    data = UDAData(_Named("src", 4), None, _Named("val", 5), None, 2, ("a", "b"))

    def loop(run):
        time.sleep(0.05)                               # building the step counts as setup
        fit(run, _Slow(data, run.clock), stage="a", iterations=4, eval_every=2)

    rounding = 1e-3                                    # reports round seconds to 3-4 decimals
    t0 = time.time()
    last = run_loop(loop, {"seed": 0})[-1]
    assert t0 - rounding <= last["time.started"] <= time.time() + rounding
    assert last["time.setup"] >= 0.05 - rounding and last["time.step.part"] >= 4 * 0.02 - rounding
    assert last["time.step"] >= 4 * 0.03 - rounding and last["time.update"] >= 4 * 0.01 - rounding
    assert last["time.evaluate"] >= 2 * 0.05 - rounding
    phases = sum(last[f"time.{p}"] for p in ("setup", "data", "step", "update", "evaluate", "checkpoint"))
    assert phases <= last["train_seconds"] + rounding and last["time.step.part"] <= last["time.step"] + rounding
    assert not any(k.startswith("time.") or k == "train_seconds" for k in without_timings(last))


class _Drawing(_Counting):
    """A Step whose loss depends on a draw of its generator and on the global RNG: a resume that lost
    either would not repeat the uninterrupted run."""

    def __init__(self, data):
        super().__init__(data)
        self.total = 0.0
        self.saved = ("total",)

    def train_step(self, batch, it, gen):
        self.total += float(torch.rand((), generator=gen)) + float(torch.rand(()))
        return {"l": torch.tensor(self.total), "stat.draws": torch.tensor(float(it))}

    def evaluate(self, dataset, record=None):
        return {"miou": self.total}


def test_checkpoints_between_evaluations_resume_exactly_and_stay_out_of_the_history(tmp_path, killed_after):
    """checkpoint_minutes: a checkpoint whenever that much wall time passed since the last one (here
    every iteration); a run killed after one resumes to the uninterrupted run's reports, loss means
    included, and the history holds the evaluations only. Statistics (stat.*) are reported as such."""
    data = UDAData(_Named("src", 4), None, _Named("val", 5), None, 2, ("a", "b"))
    config = {"seed": 3, "checkpoint_minutes": 1e-9}

    def loop(run):
        fit(run, _Drawing(data), stage="a", iterations=8, eval_every=4)

    full = run_loop(loop, config)
    evaluations = [r for r in full if not r.get("between_evaluations")]
    assert [r["iteration"] for r in evaluations] == [4, 8] and len(full) == 8
    assert "stat.draws" in evaluations[-1] and "loss.stat.draws" not in evaluations[-1]

    session = LocalSession(tmp_path)
    with killed_after(6):                       # a checkpoint between evaluations (iteration 6)
        loop(Run.start(config, session))
    assert (tmp_path / "state.pt").exists()
    resumed = LocalSession(tmp_path)
    loop(Run.start(config, resumed))
    from udalab.methods.engine.run import without_timings
    assert [without_timings(r) for r in resumed.reports if not r.get("between_evaluations")] == \
        [without_timings(evaluations[-1])]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["iteration"] for r in history] == [4, 8]


def test_a_checkpoint_of_another_worker_count_is_refused(tmp_path):
    """Each worker draws its share of the batch and its own random numbers: resuming a checkpoint of
    two workers with one would not continue the run; the error names the count and the fix."""
    data = UDAData(_Named("src", 4), None, _Named("val", 5), None, 2, ("a", "b"))
    session = LocalSession(tmp_path)
    fit(Run.start({"seed": 0}, session), _Counting(data), stage="a", iterations=2, eval_every=2)
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    assert state["world"] == 1
    torch.save({**state, "world": 2}, tmp_path / "state.pt")
    with pytest.raises(ConfigError, match="2 worker.*this run has 1.*--workers 2"):
        Run.start({"seed": 0}, LocalSession(tmp_path))


def test_the_global_batch_splits_over_the_workers():
    run = Run({"seed": 0}, LocalSession(device="cpu"))
    run.world = 4
    assert run.per_rank(8) == 2
    with pytest.raises(ConfigError, match="batch_size 2 does not split over 4 workers"):
        run.per_rank(2)
