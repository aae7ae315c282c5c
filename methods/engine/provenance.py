"""What a trial's result depends on, recorded with every report (`provenance.*` keys).

    provenance.udalab    the package version and the git commit of the checkout it runs from
                         (+ "-dirty" when files differ from that commit; "unknown" outside git)
    provenance.torch     torch version, CUDA and cuDNN versions it was built with
    provenance.ray       Ray version (absent: run without Ray)
    provenance.device    the GPU's name, or the CPU model and the instruction set torch's CPU kernels
                         run with (AVX2, AVX512, ...: runs on two CPUs that differ in it do not repeat
                         each other to the last digit, and hundreds of SGD steps amplify that)
    provenance.data      each dataset of the run: its class, folder name (mini twins: <name>-v<version>),
                         number of files, a checksum of its sorted relative file list and one of the
                         bytes of 16 of its files
    provenance.weights   each backbone's initialisation: the weights file and the first 12 hex of its
                         sha256, "standin <config hash>" or "none (random init)" (methods/nets/weights.py;
                         the run passes it to Run.start)

Results from different nodes, days and machines compare only when these agree; the trials table
keeps them as columns and the report lists the values its trials ran with.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

import torch

from udalab.core.machine import cpu_model, git_commit

PREFIX = "provenance."


@functools.lru_cache(maxsize=1)
def software() -> dict[str, str]:
    """udalab / torch / Ray versions, the git commit and the device (once per process)."""
    try:
        version = importlib.metadata.version("udalab")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    out = {f"{PREFIX}udalab": f"{version} ({git_commit()})",
           f"{PREFIX}torch": f"{torch.__version__}, CUDA {torch.version.cuda or '–'}, "
                             f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '–'}",
           f"{PREFIX}device": (torch.cuda.get_device_name() if torch.cuda.is_available()
                               else f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})")
                              + f", {torch.get_num_threads()} CPU thread{'s' * (torch.get_num_threads() > 1)}"}
    try:
        out[f"{PREFIX}ray"] = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


CONTENT_SAMPLE = 16   # files whose bytes the fingerprint reads: evenly spaced over the sorted list


def dataset_fingerprint(ds) -> str:
    """"Cityscapes cityscapes-v2: 300 files, 3f2a9c1b, bytes 7d0e21aa" for a dataset with `files` and
    `root`: a checksum of the sorted relative file list and one of the bytes of CONTENT_SAMPLE files
    spread over it (a regenerated mini twin or a re-encoded dataset has the same names, not the same
    bytes; reading 16 files keeps it cheap for the real datasets)."""
    inner = getattr(ds, "dataset", ds)                       # a Subset: its dataset
    files = getattr(inner, "files", None)
    root = getattr(inner, "root", None)
    if files is None or root is None:
        return type(inner).__name__
    root = Path(root)
    paths = sorted(Path(p) for pair in files for p in (pair if isinstance(pair, (tuple, list)) else (pair,)))
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in paths]
    digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:8]
    last = len(paths) - 1
    sample = sorted({round(k * last / (CONTENT_SAMPLE - 1)) for k in range(CONTENT_SAMPLE)}) if paths else []
    content = hashlib.sha1()
    for i in sample:
        try:
            content.update(paths[i].read_bytes())
        except OSError:                                      # unreadable: the dataset's own loader says so
            content.update(b"<unreadable>")
    return f"{type(inner).__name__} {root.name}: {len(files)} files, {digest}, bytes {content.hexdigest()[:8]}"


def data_provenance(data) -> dict[str, str]:
    """{"provenance.data": "source ...; target ...; val ...; test ..."} of a run's UDAData."""
    parts = []
    for name in ("source", "target", "target_val", "target_test"):
        ds = getattr(data, name, None)
        if ds is not None:
            parts.append(f"{name} {dataset_fingerprint(ds)}")
    return {f"{PREFIX}data": "; ".join(parts)} if parts else {}
