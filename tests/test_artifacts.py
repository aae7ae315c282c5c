"""Artifacts shared by a cluster: built once under a lease every node sees, in a path store, a
file:// or an S3 store (moto's server), read by every process; a builder that dies is taken over
and its successor resumes from its checkpoint; a damaged or unmarked artifact is never read."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from udalab.core import lease, storage
from udalab.methods.engine import artifacts
from udalab.methods.engine.artifacts import ArtifactError, get_or_build, get_or_build_trained


@pytest.fixture(params=["path", "s3"])
def store(request, tmp_path, monkeypatch):
    """An artifact store (a folder, or a URI on an S3-compatible server) with this test's own cache;
    a builder renews its lease each 1/3 s and a dead one is taken over after 1 s."""
    uri = str(tmp_path / "store") if request.param == "path" else \
        storage.uri_join(request.getfixturevalue("s3_results"), "artifacts")
    for k, v in {"UDALAB_ARTIFACTS": uri, "UDALAB_ARTIFACT_CACHE": str(tmp_path / "cache"),
                 "UDALAB_ARTIFACT_LEASE_S": "1", "UDALAB_ARTIFACT_POLL_S": "0.05"}.items():
        monkeypatch.setenv(k, v)
    return uri


CHILD = """
import json, os, sys, time
from pathlib import Path
from udalab.methods.engine.artifacts import get_or_build
while not Path(sys.argv[1], "go").exists():
    time.sleep(0.01)
def build(tmp):
    with open(Path(sys.argv[1], "builds"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)
    (tmp / "x.txt").write_text(str(os.getpid()))
path = get_or_build("race", {"a": 1}, build)
print(json.dumps({"path": str(path), "x": (path / "x.txt").read_text()}))
"""


@pytest.mark.parametrize("store", ["path"], indirect=True)   # on S3: the two-node test below
def test_two_processes_racing_build_once_and_read_one_result(store, tmp_path, monkeypatch):
    monkeypatch.setenv("UDALAB_ARTIFACT_LEASE_S", "60")  # no takeover, however slow this machine
    (tmp_path / "builds").touch()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    (tmp_path / "go").touch()
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    builders = (tmp_path / "builds").read_text().split()
    assert len(builders) == 1
    assert outs[0] == outs[1] and outs[0]["x"] == builders[0]
    assert Path(outs[0]["path"]).parent == artifacts.artifact_root()


TRAINED = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_artifacts import steps_build
from udalab.methods.engine.artifacts import get_or_build_trained
get_or_build_trained("trained", {"a": 1}, lambda tmp, partial: steps_build(tmp, partial, Path(sys.argv[1])))
"""


def steps_build(tmp: Path, partial: Path, stop_at: Path | None = None) -> None:
    """Four steps, a checkpoint (core/layout.py's) after each; with `stop_at`, after two steps it
    says so in that file and waits there for ever (to be stopped or killed)."""
    from udalab.core import layout

    done = layout.read_checkpoint(partial)["state"]["done"] if (partial / layout.STATE_FILE).exists() else []
    for step in range(len(done), 4):
        done.append([step, os.getpid()])
        layout.write_checkpoint(partial, {"done": done, "iteration": step, "stage": "s", "state": {}, "rng": {}}, [])
        if stop_at is not None and len(done) == 2:
            stop_at.write_text("2 steps")
            time.sleep(3600)
    (tmp / "steps.json").write_text(json.dumps(done))


@pytest.mark.parametrize("store, sig", [("path", signal.SIGKILL), ("s3", signal.SIGSTOP)], indirect=["store"],
                         ids=["path-killed", "s3-frozen"])
def test_a_builder_that_dies_is_taken_over_and_its_successor_resumes(store, sig, tmp_path):
    """Killed (its pid gone: taken over at once) or frozen (its lease not renewed: taken over after
    it expires), the first builder's two steps stay done: the second does the last two."""
    name = artifacts.artifact_name("trained", artifacts.trained_config({"a": 1}))
    partial = storage.uri_join(store, f".partial-{name}")
    child = subprocess.Popen([sys.executable, "-c", TRAINED, str(tmp_path / "stopped"), str(Path(__file__).parent)],
                             env={**os.environ, "UDALAB_ARTIFACT_CACHE": str(tmp_path / "other_node_cache")})
    try:
        deadline = time.time() + 300
        while not ((tmp_path / "stopped").exists() and ("://" not in store or _stored_steps(partial) == 2)):
            assert child.poll() is None and time.time() < deadline, "the first builder never reached step 2"
            time.sleep(0.05)
        os.kill(child.pid, sig)
        if sig == signal.SIGKILL:
            child.wait()
        root = get_or_build_trained("trained", {"a": 1}, steps_build)
    finally:
        child.kill()
        child.wait()
    steps = json.loads((root / "steps.json").read_text())
    assert steps == [[0, child.pid], [1, child.pid], [2, os.getpid()], [3, os.getpid()]]
    assert not list(root.parent.glob(".partial-*"))
    assert not storage.is_dir(*storage.fs_path(partial))


def _stored_steps(partial: str) -> int:
    """The steps done in the checkpoint a URI store holds of a build under way (0 when none yet)."""
    import io

    import torch

    try:
        pointer = json.loads(storage.read_text(*storage.fs_path(storage.uri_join(partial, "current.json"))))
        fs, path = storage.fs_path(storage.uri_join(partial, pointer["build"], "state.pt"))
        with fs.open_input_stream(path) as f:
            return len(torch.load(io.BytesIO(f.read()), weights_only=False)["done"])
    except (TypeError, OSError):  # none yet, or replaced by a newer one while read
        return 0


def test_the_owner_of_a_lease_is_gone_only_when_its_pid_is_free_in_this_process_space():
    me = lease._owner()
    assert not lease._gone(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert lease._gone({**me, "pid": child.pid})
    assert not lease._gone({**me, "pid": child.pid, "space": "another machine"})


def test_an_unmarked_or_damaged_artifact_is_never_read(store, tmp_path):
    config, calls = {"a": 1}, []

    def build(tmp):
        calls.append(1)
        (tmp / "x.txt").write_text("whole")
        os.symlink(tmp_path / "data.txt", tmp / "data.txt")

    (tmp_path / "data.txt").write_text("data")
    name = artifacts.artifact_name("demo", config)
    unmarked = storage.uri_join(store, name, *(["deadbeef"] if "://" in store else []), "x.txt")
    storage.write_bytes(unmarked, b"half")  # a build cut short (no manifest)
    root = get_or_build("demo", config, build)
    assert (root / "x.txt").read_text() == "whole" and (root / "data.txt").read_text() == "data" and calls == [1]

    (root / "x.txt").write_text("bad")  # the copy this process reads, damaged
    if "://" in store:  # a cached copy is fetched again
        assert (get_or_build("demo", config, build) / "x.txt").read_text() == "whole" and calls == [1]
        manifest = json.loads(storage.read_text(*storage.fs_path(storage.uri_join(store, name, "manifest.json"))))
        storage.write_bytes(storage.uri_join(store, name, manifest["build"], "x.txt"), b"bad")  # the stored one
        (root / "x.txt").write_text("bad")
    with pytest.raises(ArtifactError, match="delete") as err:
        get_or_build("demo", config, build)
    assert "x.txt is 3 bytes, its manifest says 5" in str(err.value)
    assert storage.uri_join(store, name).split("?")[0] in str(err.value) and calls == [1]


def test_an_artifact_folder_without_its_manifest_is_set_aside_and_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "store"))
    final = artifacts.artifact_path("demo", {"a": 1})
    final.mkdir(parents=True)
    (final / "x.txt").write_text("from an older build")
    root = get_or_build("demo", {"a": 1}, lambda tmp: (tmp / "x.txt").write_text("whole"))
    assert root == final and (root / "x.txt").read_text() == "whole"
    aside = list((tmp_path / "store").glob(f".unmarked-{final.name}-*"))
    assert len(aside) == 1 and (aside[0] / "x.txt").read_text() == "from an older build"


def test_a_trained_artifact_of_an_older_training_is_not_reused(tmp_path, monkeypatch):
    """A trained artifact's key holds TRAINING_VERSION: the same config under a bumped version builds anew."""
    monkeypatch.setenv("UDALAB_ARTIFACTS", str(tmp_path / "store"))
    builds = []

    def build(tmp, partial):
        builds.append(artifacts.TRAINING_VERSION)
        (tmp / "x.txt").write_text("trained")

    old = get_or_build_trained("expert", {"a": 1}, build)
    assert get_or_build_trained("expert", {"a": 1}, build) == old and len(builds) == 1
    monkeypatch.setattr(artifacts, "TRAINING_VERSION", artifacts.TRAINING_VERSION + 1)
    new = get_or_build_trained("expert", {"a": 1}, build)
    assert new != old and builds == [builds[0], builds[0] + 1]
    assert json.loads((new / artifacts.CONFIG).read_text()) == {"a": 1, artifacts.TRAINING_KEY: builds[1]}
    with pytest.raises(ValueError, match=artifacts.TRAINING_KEY):
        get_or_build_trained("expert", {artifacts.TRAINING_KEY: 1}, build)


# ---------------------------------------------------------------------------------------
# Two nodes of a Ray cluster, each with its own cache, one store


@pytest.fixture(scope="module")
def two_nodes():
    """A head (no CPUs) and two 1-CPU nodes, "node0" and "node1" (a custom resource each)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for i in range(2):
        c.add_node(num_cpus=1, resources={f"node{i}": 2})
    c.wait_for_nodes()
    ray.init(address=c.address)
    try:
        yield ray
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["file", "s3"])
def test_tasks_on_two_nodes_build_an_artifact_once_and_read_it_from_their_caches(two_nodes, kind, tmp_path,
                                                                                request):
    ray = two_nodes
    store = f"file://{tmp_path}/store" if kind == "file" else \
        storage.uri_join(request.getfixturevalue("s3_results"), "artifacts")

    def ask(counter: str, env: dict) -> dict:
        import os
        import time

        import ray

        from udalab.methods.engine.artifacts import get_or_build

        os.environ.update(env)  # (not a runtime_env: the workers, torch imported, serve both stores)

        def build(tmp):
            with open(counter, "a") as f:
                f.write(ray.get_runtime_context().get_node_id() + "\n")
            time.sleep(1)  # the other tasks ask meanwhile
            (tmp / "x.txt").write_text("built")

        path = get_or_build("shared", {"a": 1}, build)
        return {"node": ray.get_runtime_context().get_node_id(), "path": str(path), "x": (path / "x.txt").read_text()}

    counter = tmp_path / "builds"
    counter.touch()
    env = {"UDALAB_ARTIFACTS": store, "UDALAB_ARTIFACT_LEASE_S": "30", "UDALAB_ARTIFACT_POLL_S": "0.1",
           **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
              if k in os.environ}}
    task = ray.remote(num_cpus=0)(ask)
    refs = [task.options(resources={f"node{i}": 1})
            .remote(str(counter), {**env, "UDALAB_ARTIFACT_CACHE": str(tmp_path / f"cache{i}")})
            for i in (0, 1) for _ in range(2)]
    results = ray.get(refs, timeout=300)
    assert len(counter.read_text().split()) == 1                      # built once, on one node
    assert {r["x"] for r in results} == {"built"}
    assert len({r["node"] for r in results}) == 2
    for i in (0, 1):                                                  # each node read its own copy
        assert {Path(r["path"]).parent for r in results[2 * i:2 * i + 2]} == {tmp_path / f"cache{i}"}
