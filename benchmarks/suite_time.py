"""The test suite's wall time on a clean clone: `.ci/run` (the README's test command) at one or more
commits, one after another, each in a fresh clone with a fresh home folder (no mini data, no
artifacts, no stand-in from an earlier run: what a new CI machine has), the virtualenv given.

    python benchmarks/suite_time.py --commits f995772 HEAD --venv ~/.cache/udalab/venv-X --json suite.json

Per commit: the command's wall seconds (pip's re-pointing of the editable install included), pytest's
own seconds, the outcome counts and the slowest tests (`--durations`); with `--log-dir`, its whole
output (a failing test's traceback). Run it on an otherwise idle machine: the figure is the
machine's, and torch's threads slow down many fold when other processes share the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s")
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s (?P<when>call|setup|teardown)\s+(?P<test>\S+)$")
FAILED = re.compile(r"^(?:FAILED|ERROR) (?P<test>\S+)")


def parse_log(text: str) -> dict:
    """pytest's final line (counts, seconds), its --durations lines and the tests that failed (-rfE)."""
    summary = [m for m in SUMMARY.finditer(text)]
    if not summary:
        raise ValueError("no pytest summary line in the log (the run did not finish)")
    last = summary[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last["counts"])}
    slowest = [{"seconds": float(m["seconds"]), "when": m["when"], "test": m["test"]}
               for m in map(DURATION.match, text.splitlines()) if m]
    failed = [m["test"] for m in map(FAILED.match, text.splitlines()) if m]
    return {"pytest_seconds": float(last["seconds"]), "counts": counts, "slowest": slowest, "failed": failed}


def run_at(commit: str, venv: str, durations: int, log_dir: Path | None = None) -> dict:
    """Clone this checkout at `commit` into a temporary folder and time `.ci/run` there; with
    `log_dir`, its whole output goes to <log_dir>/<commit>.log (a failure's traceback)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="udalab-suite-") as tmp:
        clone, home = Path(tmp) / "udalab", Path(tmp) / "home"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", sha], check=True)
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "UDALAB_VENV": venv,
               "PYTEST_ADDOPTS": f"--durations={durations} -rfE -p no:cacheprovider"}
        env.pop("PYTHONPATH", None)
        start = time.perf_counter()
        proc = subprocess.run([str(clone / ".ci" / "run")], cwd=clone, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{sha[:12]}.log").write_text(proc.stdout + proc.stderr)
    return {"commit": sha[:12], "returncode": proc.returncode, "wall_seconds": round(wall, 1),
            **parse_log(proc.stdout + proc.stderr)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commits", nargs="+", default=["HEAD"])
    p.add_argument("--venv", required=True, help="the virtualenv .ci/run uses (UDALAB_VENV), dependencies installed")
    p.add_argument("--durations", type=int, default=30, help="how many of the slowest tests to keep")
    p.add_argument("--json", required=True)
    p.add_argument("--log-dir", type=Path, default=None, help="keep each run's output here as <commit>.log")
    args = p.parse_args(argv)
    runs = []
    for commit in args.commits:
        runs.append(run_at(commit, args.venv, args.durations, args.log_dir))
        r = runs[-1]
        print(f"{r['commit']}: rc {r['returncode']}, pytest {r['pytest_seconds']:.0f} s, wall {r['wall_seconds']:.0f} s, "
              f"{r['counts']}", flush=True)
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=1))
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
