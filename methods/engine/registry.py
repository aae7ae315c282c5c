"""The method registry (timm-style), and the one place a run is opened.

A method is one file in methods/ that registers its algorithm:

    @register("advent", AdventConfig, PRESETS, trained=trained_advent)
    def advent(run: Run, hp: AdventConfig, data: UDAData) -> Step:
        G = build_model(run, hp, data.num_classes)
        return fit(run, AdventStep(run, hp, data, G), stage="inter", iterations=hp.iterations,
                   eval_every=hp.eval_every)

and the engine does the rest: `train_loop(config)` (what Ray Train's TorchTrainer runs on every
worker, and `run_local` in this process) builds the hyperparameters (paper defaults < preset <
config, strict: a key the method does not read is refused), refuses a run whose backbone lacks its
weights (methods/nets/weights.py), starts the run, opens the data and calls the algorithm, which
returns its last Step. `trained(hp, num_classes, state) -> Prediction` rebuilds
the trained model from a checkpoint's state the way the method evaluates it (`load_trained`).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from typing import Any, Callable

from udalab.core import layout
from udalab.methods.engine.config import RUN_KEYS, HParams, make_hparams, preset_of
from udalab.methods.engine.evaluate import Prediction
from udalab.methods.engine.run import LocalSession, RaySession, Run
from udalab.methods.engine.uda_data import UDAData, build_uda_data

log = logging.getLogger("udalab")

# Method modules, imported on first use so that `import udalab.methods` stays cheap.
MODULES = ("source_only", "advent", "adaptsegnet", "intrada", "daformer", "hrda", "cyclegan", "udas", "supervised",
           "ms_uda", "mml", "multidecoder")


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its algorithm, its hyperparameters and how its data is opened."""

    name: str
    algorithm: Callable[[Run, Any, UDAData], Any]     # the stages: Steps and their fits; returns the last Step
    config: type                                      # the hyperparameter dataclass (HParams parts)
    presets: dict                                     # {"mini": {...}, "smoke": {...}}; "paper" = the defaults
    datasets: tuple[str, str] = ("gta5", "cityscapes")  # source and target unless the config names others
    check_data: Callable | None = None                # check(hp, config) against the data, before any trial
    trained: Callable[[Any, int, dict], Prediction] | None = None   # (hp, num_classes, state) -> Prediction

    def reads(self, key: str) -> bool:
        """Whether a run config's `key` means something to this method (a field of its config or a run key)."""
        return key in RUN_KEYS or key in {f.name for f in dataclasses.fields(self.config)}

    def hparams(self, config: dict) -> HParams:
        return make_hparams(self.config, config, self.presets, method=self.name)

    def data(self, config: dict, hp: HParams) -> UDAData:
        source, target = self.datasets
        return build_uda_data({"source": source, "target": target, **config}, **hp.images())


METHODS: dict[str, Method] = {}


def register(name: str, config: type, presets: dict | None = None, *, datasets: tuple[str, str] | None = None,
             check_data: Callable | None = None, trained: Callable | None = None):
    """Register the decorated algorithm(run, hp, data) as method `name`."""
    def deco(algorithm):
        method = Method(name, algorithm, config, presets or {}, datasets or Method.datasets, check_data, trained)
        if name in METHODS and METHODS[name].algorithm is not algorithm:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = method
        return algorithm
    return deco


def _load_all() -> None:
    for mod in MODULES:
        importlib.import_module(f"udalab.methods.{mod}")


def get_method(name: str) -> Method:
    _load_all()
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def list_methods() -> list[str]:
    _load_all()
    return sorted(METHODS)


def check_config(config: dict, data: bool = False) -> HParams:
    """The hyperparameters `config` gives its method (config["method"]); a bad name or value raises
    the ConfigError the trial itself would raise. data=True: also the files the run reads: its
    backbones' weights (the WeightsError the trial would raise) and the method's checks against the
    data it names (the datasets' file lists are read; the mini twins are made if missing)."""
    method = get_method(config["method"])
    hp = method.hparams(config)
    if data:
        require_weights(method, hp, config)
        if method.check_data is not None:
            method.check_data(hp, config)
    return hp


def require_weights(method: Method, hp: HParams, config: dict) -> None:
    """Refuse a run whose backbone has no weights here (a paper-scale preset without its ImageNet file, a
    pretrained=<path> that does not exist): a WeightsError naming the files and where to get them."""
    from udalab.methods.nets.weights import require_weights as require   # nets import the engine: on use

    require(hp.pretrained_backbones(), preset_of(config), method.name)


def backbones_used(presets: tuple[str, ...] = ("paper", "mini")) -> dict[str, list[tuple[str, str, str]]]:
    """{backbone: [(method, preset, pretrained), ...]} of every method at each of `presets` it has."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for name in list_methods():
        method = METHODS[name]
        for preset in (p for p in presets if p == "paper" or p in method.presets):
            for backbone, pretrained in method.hparams({"preset": preset}).pretrained_backbones():
                out.setdefault(backbone, []).append((name, preset, pretrained))
    return out


# ---------------------------------------------------------------------------------------
# Opening a run.


def train_loop(config: dict, session=None):
    """Run the method config["method"] names, as one worker of a run: what Ray Train's TorchTrainer
    calls on every worker (session None: Ray Train's) and `run_local` in this process. Returns the
    method's last Step."""
    from udalab.methods.nets.weights import weights_provenance

    method = get_method(config["method"])
    hp = method.hparams(config)
    require_weights(method, hp, config)     # within seconds: before the session, the data or a network
    run = Run.start(config, session if session is not None else RaySession(), hp.total_iterations,
                    provenance=weights_provenance(hp.pretrained_backbones()))
    data = method.data(config, hp)
    return method.algorithm(run, hp, data)


def run_local(method: str, config: dict, checkpoint_dir: str | Path | None = None, progress: bool = False
              ) -> list[dict]:
    """Run a method in this process, without Ray; returns every report. With `checkpoint_dir`,
    checkpoints are written there and a later call with the same folder resumes from them (the same
    contract as a Ray Train run). An artifact's build inside a trial runs this way too: a run of its own."""
    session = LocalSession(checkpoint_dir, device=config.get("device"), progress=progress)
    train_loop({**config, "method": method}, session)
    return session.reports


def trained_once(kind: str, key: dict, config: dict,
                 files: tuple[str, ...] = (layout.STATE_FILE, layout.HISTORY_FILE)) -> Path:
    """The run `config`, trained once as the trained artifact `kind` keyed by `key`
    (artifacts.get_or_build_trained): a run of its own in the build's checkpoint folder (a killed build
    resumes there), whose final checkpoint's `files` (the state, every report) are the artifact's.
    With layout.CONFIG_FILE among them, the run's config replaces the artifact's copy of its key
    (the manifest keeps the key), and `load_trained` reads the folder."""
    from udalab.methods.engine.artifacts import get_or_build_trained

    def build(tmp: Path, partial: Path) -> None:
        run_local(config["method"], config, checkpoint_dir=partial)
        for name in files:
            (partial / name).replace(tmp / name)

    return get_or_build_trained(kind, key, build)


def shared_stage(kind: str, key: dict, config: dict) -> Callable[[], tuple[dict, list[dict], str]]:
    """What `adopt` reads: the run `config`, trained once (`trained_once`), as (its final state, its
    reports, the artifact's name). Called only when the trial needs the stage (`adopt` skips it on a
    resume past it)."""
    def read() -> tuple[dict, list[dict], str]:
        root = trained_once(kind, key, config)
        log.info("stage read from %s (trained once for every trial with these settings)", root)
        saved = layout.read_checkpoint(root)
        return saved["state"]["state"], saved["history"], root.name

    return read


# ---------------------------------------------------------------------------------------
# A trained run, back.


@dataclasses.dataclass
class Trained:
    """A trained run's model, predicting the way its method evaluates; `classes`: the class names it
    was trained on (None for a checkpoint that does not name them), `checkpoint`: the folder read,
    `device`: where the model is."""

    config: dict
    hp: HParams
    prediction: Prediction
    history: list[dict]
    classes: tuple[str, ...] | None = None
    checkpoint: Path | None = None
    device: Any = None


def load_trained(path: str | Path, device: str | None = None) -> Trained:
    """The trained model of a run: `path` is a checkpoint folder (state.pt + config.json) or its state.pt,
    a Train run folder (its newest checkpoint_*), a Tune trial folder (its Train run under the study's
    _train/) or a local runner's run folder (`layout.checkpoint_folder`)."""
    folder = layout.checkpoint_folder(Path(path))
    saved = layout.read_checkpoint(folder)
    config = saved["config"]
    if config is None:
        raise layout.CheckpointError(f"{folder} has no {layout.CONFIG_FILE}: it was written before checkpoints "
                                     f"carried their run's config, so its model cannot be rebuilt; train the run again")
    method = get_method(config["method"])
    if method.trained is None:
        raise ValueError(f"method {method.name!r} has no trained model to load (it is a stage: its artifact is its output)")
    hp = method.hparams(config)
    classes = saved["state"].get("classes")
    num_classes = len(classes) if classes else _num_classes(saved["history"], config)
    session = LocalSession(device=device or config.get("device"))
    prediction = method.trained(hp, num_classes, saved["state"]["state"])
    prediction.to(session.device)
    return Trained(config, hp, prediction, saved["history"], tuple(classes) if classes else None, folder,
                   session.device)


def _num_classes(history: list[dict], config: dict) -> int:
    """The number of classes the run trained on: its per-class IoU keys, else its target dataset's."""
    ious = {k for report in history for k in report if k.startswith("iou.")}
    if ious:
        return len(ious)
    from udalab.datasets import build_dataset

    return build_dataset(config.get("target", "cityscapes"), root=None, split="val").num_classes
