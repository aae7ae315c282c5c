"""udalab's methods: one file per method at this level, reading top to bottom like its paper's
algorithm box; networks in nets/, the engine's parts in engine/, shared pieces of the algorithms
in parts/.

The registry (methods/engine/registry.py) is this package's surface for studies and tools:
"""
from udalab.methods.engine.registry import (METHODS, Method, Trained, check_config, get_method, list_methods,
                                            load_trained, run_local, train_loop)

__all__ = ["METHODS", "Method", "Trained", "check_config", "get_method", "list_methods", "load_trained", "run_local",
           "train_loop"]
