"""The Ray runner's Tune callbacks: the progress line and the trials table while a sweep runs.

Module-level classes (Tune pickles them into the study's tuner.pkl): a resumed study unpickles
them by name, so it runs this code, not the code it was started with.
"""
from __future__ import annotations

import logging
import time

from ray.tune import Callback

from udalab.analysis import store
from udalab.core import layout
from udalab.studies.run import progress

log = logging.getLogger("udalab")


class ProgressLine(Callback):
    """Shows `progress.progress_line` when a trial reports (every `every_s` at most; a trial's first
    report at once) or ends: trials finished, each running trial's iteration of its total and time
    left, the study's. A grid trial is named row<i>-seed<s> (`rows`: the study's grid rows, the
    local runner's names), a searched one by its trial id."""

    def __init__(self, name: str, total: int, concurrent: int, rows: list[dict], every_s: float = 20.0):
        self.name, self.total, self.concurrent, self.rows, self.every_s = name, total, concurrent, rows, every_s
        self.started: dict[str, float] = {}
        self.running: dict[str, progress.TrialProgress] = {}
        self.durations: dict[str, float] = {}
        self.ended = self.failed = 0
        self._last = 0.0

    def trial_name(self, trial) -> str:
        row = trial.config.get("row")
        return layout.grid_trial_id(self.rows.index(row), trial.config.get("seed")) if row in self.rows else trial.trial_id

    def _show(self, trials, force: bool = False) -> None:
        if not force and time.time() - self._last < self.every_s:
            return
        self._last = time.time()
        status = [t.status for t in trials]
        # Tune calls on_trial_complete before it marks the trial TERMINATED: count what this saw end
        finished, errored = max(status.count("TERMINATED"), self.ended), max(status.count("ERROR"), self.failed)
        running = max(0, status.count("RUNNING") - (finished - status.count("TERMINATED"))
                      - (errored - status.count("ERROR")))
        progress.show(progress.progress_line(self.name, max(self.total, len(trials)), finished, errored, running,
                                             self.durations, self.concurrent, list(self.running.values())))

    def _ended(self, trial) -> float | None:
        """Forget a trial that ended; when it started (None: before this callback saw it)."""
        self.running.pop(trial.trial_id, None)
        return self.started.pop(trial.trial_id, None)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()
        self.running[trial.trial_id] = progress.TrialProgress(self.trial_name(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        before = self.running.get(trial.trial_id)
        self.running[trial.trial_id] = progress.TrialProgress.of_report(self.trial_name(trial), result)
        self._show(trials, force=before is None or before.iteration is None)

    def on_trial_complete(self, iteration, trials, trial, **info):
        started = self._ended(trial)
        if started is not None:
            self.durations[self.trial_name(trial)] = time.time() - started
        self.ended += 1
        self._show(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial)
        self.failed += 1
        self._show(trials, force=True)


class TrialsTable(Callback):
    """Keeps results/<study>/trials.parquet current while the study runs."""

    def __init__(self, study_dir: str, every_s: float = 30.0):
        self.study_dir, self.every_s, self._last = study_dir, every_s, 0.0

    def _write(self, trials, force: bool = False) -> None:
        if not force and time.time() - self._last < self.every_s:
            return
        self._last = time.time()
        try:
            store.write_trials(self.study_dir, live_status={t.trial_id: t.status for t in trials})
        except Exception as e:  # the table is a convenience while running; never kill the study
            log.warning("could not update trials.parquet: %s", e)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._write(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trials, force=True)
