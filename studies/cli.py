"""The `udalab` command: run, list and report studies, train one method loop, score predictions,
the dataset tools (`udalab data ...`) and the weights check (`udalab weights check`)."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
from pathlib import Path

import udalab.studies as studies_package
from udalab.core import layout, storage
from udalab.studies.run.command import main as run_main
from udalab.studies.run.trials import write_study_report

# The modules of udalab.studies that declare no STUDY: the declaration and this command (the
# runner is the studies.run package).
NOT_STUDIES = {"study", "cli"}
REPORTS_CACHE = Path.home() / ".cache" / "udalab" / "reports"   # where `udalab report --open` puts fetched reports


def study_names() -> list[str]:
    """Every study module of udalab.studies (each declares a STUDY)."""
    return sorted(m.name for m in pkgutil.iter_modules(studies_package.__path__)
                  if not m.ispkg and m.name not in NOT_STUDIES and not m.name.startswith("_"))


def load_study(name: str):
    """The STUDY of udalab.studies.<name>; an unknown name is refused with the list."""
    if name not in study_names():
        raise SystemExit(f"unknown study {name!r}; available: {', '.join(study_names())}")
    return importlib.import_module(f"udalab.studies.{name}").STUDY


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udalab", description="Domain-adaptive segmentation studies on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) a study: udalab run STUDY [study options]", add_help=False)
    p_run.add_argument("study")
    sub.add_parser("studies", help="list the studies")
    sub.add_parser("methods", help="list the methods")
    sub.add_parser("preflight", help="each row of a study at its paper preset, a few iterations: peak memory, "
                                     "seconds per iteration, cost: udalab preflight STUDY [options]", add_help=False)
    sub.add_parser("records", help="render / check / list the docs tables generated from records/: "
                                   "udalab records render|check|list", add_help=False)

    p_train = sub.add_parser("train", help="run one method loop in this process, without Ray")
    p_train.add_argument("method")
    p_train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="run config / hyperparameter override (JSON values), repeatable")
    p_train.add_argument("--checkpoint-dir", default=None, help="save checkpoints here and resume from them")
    p_train.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr) of the iterations")

    p_predict = sub.add_parser("predict", help="write a trained run's predictions of a dataset split as PNGs in the "
                                               "dataset's own format (score them with udalab eval)")
    p_predict.add_argument("run", help="a trial's folder in a study's results, its Train run folder under _train/ "
                                       "(a local study's _train/train-<trial>), or a checkpoint folder / its state.pt")
    p_predict.add_argument("--dataset", required=True,
                           help="the dataset to predict: cityscapes, voc, or an MFNet view such as mfnet_rgbt")
    p_predict.add_argument("--root", default=None,
                           help="the dataset's folder (default: the run's data_root for it, else the mini twin)")
    p_predict.add_argument("--split", default="val", help="split to predict (default: val)")
    p_predict.add_argument("--out", required=True, help="folder for the prediction PNGs (and predictions.json)")
    p_predict.add_argument("--colour", default=None, metavar="DIR",
                           help="also write colour pictures in the dataset's palette here (not inside --out)")
    p_predict.add_argument("--device", default=None, help="torch device (default: cuda if there is one, else cpu)")
    p_predict.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr) of the images")

    p_report = sub.add_parser("report", help="write <results>/<study>/trials.parquet, report.html and "
                                             "<results>/index.html; --open: fetch a study's report to open")
    p_report.add_argument("study", nargs="*", help="study folder(s) under --results, e.g. intrada_split "
                                                   "(default: every study there)")
    p_report.add_argument("--results", default=os.environ.get("UDALAB_RESULTS", "results"),
                          help="results folder, local path or s3://... (default: $UDALAB_RESULTS, else ./results)")
    p_report.add_argument("--preset", default=None, choices=["mini", "smoke", "paper"],
                          help="what data the study ran on (default: as recorded in udalab_study.json)")
    p_report.add_argument("--no-figures", action="store_true", help="skip the PNG/SVG export of the figures")
    p_report.add_argument("--open", metavar="STUDY", default=None,
                          help="write nothing: copy STUDY's report.html and the results' index.html to a local "
                               "folder (--to) and print the path to open in a browser (a local study's own path)")
    p_report.add_argument("--to", default=str(REPORTS_CACHE),
                          help=f"with --open: the local folder (default {REPORTS_CACHE}/<bucket>/<prefix>/)")

    p_weights = sub.add_parser("weights", help="the backbones' ImageNet weights: udalab weights check [--backbones ...]")
    p_weights.add_argument("action", choices=["check"], help="check: list what is found where, and what is missing "
                                                             "(exit status 1 when a paper preset's backbone is)")
    p_weights.add_argument("--backbones", nargs="+", default=None, metavar="NAME",
                           help="resnet18 … resnet152, mit_b0 … mit_b5 (default: every backbone a method uses)")

    p_eval = sub.add_parser("eval", help="score saved prediction PNGs like cityscapesScripts")
    from udalab.analysis.score_predictions import add_eval_arguments

    add_eval_arguments(p_eval)
    from udalab.datasets.cli import add_arguments as add_data_arguments

    add_data_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        return _run(argv[1:])
    if argv[:1] == ["preflight"]:
        from udalab.studies.run.preflight import main as preflight_main

        return preflight_main(argv[1:], load_study)
    if argv[:1] == ["records"]:
        from udalab.analysis.records import main as records_main

        return records_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"studies": _studies, "methods": _methods, "train": _train, "report": _report, "data": _data,
                "eval": _eval, "weights": _weights, "predict": _predict}
    return commands[args.command](args) or 0


def _run(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: udalab run STUDY [--smoke] [--optuna] [--local] [--data-root DIR] [--address ADDR] ...\n"
              f"studies: {', '.join(study_names())}")
        return 0 if "-h" in argv or "--help" in argv else 2
    return run_main(load_study(argv[0]), argv[1:])


def _studies(args) -> int:
    for name in study_names():
        print(f"{name:28s} {(load_study(name).description or '').strip()}")
    return 0


def _methods(args) -> int:
    from udalab.methods import list_methods

    print("\n".join(list_methods()))
    return 0


def _train(args) -> int:
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
        reports = run_local(args.method, config, checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress)
    except (ConfigError, DatasetError, NonFiniteLossError, KeyError) as e:
        print(f"udalab train: {e}", file=sys.stderr)
        return 2
    for r in reports:
        print(json.dumps({k: v for k, v in r.items() if not k.startswith("iou.")}))
    return 0


def _weights(args) -> int:
    from udalab.methods.engine.registry import backbones_used
    from udalab.methods.nets.weights import WeightsError, check

    try:
        return check(args.backbones, backbones_used())
    except WeightsError as e:        # an unknown backbone name
        print(f"udalab weights: {e}", file=sys.stderr)
        return 2


def _data(args) -> int:
    from udalab.datasets.cli import run as run_data

    return run_data(args)


def _eval(args) -> int:
    from udalab.analysis.score_predictions import run_eval

    run_eval(args)
    return 0


def _predict(args) -> int:
    from udalab.core.layout import CheckpointError
    from udalab.datasets import DatasetError
    from udalab.methods.engine import ConfigError
    from udalab.methods.engine.predict import PredictError, predict_run

    if "://" in args.run:
        raise SystemExit(f"udalab predict: {args.run} is not a local folder; copy the run's folder here first")
    try:
        info_path = predict_run(args.run, args.dataset, args.out, root=args.root, split=args.split,
                                colour_dir=args.colour, device=args.device, progress=not args.no_progress)
    except (CheckpointError, ConfigError, DatasetError, PredictError) as e:
        print(f"udalab predict: {e}", file=sys.stderr)
        return 2
    info = json.loads(info_path.read_text())
    print(f"wrote {info['images']} predictions of {info['dataset']} {info['split']} ({info['method']}, iteration "
          f"{info['iteration']}, {info['run']}) to {args.out}")
    print(f"score them: udalab eval --dataset {info['dataset']} --root {info['root']} --split {info['split']} "
          f"--pred-dir {args.out}")
    return 0


def _report(args) -> int:
    if args.open:
        return open_report(args.results, args.open, Path(args.to))
    from udalab.analysis import store
    from udalab.analysis.report import study_dirs, write_index

    results = args.results if "://" in args.results else str(Path(args.results).resolve())
    names = args.study or study_dirs(results)
    if not names:
        print(f"no studies under {results}: run one first, e.g. python studies/intrada_split.py --smoke",
              file=sys.stderr)
    status = 0
    for name in names:
        study_dir = storage.uri_join(results, name)
        base = layout.study_of_dir(name)
        study = load_study(base) if base in study_names() else None
        try:
            df = store.load_trials(study_dir)
        except store.StoreError as e:
            print(f"udalab report: {e}", file=sys.stderr)
            status = 2
            continue
        if len(df):
            print(store.write_trials(study_dir, df))
        print(write_study_report(study, study_dir, df, args.preset, static_figures=False if args.no_figures else None,
                                 index=False))
    print(write_index(results))
    return status


def open_report(results: str, study: str, to: Path) -> int:
    """Print the local path of `study`'s report.html: for results on a URI (s3://...), after copying
    it to <to>/<bucket and prefix>/<study>/report.html with the results' index.html beside (so the
    index's link to it works); a local results folder's own file as it is."""
    fs, root = storage.fs_path(results)
    report = storage.join_path(root, study, layout.REPORT_FILE)
    if not storage.is_file(fs, report):
        raise SystemExit(f"no {layout.REPORT_FILE} in {storage.uri_join(results, study)}: write it with "
                         f"`udalab report {study} --results {results}` (or check the study's folder name: "
                         f"`udalab report --results {results}` lists them)")
    if storage.is_local(results):
        print(Path(report))
        return 0
    local = to / root.strip("/")
    for name in (storage.join_path(study, layout.REPORT_FILE), layout.INDEX_FILE):
        source = storage.join_path(root, name)
        if storage.is_file(fs, source):
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(source) as f:
                (local / name).write_bytes(f.read())
    print(f"copied from {storage.uri_join(results, study)}; open:")
    print(local / study / layout.REPORT_FILE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
