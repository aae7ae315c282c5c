import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")

# The suite runs in pytest-xdist workers (pyproject.toml's addopts): each worker's torch, and the
# processes it starts, use the cores divided among the workers, so that they do not oversubscribe them
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which writes the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """For --dist loadgroup (pyproject.toml's addopts, with --no-loadscope-reorder): the tests of a
    module that defines a module- or session-scoped fixture run in one worker, so the fixture is built
    once; the modules that read the freshly generated twins (fresh_twins, a minute to make) share one.
    Every other test is a unit of its own. The Ray tests (marked ray, minutes each) are handed out
    first, so that the suite does not end with one of them running alone."""
    twins = {item.module.__name__ for item in items if "fresh_twins" in item.fixturenames}
    shared = {item.module.__name__ for item in items if _uses_a_fixture_of_its_module(item)}
    for item in items:
        name = item.module.__name__
        if name in twins or name in shared:
            item.add_marker(pytest.mark.xdist_group("fresh_twins" if name in twins else name))
    items.sort(key=lambda item: item.get_closest_marker("ray") is None)       # stable: ray first


def _uses_a_fixture_of_its_module(item) -> bool:
    module = item.nodeid.split("::")[0]
    return any(d.scope in ("module", "session") and d.baseid == module
               for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)


@pytest.fixture(scope="session")
def mini_data():
    """The embedded mini GTA5 and Cityscapes (generated once into the user cache)."""
    from udalab.datasets import mini_root

    return {name: mini_root(name) for name in ("gta5", "cityscapes")}


@pytest.fixture(scope="session")
def fresh_twins(tmp_path_factory):
    """Every mini twin generated from scratch through mini_root into one temporary cache (not the
    user's): {name: root}. Generated once per session (about a minute on the 2-core machine); the
    tests that read it leave its files as they are, and point UDALAB_DATA_CACHE at it themselves
    (it is set here only while generating, not for the rest of the session)."""
    from udalab.datasets import mini_root

    cache = tmp_path_factory.mktemp("fresh-twins")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UDALAB_DATA_CACHE", str(cache))
        return {name: mini_root(name) for name in ("gta5", "cityscapes", "synthia", "mfnet", "voc")}


@pytest.fixture
def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for a test's server: moto, Ray's dashboard)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_results(free_port):
    """An S3-compatible server on localhost (moto's, in a thread of this process) with a bucket; the
    results URI names it the way a MinIO or Ceph user would (docs/cluster.md)."""
    import pyarrow.fs as pafs

    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port, verbose=False)
    server.start()
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{free_port}", scheme="http",
                          allow_bucket_creation=True).create_dir("udalab")
        yield f"s3://udalab/results?endpoint_override=127.0.0.1:{free_port}&scheme=http"
    finally:
        server.stop()
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


class Killed(Exception):
    """Raised by `killed_after` where a run is 'killed'."""


@pytest.fixture
def killed_after():
    """`with killed_after(n): run_local(...)`: the run stops right after its report (and checkpoint) at
    iteration n or later, as if killed there; the block expects that stop."""
    import contextlib

    from udalab.methods import engine

    @contextlib.contextmanager
    def kill(iteration: int):
        original = engine.Run.report

        def report(self, metrics, state=None, files=None, history=True):
            original(self, metrics, state, files, history)
            if metrics["iteration"] >= iteration:
                raise Killed(f"killed after iteration {metrics['iteration']}")

        engine.Run.report = report
        try:
            with pytest.raises(Killed):
                yield
        finally:
            engine.Run.report = original

    return kill
