"""A study's progress in one line, for both runners: trials finished of the total, each running
trial's iteration of its total and the time it has left at its own pace, and the study's time left.
A grid's rows can differ several times in cost (HRDA's LR + HR rows against LR only), so a trial
not finished yet is estimated by the finished trials of its row where there are some.

    hrda_crop_size: 10/33 trials finished, 2 running (row4-seed0 120/300 ~4 min, row5-seed0 60/300 ~7 min);
    ~41 min left (2.6 min a trial, 2 at once)
"""
from __future__ import annotations

import dataclasses
import shutil
import statistics
import sys
from typing import Mapping, Sequence

from udalab.core import layout


@dataclasses.dataclass
class TrialProgress:
    """How far one running trial is, from its latest report."""

    name: str
    iteration: int | None = None     # optimiser steps done (the whole run, all stages)
    total: int | None = None         # the run's iterations over all its stages (iterations_total)
    seconds: float | None = None     # seconds in the training loop so far (train_seconds)

    @classmethod
    def of_report(cls, name: str, report: Mapping | None) -> "TrialProgress":
        """From a method's report (its `iteration`, `iterations_total`, `train_seconds`; what it has)."""
        report = report or {}
        return cls(name, report.get("iteration"), report.get("iterations_total"), report.get("train_seconds"))

    def seconds_left(self) -> float | None:
        """The iterations left at the trial's own pace so far (its seconds per iteration); None
        before its first report or without a total."""
        if not self.iteration or not self.total or self.seconds is None:
            return None
        return max(0, self.total - self.iteration) * self.seconds / self.iteration

    def text(self) -> str:
        if self.iteration is None:
            return f"{self.name} starting"
        done = f"{self.iteration}/{self.total}" if self.total else f"iteration {self.iteration}"
        left = self.seconds_left()
        return f"{self.name} {done}" + ("" if left is None else f" {minutes(left)}")


def row_of(trial: str) -> str | None:
    """The grid row ("row<i>") of a grid trial's name (layout.grid_trial_id), else None."""
    position = layout.grid_position(trial)
    return None if position is None else f"row{position[0]}"


def progress_line(name: str, total: int, finished: int, errored: int, running: int,
                  durations: Mapping[str, float], concurrent: int, trials: Sequence[TrialProgress] = (),
                  waiting: Sequence[str] = ()) -> str:
    """One line of a sweep's progress. `durations`: wall seconds of each trial finished so far, by
    its name; `trials`: the running ones' progress; `waiting`: the names of trials not started yet,
    where the runner knows them. The time left is the work left over the trials that run at once:
    each running trial's own estimate, and every other trial left at the mean duration of the
    finished trials of its row (row<i>-seed<s>), or where its row has none, of all finished ones
    (before the first has finished: the running ones' estimated durations)."""
    line = f"{name}: {finished}/{total} trials finished"
    if errored:
        line += f", {errored} errored"
    line += f", {running} running"
    if trials:
        line += " (" + ", ".join(t.text() for t in trials) + ")"
    left = total - finished - errored
    if left <= 0:
        return line
    known = [s for s in (t.seconds_left() for t in trials) if s is not None]
    estimated = [t.seconds + t.seconds_left() for t in trials if t.seconds_left() is not None]
    everything = list(durations.values()) or estimated
    if not everything:
        return line + "; time left: after the first trial reports"
    mean = statistics.mean(everything)
    by_row: dict[str | None, list[float]] = {}
    for trial, seconds in durations.items():
        by_row.setdefault(row_of(trial), []).append(seconds)

    def duration(trial: str) -> float:
        row = row_of(trial)
        return statistics.mean(by_row[row]) if row is not None and row in by_row else mean

    unestimated = [t.name for t in trials if t.seconds_left() is None]
    named = [*unestimated, *waiting][:max(0, left - len(known))]
    at_once = max(1, concurrent)
    work = sum(known) + sum(duration(t) for t in named) + max(0, left - len(known) - len(named)) * mean
    seconds = max([work / at_once, *known])
    return line + f"; {minutes(seconds)} left ({mean / 60:.1f} min a trial, {at_once} at once)"


def minutes(seconds: float) -> str:
    return "<1 min" if seconds < 60 else f"~{seconds / 60:.0f} min"


def show(line: str, stream=None) -> None:
    """Print a progress line: on a terminal it rewrites one line (cut to the terminal's width), in
    a log it is a line of its own."""
    stream = stream or sys.stdout
    if stream.isatty():
        width = shutil.get_terminal_size().columns - 1
        stream.write("\r" + line[:width].ljust(width))
    else:
        stream.write(line + "\n")
    stream.flush()
