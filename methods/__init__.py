"""Method registry (timm-style): `@register("name")` on a method's `train_loop(config)`.

A method is one file in this folder that reads top to bottom like its paper's algorithm;
importing the package registers them all.
"""
from __future__ import annotations

import importlib
from typing import Callable

METHODS: dict[str, Callable[[dict], None]] = {}

# Method modules, imported lazily so that `import udalab.methods` stays cheap.
_MODULES = ("source_only", "advent", "adaptsegnet", "intrada", "daformer", "hrda")


def register(name: str):
    def deco(fn):
        if name in METHODS and METHODS[name] is not fn:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = fn
        fn.method_name = name
        return fn
    return deco


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
