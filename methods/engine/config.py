"""A run's config and a method's hyperparameters.

A run config is a flat dict: run keys (RUN_KEYS: which method, seed, data, preset, device, ...)
and hyperparameter overrides, each named as a field of the method's hyperparameter dataclass.
`make_hparams` builds that dataclass as paper defaults < preset < config, and refuses a key the
method does not read, naming the ones it does.

A method's dataclass is composed of small parts (a model, an optimiser and its schedule, a
CycleGAN stage, ...), each a dataclass deriving from `HParams`, with the paper's defaults; a
method's own class lists its parts as bases and adds its own fields:

    @dataclass
    class SourceOnlyConfig(DeepLabModel, SGDPoly, UDAImages, MultiLevel, HParams): ...

Parts validate their own fields (`validate` calls `super().validate()` first) and may say which
iterations a run has in all (`total_iterations`) and which images it trains on (`images`).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np

# Keys of a run config that are not hyperparameters of the method.
#   pictures: "final" (the run's last evaluation keeps pictures of a few val images) or "every"
#   test_split: the held-out split of the target on real data (methods/engine/uda_data.py)
#   artifacts: where the run's shared artifacts live (methods/engine/artifacts.py)
RUN_KEYS = frozenset({"method", "seed", "source", "target", "data_root", "preset", "device", "pictures",
                      "test_split", "artifacts"})
PRESET_NAMES = ("paper", "mini", "smoke")


class ConfigError(ValueError):
    """A run config names an unknown hyperparameter or gives it a wrong value."""


@dataclasses.dataclass
class HParams:
    """The base of every hyperparameter dataclass and of its parts."""

    def validate(self) -> None:
        """Raise ConfigError on a bad value (parts extend it, calling super().validate() first)."""

    @property
    def total_iterations(self) -> int:
        """Optimiser steps of the whole run, all stages (progress and time estimates)."""
        return int(getattr(self, "iterations"))

    def images(self) -> dict:
        """What `build_uda_data` needs beyond the config's datasets: source_size, target_size[, crop, flip]."""
        return {"source_size": getattr(self, "source_size"), "target_size": getattr(self, "target_size")}

    def pretrained_backbones(self) -> list[tuple[str, str]]:
        """(backbone, pretrained) of the backbones the run builds, e.g. [("resnet101", "imagenet")]: checked
        before the run starts and recorded in its provenance (methods/nets/weights.py). Every method names
        them alike: `pretrained` with `backbone_depth` (a ResNet: the DeepLab-v2 family, MML, MS-UDA, the
        multi-decoder U-Net; each of their encoders) or with `backbone` (a MiT: DAFormer and HRDA, whose
        feature distance loads the same weights); a method built otherwise says so here."""
        pretrained = getattr(self, "pretrained", None)
        if pretrained is None:
            return []
        if hasattr(self, "backbone_depth"):
            return [(f"resnet{self.backbone_depth}", pretrained)]
        return [(self.backbone, pretrained)] if hasattr(self, "backbone") else []

    # What `udalab preflight` (studies/run/preflight.py) runs instead of the paper's schedule and sizes.
    # Each part adds its own fields, calling super() first.

    def shortened(self, iterations: int, eval_every: int) -> dict:
        """Overrides that cut every stage of the run, and every artifact it trains from this config's
        fields (a CycleGAN), to `iterations` iterations, evaluated every `eval_every` and at the end."""
        return {"iterations": iterations}

    def scaled(self, factor: float) -> dict:
        """Overrides that scale every image size (and pixel count) the run trains and evaluates at by
        `factor`, the training crops included."""
        return {}

    def nested_runs(self) -> dict[str, dict]:
        """{config key: the run config of a run trained inside this one whose settings that key
        overrides} (MML's expert); preflight shortens and scales those runs too."""
        return {}


def scale_size(size, factor: float, least: int = 16):
    """A (W, H) size scaled by `factor`, each side rounded, at least `least` pixels; None stays None."""
    if size is None:
        return None
    return tuple(max(least, round(side * factor)) for side in size)


def fields_of(cls: type, values: dict) -> dict:
    """The entries of `values` that are fields of `cls` (a preset of a method that another, with fewer
    fields, runs: source only on ADVENT's mini preset)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def preset_of(config: dict) -> str:
    """The preset a run config names ("mini" unless it names one)."""
    return config.get("preset", "mini")


def make_hparams(cls: type, config: dict, presets: dict[str, dict] | None = None, method: str | None = None):
    """Build a method's hyperparameter dataclass: paper defaults < presets[preset] < config.

    `preset` selects a preset ("paper" = the dataclass defaults, "mini" = the embedded mini
    data, "smoke" = seconds-scale checks). Any other key of `config` that is not a run key
    must be a field.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    preset = preset_of(config)
    presets = presets or {}
    if preset != "paper" and preset not in presets:
        raise ConfigError(f"preset={preset!r} is not known for {cls.__name__}; use 'paper' or one of "
                          f"{sorted(presets)}")
    values: dict[str, Any] = dict(presets.get(preset, {}))
    unknown = sorted(k for k in {*values, *config} if k not in fields and k not in RUN_KEYS)
    if unknown:
        who = method or cls.__name__
        raise ConfigError(f"{who} does not read {', '.join(map(repr, unknown))}; {who} reads: "
                          f"{', '.join(sorted(fields))}")
    values.update({k: v for k, v in config.items() if k not in RUN_KEYS})
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        values[key] = _checked(cls.__name__, key, value, fields[key].default, hints.get(key))
    hp = cls(**values)
    hp.validate()
    return hp


def _checked(owner: str, key: str, value, default, hint):
    """`value` for a field whose default is `default`: type-checked, numbers cast, lists made tuples."""
    if value is None and _optional(hint):
        return value
    if isinstance(default, bool) and not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}.{key} must be true/false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
            raise ConfigError(f"{owner}.{key} must be a number, got {value!r}")
        if isinstance(default, int) and float(value) != int(value):
            raise ConfigError(f"{owner}.{key} must be an integer, got {value!r}")
        return type(default)(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def _optional(hint) -> bool:
    return hint is not None and type(None) in typing.get_args(hint)
