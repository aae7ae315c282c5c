"""What one invocation of a study runs, for both runners: the trials' configs, their checks before
anything starts, and the study's results folder (its name, its recorded options, --restart)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pyarrow.fs as pafs

from udalab.core import layout, storage
from udalab.studies.study import Study

# The options a study's results hold (udalab_study.json): a resume with others is refused.
SHARED_OPTIONS = ("preset", "data_root", "fixed", "source", "target")


def parse_sets(items: list[str]) -> dict:
    """--set KEY=VALUE items as {key: JSON value, else the string}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set iterations=2000")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def data_roots(root: str | None, names) -> dict | None:
    """{root key: <root>/<root key>} for the datasets named (every MFNet view reads <root>/mfnet)."""
    if not root:
        return None
    from udalab.datasets import root_key

    roots = {root_key(name): str(Path(root) / root_key(name)) for name in names}
    for name, path in roots.items():
        if not Path(path).is_dir():
            raise SystemExit(f"--data-root {root}: expected the {name} dataset in {path} (a folder named "
                             f"'{name}' under the data root); download it there or leave --data-root unset "
                             f"to use the embedded mini data")
    return roots


def trial_settings(study: Study, args) -> dict:
    """What every trial of one invocation shares: method, data, preset and fixed hyperparameters.

    The data is the study's own (source, target), unless `--set source=...` / `target=...`
    names another; the data roots cover every dataset a row names too."""
    preset = args.preset or ("smoke" if args.smoke else ("paper" if args.data_root else "mini"))
    fixed = {**study.fixed, **study.budget.get(preset, {}), **parse_sets(args.set)}
    source, target = fixed.pop("source", study.source), fixed.pop("target", study.target)
    names = {source, target} | {row[k] for row in study.rows for k in ("source", "target") if k in row}
    return dict(method=study.method, source=source, target=target, preset=preset, fixed=fixed,
                data_root=data_roots(args.data_root, sorted(names)))


def trial_run_config(config: dict, settings: dict) -> dict:
    """The method's config of one trial: study defaults < fixed (--set, budget) < searched values
    and seed < the grid row. Nothing overwrites what a row or --set declares. A fixed key reaches
    the rows whose method reads it (`--set d_layers=4` sets ADVENT's discriminator and leaves its
    source-only baseline, which has none, as it is); `check_trial_configs` refuses one no row reads."""
    from udalab.methods import get_method

    method = get_method(config.get("row", {}).get("method", settings["method"]))
    method_config = {"method": settings["method"], "source": settings["source"], "target": settings["target"],
                     "data_root": settings["data_root"], "preset": settings["preset"],
                     **{k: v for k, v in settings["fixed"].items() if method.reads(k)}}
    method_config.update({k: v for k, v in config.items() if k != "row"})
    method_config.update(config.get("row", {}))
    return method_config


def grid(study: Study, args) -> tuple[list[dict], list[int]]:
    """The grid's rows and seeds of one invocation (--smoke: the smoke rows and the first seed)."""
    rows = study.grid_rows()
    seeds = list(getattr(args, "seeds", None) or study.seeds)
    picked = list(getattr(args, "rows", None) or range(len(rows)))
    bad = [i for i in picked if not 0 <= i < len(rows)]
    if bad:
        raise SystemExit(f"--rows {bad}: the study has rows 0..{len(rows) - 1}")
    if args.smoke:
        picked, seeds = [i for i in study.smoke_rows if i in picked] or picked, seeds[:1]
    return [rows[i] for i in picked], seeds


def search_seeds(study: Study, args) -> list[int]:
    """The seeds each searched configuration is scored on: the study's (or --seeds); --smoke: the
    first, unless --seeds names them."""
    seeds = list(getattr(args, "seeds", None) or study.seeds)
    return seeds if getattr(args, "seeds", None) or not args.smoke else seeds[:1]


def check_trial_configs(study: Study, args, settings: dict) -> None:
    """The config of every grid row this invocation runs (--rows, --smoke) or, with --optuna, each
    searched value at both ends of its range, through the method's own hyperparameter checks: a
    bad name or value raises SystemExit naming it. (A --set for one method's rows does not trip
    over another method's rows left out by --rows.)"""
    from udalab.methods import check_config, get_method
    from udalab.methods.engine import ConfigError

    if args.optuna and study.search:
        configs = []
        for name, domain in study.search.items():
            ends = getattr(domain, "categories", None) or [getattr(domain, "lower", None), getattr(domain, "upper", None)]
            configs += [{name: v} for v in ends if v is not None]
    else:
        configs = [{"row": row} for row in grid(study, args)[0]]
    methods = {c.get("row", {}).get("method", study.method) for c in configs or [{}]}
    unread = sorted(k for k in settings["fixed"] if not any(get_method(m).reads(k) for m in methods))
    if unread:
        raise SystemExit(f"{study.name}: no row of this run reads {', '.join(map(repr, unread))} (--set or the "
                         f"study's fixed settings; rows' methods: {', '.join(sorted(methods))}); "
                         f"no trial was started")
    for config in configs or [{}]:
        method_config = trial_run_config({**config, "seed": study.seeds[0]}, settings)
        try:
            check_config(method_config, data=True)
        except ConfigError as e:
            shown = config.get("row", config)
            raise SystemExit(f"{study.name}: {e} (in {shown}); no trial was started") from e


# ---------------------------------------------------------------------------------------
# The study's results folder.


def study_dir_name(study: Study, args) -> str:
    """The study's results folder: <study>[_optuna][_smoke][_local] (--local: the grid without Ray)."""
    return layout.study_dir_name(study.name, optuna=args.optuna, smoke=args.smoke, local=args.local)


def results_uri(path: str) -> str:
    """--results as an absolute path, or the URI it is."""
    return path if "://" in path else str(Path(path).resolve())


def study_options(settings: dict, args, grid_recorded: bool) -> dict:
    """The options a study's results are tied to. `grid_recorded`: --seeds and --rows too, when
    given (a Tune sweep restores its grid as it began; the local runner lets the grid grow). The
    seeds, rows and workers are recorded only when given, so that studies begun before they were
    recorded still resume."""
    options = {k: settings[k] for k in SHARED_OPTIONS}
    if grid_recorded and args.seeds:
        options["seeds"] = list(args.seeds)
    if grid_recorded and args.rows:
        options["rows"] = list(args.rows)
    if args.workers != 1:         # the global batch grows with the workers: another count is another study
        options["workers"] = args.workers
    return options


def check_same_options(study_dir: str, options: dict) -> None:
    """A resumed study must run with the options it started with, or its rows would mix; a new
    study records them."""
    fs, path = storage.fs_path(study_dir)
    file = storage.join_path(path, layout.OPTIONS_FILE)
    if storage.is_file(fs, file):
        before = json.loads(storage.read_text(fs, file) or "{}")
        if before != json.loads(json.dumps(options)):
            changed = sorted(k for k in set(before) | set(options) if before.get(k) != options.get(k))
            raise SystemExit(
                f"{study_dir} was started with other options ({', '.join(changed)}: was "
                f"{ {k: before.get(k) for k in changed} }, now { {k: options.get(k) for k in changed} }). "
                f"Re-run with the same options to resume, or add --restart to start over "
                f"(the old results are moved aside, not deleted).")
        return
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(file) as f:
        f.write(json.dumps(options, indent=1).encode())


def open_study_dir(study: Study, args, settings: dict, grid_recorded: bool) -> tuple[str, str]:
    """(folder name, URI) of the study's results, checked and ready: every trial config checked
    (nothing starts on a bad value), the old results moved aside with --restart, the options
    recorded or, on a resume, compared with those recorded."""
    check_trial_configs(study, args, settings)
    results = results_uri(args.results)
    name = study_dir_name(study, args)
    study_dir = storage.uri_join(results, name)
    fs, path = storage.fs_path(study_dir)
    if args.restart and fs.get_file_info(path).type != pafs.FileType.NotFound:
        moved = storage.uri_join(results, f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        fs.move(path, storage.fs_path(moved)[1])
        print(f"--restart: the previous results were moved to {moved}")
    check_same_options(study_dir, study_options(settings, args, grid_recorded))
    return name, study_dir


def write_study_report(study: Study | None, study_dir: str, df, preset: str | None, **options):
    """Write the study's report.html (analysis.report.write_report; `options`: its keywords) and
    return its path; a folder of no known study (`study` None) or a study without a ReportSpec
    gets a plain report titled by the folder's name."""
    from udalab.analysis.report import ReportSpec, write_report

    spec = study.report if study is not None and study.report is not None else None
    if spec is not None and study.paired:
        spec = dataclasses.replace(spec, pairs=tuple(study.baseline_pairs()))
    return write_report(study_dir, spec or ReportSpec(title=storage.uri_name(study_dir)), df=df, preset=preset,
                        **options)

