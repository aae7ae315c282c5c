"""Method registry (timm-style): `@register("name")` on a method's `train_loop(config)`.

A method is one file in this folder that reads top to bottom like its paper's algorithm;
importing the package registers them all.
"""
from __future__ import annotations

import importlib
from typing import Callable

METHODS: dict[str, Callable[[dict], None]] = {}
HPARAMS: dict[str, tuple[type, dict]] = {}   # name -> (hyperparameter dataclass, presets)
DATA_CHECKS: dict[str, Callable] = {}         # name -> check(hp, config): a value checked against the data

# Method modules, imported lazily so that `import udalab.methods` stays cheap.
_MODULES = ("source_only", "advent", "adaptsegnet", "intrada", "daformer", "hrda", "udas", "supervised", "ms_uda",
            "mml", "multidecoder")


def register(name: str, hparams: type | None = None, presets: dict | None = None, check_data: Callable | None = None):
    """Register a train_loop; `hparams` / `presets`: its dataclass and presets, so that a study can
    check every trial's config (`check_config`) before any trial starts; `check_data(hp, config)`:
    the checks that need the data (e.g. a count of labelled images against the split's size)."""
    def deco(fn):
        if name in METHODS and METHODS[name] is not fn:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = fn
        if hparams is not None:
            HPARAMS[name] = (hparams, presets or {})
        if check_data is not None:
            DATA_CHECKS[name] = check_data
        fn.method_name = name
        return fn
    return deco


def check_config(config: dict, data: bool = False):
    """The hyperparameters `config` gives its method (config["method"]); a bad name or value raises
    the ConfigError the trial itself would raise. data=True: also the method's checks against the
    data it names (the datasets' file lists are read; the mini twins are made if missing)."""
    from udalab.methods.engine import make_hparams

    get_method(config["method"])
    if config["method"] not in HPARAMS:
        return None
    cls, presets = HPARAMS[config["method"]]
    hp = make_hparams(cls, config, presets)
    if data and config["method"] in DATA_CHECKS:
        DATA_CHECKS[config["method"]](hp, config)
    return hp


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(f"udalab.methods.{mod}")


def get_method(name: str) -> Callable[[dict], None]:
    _load_all()
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def list_methods() -> list[str]:
    _load_all()
    return sorted(METHODS)
