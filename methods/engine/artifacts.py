"""Artifacts: what many trials share and no trial should recompute, built once per config.

An artifact (the ImageNet stand-in backbone, later a CycleGAN-translated source set or an
expert's pseudo labels) is a directory named by its kind and a hash of its config:

    $UDALAB_ARTIFACTS/<kind>-<sha256 of the canonical JSON config, 16 hex>/
        config.json       the config it was built from (canonical JSON)
        ...               whatever the kind's build function wrote

    (default root: ~/.cache/udalab/artifacts)

`get_or_build(kind, config, build_fn)` returns that directory, calling `build_fn(tmp_dir)`
only when it does not exist yet. The build writes into a temporary directory beside it
(`.tmp-<kind>-<hash>-<pid>-<random>`), which is renamed to the final name only when
`build_fn` has returned: a directory with the final name is always complete, and a killed
build leaves only a temporary directory that nothing ever reads (the next build of the same
artifact deletes it). An exclusive lock on
`<kind>-<hash>.lock` (fcntl.flock) makes concurrent trials on one machine wait for the
first one's build instead of all building it.

On a cluster, point `UDALAB_ARTIFACTS` at the same directory on shared storage on every
node (e.g. an NFS / EFS mount, through Ray's `runtime_env={"env_vars": {...}}` or the
node's environment): trials on all nodes then reuse one build (flock works on NFSv4 and
EFS; where a file system ignores it, two nodes may both build, and the atomic rename keeps
the first one's result). Without shared storage each node builds its own copy once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


class ArtifactError(RuntimeError):
    """An artifact that cannot be built or read; the message names the path and the fix."""


def artifact_root() -> Path:
    return Path(os.environ.get("UDALAB_ARTIFACTS", Path.home() / ".cache" / "udalab" / "artifacts"))


def canonical_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def artifact_path(kind: str, config: dict) -> Path:
    """The directory of the artifact of `kind` built from `config` (whether it exists or not)."""
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"artifact kind must be a plain name, got {kind!r}")
    return artifact_root() / f"{kind}-{config_hash(config)}"


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks while another process builds
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def get_or_build(kind: str, config: dict, build_fn: Callable[[Path], None]) -> Path:
    """The artifact's directory; `build_fn(tmp_dir)` fills a fresh directory when it is not there yet."""
    final = artifact_path(kind, config)
    if final.is_dir():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactError(f"cannot create the artifact folder {final.parent} ({e}); set UDALAB_ARTIFACTS "
                            f"to a writable folder") from e
    with _locked(final.parent / f"{final.name}.lock"):
        if final.is_dir():  # another process built it while this one waited
            return final
        for stale in final.parent.glob(f".tmp-{final.name}-*"):  # builds killed half-way (nobody else
            shutil.rmtree(stale, ignore_errors=True)              # holds the lock to be writing them)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            (tmp / "config.json").write_text(canonical_json(config) + "\n")
            build_fn(tmp)
            os.rename(tmp, final)  # atomic: the final name only ever holds a whole artifact
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def get_or_build_trained(kind: str, config: dict, build_fn: Callable[[Path, Path], None]) -> Path:
    """`get_or_build` for an artifact whose build trains a model (CycleGAN, an expert):
    `build_fn(tmp_dir, checkpoint_dir)` gets `$UDALAB_ARTIFACTS/.partial-<kind>-<hash>/` for its
    checkpoints, which outlives a killed build (the next build resumes there) and is removed once
    the artifact is complete. The RNGs are left as they were: only the first trial builds, and a
    trial's random draws must not depend on whether it was that one."""
    from udalab.methods.engine import rng_preserved

    partial = artifact_root() / f".partial-{artifact_path(kind, config).name}"
    with rng_preserved():
        root = get_or_build(kind, config, lambda tmp: build_fn(tmp, partial))
    shutil.rmtree(partial, ignore_errors=True)
    return root


def link_tree(src: Path, dst: Path, skip: set[Path] = frozenset()) -> int:
    """Mirror the files under `src` into `dst` as symbolic links (copies where the file system has
    none), except the resolved paths in `skip`: an artifact that replaces some files of a dataset
    (translated images, pseudo labels) and reads the rest from the original. Returns the number linked."""
    n = 0
    for dirpath, _, files in os.walk(src):
        for name in files:
            path = Path(dirpath) / name
            if path.resolve() in skip:
                continue
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(path.resolve(), out)
            except OSError:
                shutil.copy2(path, out)
            n += 1
    return n
