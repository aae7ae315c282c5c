"""The engine every method runs on, with Ray Train or without it: one training loop, `fit`.

A method is a `train_loop(config: dict)` of a few lines: Ray Train's `TorchTrainer` calls it
once per worker; `run_local(name, config)` calls it in this process (tests, GPU benchmarks,
the lent GPU machine that has no Ray). It builds its hyperparameters, its data and a `Step`
(its training state: one iteration from its batches, `state_dict`/`load_state_dict`,
evaluation) and hands the Step to `fit`, which owns everything around it, once:

    run = Run.start(config)                        # device, rank, world size, the checkpoint to resume
    hp = make_hparams(MyConfig, config, PRESETS)   # paper defaults < preset < config
    data = build_uda_data(config, hp.source_size, hp.target_size)
    fit(run, MyStep(run, hp, data), stage="uda", iterations=hp.iterations, eval_every=hp.eval_every)

A multi-stage method (IntraDA: inter -> ranking -> intra) is a sequence of `fit` calls; a
resumed run skips the stages that finished before its checkpoint and lands in the right
stage at the right iteration. Every checkpoint has one layout for every method:

    state.pt      {"iteration": global iteration, "stage": stage name, "state": Step.state_dict(),
                   "rng": every worker's global RNG states, "train_seconds": training time so far}
                  (the run's final checkpoint: its optimisers' moments emptied, as nothing trains on)
    history.json  every report so far (Tune forgets a resumed trial's history; the report needs it)

Reproducibility contract: a run is a pure function of (config, seed). Every sample is
loaded under a torch seed derived from (seed, stream, iteration, slot), and every
epoch's order from (seed, stream, epoch), so a run resumed from the checkpoint at
iteration k sees exactly the batches an uninterrupted run sees from k on. Checkpoints
also carry the global RNG states for anything else that draws random numbers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from udalab.core import layout
from udalab.methods.engine import pictures
from udalab.methods.engine import provenance
from udalab.methods.engine.uda_data import UDAData

log = logging.getLogger("udalab")

# Keys of a run config that are not hyperparameters of the method.
# "pictures": "final" (default: the run's last evaluation keeps pictures of a few val images, which
# the report shows) or "every" (each evaluation's too, under pictures/iteration-<n>/ of every later
# checkpoint: how the predictions and pseudo labels developed; methods/engine/pictures.py).
RUN_KEYS = {"method", "seed", "source", "target", "data_root", "preset", "device", "pictures"}
PICTURES_WHEN = ("final", "every")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the trial stops, its last checkpoint is kept."""


class ConfigError(ValueError):
    """A run config names an unknown hyperparameter or gives it a wrong value."""


# ---------------------------------------------------------------------------------------
# Hyperparameters: one dataclass per method, paper defaults, presets for the mini data.


def make_hparams(cls: type, config: dict, presets: dict[str, dict] | None = None):
    """Build a method's hyperparameter dataclass: paper defaults < presets[preset] < config.

    `preset` selects a preset ("paper" = the dataclass defaults, "mini" = the embedded mini
    data, "smoke" = seconds-scale checks). Any other key of `config` that is not a run key
    must be a field.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    preset = config.get("preset", "mini")
    presets = presets or {}
    if preset != "paper" and preset not in presets:
        raise ConfigError(f"preset={preset!r} is not known for {cls.__name__}; use 'paper' or one of "
                          f"{sorted(presets)}")
    values: dict[str, Any] = dict(presets.get(preset, {}))
    for key, value in config.items():
        if key in RUN_KEYS:
            continue
        if key not in fields:
            raise ConfigError(
                f"unknown hyperparameter {key!r} for {cls.__name__}; "
                f"valid names: {', '.join(sorted(fields))}"
            )
        values[key] = value
    for key, value in values.items():
        default = fields[key].default
        if value is None and "None" in str(fields[key].type):   # an optional field, e.g. `int | None`
            continue
        if isinstance(default, bool) and not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{cls.__name__}.{key} must be true/false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
                raise ConfigError(f"{cls.__name__}.{key} must be a number, got {value!r}")
            if isinstance(default, int) and float(value) != int(value):
                raise ConfigError(f"{cls.__name__}.{key} must be an integer, got {value!r}")
            values[key] = type(default)(value)
        if isinstance(default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
    hp = cls(**values)
    if hasattr(hp, "validate"):
        hp.validate()
    return hp


# ---------------------------------------------------------------------------------------
# Seeding and deterministic batches.


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (stable across processes and Python versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


@contextlib.contextmanager
def rng_preserved():
    """Leaves the python / numpy / torch RNGs as they were: work inside (an artifact's build, which
    only the first trial does) cannot change what the run draws after it."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# A per-slot sampler: rng -> dataset index, or (index, the class it was drawn for).
Sampler = Callable[[np.random.Generator], "int | tuple[int, int]"]


class _SeededSamples(Dataset):
    """Loads `dataset[idx]` with torch's RNG seeded by the sample's own seed; a class a sampler
    drew the sample for is added as "sampled_class"."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int, int | None]):
        idx, sample_seed, sampled_class = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            sample = self.dataset[idx]
        if sampled_class is not None:
            sample = {**sample, "sampled_class": torch.tensor(sampled_class)}
        return sample


class _IterationBatches:
    """Batch sampler: batch `it` of this rank, for it = start, start+1, ... forever."""

    def __init__(self, n: int, batch_size: int, seed: int, stream: int, start: int, rank: int, world: int,
                 sampler: Sampler | None = None):
        self.n, self.bs, self.seed, self.stream = n, batch_size, seed, stream
        self.start, self.rank, self.world = start, rank, world
        self.sampler = sampler
        self._perm_epoch, self._perm = -1, None

    def _index(self, k: int) -> int:
        epoch, pos = divmod(k, self.n)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(derive_seed(self.seed, self.stream, epoch))
            self._perm, self._perm_epoch = rng.permutation(self.n), epoch
        return int(self._perm[pos])

    def __iter__(self):
        it = self.start
        while True:
            batch = []
            for slot in range(self.bs):
                sample_seed = derive_seed(self.seed, self.stream, it, self.rank, slot)
                sampled_class = None
                if self.sampler is not None:  # e.g. rare-class sampling: an index drawn per slot
                    drawn = self.sampler(np.random.default_rng(derive_seed(sample_seed, 1)))
                    index, sampled_class = (int(drawn[0]), int(drawn[1])) if isinstance(drawn, tuple) else (int(drawn), None)
                else:  # epochs of one shared permutation, split over the ranks
                    index = self._index((it * self.world + self.rank) * self.bs + slot)
                batch.append((index, sample_seed, sampled_class))
            yield batch
            it += 1


def batches(dataset: Dataset, batch_size: int, *, seed: int, stream: int, start: int = 0,
            rank: int = 0, world: int = 1, workers: int = 0, device: torch.device | str = "cpu",
            sampler: Sampler | None = None) -> Iterator[dict]:
    """Endless iterator of collated batches for iterations start, start+1, ...

    `stream` separates independent sample streams of one run (source, target, ...).
    `sampler(rng) -> index` or `-> (index, class)` replaces the epoch permutation (rare-class
    sampling; the class lands in the batch as "sampled_class"); it gets a generator seeded per
    (seed, stream, iteration, rank, slot), so resumes stay exact.
    """
    if len(dataset) == 0:
        raise ValueError("cannot draw batches from an empty dataset")
    loader = DataLoader(
        _SeededSamples(dataset),
        batch_sampler=_IterationBatches(len(dataset), batch_size, seed, stream, start, rank, world, sampler),
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(derive_seed(seed, stream)),  # not the global RNG
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------------
# Loss bookkeeping and the finite-loss guard.


class LossMeter:
    """Running means of named losses between two reports."""

    def __init__(self):
        self._sums: dict[str, float] = {}
        self._n: dict[str, int] = {}

    def add(self, **losses) -> None:
        for k, v in losses.items():  # tensors stay on their device: no sync in the training step
            self._sums[k] = self._sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v)
            self._n[k] = self._n.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {f"loss.{k}": float(self._sums[k]) / self._n[k] for k in self._sums}
        self._sums, self._n = {}, {}
        return out


def check_finite(losses: dict[str, torch.Tensor | float], iteration: int, stage: str = "") -> None:
    """Raise NonFiniteLossError naming the loss; `iteration` counts steps from 1, as reports do."""
    tensors = [v.detach().float().reshape(()) for v in losses.values() if torch.is_tensor(v)]
    others = [float(v) for v in losses.values() if not torch.is_tensor(v)]
    if (not tensors or bool(torch.isfinite(torch.stack(tensors)).all())) and all(map(math.isfinite, others)):
        return  # one device sync per step
    for name, value in losses.items():
        v = float(value)
        if not math.isfinite(v):
            where = f"iteration {iteration}" + (f" (stage '{stage}')" if stage else "")
            raise NonFiniteLossError(
                f"loss '{name}' is {v} at {where}. The trial stops here; its last checkpoint is kept. "
                f"Lower the learning rate or the weight of '{name}', or check the input data."
            )


# ---------------------------------------------------------------------------------------
# The run context.


class Clock:
    """Wall seconds of a run's phases, reported with every report as `time.<phase>` (this process's
    share: a resumed run starts its clock again) beside `time.started`, the Unix time the loop began.

        with run.clock("evaluate"): ...

    fit times setup (building the Step and its data, up to the first iteration), data, step,
    update, evaluate and checkpoint (state_dict, save, report); a Step may time its parts inside
    `step` as "step.<part>" (DACS: ema, forward, backward, pseudo_labels, mix). On a GPU the
    phases are only exact with UDALAB_CLOCK_SYNC=1 (a device sync at each boundary; off by
    default, it costs throughput). benchmarks/sweep_overhead.py and docs/performance.md read them."""

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


@dataclasses.dataclass
class _LocalSession:
    checkpoint_dir: Path | None
    reports: list[dict] = dataclasses.field(default_factory=list)


_LOCAL: _LocalSession | None = None


class Run:
    """What a method needs from the outside world: device, rank, the checkpoint, reporting."""

    def __init__(self, config: dict, *, ray: bool, rank: int, world: int, device: torch.device):
        self.config = config
        self.seed = int(config.get("seed", 0))
        self.ray, self.rank, self.world, self.device = ray, rank, world, device
        self.history: list[dict] = []
        self.checkpoint: dict | None = None  # what to resume from, until the stage it belongs to takes it
        self.iteration = 0                   # iterations of the stages fit so far (reports count on from it)
        self.stages: list[str] = []
        self.train_seconds = 0.0
        self.picture_files: dict[str, bytes] = {}   # earlier evaluations' pictures (pictures="every")
        self._t0 = time.perf_counter()
        self.clock = Clock(device)
        self._setup_from = self._t0          # setup runs from here to a stage's first iteration

    @classmethod
    def start(cls, config: dict) -> "Run":
        if _LOCAL is not None:
            device = torch.device(config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
            run = cls(config, ray=False, rank=0, world=1, device=device)
        else:
            import ray.train
            import ray.train.torch

            ctx = ray.train.get_context()
            run = cls(config, ray=True, rank=ctx.get_world_rank(), world=ctx.get_world_size(),
                      device=ray.train.torch.get_device())
        seed_everything(run.seed)
        run.checkpoint = run._read_checkpoint()
        return run

    # -- models ---------------------------------------------------------------------------
    def prepare(self, module: torch.nn.Module, ddp: bool = True) -> torch.nn.Module:
        """Move to the device; with several workers wrap in DistributedDataParallel.

        ddp=False for networks that run several forward passes per backward (GAN
        discriminators): DDP forbids that; call `sync_grads` on them before their step.
        """
        if self.ray and self.world > 1 and ddp:
            import ray.train.torch

            return ray.train.torch.prepare_model(module)
        return module.to(self.device)

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

    # -- checkpoints ----------------------------------------------------------------------
    def _read_checkpoint(self) -> dict | None:
        """The latest checkpoint ({"iteration", "stage", "state", "rng"}), or None for a fresh run."""
        if self.ray:
            import ray.train

            ckpt = ray.train.get_checkpoint()
            if ckpt is None:
                return None
            with ckpt.as_directory() as d:
                return self._load_dir(Path(d))
        d = _LOCAL.checkpoint_dir
        if d is None or not (d / layout.STATE_FILE).exists():
            return None
        return self._load_dir(d)

    def _load_dir(self, d: Path) -> dict:
        try:
            saved = layout.read_checkpoint(d)
        except layout.CheckpointError as e:
            raise RuntimeError(str(e)) from e
        state = saved["state"]
        self.history, self.picture_files = saved["history"], saved["pictures"]
        self.train_seconds = state.pop("train_seconds", 0.0)
        log.info("resuming stage '%s' from iteration %s", state["stage"], state["iteration"])
        return state

    def _save_dir(self, d: Path, checkpoint: dict, files: dict[str, bytes] | None = None) -> None:
        layout.write_checkpoint(d, checkpoint, self.history, files=files)

    # -- reporting ------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.train_seconds + time.perf_counter() - self._t0

    def report(self, metrics: dict, state: dict | None = None, files: dict[str, bytes] | None = None) -> None:
        """Report metrics; with `state` ({"iteration", "stage", "state"}), also save a checkpoint,
        `files` ({relative path: bytes}, e.g. the final pictures) written into it.

        All workers must call this together (Ray Train's rule); only rank 0's checkpoint
        and metrics are kept.
        """
        metrics = {"train_seconds": round(self.elapsed(), 3), **metrics, **self.clock.metrics()}
        metrics.setdefault("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
        metrics = {k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in metrics.items()}
        self.history.append(metrics)
        if state is not None:
            state = {**state, "rng": self._rng_of_every_rank(), "train_seconds": self.elapsed()}
        if not self.ray:
            _LOCAL.reports.append(metrics)
            if state is not None and _LOCAL.checkpoint_dir is not None:
                self._save_dir(_LOCAL.checkpoint_dir, state, files)
            return
        import ray.train

        if state is None or self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            self._save_dir(Path(tmp), state, files)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def _rng_of_every_rank(self) -> list[dict]:
        """The global RNG states of every worker, in rank order. They need not agree (rank 0
        alone evaluates and writes checkpoints): when every worker resumed with rank 0's states,
        a two-worker HRDA run resumed at iteration 2 drew other drop-path masks than it would
        have and ended 0.03 mIoU off the uninterrupted run; with its own, bit for bit."""
        mine = rng_state()
        if self.world == 1:
            return [mine]
        import torch.distributed as dist

        every: list = [None] * self.world
        dist.all_gather_object(every, mine)
        return every

    def own_rng(self, saved: list[dict] | dict) -> dict:
        """This worker's RNG states of a checkpoint's `rng` (rank 0's when the run had fewer
        workers; a checkpoint written before per-rank states holds one dict)."""
        if isinstance(saved, dict):
            return saved
        return saved[self.rank] if self.rank < len(saved) else saved[0]

    def report_final_again(self) -> None:
        """A run resumed from its very last checkpoint reports its final metrics again: Tune
        needs a result from every run, and there is nothing left to train."""
        if self.history:
            self.report(self.history.pop())


# ---------------------------------------------------------------------------------------
# The method's side: a Step. The engine's side: fit.


@dataclasses.dataclass
class Stream:
    """One seeded batch stream of a Step. `id` seeds its samples: keep it stable, and distinct
    from the run's other streams (source 0, target 1, ...)."""

    dataset: Dataset
    batch_size: int
    id: int
    sampler: Sampler | None = None   # e.g. rare-class sampling


class Step:
    """A method's training state. `fit` calls, in this order:

        streams()                      once per stage: the batch streams, by name
        begin()                        on a fresh start of the stage only (not on a resume)
        train_step(batch, it, gen)     per iteration: forward and backward, returns the losses;
                                       `batch` holds one batch per stream name, `it` counts this
                                       stage's iterations from 0, `gen` is seeded by (seed, it, rank)
        update()                       once the losses are finite: optimiser and schedule steps
        evaluate(dataset)              on rank 0, networks in eval mode: `data.target_val` at the
                                       eval cadence (the metrics Tune and Optuna see: miou, iou.<class>),
                                       and at the end of each stage `data.target_test`, the held-out
                                       split nothing is tuned on, when there is one (reported as test.*)
        pictures(dataset, indices)     at the run's final evaluation: the method's own pictures beside
                                       the predictions the evaluator recorded (methods/engine/pictures.py)
        state_dict() / load_state_dict(state)    everything a resume needs, CPU or device tensors

    `networks` are put in training mode for training and eval mode for evaluation; `data` is the
    run's UDAData (methods/engine/uda_data.py).
    """

    networks: tuple[torch.nn.Module, ...] = ()
    data: UDAData

    def streams(self) -> dict[str, Stream]:
        raise NotImplementedError

    def begin(self) -> None:
        pass

    def train_step(self, batch: dict[str, dict], it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self) -> None:
        raise NotImplementedError

    def evaluate(self, dataset: Dataset) -> dict:
        raise NotImplementedError

    def pictures(self, dataset: Dataset, indices: list[int]) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, str]]:
        """A method's own pictures of `indices` of `dataset` beside its prediction, at the final
        evaluation: ({name: {index: RGB [H, W, 3] uint8 or train-id map [H, W]}}, {name: caption})."""
        return {}, {}

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


def _enter_stage(run: Run, stage: str, iterations: int) -> int:
    """Register `stage` with the run; returns the iterations of the stages before it (its reports count on)."""
    if stage in run.stages:
        raise ValueError(f"stage {stage!r} is fit twice in one run; give each stage its own name")
    run.stages.append(stage)
    offset, run.iteration = run.iteration, run.iteration + iterations
    return offset


def fit(run: Run, step: Step, *, stage: str, iterations: int, eval_every: int, last: bool = True) -> Step:
    """Train `step` for `iterations` iterations as the stage named `stage` of the run.

    Reports (and checkpoints) every `eval_every` iterations and at the end of the stage; report
    iterations count on from the stages before. `last`: the run's final stage (its final
    report says done). Resumes: a checkpoint of this stage is loaded and training goes on from
    its iteration; a checkpoint of a later stage means this one finished before (the later
    stage's state holds what it needs of it), so it is skipped.
    """
    offset = _enter_stage(run, stage, iterations)
    start, ckpt = 0, run.checkpoint
    if ckpt is not None and ckpt["stage"] != stage:
        return step                                  # resumed in a later stage
    if ckpt is not None:
        run.checkpoint = None
        step.load_state_dict(ckpt["state"])
        set_rng_state(run.own_rng(ckpt["rng"]))
        start = ckpt["iteration"] - offset
    else:
        step.begin()
    if start >= iterations:
        if last:
            run.report_final_again()
        return step

    streams = {name: batches(s.dataset, s.batch_size, seed=run.seed, stream=s.id, start=start, rank=run.rank,
                             world=run.world, device=run.device, sampler=s.sampler)
               for name, s in step.streams().items()}
    meter, clock = LossMeter(), run.clock
    when = run.config.get("pictures", "final")
    if when not in PICTURES_WHEN:
        raise ConfigError(f"pictures must be one of {PICTURES_WHEN}, got {when!r}")
    prov = {**provenance.software(), **provenance.data_provenance(step.data)}   # what the result depends on
    for net in step.networks:
        net.train()
    clock.add("setup", time.perf_counter() - run._setup_from)
    for it in range(start, iterations):
        gen = torch.Generator().manual_seed(derive_seed(run.seed, 7, it, run.rank))  # crops, mixing, jitter
        with clock("data"):
            batch = {name: next(s) for name, s in streams.items()}
        with clock("step"):
            losses = step.train_step(batch, it, gen)
            check_finite(losses, offset + it + 1, stage)  # before the update: a NaN never reaches the weights
        with clock("update"):
            step.update()
        meter.add(**losses)

        if (it + 1) % eval_every == 0 or it + 1 == iterations:
            end = it + 1 == iterations
            metrics, files = {}, None
            if run.rank == 0:
                with torch.no_grad(), eval_mode(*step.networks), clock("evaluate"):
                    val = step.data.target_val
                    if (last and end) or when == "every":   # pictures of a few images: the final evaluation's
                        chosen = pictures.chosen(val)
                        with pictures.recording(val, chosen) as predictions:
                            metrics = step.evaluate(val)
                        if predictions:          # a Step scoring with the shared evaluator
                            files = pictures.picture_files(val, predictions, *step.pictures(val, chosen))
                            if when == "every":  # each evaluation's, carried into every later checkpoint
                                run.picture_files.update(pictures.at_iteration(files, offset + it + 1))
                                files = {**run.picture_files, **(files if last and end else {})}
                    else:
                        metrics = step.evaluate(val)
                    if end and step.data.target_test is not None:  # once per stage, at its end: the result
                        metrics.update({f"test.{k}": v for k, v in step.evaluate(step.data.target_test).items()})
            with clock("checkpoint"):
                state = step.state_dict()
                if last and end:             # the run's final checkpoint: nothing trains on from it
                    state = without_optimizer_moments(state)
                run.report({"iteration": offset + it + 1, "stage": stage, **metrics, **meter.pop(),
                            "done": last and end, **prov},
                           state={"iteration": offset + it + 1, "stage": stage, "state": state}, files=files)
    run._setup_from = time.perf_counter()            # the next stage's setup starts here
    return step


def adopt(run: Run, step: Step, *, stage: str, iterations: int,
          shared: Callable[[], tuple[dict, list[dict], str]]) -> Step:
    """The stage named `stage` as another run trained it, instead of `fit`: an artifact that every
    trial differing only in later stages reads (UDAS's UDA stage under a τ search). `shared()` returns
    (the other run's final state of the stage, its reports of the stage, the artifact's name); the
    state is loaded into `step`, the reports join this run's history as they were, marked
    `shared_from`, and iterations count on as if `fit` had trained it. Its later stages then see
    what they would have seen after their own `fit` of it: their batches and draws are seeded by
    (seed, stream, iteration), not by what ran before. A run resumed in a later stage skips it, as
    `fit` does (its checkpoint and history hold what it needs); `shared` is then not called."""
    offset = _enter_stage(run, stage, iterations)
    if run.checkpoint is not None:
        if run.checkpoint["stage"] == stage:
            raise RuntimeError(f"the checkpoint is inside stage {stage!r}, which this run now reads from an "
                               f"artifact: it was written by a run that trained the stage itself; resume with the "
                               f"config that wrote it, or start over (--restart)")
        return step
    state, reports, name = shared()
    step.load_state_dict(state)
    for report in reports:
        run.report({**without_timings(report), "iteration": offset + report["iteration"], "stage": stage,
                    "done": False, "shared_from": name})
    run._setup_from = time.perf_counter()
    return step


def without_optimizer_moments(state: dict) -> dict:
    """A Step's state_dict with its optimisers' per-parameter state (SGD's momentum, AdamW's two
    moments: one to two copies of the model) emptied: what a finished run's last checkpoint keeps.
    Resuming from it trains nothing (fit reports the final metrics again), but it still loads
    (`optimizer.load_state_dict` takes an empty state and keeps the param groups), so the
    networks come back for whoever uses the trained model (an artifact's build, a user)."""
    def emptied(v):
        is_optimizer = isinstance(v, dict) and {"state", "param_groups"} <= set(v)
        return {**v, "state": {}} if is_optimizer else v
    return {k: emptied(v) for k, v in state.items()}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def run_local(method: str | Callable[[dict], Any], config: dict, checkpoint_dir: str | Path | None = None) -> list[dict]:
    """Run a method loop in this process, without Ray. Returns every report.

    With `checkpoint_dir`, checkpoints are written there and a later call with the same
    directory resumes from them (the same contract as a Ray Train run). A call inside a running
    method (e.g. an artifact's build, such as CycleGAN's, inside a trial) runs as its own local
    run and hands the outer run its session back when it returns.
    """
    global _LOCAL
    from udalab.methods import get_method

    fn = get_method(method) if isinstance(method, str) else method
    outer, _LOCAL = _LOCAL, _LocalSession(Path(checkpoint_dir) if checkpoint_dir is not None else None)
    try:
        fn(config)
        return _LOCAL.reports
    finally:
        _LOCAL = outer


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module):
    """Put modules in eval mode and restore their previous modes afterwards."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def autocast(device: torch.device, precision: str):
    """Mixed precision for forward passes: "fp32" (off) or "bf16" (no loss scaling needed)."""
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") and isinstance(
        module, torch.nn.parallel.DistributedDataParallel) else module
