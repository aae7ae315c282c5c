"""A lease on storage every node sees (a local or shared folder, s3://...): which process does a
piece of work many processes on many machines want done once, with a takeover when it dies.

A lease on `key` in `folder` is a series of generation files, `<folder>/<key>.<n>.json`, each
holding its owner (host, pid, process space, a random id) and a heartbeat count:

- taking it: create generation 1 (when none exists) or n + 1 (when generation n's holder is dead)
  with `storage.create_exclusive`: of processes racing for one generation, exactly one creates it.
- holding it: a daemon thread rewrites the holder's generation file every `lease_s / 3` seconds
  with the next heartbeat count; it sets `lost` when a higher generation or another owner appears.
- waiting: the others read the newest generation every `poll_s` seconds. Its holder is dead when
  its file has not changed for `lease_s` seconds of the waiter's own clock (no clocks are
  compared across machines), or at once when it ran in the waiter's process space (same boot,
  same pid namespace) and its pid is gone.
- releasing: the holder deletes its generation and every lower one (all superseded by it).

What it guarantees: two live holders exist only when a holder could not renew for `lease_s`
(a frozen process, storage out of reach) and was taken over; it learns so at its next renewal
(`lost`). Work published under a lease must therefore itself be safe to publish twice (a
first-writer-wins create, an atomic rename).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from udalab.core import storage

log = logging.getLogger("udalab")


@dataclass(frozen=True)
class Timing:
    lease_s: float = 300.0  # a holder that has not renewed for this long is taken over
    poll_s: float = 5.0     # how often a waiter looks again

    def __post_init__(self):
        if not (self.lease_s > 0 and self.poll_s > 0):
            raise ValueError(f"lease and poll times must be positive seconds, got {self.lease_s}, {self.poll_s}")


def _process_space() -> str | None:
    """This machine's boot and pid namespace: two owners with the same value see the same pids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "space": _process_space(), "id": uuid.uuid4().hex}


def _gone(owner: dict) -> bool:
    """The owner's process is known to have ended: it ran in this process space and its pid is free."""
    if owner.get("space") is None or owner.get("space") != _process_space():
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, KeyError, OverflowError):
        return False
    return False


def _generations(folder: str, key: str) -> list[int]:
    fs, path = storage.fs_path(folder)
    gens = []
    for info in storage.list_dir(fs, path):
        name = info.base_name
        if name.startswith(f"{key}.") and name.endswith(".json") and name[len(key) + 1:-5].isdigit():
            gens.append(int(name[len(key) + 1:-5]))
    return sorted(gens)


def _read(folder: str, key: str, gen: int) -> str | None:
    fs, path = storage.fs_path(storage.uri_join(folder, f"{key}.{gen}.json"))
    return storage.read_text(fs, path)


class Lease:
    """A held lease, renewed by a daemon thread until `release()`; `lost` is set when another
    process took it over (this one failed to renew for a whole lease)."""

    def __init__(self, folder: str, key: str, gen: int, owner: dict, timing: Timing):
        self.folder, self.key, self.gen, self.owner, self.timing = folder, key, gen, owner, timing
        self.beat = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{key}")

    def content(self) -> bytes:
        return json.dumps({"owner": self.owner, "beat": self.beat, "lease_s": self.timing.lease_s,
                           "renewed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()

    def uri(self, gen: int | None = None) -> str:
        return storage.uri_join(self.folder, f"{self.key}.{self.gen if gen is None else gen}.json")

    def _still_mine(self) -> bool:
        if max(_generations(self.folder, self.key), default=0) > self.gen:
            return False
        text = _read(self.folder, self.key, self.gen)
        return text is not None and json.loads(text).get("owner", {}).get("id") == self.owner["id"]

    def _renew(self) -> None:
        while not self._stop.wait(self.timing.lease_s / 3):
            try:
                if not self._still_mine():
                    self.lost.set()
                    log.warning("lease %s was taken over by another process: this one could not renew it for "
                                "%.0f s", self.uri(), self.timing.lease_s)
                    return
                self.beat += 1
                storage.write_bytes(self.uri(), self.content())
            except (OSError, ValueError) as e:  # storage out of reach for a moment: the next beat tries again
                log.warning("could not renew lease %s (%s: %s)", self.uri(), type(e).__name__, e)

    def release(self) -> None:
        """Stop renewing and delete this generation and every older one."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for gen in _generations(self.folder, self.key):
            if gen <= self.gen:
                storage.delete(self.uri(gen))


def acquire(folder: str, key: str, timing: Timing, done: Callable[[], bool]) -> Lease | None:
    """Wait until `done()` is true (None) or this process holds the lease on `key` in `folder`
    (a Lease, renewing; the caller checks `done()` again before working, and releases it)."""
    owner, seen, since, said = _owner(), None, time.monotonic(), False
    while not done():
        gens = _generations(folder, key)
        top = max(gens, default=0)
        text = _read(folder, key, top) if top else None
        if (top, text) != seen:
            seen, since = (top, text), time.monotonic()
        holder = _holder(text)
        dead = top and (_gone(holder) or time.monotonic() - since > timing.lease_s)
        if not top or dead:
            lease = Lease(folder, key, top + 1, owner, timing)
            if storage.create_exclusive(lease.uri(), lease.content()):
                if dead:
                    log.warning("lease %s: its holder %s stopped renewing; this process (%s pid %d) takes it over",
                                storage.uri_join(folder, key), _who(holder), owner["host"], owner["pid"])
                lease._thread.start()
                return lease
        elif not said:
            log.info("waiting for %s: %s holds its lease", storage.uri_join(folder, key), _who(holder))
            said = True
        time.sleep(timing.poll_s)
    return None


def _holder(text: str | None) -> dict:
    try:
        return json.loads(text).get("owner", {}) if text else {}
    except (ValueError, AttributeError):
        return {}


def _who(owner: dict) -> str:
    return f"{owner.get('host', '?')} pid {owner.get('pid', '?')}"
