"""Milliseconds per training iteration of every method at mini size, and where they go: data,
the step's parts (forward, backward, EMA, pseudo labels, mixing, discriminators: what the
method's Step times), the optimiser update, and the evaluations' seconds.

Each method runs its mini preset in this process (engine.run_local, no Ray) on the data and
switches of the last row of the first study that trains it, for `--iterations` iterations of each stage and one evaluation at the
end (val, the held-out test split and the pictures), reading the phases from its last report
(methods/engine/__init__.py Clock).

    python benchmarks/step_breakdown.py                                  # every method, 1 thread
    python benchmarks/step_breakdown.py --methods daformer hrda --set precision=bf16
    python benchmarks/step_breakdown.py --json records/step_breakdown_NAME/steps.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

# each stage of a multi-stage method as long as --iterations, and one self-training round
STAGE_KEYS = {"intrada": ("intra_iterations",), "udas": ("st_iterations",)}
FIXED = {"udas": {"rounds": 1}}


def method_data() -> dict[str, dict]:
    """{method: the run config of the last row that trains it in the first study that does}: its data,
    fixed values and the row's switches (a study's last row is its full method: HRDA's LR+HR 1.0,
    DAFormer with every strategy)."""
    from udalab.studies.cli import load_study, study_names

    out = {}
    for name in study_names():
        study = load_study(name)
        found = {}
        for row in study.grid_rows():
            found[row["method"]] = {"method": row["method"], "source": study.source, "target": study.target,
                                    **study.fixed, **{k: v for k, v in row.items() if k != "method"}}
        out = {**found, **out}
    return out


def breakdown(reports: list[dict]) -> dict:
    """ms per iteration of data / step / update and each timed step part; seconds of evaluation."""
    last = reports[-1]
    its = last["iteration"]
    row = {"iterations": its, "evaluate_s": last.get("time.evaluate", 0.0), "setup_s": last.get("time.setup", 0.0)}
    for phase in ("data", "step", "update"):
        row[f"{phase}_ms"] = 1000 * last.get(f"time.{phase}", 0.0) / its
    row["parts_ms"] = {k.removeprefix("time.step."): 1000 * v / its for k, v in last.items()
                       if k.startswith("time.step.")}
    row["ms_per_iteration"] = row["data_ms"] + row["step_ms"] + row["update_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=None, help="default: every method a study trains")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a study's trial gets its CPU share)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. precision=bf16")
    p.add_argument("--json", default=None)
    ns = p.parse_args(argv)
    torch.set_num_threads(ns.threads)
    from udalab.methods import run_local
    from udalab.studies.run.trials import parse_sets

    sets = parse_sets(ns.set)
    configs = method_data()
    rows = []
    for method in ns.methods or sorted(configs):
        n = ns.iterations
        config = {**configs[method], "preset": "mini", "seed": 0, "iterations": n, "eval_every": n,
                  **{k: n for k in STAGE_KEYS.get(method, ())}, **FIXED.get(method, {}), **sets}
        row = {"method": method, **breakdown(run_local(method, config))}
        rows.append(row)
        parts = ", ".join(f"{k} {v:.0f}" for k, v in row["parts_ms"].items())
        print(f"{method:14s} {row['ms_per_iteration']:8.0f} ms/it  (data {row['data_ms']:.0f}, step "
              f"{row['step_ms']:.0f}{': ' + parts if parts else ''}; update {row['update_ms']:.0f})  "
              f"evaluation {row['evaluate_s']:.1f} s, setup {row['setup_s']:.1f} s", flush=True)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"threads": ns.threads, "torch": torch.__version__, "set": sets, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
