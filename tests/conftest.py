import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")


@pytest.fixture(scope="session")
def mini_data():
    """The embedded mini GTA5 and Cityscapes (generated once into the user cache)."""
    from udalab.datasets import mini_root

    return {name: mini_root(name) for name in ("gta5", "cityscapes")}
