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
    spec.loader.exec_module(mod)
    return mod


def _check_rows(rows, out):
    """Every row timed the iterations it ran (min <= median), and the JSON file holds exactly the rows."""
    assert all(0 < r["ms_min"] <= r["ms_median"] for r in rows)
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
    rows = bench.main(["--device", "cpu", "--backbone", "mit_b0", "--size-scale", "0.125", "--batch", "1",
                       "--warmup", "1", "--iters", "1", "--threads", "1", "--json", str(out)])
    expected = [r for r in bench.ROWS if r != "segformer_hf" or importlib.util.find_spec("transformers")]
    assert [(r["row"], r["precision"]) for r in rows] == [(r, p) for r in expected for p in ("fp32", "bf16")]
    _check_rows(rows, out)
