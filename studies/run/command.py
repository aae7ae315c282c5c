"""A study's command line: `python studies/<study>.py [options]` and `udalab run STUDY [options]`.

Every study script ends with `raise SystemExit(main(STUDY))`; the options pick the runner: Ray
Tune (the default; --address for a cluster) or the local process pool (--local).
"""
from __future__ import annotations

import argparse
import logging
import os

from udalab.core import layout, storage
from udalab.studies.run import local, ray_tune
from udalab.studies.study import Study


def build_parser(study: Study | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python studies/{study.name}.py" if study else "udalab run",
        description=(study.description or f"Run the {study.name} study") if study else "Run a study",
    )
    p.add_argument("--smoke", action="store_true", help="seconds-scale run (tiny schedule, one seed, few rows)")
    p.add_argument("--optuna", action="store_true", help="run the study's Optuna search instead of its grid")
    p.add_argument("--asha", action="store_true", help="stop weak trials early with ASHA")
    p.add_argument("--num-samples", type=int, default=None, help="Optuna trials (default: the study's)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the real datasets as <root>/<name> (gta5/, cityscapes/); "
                        "unset: the embedded mini data")
    p.add_argument("--preset", default=None, choices=["mini", "paper", "smoke"],
                   help="hyperparameter preset (default: paper with --data-root, else mini)")
    p.add_argument("--results", default=os.environ.get("UDALAB_RESULTS", "results"),
                   help="results folder, local path or s3://... (default: $UDALAB_RESULTS, else ./results; "
                        "cluster.yaml sets it to the results bucket)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address ('auto' on a cluster started by ray up); --results must then be "
                        "a URI (s3://...) or a folder on a shared file system")
    p.add_argument("--workers", type=int, default=1,
                   help="Ray Train workers (data-parallel) per trial; recorded with the study's options")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, split over its workers (default: 1 per worker if the cluster has GPUs)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial, split over its workers")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: what fits here; on a cluster, no cap: the autoscaler adds nodes)")
    p.add_argument("--max-failures", type=int, default=None,
                   help="restarts of a trial from its last checkpoint after a failure, e.g. a lost node "
                        "(default: the study's on a cluster, 0 here)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter of every trial (JSON value), e.g. --set iterations=2000")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds of every grid row (default: the study's, e.g. 0 1 2)")
    p.add_argument("--rows", type=int, nargs="+", default=None, metavar="I",
                   help="run only these grid rows (0-based, in the study's order; default: all)")
    p.add_argument("--local", action="store_true",
                   help="run the grid without Ray, --jobs runs at a time in this machine's processes, into "
                        "<results>/<study>_local (for a machine without Ray, such as a lone GPU box)")
    p.add_argument("--jobs", type=int, default=1, help="with --local: runs at once (each --cpus-per-trial threads)")
    p.add_argument("--restart", action="store_true", help="move the old results aside and start over")
    p.add_argument("--no-report", action="store_true", help="skip writing report.html at the end")
    p.add_argument("--no-figures", action="store_true",
                   help="write report.html without the PNG/SVG copies of its figures (figures/, kaleido); "
                        "its interactive figures stay")
    p.add_argument("--ray-status", action="store_true",
                   help="print Ray Tune's full status table instead of the one-line progress")
    return p


def run_study(study: Study, args, callbacks: list | None = None) -> int:
    """Run (or resume) `study` with the command line's `args`: --local in local processes, else
    on Ray Tune (`callbacks`: more Ray Tune callbacks). With results on a URI (s3://...) the trials'
    shared artifacts live beside the studies (<results>/_artifacts), built once for every node."""
    if "://" in str(args.results) and not os.environ.get("UDALAB_ARTIFACTS"):
        os.environ["UDALAB_ARTIFACTS"] = storage.uri_join(args.results, layout.ARTIFACTS_DIR)
    if args.local:
        return local.run(study, args)
    return ray_tune.run(study, args, callbacks)


def main(study: Study, argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser(study).parse_args(argv)
    return run_study(study, args)
