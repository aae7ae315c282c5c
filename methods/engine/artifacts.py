"""Artifacts: what many trials share and no trial should recompute, built once per config by one
process of the whole cluster.

An artifact (the ImageNet stand-in backbone, a CycleGAN-translated source set, an expert's pseudo
labels, UDAS's UDA stage) is a folder named by its kind and a hash of its config,
`<kind>-<sha256 of the canonical JSON config, 16 hex>`, in the artifact store
`$UDALAB_ARTIFACTS` (default ~/.cache/udalab/artifacts):

- a path (a local disk, or a file system every node mounts): artifacts are read in place,
      <store>/<kind>-<hash>/            config.json, what the build wrote, manifest.json (last)
      <store>/.partial-<kind>-<hash>/   a trained artifact's checkpoints while it builds
      <store>/.leases/                  who builds what (udalab.core.lease)
- a URI (s3://..., file://...): every node reads a copy in its own cache,
  `$UDALAB_ARTIFACT_CACHE` (default ~/.cache/udalab/artifacts), laid out as a path store; the store holds
      <store>/<kind>-<hash>/manifest.json        the files (path: size), links and the build's id
      <store>/<kind>-<hash>/<build id>/...       the files
      <store>/.partial-<kind>-<hash>/            the newest whole checkpoint of a build under way
      <store>/.leases/

`get_or_build(kind, config, build_fn)` returns the artifact's local folder, calling
`build_fn(tmp_dir)` in one process of all that ask, under a lease every node sees
(udalab.core.lease; `$UDALAB_ARTIFACT_LEASE_S`, default 300 s, and `$UDALAB_ARTIFACT_POLL_S`,
default 5 s): the others wait, and take the build over when its holder stops renewing. An
artifact counts only once its manifest is there, written last (the renamed folder locally, a
first-writer-wins create on a URI store), and is checked against it (every file there, of its
size) before each use: a half-written, damaged or unmarked folder is never read. A damaged
artifact in the store is an error that names it; a damaged cached copy is fetched again.

`get_or_build_trained` is the same for a build that trains (CycleGAN, an expert, UDAS's UDA stage):
it gets a checkpoint folder that outlives a killed build, so the process that takes it over resumes
there, and its key carries TRAINING_VERSION, so that what an older training built is never reused.
On a URI store the checkpoint folder is on the builder's disk and copied to the store whenever it
holds a new whole checkpoint (state.pt written last, core/layout.py), at most every lease_s / 3.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs

from udalab.core import layout, storage
from udalab.core.lease import Lease, Timing, acquire

log = logging.getLogger("udalab")

MANIFEST = "manifest.json"   # the mark of a whole artifact, written last; a build may not write one
CONFIG = "config.json"
POINTER = "current.json"     # in a URI store's .partial-<name>/: the newest whole checkpoint
LEASES = ".leases"
ABSENT, UNMARKED = "absent", "no manifest"
TRANSFER_THREADS = 8
# The version of the training code behind trained artifacts (`get_or_build_trained`: CycleGAN, the
# MML / MS-UDA expert, UDAS's UDA stage), part of each one's key. Bump it with any change that alters
# what such a build trains or writes (a method's steps, losses, upsampling, data or evaluation, the
# CycleGAN trainer, the pseudo labels an expert writes): trials then build anew instead of reading
# an artifact of the old training. (The stand-in keys on its own trainer's VERSION, methods/nets/standin.py.)
TRAINING_VERSION = 2
TRAINING_KEY = "training_version"


class ArtifactError(RuntimeError):
    """An artifact that cannot be built or read; the message names the path and the fix."""


def artifact_store() -> str:
    """Where artifacts live: $UDALAB_ARTIFACTS (a path, or a URI every node reaches), else the local cache."""
    return os.environ.get("UDALAB_ARTIFACTS") or str(cache_root())


def cache_root() -> Path:
    return Path(os.environ.get("UDALAB_ARTIFACT_CACHE") or Path.home() / ".cache" / "udalab" / "artifacts")


def artifact_root() -> Path:
    """The local folder artifacts are read from: the store when it is a path, else this node's cache."""
    store = artifact_store()
    return Path(store) if "://" not in store else cache_root()


def lease_timing() -> Timing:
    names = ("UDALAB_ARTIFACT_LEASE_S", "UDALAB_ARTIFACT_POLL_S")
    try:
        return Timing(*(float(os.environ[n]) if os.environ.get(n) else d for n, d in zip(names, (300.0, 5.0))))
    except ValueError as e:
        raise ArtifactError(f"{' and '.join(names)} must be positive numbers of seconds ({e})") from e


def canonical_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def artifact_name(kind: str, config: dict) -> str:
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"artifact kind must be a plain name, got {kind!r}")
    return f"{kind}-{config_hash(config)}"


def artifact_path(kind: str, config: dict) -> Path:
    """The local folder of the artifact of `kind` built from `config` (whether it exists or not)."""
    return artifact_root() / artifact_name(kind, config)


def get_or_build(kind: str, config: dict, build_fn: Callable[[Path], None]) -> Path:
    """The artifact's local folder; `build_fn(tmp_dir)` fills a fresh folder when no process built it yet."""
    return _get(kind, config, lambda tmp, partial: build_fn(tmp), trained=False)


def trained_config(config: dict) -> dict:
    """The key of a trained artifact built from `config`: the config and TRAINING_VERSION."""
    if TRAINING_KEY in config:
        raise ValueError(f"a trained artifact's config may not hold {TRAINING_KEY!r}: get_or_build_trained adds it")
    return {**config, TRAINING_KEY: TRAINING_VERSION}


def get_or_build_trained(kind: str, config: dict, build_fn: Callable[[Path, Path], None]) -> Path:
    """`get_or_build` for an artifact whose build trains a model (CycleGAN, an expert), keyed by
    `trained_config(config)`: `build_fn(tmp_dir, checkpoint_dir)` gets a checkpoint folder that
    outlives a killed build (the process that builds next resumes there) and is removed once the
    artifact is complete. The RNGs are left as they were: only the first trial builds, and a
    trial's random draws must not depend on whether it was that one."""
    from udalab.methods.engine import rng_preserved

    with rng_preserved():
        return _get(kind, trained_config(config), build_fn, trained=True)


def _get(kind: str, config: dict, build: Callable[[Path, Path | None], None], trained: bool) -> Path:
    name, store, timing = artifact_name(kind, config), artifact_store(), lease_timing()
    if "://" not in store:
        root = Path(store)
        partial = root / f".partial-{name}" if trained else None
        return _local(root, name, config, lambda tmp: build(tmp, partial), timing, partial, refetch=False)
    remote = _Remote(store, name, timing)
    partial = cache_root() / f".partial-{name}" if trained else None
    return _local(cache_root(), name, config, lambda tmp: remote.fill(tmp, build, partial), timing, None, refetch=True)


# ---------------------------------------------------------------------------------------
# A folder of artifacts on this machine's file system (a path store, or a URI store's cache)


def _local(root: Path, name: str, config: dict, fill: Callable[[Path], None], timing: Timing,
           partial: Path | None, refetch: bool) -> Path:
    """`root/name`, checked, filled by `fill(tmp)` in one process when it is not there; with
    `refetch` (a cache) a damaged copy is filled again, else it is an error."""
    final = root / name
    while True:
        problem = _problem(final)
        if problem is None:
            return final
        if problem not in (ABSENT, UNMARKED) and not refetch:
            raise ArtifactError(f"artifact {final} is damaged ({problem}): delete it so that the next run "
                                f"rebuilds it")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"cannot create the artifact folder {root} ({e}); set UDALAB_ARTIFACTS (and "
                                f"UDALAB_ARTIFACT_CACHE) to a writable folder") from e
        marked = (lambda: (final / MANIFEST).is_file()) if problem in (ABSENT, UNMARKED) else (lambda: False)
        lease = acquire(str(root / LEASES), name, timing, done=marked)
        if lease is None:
            continue
        try:
            problem = _problem(final)
            if problem is None:
                return final
            if problem not in (ABSENT, UNMARKED) and not refetch:
                continue  # raised above
            _set_aside(final, problem, remove=refetch)
            _build_in_place(root, name, config, fill)
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
            for stale in root.glob(f".tmp-{name}-*"):  # builds killed half-way: the artifact exists now,
                shutil.rmtree(stale, ignore_errors=True)  # so none of them can be renamed into place
        finally:
            lease.release()


def _build_in_place(root: Path, name: str, config: dict, fill: Callable[[Path], None]) -> None:
    """Fill a temporary folder, mark it with its manifest, rename it to `root/name` (atomic: the final
    name only ever holds a whole artifact; when another process renamed first, its artifact stays)."""
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        (tmp / CONFIG).write_text(canonical_json(config) + "\n")
        fill(tmp)
        if (tmp / MANIFEST).exists():
            raise ArtifactError(f"the build of {root / name} wrote {MANIFEST}, a name artifacts reserve: rename "
                                f"that file in the build function")
        files, links = _scan(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"config": config, "files": files, "links": links,
                                                "host": socket.gethostname(), "written": _now()}, indent=1))
        try:
            os.rename(tmp, root / name)
        except OSError:
            if not (root / name / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _set_aside(final: Path, problem: str, remove: bool) -> None:
    """Make room for a new build: a cached copy is deleted; an unmarked folder in the store (a copy
    cut short, or one written before artifacts had manifests) is renamed, not deleted."""
    if problem == ABSENT:
        return
    if remove:
        shutil.rmtree(final, ignore_errors=True)
        return
    aside = final.parent / f".unmarked-{final.name}-{uuid.uuid4().hex[:8]}"
    os.rename(final, aside)
    log.warning("artifact folder %s has no %s, so it is not trusted: moved to %s (delete it when not needed) "
                "and built again", final, MANIFEST, aside)


def _scan(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """({relative path: size} of the files, {relative path: target} of the symbolic links) under `folder`."""
    files, links = {}, {}
    for dirpath, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links[rel] = os.readlink(path)
            elif name in names and rel != MANIFEST:
                files[rel] = path.stat().st_size
    return files, links


def _problem(final: Path) -> str | None:
    """None when `final` is a whole artifact (its manifest there, every file of its size, every link
    leading somewhere), else what is wrong."""
    if not final.exists():
        return ABSENT
    try:
        manifest = json.loads((final / MANIFEST).read_text())
    except FileNotFoundError:
        return UNMARKED
    except (OSError, ValueError) as e:
        return f"its {MANIFEST} is unreadable: {e}"
    for rel, size in manifest["files"].items():
        try:
            actual = (final / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} is {actual} bytes, its manifest says {size}"
    for rel, target in manifest["links"].items():
        if not (final / rel).exists():
            return f"{rel} links to {target}, which is not there (the data it was built from moved)"
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------
# A store behind a URI (s3://..., file://...), read through this node's cache


class _Remote:
    def __init__(self, store: str, name: str, timing: Timing):
        self.store, self.name, self.timing = store, name, timing
        self.uri = storage.uri_join(store, name)
        self.partial_uri = storage.uri_join(store, f".partial-{name}")

    def manifest(self) -> dict | None:
        fs, path = storage.fs_path(storage.uri_join(self.uri, MANIFEST))
        text = storage.read_text(fs, path)
        try:
            return json.loads(text) if text is not None else None
        except ValueError as e:
            raise ArtifactError(f"{storage.uri_join(self.uri, MANIFEST)} is unreadable ({e}): delete "
                                f"{self.uri} so that the next run rebuilds it") from e

    def fill(self, tmp: Path, build: Callable[[Path, Path | None], None], partial: Path | None) -> None:
        """Fill the cache's temporary folder `tmp` with the artifact: downloaded when the store has
        it, else built here under the store's lease (and published), or downloaded once the
        lease's holder published it."""
        manifest = self.manifest()
        if manifest is None:
            lease = acquire(storage.uri_join(self.store, LEASES), self.name, self.timing,
                            done=lambda: self.manifest() is not None)
            if lease is not None:
                try:
                    manifest = self.manifest()
                    if manifest is None and self._build(tmp, build, partial, lease):
                        return
                finally:
                    lease.release()
            manifest = self.manifest()
        for entry in tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        _download(storage.uri_join(self.uri, manifest["build"]), manifest, tmp, self.uri)
        if partial is not None:  # this node's checkpoints of an earlier attempt: another node finished it
            shutil.rmtree(partial, ignore_errors=True)

    def _build(self, tmp: Path, build: Callable[[Path, Path | None], None], partial: Path | None,
               lease: Lease) -> bool:
        """Build into `tmp`, upload, publish: True when this build's manifest is the store's, False
        when another process published first (a holder that lost its lease: the first one stays)."""
        if partial is not None:
            _restore(self.partial_uri, partial)
        with _Mirror(partial, self.partial_uri, lease) if partial is not None else contextlib.nullcontext():
            build(tmp, partial)
        files, links = _scan(tmp)
        build_id = uuid.uuid4().hex[:16]
        _upload(tmp, storage.uri_join(self.uri, build_id), files)
        manifest = {"build": build_id, "files": files, "links": links, "host": socket.gethostname(),
                    "written": _now()}
        if not self._publish(manifest):
            storage.delete(storage.uri_join(self.uri, build_id))
            return False
        log.info("artifact %s built and stored (%d files)", self.uri, len(files))
        storage.delete(self.partial_uri)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        return True


    def _publish(self, manifest: dict) -> bool:
        """Create the manifest unless one is there: True when this call created it."""
        uri = storage.uri_join(self.uri, MANIFEST)
        while not storage.create_exclusive(uri, json.dumps(manifest, indent=1).encode()):
            if self.manifest() is not None:
                return False
            time.sleep(self.timing.poll_s)  # a concurrent conditional write in flight (S3's 409): look again
        return True


def _upload(folder: Path, uri: str, files: dict[str, int]) -> None:
    fs, base = storage.fs_path(uri)
    local = pafs.LocalFileSystem()

    def put(rel: str) -> None:
        if isinstance(fs, pafs.LocalFileSystem):  # (an object store has no folders to make)
            fs.create_dir(storage.join_path(base, rel).rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(folder / rel), storage.join_path(base, rel), source_filesystem=local,
                        destination_filesystem=fs)

    with concurrent.futures.ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(put, files))


def _download(uri: str, manifest: dict, dest: Path, artifact: str) -> None:
    """The files and links `manifest` lists, from `uri` into `dest`, checked against their sizes."""
    fs, base = storage.fs_path(uri)
    local = pafs.LocalFileSystem()
    fix = f"delete {artifact} (its {MANIFEST} first) so that the next run rebuilds it"

    def get(rel: str) -> None:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            pafs.copy_files(storage.join_path(base, rel), str(dest / rel), source_filesystem=fs,
                            destination_filesystem=local)
        except (FileNotFoundError, OSError) as e:
            raise ArtifactError(f"artifact {artifact} is damaged ({rel} cannot be read: {e}); {fix}") from e
        size = (dest / rel).stat().st_size
        if size != manifest["files"][rel]:
            raise ArtifactError(f"artifact {artifact} is damaged ({rel} is {size} bytes, its manifest says "
                                f"{manifest['files'][rel]}); {fix}")

    with concurrent.futures.ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(get, manifest["files"]))
    for rel, target in manifest["links"].items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest / rel)
        if not (dest / rel).exists():
            raise ArtifactError(f"artifact {artifact} links {rel} to {target}, which this node does not have: "
                                f"the data an artifact is built from must be at the same path on every node")


class _Mirror:
    """While a trained artifact builds, copies its checkpoint folder `partial` to `uri` each time it
    holds a new whole checkpoint: into a fresh `uri/<id>/`, then `uri/current.json` names it, then
    the previous copy goes. A copy taken while a checkpoint was being written is dropped."""

    def __init__(self, partial: Path, uri: str, lease: Lease):
        self.partial, self.uri, self.lease = partial, uri, lease
        self.pushed, self.current = None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"mirror-{partial.name}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._push()  # a build that failed (or was stopped) leaves its newest checkpoint for the next one

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.timing.lease_s / 3):
            self._push()

    def _push(self) -> None:
        if self.lease.lost.is_set():
            return
        try:
            snap = _snapshot(self.partial)
            if snap is None or snap == self.pushed:
                return
            sid = uuid.uuid4().hex[:16]
            files = {rel: size for rel, (size, _, _) in snap.items()}
            _upload(self.partial, storage.uri_join(self.uri, sid), files)
            if _snapshot(self.partial) != snap:  # a checkpoint was written meanwhile: the next push takes it
                storage.delete(storage.uri_join(self.uri, sid))
                return
            storage.write_bytes(storage.uri_join(self.uri, POINTER), json.dumps({"build": sid, "files": files,
                                                                                "links": {}}).encode())
            if self.current:
                storage.delete(storage.uri_join(self.uri, self.current))
            self.pushed, self.current = snap, sid
        except OSError as e:  # the store out of reach for a moment: the next push tries again
            log.warning("could not copy the checkpoint %s to %s (%s)", self.partial, self.uri, e)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]] | None:
    """{relative path: (size, mtime, inode)} of a checkpoint folder holding a whole checkpoint (its
    state.pt there, no file newer, no temporary file), else None."""
    if not folder.is_dir():
        return None
    listing = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            listing[path.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    state = listing.get(layout.STATE_FILE)
    if state is None or any(rel.endswith(".tmp") or v[1] > state[1] for rel, v in listing.items()):
        return None
    return listing


def _restore(uri: str, partial: Path) -> None:
    """Replace the local checkpoint folder with the store's newest copy, when the store has one."""
    fs, path = storage.fs_path(storage.uri_join(uri, POINTER))
    text = storage.read_text(fs, path)
    if text is None:
        return
    tmp = partial.parent / f"{partial.name}.restore-{uuid.uuid4().hex[:8]}"
    try:
        pointer = json.loads(text)
        _download(storage.uri_join(uri, pointer["build"]), pointer, tmp, uri)
    except (ArtifactError, ValueError, KeyError) as e:  # a copy cut short: start from the local checkpoints
        log.warning("the stored checkpoint %s cannot be restored (%s); the build starts from %s", uri, e, partial)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(partial, ignore_errors=True)
    os.rename(tmp, partial)
    log.info("build resumes from the checkpoint %s copied to the store by the process it takes over from", uri)


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
