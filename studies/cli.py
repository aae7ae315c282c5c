"""The `udalab` command."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys


def _studies() -> list[str]:
    import udalab.studies as pkg

    skip = {"study", "cli", "local"}   # the runner's modules; every other module declares a STUDY
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in skip and not m.name.startswith("_"))


def _load_study(name: str):
    if name not in _studies():
        raise SystemExit(f"unknown study {name!r}; available: {', '.join(_studies())}")
    return importlib.import_module(f"udalab.studies.{name}").STUDY


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="udalab", description="Domain-adaptive segmentation studies on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run (or resume) a study: udalab run STUDY [study options]",
                           add_help=False)
    p_run.add_argument("study")
    sub.add_parser("studies", help="list the studies")
    sub.add_parser("methods", help="list the methods")

    p_train = sub.add_parser("train", help="run one method loop in this process, without Ray")
    p_train.add_argument("method")
    p_train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="run config / hyperparameter override (JSON values), repeatable")
    p_train.add_argument("--checkpoint-dir", default=None, help="save checkpoints here and resume from them")

    p_report = sub.add_parser("report", help="write results/<study>/trials.parquet, report.html and "
                                             "results/index.html")
    p_report.add_argument("study", nargs="*", help="study folder(s) under --results, e.g. intrada_split "
                                                   "(default: every study there)")
    p_report.add_argument("--results", default="results", help="results folder (local path or s3://...)")
    p_report.add_argument("--preset", default=None, choices=["mini", "smoke", "paper"],
                          help="what data the study ran on (default: as recorded in udalab_study.json)")
    p_report.add_argument("--no-figures", action="store_true", help="skip the PNG/SVG export of the figures")

    p_eval = sub.add_parser("eval", help="score saved prediction PNGs like cityscapesScripts")
    from udalab.analysis.score_predictions import add_eval_arguments

    add_eval_arguments(p_eval)

    from udalab.datasets.cli import add_arguments as add_data_arguments

    add_data_arguments(sub)

    if argv[:1] == ["run"]:
        if len(argv) < 2 or argv[1].startswith("-"):
            print("usage: udalab run STUDY [--smoke] [--optuna] [--data-root DIR] [--address ADDR] ...\n"
                  f"studies: {', '.join(_studies())}")
            return 0 if "-h" in argv or "--help" in argv else 2
        from udalab.studies.study import main as study_main

        return study_main(_load_study(argv[1]), argv[2:])

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "studies":
        for name in _studies():
            print(f"{name:28s} {(_load_study(name).description or '').strip()}")
    elif args.command == "methods":
        from udalab.methods import list_methods

        print("\n".join(list_methods()))
    elif args.command == "train":
        from udalab.datasets import DatasetError
        from udalab.methods import run_local
        from udalab.methods.engine import ConfigError, NonFiniteLossError

        config = {"method": args.method}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
            config[key] = _parse_value(value)
        try:
            reports = run_local(args.method, config, checkpoint_dir=args.checkpoint_dir)
        except (ConfigError, DatasetError, NonFiniteLossError, KeyError) as e:
            print(f"udalab train: {e}", file=sys.stderr)
            return 2
        for r in reports:
            print(json.dumps({k: v for k, v in r.items() if not k.startswith("iou.")}))
    elif args.command == "report":
        return _report(args)
    elif args.command == "data":
        from udalab.datasets.cli import run as run_data

        return run_data(args)
    elif args.command == "eval":
        from udalab.analysis.score_predictions import run_eval

        run_eval(args)
    return 0


def _report(args) -> int:
    from pathlib import Path

    from udalab.analysis import store

    from udalab.core import storage
    from udalab.analysis.report import study_dirs, write_index, write_report
    from udalab.analysis.report_spec import ReportSpec
    from udalab.studies.study import study_of_dir

    results = args.results if "://" in args.results else str(Path(args.results).resolve())
    names = args.study or study_dirs(results)
    if not names:
        print(f"no studies under {results}: run one first, e.g. python studies/intrada_split.py --smoke",
              file=sys.stderr)
    status = 0
    for name in names:
        study_dir = storage.uri_join(results, name)
        base = study_of_dir(name)
        spec = _load_study(base).report if base in _studies() else None
        if spec is None:
            spec = ReportSpec(title=name)
        try:
            df = store.load_trials(study_dir)
        except store.StoreError as e:
            print(f"udalab report: {e}", file=sys.stderr)
            status = 2
            continue
        if len(df):
            print(store.write_trials(study_dir, df))
        print(write_report(study_dir, spec, df=df, preset=args.preset,
                           static_figures=False if args.no_figures else None, index=False))
    print(write_index(results))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
