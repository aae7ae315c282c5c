"""`udalab preflight STUDY`: every row of a study at its paper preset, a few iterations of every stage,
before a GPU is rented: its peak memory, its seconds per iteration, and what its trial costs at the
paper's schedule.

Each row, one after another in this process:

1. its trial's config (studies/run/trials.py) at preset "paper", with every stage (and every artifact
   it trains: CycleGAN, MML's expert, UDAS's UDA stage) cut to `--iterations` and evaluated halfway and
   at its end (`HParams.shortened`), every image size scaled by `--size-scale` (`HParams.scaled`; a
   row's own sizes too; never below what a method's discriminator runs on), random initialisation
   (`pretrained="none"`) and the learning rate x LR_FACTOR (random weights at the paper's rate can
   diverge; memory and time depend on neither), the same for the runs it trains inside it
   (`HParams.nested_runs`);
2. on a few images per split generated at the real datasets' sizes x the scale (the mini twins'
   renderers, in the real formats, through the real loaders) or on `--data-root`;
3. trained with a checkpoint folder until its first checkpoint, stopped there as a killed trial is,
   and resumed from it to the end; its artifacts go to a temporary store (UDALAB_ARTIFACTS), built by
   the first row that needs each and read by the later ones.

Measured over both runs: the peak memory (CUDA's peak allocated on a GPU; on a CPU the process's peak
resident memory above its start, Linux's VmHWM: torch keeps no CPU allocator statistics), seconds
per training iteration (the median over iterations without an evaluation, checkpoint or stage change
between them; else the run's own clock), the trained networks' parameters. A trial's hours are the
paper schedule's iterations at a seconds-per-iteration that is measured here or given
(`--seconds-per-iteration published`: the papers' training times), a node's boot added for its
instance-hours (cluster.yaml's `metadata.udalab`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from udalab.analysis.costs import costs, published_seconds
from udalab.core.machine import CHECKOUT
from udalab.methods.engine.run import LocalSession

CLUSTER_YAML = CHECKOUT / "cluster.yaml"
# The real datasets' image sizes (W, H) (VOC's vary: a typical one) and Cityscapes' train images,
# which UDAS's `labelled` counts.
REAL_SIZES = {"gta5": (1914, 1052), "cityscapes": (2048, 1024), "synthia": (1280, 760), "mfnet": (640, 480),
              "voc": (500, 375)}
CITYSCAPES_TRAIN = 2975
TRAIN_IMAGES = 4
VAL_IMAGES = {"mfnet": 2}   # a day and a night image: MML scores each apart; every other dataset: 1
UNLABELLED_IMAGES = 2        # Cityscapes' train_extra: UDAS's pool when every train image is labelled
GIB = 2 ** 30
LR_FACTOR = 1e-6   # the main learning rate of a preflight run, relative to the paper's


class Stopped(Exception):
    """The first run of a row, stopped right after its first checkpoint, as a killed trial is."""


class PreflightSession(LocalSession):
    """A LocalSession that times every training iteration (from one iteration's end to the next's,
    left out when a report, and so an evaluation, a checkpoint or a stage change, came between) and,
    with stop=True, stops the run right after its first checkpoint."""

    def __init__(self, checkpoint_dir: Path, device: str | None, progress: bool, stop: bool):
        super().__init__(checkpoint_dir, device=device, progress=progress)
        self.stop, self.iterations, self.seconds = stop, 0, []
        self._last: float | None = None

    def progress(self, iteration: int, total: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now
        self.iterations += 1
        super().progress(iteration, total)

    def report(self, metrics: dict, save=None) -> None:
        super().report(metrics, save)
        self._last = None
        if self.stop and save is not None:
            self.close()
            raise Stopped(f"stopped after the checkpoint of iteration {metrics['iteration']}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """Yields a dict that holds, after the block, `bytes` (the peak memory of what the block allocated)
    and `how`: on CUDA the caching allocator's peak allocated above what was allocated at the start; on
    a CPU the process's peak resident memory above its resident memory at the start (Linux's VmHWM,
    reset at the start): torch's CPU allocations, which are malloc's, and what else the block keeps
    resident (the allocator's free but unreturned pages, libraries' scratch buffers). torch keeps no
    CPU allocator statistics, and torch.profiler's memory events slow a large network's run many fold."""
    out: dict = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        try:
            yield out
        finally:
            out.update(bytes=torch.cuda.max_memory_allocated(device) - base, how="CUDA peak allocated")
        return
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # what earlier rows freed goes back to the OS, so it is not reused unseen
    status = Path("/proc/self/status")
    status.with_name("clear_refs").write_text("5")  # the peak resident size (VmHWM) restarts from now
    base = _status_kib(status, "VmRSS")
    try:
        yield out
    finally:
        out.update(bytes=(_status_kib(status, "VmHWM") - base) * 1024,
                   how="CPU: the process's peak resident memory above the block's start (Linux VmHWM)")


def _status_kib(status: Path, key: str) -> int:
    """A kB field of /proc/self/status."""
    return int(next(line.split()[1] for line in status.read_text().splitlines() if line.startswith(f"{key}:")))


# ---------------------------------------------------------------------------------------
# A row's config and data.


def shortened_and_scaled(config: dict, iterations: int, scale: float) -> dict:
    """The overrides that make `config`'s run a preflight run: every stage `iterations` long, evaluated
    (and checkpointed) halfway and at its end, every size scaled, random init, the learning rate x
    LR_FACTOR; the same for the runs it trains inside it (their overrides under the key `nested_runs`
    names)."""
    from udalab.methods.engine.registry import get_method

    method = get_method(config["method"])
    hp = method.hparams(config)
    out = {**hp.scaled(scale), **hp.shortened(iterations, max(1, (iterations + 1) // 2))}
    fields = {f.name for f in dataclasses.fields(hp)}
    if "pretrained" in fields:
        out["pretrained"] = "none"
    if "lr" in fields:  # random weights at the paper's rate can diverge within the run (a random ResNet-101
        out["lr"] = hp.lr * LR_FACTOR  # under frozen BatchNorm); the rate changes neither memory nor time
    for key, nested in hp.nested_runs().items():
        out[key] = shortened_and_scaled(nested, iterations, scale)
    return out


def row_config(study, row: dict, settings: dict, iterations: int, scale: float, generated: bool) -> dict:
    """The preflight config of one row: its trial's config at the first seed, made a preflight run; on
    generated data, UDAS's `labelled` as the same share of the generated train split (at least one
    image where the row labels any)."""
    from udalab.methods.engine.registry import get_method
    from udalab.studies.run.trials import trial_run_config

    config = trial_run_config({"row": row, "seed": study.seeds[0]}, settings)
    config.update(shortened_and_scaled(config, iterations, scale))
    labelled = getattr(get_method(config["method"]).hparams(config), "labelled", 0)
    if generated and labelled > 0:
        config["labelled"] = min(TRAIN_IMAGES, math.ceil(TRAIN_IMAGES * labelled / CITYSCAPES_TRAIN))
    return config


def dataset_names(study, settings: dict) -> set[str]:
    """The root keys of every dataset the study's rows read (all MFNet views: mfnet)."""
    from udalab.datasets import root_key

    names = {settings["source"], settings["target"]}
    names |= {row[k] for row in study.rows for k in ("source", "target") if k in row}
    return {root_key(n) for n in names}


def generate_data(names, scale: float, folder: Path) -> Path:
    """<folder>/<name>: TRAIN_IMAGES train and one val image (MFNet two; a source-only dataset none) of
    each dataset and UNLABELLED_IMAGES of Cityscapes' train_extra, at its real size x `scale`, in its
    real format (the mini twins' renderers)."""
    from udalab.datasets.mini import SPECS, make_mini

    for name in sorted(names):
        size = tuple(max(16, round(side * scale)) for side in REAL_SIZES[name])
        count = {"train": TRAIN_IMAGES, "val": VAL_IMAGES.get(name, 1), "train_extra": UNLABELLED_IMAGES}
        make_mini(name, folder / name, count={k: n for k, n in count.items() if k in SPECS[name]["splits"]}, size=size)
    return folder


# ---------------------------------------------------------------------------------------
# One row: trained to its first checkpoint, stopped, resumed to the end, measured.


def run_row(config: dict, folder: Path, device: str | None, progress: bool) -> dict:
    """Train `config` until its first checkpoint, stop, resume from it to the end (checkpoints in
    `folder`); returns the measurement: memory, seconds per iteration, parameters, the last report."""
    from udalab.methods.engine.registry import train_loop

    first = PreflightSession(folder, device, progress, stop=True)
    started = time.perf_counter()
    with peak_memory(first.device) as memory:
        try:
            train_loop(config, first)
            raise RuntimeError("the run ended without writing a checkpoint, so its resume could not be checked")
        except Stopped:
            pass
        second = PreflightSession(folder, device, progress, stop=False)
        step = train_loop(config, second)
        second.close()
    seconds, how = seconds_per_iteration(first, second)
    params = {id(p): p.numel() for net in step.networks for p in net.parameters()}
    return {"params": round(sum(params.values()) / 1e6, 3), "peak_memory_gb": round(memory["bytes"] / GIB, 3),
            "memory_measured_as": memory["how"], "seconds_per_iteration": seconds, "seconds_measured_as": how,
            "resumed_at": first.reports[-1]["iteration"], "wall_seconds": round(time.perf_counter() - started, 1),
            "metrics": finite(second.reports[-1])}


def seconds_per_iteration(*sessions: PreflightSession) -> tuple[float | None, str]:
    """The median of the iterations timed alone (no report between two), else the runs' own clocks
    (data + step + update, evaluation and checkpoints left out) over their iterations."""
    timed = [s for session in sessions for s in session.seconds]
    if timed:
        return round(statistics.median(timed), 4), f"median of {len(timed)} iterations timed alone"
    trained = sum(session.iterations for session in sessions)
    clock = sum(session.reports[-1].get(f"time.{phase}", 0.0) for session in sessions if session.iterations
                for phase in ("data", "step", "update"))
    if not trained:
        return None, "no iteration trained"
    return round(clock / trained, 4), f"the runs' clocks (data + step + update) over {trained} iterations"


def finite(report: dict) -> dict:
    """A report with NaN and infinities as None (strict JSON)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()}


# ---------------------------------------------------------------------------------------
# What a trial costs at the paper's schedule.


def cluster_settings(path: Path = CLUSTER_YAML) -> dict:
    """cluster.yaml's `metadata.udalab`: the worker's price, GPU memory and boot minutes."""
    import yaml

    if not path.is_file():
        return {}
    return ((yaml.safe_load(path.read_text()) or {}).get("metadata") or {}).get("udalab") or {}


def estimate_seconds(method: str, measured: float | None, device: str, source: str) -> tuple[float | None, str]:
    """The seconds per iteration a trial's hours are estimated from: `source` = measured (this run's,
    on `device`), published (the method's paper), a number, or a JSON file {method: seconds}."""
    if source == "measured":
        return measured, f"measured here on {device}"
    if source == "published":
        return published_seconds(method)
    if Path(source).is_file():
        given = json.loads(Path(source).read_text())
        return (float(given[method]), f"given in {source}") if method in given else \
            (None, f"unknown: {source} gives no time of {method}")
    try:
        return float(source), "given on the command line"
    except ValueError:
        raise SystemExit(f"--seconds-per-iteration {source!r}: use measured, published, a number of seconds or "
                         f"a JSON file {{method: seconds}}") from None


# ---------------------------------------------------------------------------------------
# The command.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="udalab preflight", description=__doc__.split("\n\n")[0])
    p.add_argument("study")
    p.add_argument("--rows", type=int, nargs="+", default=None, metavar="I", help="only these grid rows (0-based)")
    p.add_argument("--size-scale", type=float, default=1.0, metavar="F",
                   help="scale every image size (the data's and the config's) by F (default 1: the paper's)")
    p.add_argument("--iterations", type=int, default=4, metavar="N",
                   help="iterations of every stage (default 4: evaluated and checkpointed at 2 and 4)")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                   help="the GPU's memory in GiB that fits_gpu compares with (default: cluster.yaml's worker's)")
    p.add_argument("--price", type=float, default=None, metavar="USD_PER_HOUR",
                   help="a worker's price per hour (default: cluster.yaml's worker's on-demand price)")
    p.add_argument("--boot-minutes", type=float, default=None,
                   help="a node's start, install and data sync (default: cluster.yaml's)")
    p.add_argument("--seconds-per-iteration", default="measured", metavar="SOURCE",
                   help="what trial-hours are estimated from: measured (here), published (the papers' training "
                        "times; unknown for the others), a number, or a JSON file {method: seconds}")
    p.add_argument("--data-root", default=None, help="the real datasets as <root>/<name> (default: generated)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every row")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda where there is one)")
    p.add_argument("--json", default=None, metavar="FILE", help='write {"rows": [...]} here')
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str], load_study) -> int:
    """`udalab preflight ARGV`; `load_study(name)` gives the Study (studies/cli.py's, which calls this)."""
    args = build_parser().parse_args(argv)
    if args.iterations < 1 or args.size_scale <= 0:
        raise SystemExit("--iterations must be >= 1 and --size-scale > 0")
    study = load_study(args.study)
    cluster = cluster_defaults(args)
    with tempfile.TemporaryDirectory(prefix="udalab-preflight-") as tmp, artifact_store(Path(tmp) / "artifacts"):
        results = run_rows(study, args, Path(tmp), cluster)
    print_table(study.name, results, args)
    if args.json:
        out = {"study": study.name, "seeds": list(study.seeds), "size_scale": args.size_scale,
               "iterations": args.iterations,
               "data": args.data_root or "generated", "seconds_per_iteration_from": args.seconds_per_iteration,
               "cluster": cluster, "rows": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


def cluster_defaults(args) -> dict:
    """The GPU memory, price and boot minutes rows are judged by: the command line's, else cluster.yaml's."""
    meta = cluster_settings()
    boot = meta.get("node_boot_minutes")
    values = {"gpu_memory_gb": args.gpu_memory if args.gpu_memory is not None else meta.get("worker_gpu_memory_gb"),
              "price_usd_per_hour": args.price if args.price is not None else meta.get("worker_price_usd_per_hour"),
              "boot_minutes": args.boot_minutes if args.boot_minutes is not None else
              (sum(boot.values()) if isinstance(boot, dict) else boot)}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise SystemExit(f"{CLUSTER_YAML} gives no {', '.join(missing)} (metadata.udalab): pass --gpu-memory, "
                         f"--price and --boot-minutes")
    return values


@contextlib.contextmanager
def artifact_store(path: Path):
    """UDALAB_ARTIFACTS set to `path` inside the block (what the rows build stays out of the real store)."""
    before = os.environ.get("UDALAB_ARTIFACTS")
    os.environ["UDALAB_ARTIFACTS"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("UDALAB_ARTIFACTS", None)
        else:
            os.environ["UDALAB_ARTIFACTS"] = before


def run_rows(study, args, tmp: Path, cluster: dict) -> list[dict]:
    """Every picked row, one after another, each its result dict (a failing row: ok False, its error)."""
    from tqdm import tqdm

    from udalab.studies.run.trials import grid, trial_settings

    ns = argparse.Namespace(preset="paper", smoke=False, set=args.set, data_root=args.data_root, rows=args.rows,
                            seeds=None)
    rows = grid(study, ns)[0]
    indices = args.rows or list(range(len(rows)))
    if args.data_root is None:
        names = dataset_names(study, trial_settings(study, ns))
        ns.data_root = str(generate_data(names, args.size_scale, tmp / "data"))
    settings = trial_settings(study, ns)
    results = []
    for index, row in tqdm(list(zip(indices, rows)), desc=f"preflight {study.name}", unit="row",
                           disable=args.no_progress):
        result = preflight_row(study, index, row, settings, args, tmp / f"row{index}", cluster)
        tqdm.write(row_line(result))
        results.append(result)
    return results


def preflight_row(study, index: int, row: dict, settings: dict, args, folder: Path, cluster: dict) -> dict:
    """One row's result: what it is, its measurement (or its error) and its trial's estimated cost."""
    import shutil

    from udalab.methods.engine.registry import get_method
    from udalab.studies.run.trials import trial_run_config

    paper = trial_run_config({"row": row, "seed": study.seeds[0]}, settings)
    result = {"study": study.name, "row": index, "config": row, "method": row["method"], "ok": False, "error": None,
              "pretrained": "none", "size_scale": args.size_scale, "iterations": args.iterations,
              "device": device_name(args.device), "params": None, "peak_memory_gb": None,
              "seconds_per_iteration": None, "metrics": None}
    try:
        result["paper_iterations"] = get_method(row["method"]).hparams(paper).total_iterations
        config = row_config(study, row, settings, args.iterations, args.size_scale, args.data_root is None)
        result.update(run_row({**config, "device": args.device} if args.device else config, folder, args.device,
                              not args.no_progress))
        result.update(ok=True)
    except Exception as e:  # a failing row is reported with its error; the others still run
        result["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    memory = result.get("peak_memory_gb")
    result["gpu_memory_gb"] = cluster["gpu_memory_gb"]
    result["fits_gpu"] = None if memory is None else memory <= cluster["gpu_memory_gb"]
    seconds, source = estimate_seconds(row["method"], result.get("seconds_per_iteration"), result["device"],
                                       args.seconds_per_iteration)
    result.update(estimated_seconds_per_iteration=seconds, estimate_from=source,
                  price_usd_per_hour=cluster["price_usd_per_hour"], boot_minutes=cluster["boot_minutes"],
                  **costs(seconds, result.get("paper_iterations", 0), cluster["price_usd_per_hour"],
                          cluster["boot_minutes"]))
    return result


def device_name(device: str | None) -> str:
    """The device a row runs on, in words: the GPU's name, or the CPU's and torch's threads."""
    from udalab.core.machine import cpu_model

    if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def _num(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def row_line(r: dict) -> str:
    """One row's result in one line (printed as each finishes)."""
    if not r["ok"]:
        return f"row {r['row']} ({r['method']}): FAILED: {r['error']}"
    return (f"row {r['row']} ({r['method']}): {r['params']:.1f} M params, peak {r['peak_memory_gb']:.2f} GiB, "
            f"{_num(r['seconds_per_iteration'], 3)} s/it, trial {_num(r['trial_hours'])} h")


def print_table(name: str, results: list[dict], args) -> None:
    """The rows' results as one table on stdout, with what the numbers are."""
    header = ["row", "method", "overrides", "params (M)", "peak (GiB)", "fits GPU", "s/it here", "s/it used",
              "trial h", "instance h", "cost $", "ok"]
    lines = [header]
    for r in results:
        shown = {k: v for k, v in r["config"].items() if k != "method"}
        lines.append([str(r["row"]), r["method"], json.dumps(shown)[:40], _num(r.get("params"), 1),
                      _num(r.get("peak_memory_gb")), {True: "yes", False: "NO", None: "–"}[r["fits_gpu"]],
                      _num(r.get("seconds_per_iteration"), 3), _num(r["estimated_seconds_per_iteration"], 3),
                      _num(r["trial_hours"]), _num(r["instance_hours"]), _num(r["cost_usd"]),
                      "yes" if r["ok"] else "FAILED"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(f"\npreflight {name}: paper preset, sizes x {args.size_scale:g}, {args.iterations} iterations a stage, "
          f"pretrained='none', lr x {LR_FACTOR:g} (memory and time depend on neither)")
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    first = results[0] if results else {}
    print(f"memory: {first.get('memory_measured_as', '–')}; device: {first.get('device', '–')}; GPU: "
          f"{first.get('gpu_memory_gb')} GiB; s/it used: {first.get('estimate_from', '–')}; instance-hours: the "
          f"trial + {first.get('boot_minutes')} min of node boot at {first.get('price_usd_per_hour')} USD/h")
    for r in results:
        if not r["ok"]:
            print(f"row {r['row']} FAILED: {r['error']}")
