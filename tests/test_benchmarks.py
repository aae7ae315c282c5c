"""The benchmark scripts run (tiny sizes on CPU); their timings are not asserted here."""
import importlib.util
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    if str(ROOT / "benchmarks") not in sys.path:  # the scripts import benchmarks/timing.py as `timing`
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _check_rows(rows, out):
    """Every row timed the iterations it ran (min <= median), and the JSON file holds exactly the rows."""
    assert all(0 < r["ms_min"] <= r["ms_median"] for r in rows)
    assert all(0 < r["first_ms"] <= r["warmup_ms"] for r in rows)   # the warm-up calls, the first among them
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))


def test_train_step_benchmark_times_every_method_and_precision(tmp_path):
    bench = _load("train_step")
    out = tmp_path / "bench.json"
    rows = bench.main(["--device", "cpu", "--size-scale", "0.08", "--depth", "18", "--warmup", "1", "--iters", "1",
                       "--methods", "source_only", "advent", "intrada", "--json", str(out)])
    assert [(r["method"], r["precision"]) for r in rows] == [
        (m, p) for m in ("source_only", "advent", "intrada") for p in ("fp32", "bf16")]
    _check_rows(rows, out)


def test_hrda_step_benchmark_times_every_row_and_precision(tmp_path):
    bench = _load("hrda_step")
    out = tmp_path / "bench.json"
    rows = bench.main(["--device", "cpu", "--backbone", "mit_b0", "--size-scale", "0.0625", "--batch", "1",
                       "--warmup", "1", "--iters", "1", "--threads", "1", "--json", str(out)])
    expected = [r for r in bench.ROWS if r != "segformer_hf" or importlib.util.find_spec("transformers")]
    assert [(r["row"], r["precision"]) for r in rows] == [(r, p) for r in expected for p in ("fp32", "bf16")]
    _check_rows(rows, out)


def test_compile_parts_compiles_each_network_its_own_parts():
    """--compile compiles the encoder, decoder and scale attention of the student and of the EMA
    teacher separately (a compiled student's call bound into the teacher's deepcopy would run the
    student's weights), and leaves parameters and state-dict keys as they were."""
    import torch

    from udalab.methods.parts.ema import EMATeacher
    from udalab.methods.engine.config import make_hparams
    from udalab.methods.hrda import PRESETS, HRDAConfig, HRDASegmentor

    bench = _load("hrda_step")
    hp = make_hparams(HRDAConfig, {"preset": "smoke"}, PRESETS)
    student = HRDASegmentor(hp, 19)
    teacher = EMATeacher(student, 0.999).model
    keys = list(student.state_dict())
    bench.compile_parts(student, teacher)
    parts = lambda m: [m.net.encoder, m.net.decoder, m.attention]  # noqa: E731
    assert all(p._compiled_call_impl is not None for m in (student, teacher) for p in parts(m))
    for s, t in zip(parts(student), parts(teacher)):
        assert s._compiled_call_impl is not t._compiled_call_impl
    assert list(student.state_dict()) == keys and list(teacher.state_dict()) == keys
    assert not any(p is q for p, q in zip(student.parameters(), teacher.parameters()))
    assert isinstance(student.net.encoder, torch.nn.Module) and type(student.net.encoder).__name__ == "MiT"


def test_sweep_overhead_accounts_for_every_second_of_a_trial():
    """The benchmark's per-trial rows add up to the trial's wall time: before the loop, the loop's
    phases, the loop's rest, after the last report; the sweep's slots idle when no trial ran."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from sweep_overhead import PHASES, breakdown, markdown, sweep_summary

    result = {"time.started": 105.0, "train_seconds": 80.0, "time.setup": 3.0, "time.data": 4.0, "time.step": 50.0,
              "time.update": 2.0, "time.evaluate": 15.0, "time.checkpoint": 1.0, "time.step.forward": 20.0}
    row = breakdown(100.0, 190.0, result)
    assert row["before the loop"] == 5.0 and row["after the loop"] == 5.0 and row["trial wall"] == 90.0
    assert row["other (loop)"] == 5.0 and row["step parts"] == {"forward": 20.0}
    assert row["before the loop"] + sum(row[p] for p in PHASES) + row["other (loop)"] + row["after the loop"] == 90.0
    trials = [{**row, "start": 100.0, "end": 190.0}, {**row, "start": 100.0, "end": 190.0},
              {**breakdown(190.0, 280.0, {**result, "time.started": 195.0}), "start": 190.0, "end": 280.0}]
    sweep = sweep_summary(trials, wall=200.0, slots=2)
    assert sweep["makespan"] == 180.0 and sweep["outside trials"] == 20.0
    assert sweep["idle slots"] == 2 * 180.0 - 3 * 90.0
    table = markdown({"tune": {"trials": trials, "sweep": sweep},
                      "local": {"trials": trials, "sweep": {**sweep, "wall": 160.0}}})
    assert "| before the loop | 5.0 | 6 % | 5.0 | 6 % |" in table and "| overhead: (Tune − in-process) / in-process | 25 % | |" in table


def test_suite_time_reads_pytests_summary_and_durations():
    """benchmarks/suite_time.py: the counts and seconds of pytest's last summary line and each
    --durations line; a log without a summary (a run that did not finish) is an error."""
    import pytest

    bench = _load("suite_time")
    log = ("...\n============ slowest 2 durations ============\n"
           "161.40s call     tests/test_cluster.py::test_a_lost_worker_node\n"
           "30.58s setup    tests/test_datasets.py::test_mini_twins\n"
           "FAILED tests/test_x.py::test_y - AssertionError\n"
           "======= 1 failed, 318 passed, 2 skipped in 953.29s (0:15:53) =======\n")
    parsed = bench.parse_log(log)
    assert parsed["pytest_seconds"] == 953.29 and parsed["counts"] == {"failed": 1, "passed": 318, "skipped": 2}
    assert parsed["slowest"] == [
        {"seconds": 161.4, "when": "call", "test": "tests/test_cluster.py::test_a_lost_worker_node"},
        {"seconds": 30.58, "when": "setup", "test": "tests/test_datasets.py::test_mini_twins"}]
    assert parsed["failed"] == ["tests/test_x.py::test_y"]
    with pytest.raises(ValueError, match="did not finish"):
        bench.parse_log("....F..\n")


def test_intrada_ranking_measures_a_trained_run_against_its_own_ranking(tmp_path, mini_data):
    """benchmarks/intrada_ranking.py on a smoke IntraDA run: it ranks the target again exactly as the
    run did, scores both splits of both models against the labels, and refuses a run without stage 3."""
    import pytest

    from udalab.methods import run_local

    bench = _load("intrada_ranking")
    config = {"method": "intrada", "preset": "smoke", "seed": 0, "lambda_split": 0.5}
    run_local("intrada", config, checkpoint_dir=tmp_path / "run")
    out = tmp_path / "ranking.json"
    assert bench.main([str(tmp_path / "run"), "--json", str(out)]) == 0
    [m] = json.loads(out.read_text())
    assert m["same_easy_split"] is True and m["entropy_max_abs_diff"] == 0.0
    assert m["images"]["easy"] == m["images"]["hard"] > 0                # λ 0.5 of an even target
    assert m["entropy"]["easy"] <= m["entropy"]["hard"]
    for model in ("inter", "intra"):
        for split in ("easy", "hard"):
            assert 0 <= m[model][split]["miou"] <= 100 and 0 < m[model][split]["pixel_acc"] <= 100
    assert -1 <= m["spearman"] <= 1

    run_local("intrada", {**config, "lambda_split": 0.0}, checkpoint_dir=tmp_path / "inter_only")
    with pytest.raises(SystemExit, match="no finished IntraDA run with a stage 3"):
        bench.measure(tmp_path / "inter_only")


def test_multidecoder_copy_trains_as_the_study_schedules_and_measures_the_semantic_decoder(tmp_path, mini_data):
    """benchmarks/multidecoder_copy.py on the smoke preset: its "none" and "copy" starts train exactly
    as run_local's d>s>b and d+copy>s>b do (every stage's val and test mIoU); copy_deep's blocks before
    the last start as the paper's copy's do and its last block does not."""
    from udalab.methods import run_local

    bench = _load("multidecoder_copy")
    out = tmp_path / "copy.json"
    assert bench.main(["--seeds", "0", "--preset", "smoke", "--images", "3", "--json", str(out)]) == 0
    [m] = json.loads(out.read_text())
    for variant, schedule in (("none", "d>s>b"), ("copy", "d+copy>s>b")):
        reports = run_local("multidecoder", {"preset": "smoke", "seed": 0, "schedule": schedule, "device": "cpu"})
        ends = {r["stage"]: r for r in reports if "test.miou" in r}
        for stage in ("2-s", "3-b"):
            for k in ("miou", "test.miou"):
                assert m["variants"][variant][f"{stage}.{k}"] == ends[stage][k], (variant, stage, k)
    start = {v: m["variants"][v]["semantic_start"] for v in bench.VARIANTS}
    assert start["copy_deep"][:-1] == start["copy"][:-1]
    assert start["copy_deep"][-1] != start["copy"][-1] and start["none"][0] != start["copy"][0]
    for block in start["copy"]:
        assert 0 <= block["dead"] <= 1 and 1 <= block["effective_rank"] <= block["channels"]


def test_class_colours_are_each_labels_mean_rgb():
    """Two hand-made images: class 0 red on the left, class 2 blue and grey on the right, an ignored
    pixel: each class's mean colour in 0-255 and its pixel count; a class absent gets None."""
    import pytest
    import torch

    from udalab.datasets.labels import IGNORE_INDEX
    from udalab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

    def image(rgb):                          # (H, W, 3) 0-255 -> normalised (3, H, W)
        x = torch.tensor(rgb, dtype=torch.float32).permute(2, 0, 1) / 255
        return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)

    red, blue, grey = [255, 0, 0], [0, 0, 255], [100, 100, 100]
    samples = [{"image": image([[red, blue], [red, grey]]), "label": torch.tensor([[0, 2], [0, 2]])},
               {"image": image([[red, grey]]), "label": torch.tensor([[0, IGNORE_INDEX]])}]
    colours, counts = _load("udas_translation").class_colours(samples, 3)
    assert counts == [3, 0, 2] and colours[1] is None
    assert colours[0] == pytest.approx(red, abs=1e-3) and colours[2] == pytest.approx([50, 50, 177.5], abs=1e-3)


def test_udas_translation_scores_a_source_model_on_the_translated_source(tmp_path, monkeypatch, mini_data):
    """benchmarks/udas_translation.py on a smoke no-adaptation run: it builds the run's translation
    (the study's artifact), and scores the model on the source and on its translation against the
    same labels. With the translation replaced by the source itself both scores and colours agree; the
    real translation changes the colours."""
    import pytest

    from udalab.methods import run_local, udas

    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "artifacts"))
    bench = _load("udas_translation")
    config = {"method": "udas", "preset": "smoke", "seed": 0, "translate": False, "uda": False, "cutmix": False,
              "rounds": 0}
    run_local("udas", config, checkpoint_dir=tmp_path / "run")
    real = bench.measure(tmp_path / "run", images=12)
    assert len(list((tmp_path / "artifacts").glob("cyclegan-*/data/images/*.png"))) == 300
    assert real["seed"] == 0 and real["images"] == 12 and set(real["classes"]) >= {"road", "building", "sky"}
    assert any(c["colour_translated"] != pytest.approx(c["colour_source"], abs=1) for c in real["classes"].values())
    assert sum(c["pixels"] for c in real["classes"].values()) == pytest.approx(1)
    # --cyclegan-semantic: the CycleGAN trained with CyCADA's term, a translation of its own
    semantic = bench.measure(tmp_path / "run", images=12, cyclegan_semantic=1.0)
    assert (real["cyclegan_semantic"], semantic["cyclegan_semantic"]) == (0.0, 1.0)
    assert len(list((tmp_path / "artifacts").glob("cyclegan-*/meta.json"))) == 2
    assert semantic["miou_source"] == real["miou_source"]
    assert semantic["classes"]["road"]["colour_translated"] != real["classes"]["road"]["colour_translated"]

    source = udas.build_dataset
    monkeypatch.setattr(udas, "translated_source", lambda config, hp, data, run: source(
        config.get("source", "gta5"), root=data.source.root, split="train", size=hp.source_size))
    same = bench.measure(tmp_path / "run", images=12)
    assert same["miou_translated"] == same["miou_source"] == real["miou_source"]
    for c in same["classes"].values():
        assert c["iou_translated"] == c["iou_source"] and c["colour_translated"] == c["colour_source"]
