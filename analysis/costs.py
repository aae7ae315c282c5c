"""What a trial costs on the cluster: the papers' published training times as seconds per iteration,
and a trial's hours at the paper's schedule priced as instance-hours (a fresh node's boot added).
`udalab preflight` (studies/run/preflight.py) and docs/cluster.md's cost table share them."""
from __future__ import annotations

# The methods whose papers publish a training time: the reference (reference_data.json) whose
# facts["training"] gives it (hours, iterations, GPU, its memory).
PUBLISHED = {"daformer": "daformer", "hrda": "hrda"}


def published_training(method: str) -> dict | None:
    """The published training facts of a method (hours, iterations, gpu, gpu_memory_gb, source,
    title), None where its paper gives none."""
    from udalab.analysis.reference import reference_info

    if method not in PUBLISHED:
        return None
    info = reference_info(PUBLISHED[method])
    return {**info["facts"]["training"], "title": info["title"]}


def published_seconds(method: str) -> tuple[float | None, str]:
    """A method's published seconds per iteration (hours x 3600 / iterations) and where it is from."""
    t = published_training(method)
    if t is None:
        return None, f"unknown: no published training time of {method}"
    return (t["hours"] * 3600 / t["iterations"],
            f"published: {t['iterations']} iterations in {t['hours']} h on one {t['gpu']} ({t['title']})")


def costs(seconds: float | None, paper_iterations: int, price: float, boot_minutes: float) -> dict:
    """Trial-hours at the paper's schedule, instance-hours (the trial on a fresh node: its boot added)
    and their cost in USD at `price` per instance-hour."""
    if seconds is None:
        return {"trial_hours": None, "instance_hours": None, "cost_usd": None}
    trial = seconds * paper_iterations / 3600
    instance = trial + boot_minutes / 60
    return {"trial_hours": round(trial, 3), "instance_hours": round(instance, 3),
            "cost_usd": round(instance * price, 2)}
