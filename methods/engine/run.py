"""A run and where it lives.

`Run` is what a method's Steps need from the outside world: its config and seed, the device, the
rank and world size, the checkpoint it resumes from, and reporting. Where reports and checkpoints
go is the run's `Session`, an explicit object:

    RaySession()                    inside Ray Train: ray.train.report / get_checkpoint, DDP over the workers
    LocalSession(checkpoint_dir)    this process alone (tests, GPU benchmarks, a machine without Ray,
                                    an artifact's build inside a trial): a list of reports, a folder

Every checkpoint has one layout for every method (core/layout.py): state.pt holds
{"iteration", "stage", "state": Step.state_dict(), "rng": every worker's RNG states,
"train_seconds", "world"}, beside history.json (every report), config.json and the pictures.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from udalab.core import layout
from udalab.methods.engine.config import ConfigError
from udalab.methods.engine.rng import rng_state, seed_everything

log = logging.getLogger("udalab")


class Clock:
    """Wall seconds of a run's phases, reported with every report as `time.<phase>` (this process's
    share: a resumed run starts its clock again) beside `time.started`, the Unix time the loop began.

        with run.clock("evaluate"): ...

    fit times setup (building the Step and its data, up to the first iteration), data, step,
    update, evaluate and checkpoint (state_dict, save, report); a Step may time its parts inside
    `step` as "step.<part>" (DACS: ema, forward, backward, teacher_labels, mix). On a GPU the
    phases are only exact with UDALAB_CLOCK_SYNC=1 (a device sync at each boundary; off by
    default, it costs throughput)."""

    def __init__(self, device: torch.device | None = None):
        self.seconds: dict[str, float] = {}
        self.started = time.time()
        self._sync = (device is not None and device.type == "cuda"
                      and os.environ.get("UDALAB_CLOCK_SYNC", "0") not in ("", "0"))

    @contextlib.contextmanager
    def __call__(self, phase: str):
        if self._sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.add(phase, time.perf_counter() - t0)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def metrics(self) -> dict[str, float]:
        return {"time.started": round(self.started, 3), **{f"time.{k}": round(v, 4) for k, v in self.seconds.items()}}


def without_timings(report: dict) -> dict:
    """A report less its wall times (train_seconds, time.*): what a resumed run must reproduce."""
    return {k: v for k, v in report.items() if k != "train_seconds" and not k.startswith("time.")}


# ---------------------------------------------------------------------------------------
# Sessions.


class LocalSession:
    """A run in this process: reports kept in `reports`; with `checkpoint_dir`, checkpoints are
    written there and a later run with the same folder resumes from them. `progress`: a tqdm bar
    of the iterations on stderr."""

    rank, world = 0, 1

    def __init__(self, checkpoint_dir: str | Path | None = None, device: str | None = None, progress: bool = False):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.reports: list[dict] = []
        self.show_progress = progress
        self._bar = None

    def read_checkpoint(self) -> dict | None:
        d = self.checkpoint_dir
        if d is None or not (d / layout.STATE_FILE).exists():
            return None
        return layout.read_checkpoint(d)

    def report(self, metrics: dict, save=None) -> None:
        self.reports.append(metrics)
        if save is not None and self.checkpoint_dir is not None:
            save(self.checkpoint_dir)

    def prepare(self, module: torch.nn.Module, ddp: bool) -> torch.nn.Module:
        return module.to(self.device)

    def gather(self, obj) -> list:
        return [obj]

    def progress(self, iteration: int, total: int) -> None:
        if not self.show_progress:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=iteration, unit="it", desc="train", dynamic_ncols=True)
        self._bar.update(iteration - self._bar.n)
        if iteration >= total:
            self._bar.close()


class RaySession:
    """A Ray Train worker: rank and world size from Ray's context, checkpoints through Ray Train's
    storage, reports forwarded to Tune (rank 0's are kept)."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def read_checkpoint(self) -> dict | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return layout.read_checkpoint(Path(d))

    def report(self, metrics: dict, save=None) -> None:
        import ray.train

        if save is None or self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def prepare(self, module: torch.nn.Module, ddp: bool) -> torch.nn.Module:
        if self.world > 1 and ddp:
            import ray.train.torch

            return ray.train.torch.prepare_model(module)
        return module.to(self.device)

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        every: list = [None] * self.world
        dist.all_gather_object(every, obj)
        return every

    def progress(self, iteration: int, total: int) -> None:
        """Tune's status line shows a trial's progress from its reports (iteration, iterations_total)."""


# ---------------------------------------------------------------------------------------
# The run.


class Run:
    """What a method needs from the outside world: device, rank, the checkpoint, reporting."""

    def __init__(self, config: dict, session, total_iterations: int | None = None, provenance: dict | None = None):
        self.config, self.session = config, session
        self.provenance = dict(provenance or {})   # what the result depends on beyond software and data (weights)
        self.seed = int(config.get("seed", 0))
        self.rank, self.world, self.device = session.rank, session.world, session.device
        self.total_iterations = total_iterations
        self.history: list[dict] = []
        self.checkpoint: dict | None = None  # what to resume from, until the stage it belongs to takes it
        self.iteration = 0                   # iterations of the stages fit so far (reports count on from it)
        self.stages: list[str] = []
        self.train_seconds = 0.0
        self.picture_files: dict[str, bytes] = {}   # earlier evaluations' pictures (pictures="every")
        self._t0 = time.perf_counter()
        self.clock = Clock(self.device)
        self.setup_from = self._t0            # setup runs from here to a stage's first iteration

    @classmethod
    def start(cls, config: dict, session, total_iterations: int | None = None, provenance: dict | None = None
              ) -> "Run":
        """Seed the RNGs by the config's seed and read the checkpoint to resume from, if any."""
        run = cls(config, session, total_iterations, provenance)
        seed_everything(run.seed)
        saved = session.read_checkpoint()
        if saved is not None:
            run._resume(saved)
        return run

    def _resume(self, saved: dict) -> None:
        state = saved["state"]
        was = state.get("world", 1)
        if was != self.world:
            raise ConfigError(f"the checkpoint was written by a run of {was} worker(s) and this run has {self.world}: "
                              f"each worker draws its share of the batch and its own random numbers, so the run "
                              f"would not continue as it started. Resume with --workers {was}, or start over "
                              f"(--restart)")
        self.history, self.picture_files = saved["history"], saved["pictures"]
        self.train_seconds = state.pop("train_seconds", 0.0)
        self.checkpoint = state
        log.info("resuming stage '%s' from iteration %s", state["stage"], state["iteration"])

    # -- models ---------------------------------------------------------------------------
    def prepare(self, module: torch.nn.Module, ddp: bool = True) -> torch.nn.Module:
        """Move to the device; with several workers wrap in DistributedDataParallel.

        ddp=False for networks that run several forward passes per backward (GAN
        discriminators): DDP forbids that; call `sync_grads` on them before their step.
        """
        return self.session.prepare(module, ddp)

    def sync_grads(self, *modules: torch.nn.Module) -> None:
        """Average the gradients of non-DDP modules over the workers (no-op for one worker)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for m in modules:
            for p in m.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world

    def per_rank(self, batch_size: int) -> int:
        """Each worker's share of a global batch (the papers' batch stays the global one)."""
        if batch_size % self.world:
            raise ConfigError(f"batch_size {batch_size} does not split over {self.world} workers; use a worker count "
                              f"that divides it, or set batch_size to a multiple of {self.world}")
        return batch_size // self.world

    # -- reporting ------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.train_seconds + time.perf_counter() - self._t0

    def report(self, metrics: dict, state: dict | None = None, files: dict[str, bytes] | None = None,
               history: bool = True) -> None:
        """Report metrics; with `state` ({"iteration", "stage", "state"}), also save a checkpoint,
        `files` ({relative path: bytes}, e.g. the final pictures) written into it. history=False: a
        report that is not an evaluation (a checkpoint between two), kept out of the run's history.

        All workers must call this together (Ray Train's rule); only rank 0's checkpoint
        and metrics are kept.
        """
        metrics = {"train_seconds": round(self.elapsed(), 3), **metrics, **self.clock.metrics()}
        if self.total_iterations is not None:
            metrics.setdefault("iterations_total", self.total_iterations)
        metrics.setdefault("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
        metrics = {k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in metrics.items()}
        if history:
            self.history.append(metrics)
        save = None
        if state is not None:
            state = {**state, "rng": self.session.gather(rng_state()), "train_seconds": self.elapsed(),
                     "world": self.world}
            history = list(self.history)
            save = lambda folder: layout.write_checkpoint(folder, state, history, self.config, files)  # noqa: E731
        self.session.report(metrics, save)

    def own_rng(self, saved: list[dict] | dict) -> dict:
        """This worker's RNG states of a checkpoint's `rng` (one dict per worker, in rank order).
        Each worker resumes with its own: they need not agree (rank 0 alone evaluates), and a
        worker drawing another's would draw other dropout/drop-path masks than it would have."""
        if isinstance(saved, dict):
            return saved
        return saved[self.rank] if self.rank < len(saved) else saved[0]

    def report_final_again(self) -> None:
        """A run resumed from its very last checkpoint reports its final metrics again: Tune
        needs a result from every run, and there is nothing left to train."""
        if self.history:
            self.report(self.history.pop())
