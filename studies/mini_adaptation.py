"""Does adaptation close part of the mini data's domain gap? Every method against its own source-only row.

Each method runs beside the source-only model of its own network family, on the same seeds, on
mini GTA5 -> mini Cityscapes with the mini presets (ImageNet stand-in init); what it gains is
the paired Δ: its test mIoU minus its baseline's on the same seed (`STUDY.paired`):

    DeepLab-v2 family   source only                 source_only
                        ADVENT                      advent
                        IntraDA (λ = 0.67)          intrada (stage 1 is ADVENT's loop)
    DAFormer family     DAFormer source only        daformer, self_training off
                        DAFormer                    daformer
                        HRDA source only            hrda, self_training off
                        HRDA                        hrda

The result is the held-out test split (`test.miou`, 45 images nothing was tuned on); val
(`miou`, what the presets were chosen on) stands beside it. A sweep of one method's setting
(--set) is a study of its own: its results go to another folder (the first one's refuses other
options), its rows those of the method and its baseline:

    python studies/mini_adaptation.py --local --jobs 2                  # 7 rows x 3 seeds
    python studies/mini_adaptation.py --local --jobs 2 --rows 0 1 --set lambda_adv_main=0.001 --results sweep
"""
from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

FAMILY = {"source_only": "source only", "advent": "ADVENT", "intrada": "IntraDA", "daformer": "DAFormer",
          "hrda": "HRDA"}


def row_name(r: dict) -> str:
    """The table's name of a row: the method, "source only" for a DAFormer-family row without
    self-training."""
    name = FAMILY.get(r["method"], r["method"])
    return f"{name} source only" if r.get("self_training") is False else name


STUDY = Study(
    name="mini_adaptation",
    description=__doc__.split("\n\n")[0],
    method="source_only",
    rows=[
        {"method": "source_only"},
        {"method": "advent"},
        {"method": "intrada", "lambda_split": 0.67},
        {"method": "daformer", "self_training": False},
        {"method": "daformer"},
        {"method": "hrda", "self_training": False},
        {"method": "hrda"},
    ],
    paired=((1, 0), (2, 0), (4, 3), (6, 5)),    # each method - its own family's source-only row
    smoke_rows=(0, 1),
    seeds=(0, 1, 2),
    report=ReportSpec(
        title="Every method against its own source-only row (mini GTA5 → mini Cityscapes)",
        baseline={"method": "source_only"},
        group=None,
        name=row_name,
        class_groups="stuff_thing",
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
