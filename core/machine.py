"""What a measurement ran on and from: the machine (CPU model, the instruction set torch's CPU
kernels use, cores, GPU) and the git commit of the udalab checkout. A record's manifest
(udalab.analysis.records) and a run's provenance name them, because runs of two machines that
differ in the instruction set do not repeat each other to the last digit (docs/results.md)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def git_commit(path: str | os.PathLike = CHECKOUT) -> str:
    """The checkout's commit, 12 hex digits, + "-dirty" when tracked files differ from it;
    "unknown: <why>" outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode or not head.stdout.strip():
            return f"unknown: {path} is not a git checkout ({head.stderr.strip() or 'no HEAD'})"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown: git could not be run ({e})"


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name with its family, model and stepping (/proc/cpuinfo, or the `cpuinfo` text
    in its format), else what the platform module says. A virtual machine's name can be a generic
    one ("Intel(R) Xeon(R) Processor") that two CPU generations share, which do not repeat each
    other's runs: the numbers tell them apart."""
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break                                   # the first processor's block only
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine() or "unknown: no CPU model name available"
    numbers = [f"{label} {fields[key]}" for label, key in (("family", "cpu family"), ("model", "model"),
                                                           ("stepping", "stepping")) if fields.get(key)]
    return f"{name} ({', '.join(numbers)})" if numbers else name


def machine() -> dict:
    """{"cpu", "isa", "cores", "gpu"} of this machine: the instruction set is the one torch's CPU
    kernels dispatch to (AVX2, AVX512, ...), the GPU torch sees (None without one)."""
    import torch

    return {"cpu": cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
