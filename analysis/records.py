"""Records: every measured run the documentation reports, kept in the repository, and the tables
of docs/*.md generated from them.

    records/<experiment>/manifest.json    what was measured, the command, commit, machine, date,
                                          cpu_hours and the data files (REQUIRED_KEYS)
    records/<experiment>/<data files>     runs.jsonl (one finished run a line: its config and every
                                          report), trials.parquet (analysis.store's schema), *.json

    rec = read_record("mini_adaptation")  # rec.manifest, rec.runs(), rec.reports(), rec.trials(), rec.json()
    write_record("mini_gap_v3", ["results/mini_gap.json"], command=["python benchmarks/mini_gap.py ..."],
                 description="...")        # commit, machine, date and cpu_hours filled in here

A table in docs/*.md stands between marker comments and is the output of a renderer registered
under its name (analysis/record_tables.py); `render()` rewrites the docs, `render(check=True)`
lists every table that differs from what its records give (tests/test_records.py fails on one):

    <!-- table: mini_adaptation -->
    | ... generated ... |
    <!-- /table -->

    udalab records render | check | list
"""
from __future__ import annotations

import argparse
import datetime as dt
import difflib
import functools
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from udalab.core import layout
from udalab.core.machine import git_commit, machine

__all__ = ["Record", "RecordSet", "RecordError", "REQUIRED_KEYS", "DATA_SUFFIXES", "records_root", "list_records",
           "read_record", "write_record", "check_manifest", "machine_label", "cpu_hours_of", "table", "tables",
           "render", "main"]

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = ("experiment", "description", "command", "commit", "machine", "date", "cpu_hours", "files")
MACHINE_KEYS = ("cpu", "isa", "cores", "gpu")
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")
UNKNOWN = "unknown: "
_COMMIT = re.compile(r"^[0-9a-f]{7,40}(-dirty)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_MARKER = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


class RecordError(ValueError):
    """A record that cannot be read or written; the message names the file and the fix."""


def records_root(root: str | Path | None = None) -> Path:
    """The records folder (default: the checkout's records/)."""
    return Path(root) if root is not None else REPO / layout.RECORDS_DIR


def list_records(root: str | Path | None = None) -> list[str]:
    """The experiment names of every record (folders holding a manifest), sorted."""
    base = records_root(root)
    return sorted(p.parent.name for p in base.glob(f"*/{layout.MANIFEST_FILE}")) if base.is_dir() else []


def machine_label(manifest: Mapping) -> str:
    """What tells two records' machines apart: the CPU and its instruction set as the manifest names
    them (an "unknown: ..." instruction set stays part of the label, so it never equals a known one)."""
    m = manifest["machine"]
    return f"{m['cpu']} | {m['isa']}" + (f" | {m['gpu']}" if m.get("gpu") else "")


# ---------------------------------------------------------------------------------------
# Reading.

def _flat(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _lines(path: Path) -> list[dict]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{i} is not a JSON line ({e}): fix or remove that line") from e
    return out


def _run_config(run: dict) -> dict:
    return dict(run.get("config") or run.get("params") or {})


def _run_reports(run: dict) -> list[dict]:
    """A run's evaluations. A wall-time checkpoint between two evaluations is reported too
    (`between_evaluations`, methods/engine/loop.py) with the last evaluation's metrics repeated; it is
    no evaluation, and left out."""
    return [r for r in run.get("reports") or run.get("train_history") or [] if not r.get("between_evaluations")]


@dataclass
class Record:
    """One record: its folder, its manifest and readers of its data files."""
    name: str
    path: Path
    manifest: dict
    _cache: dict = field(default_factory=dict, repr=False)

    def file(self, name: str | None = None, suffix: str | None = None) -> Path:
        """A data file of the record by name, or its only file (of that suffix)."""
        files = [f for f in self.manifest["files"] if suffix is None or f.endswith(suffix)]
        if name is None:
            if len(files) != 1:
                raise RecordError(f"record {self.name} has {len(files)} {suffix or 'data'} files ({', '.join(files)}): "
                                  f"name the one to read")
            name = files[0]
        if name not in self.manifest["files"]:
            raise RecordError(f"record {self.name} lists no file {name!r} in its manifest "
                              f"(it lists {', '.join(self.manifest['files'])})")
        return self.path / name

    def json(self, name: str | None = None):
        return json.loads(self.file(name, ".json").read_text(encoding="utf-8"))

    def lines(self, name: str | None = None) -> list[dict]:
        path = self.file(name, ".jsonl")
        if path not in self._cache:
            self._cache[path] = _lines(path)
        return self._cache[path]

    def cached(self, kind: str, name: str | None, build, copy: bool = True) -> pd.DataFrame:
        """A frame derived from a JSON-lines file, built once per record by build(name) (a copy
        each call unless copy=False: callers add columns)."""
        key = (kind, self.file(name, ".jsonl"))
        if key not in self._cache:
            self._cache[key] = build(name)
        return self._cache[key].copy() if copy else self._cache[key]

    def runs(self, name: str | None = None) -> pd.DataFrame:
        """One row per run of a JSON-lines file: `run` (its line), `row` / `trial_id` / `status`
        where the file has them, the config's keys (lists as JSON text), `method`, the last report's
        keys, `reports` (how many), `wall_seconds` / `started` where recorded and `machine`."""
        return self.cached("runs", name, self._runs)

    def _runs(self, name: str | None) -> pd.DataFrame:
        rows = []
        for i, run in enumerate(self.lines(name)):
            reports = _run_reports(run)
            row = {"run": i, **{k: run[k] for k in ("row", "trial_id", "status", "number", "error") if k in run}}
            row.update({k: _flat(v) for k, v in _run_config(run).items()})
            row.setdefault("method", run.get("method"))
            row.update({k: _flat(v) for k, v in (reports[-1] if reports else {}).items() if k not in row})
            row.update({"reports": len(reports), "wall_seconds": run.get("wall_seconds"), "started": run.get("started")})
            rows.append(row)
        return pd.DataFrame(rows).assign(machine=machine_label(self.manifest))

    def reports(self, name: str | None = None) -> pd.DataFrame:
        """One row per report of every run of a JSON-lines file: `run`, `seed`, `report` (its index
        in the run) and the report's keys."""
        return self.cached("reports", name, self._reports)

    def _reports(self, name: str | None) -> pd.DataFrame:
        rows = [{"run": i, "seed": _run_config(run).get("seed"), "report": j, **{k: _flat(v) for k, v in rep.items()}}
                for i, run in enumerate(self.lines(name)) for j, rep in enumerate(_run_reports(run))]
        return pd.DataFrame(rows)

    def trials(self, name: str | None = None) -> pd.DataFrame:
        """A trials.parquet (or .csv) of the record, with `machine`."""
        path = self.file(name, ".parquet" if name is None or name.endswith(".parquet") else ".csv")
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return df.assign(machine=machine_label(self.manifest))


def check_manifest(path: Path) -> list[str]:
    """Every problem of one manifest.json (empty when it is complete): missing keys, a folder name
    that is not the experiment, files that do not exist, data files the manifest does not list."""
    folder = path.parent
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return [f"{path}: not readable JSON ({e})"]
    problems = [f"{path}: no {k!r}" for k in REQUIRED_KEYS if k not in m]
    if problems:
        return problems
    if m["experiment"] != folder.name:
        problems.append(f"{path}: experiment {m['experiment']!r} is not the folder's name {folder.name!r}")
    if not (isinstance(m["command"], list) and m["command"] and all(isinstance(c, str) for c in m["command"])):
        problems.append(f"{path}: command must be a non-empty list of command lines")
    if not (_COMMIT.match(str(m["commit"])) or str(m["commit"]).startswith(UNKNOWN)):
        problems.append(f"{path}: commit {m['commit']!r} is neither a git commit nor 'unknown: <why>'")
    if not isinstance(m["machine"], dict) or any(k not in m["machine"] for k in MACHINE_KEYS):
        problems.append(f"{path}: machine must name {', '.join(MACHINE_KEYS)}")
    if not str(m["date"]).startswith(UNKNOWN):
        try:
            dt.datetime.fromisoformat(str(m["date"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{path}: date {m['date']!r} is neither ISO 8601 nor 'unknown: <why>'")
    if m["cpu_hours"] is not None and not isinstance(m["cpu_hours"], (int, float)):
        problems.append(f"{path}: cpu_hours must be a number or null")
    listed = set(m["files"])
    problems += [f"{path}: lists {f!r}, which is not in {folder}" for f in sorted(listed) if not (folder / f).is_file()]
    problems += [f"{folder / f.name}: a data file the manifest does not list" for f in sorted(folder.iterdir())
                 if f.is_file() and f.name != layout.MANIFEST_FILE and f.name not in listed]
    return problems


def read_record(name: str, root: str | Path | None = None) -> Record:
    """The record records/<name>/: its manifest (checked) and its data files."""
    path = records_root(root) / name / layout.MANIFEST_FILE
    if not path.is_file():
        known = ", ".join(list_records(root)) or "none"
        raise RecordError(f"no record {name!r}: {path} does not exist (records: {known})")
    problems = check_manifest(path)
    if problems:
        raise RecordError("; ".join(problems))
    return Record(name, path.parent, json.loads(path.read_text(encoding="utf-8")))


class RecordSet:
    """Records read once each: what the table renderers get (`recs["mini_adaptation"]`)."""

    def __init__(self, root: str | Path | None = None):
        self.root = root
        self._records: dict[str, Record] = {}

    def __getitem__(self, name: str) -> Record:
        if name not in self._records:
            self._records[name] = read_record(name, self.root)
        return self._records[name]

    def one_machine(self, names: tuple[str, ...]) -> dict:
        """The machine (manifest) the named records share; ValueError when they ran on two, since a
        table that sets their numbers side by side pairs runs of one machine only."""
        machines = {json.dumps(self[n].manifest["machine"], sort_keys=True) for n in names}
        if len(machines) > 1:
            raise ValueError(f"the records {', '.join(names)} ran on different machines ({', '.join(sorted(machines))}): "
                             f"a table pairs runs of one machine only")
        return self[names[0]].manifest["machine"]


# ---------------------------------------------------------------------------------------
# Writing.

def _threads(device) -> int:
    m = re.search(r"(\d+) CPU thread", str(device or ""))
    return int(m.group(1)) if m else 1


def cpu_hours_of(files: Iterable[Path]) -> float | None:
    """Σ over the runs of the files of train_seconds × the CPU threads provenance.device names (1
    where it names none), in hours; None when no file records train_seconds. A run's last report
    holds its whole training time (summed across resumes). A run that two files hold (a study's
    runs.jsonl and its trials.parquet: the same `trial_id`) counts once."""
    seconds, found, seen = 0.0, False, set()
    for path in map(Path, files):
        if path.suffix == ".jsonl":
            runs = _lines(path)
            finals = [(_run_reports(r) or [{}])[-1] for r in runs]
            rows = [(r.get("trial_id"), f.get("train_seconds"), f.get("provenance.device")) for r, f in zip(runs, finals)]
        elif path.suffix == ".parquet":
            df = pd.read_parquet(path)
            if "train_seconds" not in df:
                continue
            none = pd.Series([None] * len(df))
            rows = list(zip(df.get("trial_id", none), df["train_seconds"], df.get("provenance.device", none)))
        else:
            continue
        for trial, sec, device in rows:
            if trial is not None and trial in seen:
                continue
            seen.add(trial)
            if sec is not None and not (isinstance(sec, float) and math.isnan(sec)):
                seconds, found = seconds + float(sec) * _threads(device), True
    return round(seconds / 3600, 3) if found else None


def write_record(name: str, files: Mapping[str, str | Path] | Iterable[str | Path], command: list[str] | str,
                 description: str, *, root: str | Path | None = None, cpu_hours: float | None = None,
                 replace: bool = False) -> Path:
    """Write records/<name>/: the data files (copied; a mapping gives each its name in the record)
    and manifest.json with this checkout's commit, this machine, the time now (UTC) and cpu_hours
    (from the data's train_seconds when not given). A re-measurement of the same thing replaces the
    old record only with replace=True; otherwise give it a name of its own."""
    if not _NAME.match(name):
        raise RecordError(f"record name {name!r}: use lower-case letters, digits, '_', '-' and '.', "
                          f"naming what was measured (e.g. mini_gap_v3)")
    items = dict(files) if isinstance(files, Mapping) else {Path(f).name: f for f in files}
    for dest, src in items.items():
        if "/" in dest or Path(dest).suffix not in DATA_SUFFIXES:
            raise RecordError(f"record {name}: data file name {dest!r} must be a plain name ending in "
                              f"{', '.join(DATA_SUFFIXES)}")
        if not Path(src).is_file():
            raise RecordError(f"record {name}: data file {src} does not exist; nothing was written")
    folder = records_root(root) / name
    if folder.exists():
        if not replace:
            raise RecordError(f"{folder} exists: a re-measurement is a new experiment name, or pass replace=True "
                              f"to replace the old record")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for dest, src in items.items():
        shutil.copyfile(src, folder / dest)
    manifest = {"experiment": name, "description": description,
                "command": [command] if isinstance(command, str) else list(command),
                "commit": git_commit(), "machine": machine(),
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "cpu_hours": cpu_hours if cpu_hours is not None else cpu_hours_of(folder / f for f in items),
                "files": sorted(items)}
    (folder / layout.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------
# The generated tables.

TABLES: dict[str, Callable[[RecordSet], str]] = {}


def table(name: str):
    """Register a renderer: a function of a RecordSet returning the Markdown of the table `name`."""
    def register(fn):
        if name in TABLES:
            raise ValueError(f"two renderers for table {name!r}")
        TABLES[name] = fn
        return fn
    return register


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, Callable[[RecordSet], str]]:
    """Every registered renderer (importing the modules that register them)."""
    from udalab.analysis import (  # noqa: F401  (they register)
        mini_data_tables, record_tables, record_tables_directions, record_tables_other, record_tables_preflight,
        record_tables_studies)

    return TABLES


def _docs(docs: str | Path | None) -> list[Path]:
    return sorted(Path(docs or REPO / "docs").glob("*.md"))


def render(check: bool = False, docs: str | Path | None = None, root: str | Path | None = None) -> list[str]:
    """Regenerate every marked table of docs/*.md from its records. check=False rewrites the files
    and returns the tables it changed; check=True writes nothing and returns each difference."""
    renderers, recs, out = tables(), RecordSet(root), []
    for path in _docs(docs):
        text = path.read_text(encoding="utf-8")

        def body(match):
            name = match.group("name")
            if name not in renderers:
                raise RecordError(f"{path}: no renderer for table {name!r} (known: {', '.join(sorted(renderers))})")
            new = renderers[name](recs).strip("\n") + "\n"
            if new != match.group("body"):
                diff = difflib.unified_diff(match.group("body").splitlines(), new.splitlines(), "in the file",
                                            "from its records", lineterm="", n=0)
                out.append(f"{path.name}: table {name}" + ("\n" + "\n".join(diff) if check else ""))
            return match.group(1) + new + match.group(4)

        new_text = _MARKER.sub(body, text)
        if not check and new_text != text:
            path.write_text(new_text, encoding="utf-8")
    return out


def uses(docs: str | Path | None = None) -> dict[str, list[str]]:
    """{table name: the docs files that show it}."""
    out: dict[str, list[str]] = {}
    for path in _docs(docs):
        for m in _MARKER.finditer(path.read_text(encoding="utf-8")):
            out.setdefault(m.group("name"), []).append(path.name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="udalab records", description="Records of measured runs and the docs tables "
                                "generated from them (analysis/records.py).")
    p.add_argument("command", choices=["render", "check", "list"],
                   help="render: rewrite the tables of docs/*.md; check: exit 1 if one differs; list: records and tables")
    p.add_argument("--root", default=None, help="records folder (default: the checkout's records/)")
    p.add_argument("--docs", default=None, help="docs folder (default: the checkout's docs/)")
    args = p.parse_args(argv)
    if args.command == "list":
        for name in list_records(args.root):
            m = read_record(name, args.root).manifest
            print(f"{name}\t{m['date']}\t{machine_label(m)}\t{m['description']}")
        used = uses(args.docs)
        for name in sorted(tables()):
            print(f"table {name}\t{', '.join(used.get(name, [])) or '(not shown)'}")
        return 0
    changed = render(check=args.command == "check", docs=args.docs, root=args.root)
    print("\n".join(changed) if changed else "every table equals what its records give")
    return 1 if changed and args.command == "check" else 0
