"""What a study is: its declaration. The runners in studies/run/ run it.

    Study(method, data, rows/search space, seeds, metric, budget, report)
      -> studies/run/ray_tune.py: a Ray Tune sweep, one Ray Train run per trial (`python studies/<study>.py`)
      -> studies/run/local.py: the same grid in local processes, without Ray (`--local`)
      -> results/<study>/ (resumable), trials.parquet, report.html
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Study:
    """What a study runs. Only declarations: the runners do the rest.

    rows:    the table's rows for a grid study; each row is a dict with "method" (default:
             `method`) and hyperparameter overrides named as the method's dataclass fields; a row's
             "source" / "target" override the study's data for that row (an oracle row trained on
             the target). Every row runs once per seed.
    paired:  (row, baseline row) index pairs: each row is measured against its own baseline row
             of this study on the same seed (the paired Δ: row - baseline per seed), e.g. a
             method against its source-only row, a target-supervised row against source only.
    search:  an Optuna search space {name: tune.uniform(...) ...} over `method`'s
             hyperparameters, `num_samples` trials (used with --optuna).
    fixed:   hyperparameter overrides for every trial.
    budget:  per-preset overrides of every trial ({"mini": {"iterations": 300}}): a shorter mini
             schedule that keeps the paper-scale run (--data-root) at the paper's defaults.
    smoke_rows: indices of the rows --smoke keeps (it also uses one seed and the "smoke" preset).
    gpus_per_worker, max_failures: what a trial asks for on a cluster (run.ray_tune.trial_resources).
    source, target: the datasets every trial adapts between; `--set source=...` or a row's
             "source" overrides them.
    """

    name: str
    method: str
    report: Any = None                                   # analysis.report.ReportSpec
    source: str = "gta5"
    target: str = "cityscapes"
    rows: list[dict] = dataclasses.field(default_factory=lambda: [{}])
    paired: tuple[tuple[int, int], ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    search: dict | None = None
    num_samples: int = 16
    metric: str = "miou"
    mode: str = "max"
    fixed: dict = dataclasses.field(default_factory=dict)
    smoke_rows: tuple[int, ...] = (0, 1)
    description: str = ""
    budget: dict = dataclasses.field(default_factory=dict)  # per preset: {"mini": {"iterations": 300}}
    gpus_per_worker: float = 1.0       # on a cluster: each Train worker asks for this many GPUs
    max_failures: int = 3              # on a cluster: restarts of a trial from its checkpoint (lost nodes)

    def __post_init__(self):
        bad = [i for pair in self.paired for i in pair if not 0 <= i < len(self.rows)]
        if bad:
            raise ValueError(f"study {self.name}: `paired` names rows {bad}, but it has rows 0..{len(self.rows) - 1}")

    def grid_rows(self) -> list[dict]:
        """Every row with its method named."""
        return [{"method": self.method, **row} for row in self.rows]

    def baseline_pairs(self) -> list[tuple[dict, dict]]:
        """(row, its baseline row) of every `paired` entry, as grid_rows gives them."""
        rows = self.grid_rows()
        return [(rows[i], rows[b]) for i, b in self.paired]

