"""Multi-decoder U-Net: in which order to train the semantic and the pseudo-depth decoder (Table 3).

A U-Net whose encoder feeds a semantic decoder and a depth decoder trained on pseudo depth.
Training both at once (0.85 L_seg + 0.15 L_depth) converges badly, so the paper schedules
them: which decoder first (priority), whether its weights are copied into the other (weight
copy), then the other decoder and both (s→b / d→b) or both at once (b). Published on VOC 2012
val: depth first + copy + s→b best (77.89 mIoU), depth first then both at once collapses
(1.36, 0.85). The single-decoder U-Net and joint training are the two extra rows (Table 2).
`--optuna` searches the schedule as a categorical, the first stage's share of the budget and
the depth-loss weight.

    python studies/multidecoder_schedule.py            # 10 rows x 3 seeds on the mini VOC (true depth as pseudo depth)
    python studies/multidecoder_schedule.py --smoke    # 4 Table 3 rows, 1 seed, tiny schedule
    python studies/multidecoder_schedule.py --optuna
    python studies/multidecoder_schedule.py --data-root /data --address auto   # VOC with `udalab data pseudo-depth`
"""
from ray import tune

from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

TABLE_3 = ["s+copy>d>b", "s+copy>b", "s>d>b", "s>b", "d+copy>s>b", "d+copy>b", "d>s>b", "d>b"]
ALL = TABLE_3 + ["s", "b"]              # + single decoder, joint training (Table 2)


def name_of(schedule: str) -> str:
    """The paper's words for a schedule: "depth first + copy, s→b", "single decoder", "joint"."""
    c = columns_of(schedule)
    if c["priority"] is None:
        return c["order"]
    return f"{c['priority']} first" + (" + copy" if c["weight_copy"] else "") + f", {c['order']}"


def columns_of(schedule: str) -> dict:
    """The published table's priority / weight_copy / order of a schedule string."""
    stages = schedule.split(">")
    if len(stages) == 1:
        return {"priority": None, "weight_copy": None, "order": {"s": "single decoder", "b": "joint"}[stages[0]]}
    first, _, copy = stages[0].partition("+")
    return {"priority": {"s": "semantic", "d": "depth"}[first], "weight_copy": copy == "copy",
            "order": "→".join(stages[1:])}


STUDY = Study(
    name="multidecoder_schedule",
    description=__doc__.split("\n\n")[0],
    method="multidecoder",
    source="voc_depth",
    target="voc",
    rows=[{"schedule": s} for s in ALL],
    smoke_rows=(0, 3, 4, 5),
    seeds=(0, 1, 2),
    search={"schedule": tune.choice(TABLE_3), "first_share": tune.uniform(0.2, 0.6),
            "depth_weight": tune.uniform(0.05, 0.5)},
    num_samples=16,
    report=ReportSpec(
        title="Multi-decoder U-Net: decoder training schedule (PASCAL VOC 2012)",
        reference="multidecoder_schedule",
        baseline={"schedule": "s"},
        group=None,
        derived={k: (lambda r, k=k: columns_of(r.get("schedule", "d+copy>s>b"))[k])
                 for k in ("priority", "weight_copy", "order")},
        columns=("priority", "weight_copy", "order"),
        labels={"weight_copy": "weight copy"},
        checkmarks=("weight_copy",),
        name=lambda r: name_of(r.get("schedule", "d+copy>s>b")),
        metrics=("miou", "iiou", "pixel_acc", "test.miou"),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
