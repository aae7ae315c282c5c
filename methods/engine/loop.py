"""The one training loop every method runs through: a method's `Step` and the engine's `fit`.

A Step is a method's training state: one iteration from its batches, its evaluation, and what a
checkpoint holds. `fit` owns everything around it, once: the resume from a checkpoint, the seeded
batch streams, the per-iteration generator, the finite-loss guard, the loss meters, the
evaluation cadence, the pictures of the final evaluation, and the report with its checkpoint
(at each evaluation and, between evaluations, every `checkpoint_minutes` of wall time).

A multi-stage method (IntraDA: inter -> intra; UDAS: uda -> round1 ...) is a sequence of `fit`
calls; a resumed run skips the stages before its checkpoint's and lands in that stage at its
iteration.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from udalab.core.layout import CheckpointError
from udalab.methods.engine import pictures, provenance
from udalab.methods.engine.batches import Stream, batches
from udalab.methods.engine.config import ConfigError
from udalab.methods.engine.rng import derive_seed, set_rng_state
from udalab.methods.engine.run import Run, without_timings

PICTURES_WHEN = ("final", "every")
CHECKPOINT_MINUTES = 30.0     # a checkpoint between evaluations after this much wall time (run key checkpoint_minutes)
STAT_PREFIX = "stat."         # a train_step entry that is a statistic, not a loss


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the trial stops, its last checkpoint is kept."""


class Step:
    """A method's training state. `fit` calls, in this order:

        streams()                      once per stage: the batch streams, by name
        begin()                        on a fresh start of the stage only (not on a resume)
        train_step(batch, it, gen)     per iteration: forward and backward, returns {name: value}: losses
                                       (reported as loss.<name>, checked finite before any update) and
                                       statistics named "stat.<name>" (reported as they are); `batch` holds
                                       one batch per stream name, `it` counts this stage's iterations from 0,
                                       `gen` is seeded by (seed, it, rank)
        update()                       once the losses are finite: optimiser and schedule steps
        evaluate(dataset, record)      on rank 0, networks in eval mode: `data.target_val` at the eval
                                       cadence (the metrics Tune and Optuna see: miou, iou.<class>), and at
                                       the end of each stage `data.target_test` (reported as test.*);
                                       `record` (pictures.Recording or None) goes to the shared evaluator,
                                       which keeps the predictions of the images it names
        pictures(dataset, indices)     at the final evaluation: the method's own pictures beside the
                                       recorded predictions (methods/engine/pictures.py)

    `networks` are put in training mode for training and eval mode for evaluation; `data` is the
    run's UDAData. A checkpoint holds the attributes named in `saved`: networks (unwrapped from DDP),
    optimisers, schedules and EMA teachers by their state_dict, anything else as it is.
    """

    networks: tuple[torch.nn.Module, ...] = ()
    saved: tuple[str, ...] = ()
    data = None

    def streams(self) -> dict[str, Stream]:
        raise NotImplementedError

    def begin(self) -> None:
        pass

    def train_step(self, batch: dict[str, dict], it: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self) -> None:
        raise NotImplementedError

    def evaluate(self, dataset: Dataset, record: pictures.Recording | None = None) -> dict:
        raise NotImplementedError

    def pictures(self, dataset: Dataset, indices: list[int]) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, str]]:
        """A method's own pictures of `indices` of `dataset` beside its prediction, at the final
        evaluation: ({name: {index: RGB [H, W, 3] uint8 or train-id map [H, W]}}, {name: caption})."""
        return {}, {}

    def state_dict(self) -> dict:
        return {name: _state_of(getattr(self, name)) for name in self.saved}

    def load_state_dict(self, state: dict) -> None:
        missing = [name for name in self.saved if name not in state]
        if missing:
            raise CheckpointError(f"the checkpoint holds no {', '.join(missing)} for {type(self).__name__} (it has "
                                  f"{', '.join(sorted(state))}): it was written by another version of this method; "
                                  f"start the run over (--restart)")
        for name in self.saved:
            value = getattr(self, name)
            if hasattr(value, "load_state_dict"):
                unwrap(value).load_state_dict(state[name])
            else:
                setattr(self, name, state[name])


def _state_of(value):
    return unwrap(value).state_dict() if hasattr(value, "state_dict") else value


# ---------------------------------------------------------------------------------------
# Loss bookkeeping and the finite-loss guard.


class LossMeter:
    """Running means of a Step's losses and statistics between two reports (saved in checkpoints,
    so a run resumed between two reports averages what an uninterrupted one does)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict) -> None:
        for k, v in values.items():  # tensors stay on their device: no sync in the training step
            self.sums[k] = self.sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {(k if k.startswith(STAT_PREFIX) else f"loss.{k}"): float(self.sums[k]) / self.counts[k]
               for k in self.sums}
        self.sums, self.counts = {}, {}
        return out

    def state_dict(self) -> dict:
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])


def losses_of(values: dict) -> dict:
    """The losses among a train_step's values (not its statistics)."""
    return {k: v for k, v in values.items() if not k.startswith(STAT_PREFIX)}


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
                f"Lower the learning rate or the weight of '{name}', or check the input data.")


# ---------------------------------------------------------------------------------------
# fit.


def _enter_stage(run: Run, stage: str, iterations: int) -> int:
    """Register `stage` with the run; returns the iterations of the stages before it (its reports count on)."""
    if stage in run.stages:
        raise ValueError(f"stage {stage!r} is fit twice in one run; give each stage its own name")
    run.stages.append(stage)
    offset, run.iteration = run.iteration, run.iteration + iterations
    return offset


def _resume_stage(run: Run, step: Step, stage: str, offset: int, meter: LossMeter) -> int | None:
    """The stage's first iteration: 0 on a fresh start (after `begin`), the checkpoint's on a resume
    in this stage; None when the checkpoint is of a later stage (this one finished before it)."""
    ckpt = run.checkpoint
    if ckpt is None:
        step.begin()
        return 0
    if ckpt["stage"] != stage:
        return None
    run.checkpoint = None
    step.load_state_dict(ckpt["state"])
    if "meter" in ckpt:
        meter.load_state_dict(ckpt["meter"])
    set_rng_state(run.own_rng(ckpt["rng"]))
    return ckpt["iteration"] - offset


def _settings(run: Run) -> tuple[str, float | None]:
    when = run.config.get("pictures", "final")
    if when not in PICTURES_WHEN:
        raise ConfigError(f"pictures must be one of {PICTURES_WHEN}, got {when!r}")
    minutes = run.config.get("checkpoint_minutes", CHECKPOINT_MINUTES)
    if minutes is not None and (not isinstance(minutes, (int, float)) or minutes <= 0):
        raise ConfigError(f"checkpoint_minutes must be a positive number of minutes (or null: at evaluations only), "
                          f"got {minutes!r}")
    return when, minutes


def fit(run: Run, step: Step, *, stage: str, iterations: int, eval_every: int, last: bool = True) -> Step:
    """Train `step` for `iterations` iterations as the stage named `stage` of the run.

    Reports (and checkpoints) every `eval_every` iterations and at the end of the stage; report
    iterations count on from the stages before. `last`: the run's final stage (its final
    report says done). Resumes: a checkpoint of this stage is loaded and training goes on from
    its iteration; a checkpoint of a later stage means this one finished before (the later
    stage's state holds what it needs of it), so it is skipped.
    """
    offset, meter = _enter_stage(run, stage, iterations), LossMeter()
    start = _resume_stage(run, step, stage, offset, meter)
    if start is None:
        return step
    if start >= iterations:
        if last:
            run.report_final_again()
        return step
    when, minutes = _settings(run)
    streams = {name: batches(s.dataset, run.per_rank(s.batch_size), seed=run.seed, stream=s.id, start=start,
                             rank=run.rank, world=run.world, device=run.device, sampler=s.sampler)
               for name, s in step.streams().items()}
    # what the result depends on: software, data, the backbones' weights
    prov = {**provenance.software(), **provenance.data_provenance(step.data), **run.provenance}
    for net in step.networks:
        net.train()
    clock = run.clock
    clock.add("setup", time.perf_counter() - run.setup_from)
    saved_at = time.monotonic()
    for it in range(start, iterations):
        gen = torch.Generator().manual_seed(derive_seed(run.seed, 7, it, run.rank))  # crops, mixing, jitter
        with clock("data"):
            batch = {name: next(s) for name, s in streams.items()}
        with clock("step"):
            values = step.train_step(batch, it, gen)
            check_finite(losses_of(values), offset + it + 1, stage)  # before the update: a NaN never reaches the weights
        with clock("update"):
            step.update()
        meter.add(values)
        run.session.progress(offset + it + 1, run.total_iterations or offset + iterations)
        end = it + 1 == iterations
        if (it + 1) % eval_every == 0 or end:
            _evaluate_and_report(run, step, stage, offset + it + 1, meter, prov, when, final=last and end, end=end)
            saved_at = time.monotonic()
        elif minutes is not None and time.monotonic() - saved_at > 60 * minutes:
            _checkpoint_between(run, step, stage, offset + it + 1, meter)
            saved_at = time.monotonic()
    run.setup_from = time.perf_counter()            # the next stage's setup starts here
    return step


def _evaluate_and_report(run: Run, step: Step, stage: str, iteration: int, meter: LossMeter, prov: dict,
                         when: str, final: bool, end: bool) -> None:
    """An evaluation (rank 0) and the report with its checkpoint: the val metrics, the test split's at
    the stage's end, the pictures of the final evaluation (and of every one with pictures="every")."""
    metrics, files = {}, None
    clock = run.clock
    if run.rank == 0:
        with torch.no_grad(), eval_mode(*step.networks), clock("evaluate"):
            val = step.data.target_val
            if final or when == "every":
                chosen = pictures.chosen(val)
                record = pictures.Recording(val, chosen)
                metrics = step.evaluate(val, record)
                if record.predictions:          # a Step scoring with the shared evaluator
                    files = pictures.picture_files(val, record.predictions, *step.pictures(val, chosen))
                    if when == "every":        # each evaluation's, carried into every later checkpoint
                        run.picture_files.update(pictures.at_iteration(files, iteration))
                        files = {**run.picture_files, **(files if final else {})}
            else:
                metrics = step.evaluate(val)
            if end and step.data.target_test is not None:  # once per stage, at its end: the result
                metrics.update({f"test.{k}": v for k, v in step.evaluate(step.data.target_test).items()})
    with clock("checkpoint"):
        state = step.state_dict()
        if final:                         # the run's final checkpoint: nothing trains on from it
            state = without_optimizer_moments(state)
        run.report({"iteration": iteration, "stage": stage, **metrics, **meter.pop(), "done": final, **prov},
                   state={"iteration": iteration, "stage": stage, "state": state,
                          "classes": list(step.data.class_names)}, files=files)


def _checkpoint_between(run: Run, step: Step, stage: str, iteration: int, meter: LossMeter) -> None:
    """A checkpoint between two evaluations (wall time): the training state and the loss meters, no
    evaluation. Tune sees the last evaluation's metrics again; the history keeps evaluations only."""
    with run.clock("checkpoint"):
        last = next((r for r in reversed(run.history) if "miou" in r), {})
        metrics = {k: v for k, v in last.items() if k in ("miou", "pixel_acc", "iiou")}
        run.report({"iteration": iteration, "stage": stage, **metrics, "done": False, "between_evaluations": True},
                   state={"iteration": iteration, "stage": stage, "state": step.state_dict(),
                          "meter": meter.state_dict()},
                   history=False)


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
    for report in reports:          # the other run's own total iterations are not this run's
        shared = {k: v for k, v in without_timings(report).items() if k != "iterations_total"}
        run.report({**shared, "iteration": offset + report["iteration"], "stage": stage, "done": False,
                    "shared_from": name})
    run.setup_from = time.perf_counter()
    return step


def without_optimizer_moments(state: dict) -> dict:
    """A Step's state_dict with its optimisers' per-parameter state (SGD's momentum, AdamW's two
    moments: one to two copies of the model) emptied: what a finished run's last checkpoint keeps.
    Resuming from it trains nothing (fit reports the final metrics again), but it still loads
    (`optimizer.load_state_dict` takes an empty state and keeps the param groups), so the
    networks come back for whoever uses the trained model (an artifact's build, `load_trained`)."""
    def emptied(v):
        is_optimizer = isinstance(v, dict) and {"state", "param_groups"} <= set(v)
        return {**v, "state": {}} if is_optimizer else v
    return {k: emptied(v) for k, v in state.items()}


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
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
