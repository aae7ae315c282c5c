"""UDAS: how many labelled target images it needs, against training on those images alone.

The data-dependency table of the UDAS paper (Sec. 4.3.2): the same DeepLab-v2 trained on the
labelled Cityscapes images alone ("Supervised", methods/supervised.py) and with the whole UDAS
pipeline (style transfer, UDA, Domain CutMix with the labelled images, self-training on the
rest), at 2975 / 1000 / 500 / 100 / 0 labelled images. Published: Supervised 69.1 / 61.2 /
55.4 / 41.6; UDAS 63.5 / 60.6 / 61.3 / 55.6 / 43.9: UDAS wins below ~1000 labels, loses with
all of them. Both methods label the same images (the first n of one fixed permutation, so the
smaller sets nest in the larger). On the mini data the counts are the paper's scaled to the
300-image mini split (x 300 / 2975): 300 / 100 / 50 / 10 / 0; the report's curve has them a
decade left of the published ones on its log axis (0 is in the tables only).

    python studies/udas_data.py                 # 9 rows x 3 seeds on the mini data
    python studies/udas_data.py --smoke         # 10 labelled images, both methods, tiny schedule

The rows hold the mini counts: for a paper-scale run (--data-root) declare PAPER_COUNTS in
`rows` instead (a row's count is a number of images; a study has no per-preset rows).
"""
from udalab.analysis.report_spec import ReportSpec
from udalab.studies.run.command import main
from udalab.studies.study import Study

PAPER_COUNTS = (2975, 1000, 500, 100, 0)      # Sec. 4.3.2
MINI_COUNTS = (300, 100, 50, 10, 0)           # x 300 / 2975, rounded
NAMES = {"supervised": "Supervised", "udas": "UDAS"}

STUDY = Study(
    name="udas_data",
    description=__doc__.split("\n\n")[0],
    method="udas",
    rows=([{"method": "supervised", "labelled": n} for n in MINI_COUNTS if n > 0]
          + [{"method": "udas", "labelled": n} for n in MINI_COUNTS]),
    smoke_rows=(3, 7),                         # 10 labelled images: Supervised and UDAS
    seeds=(0, 1, 2),
    report=ReportSpec(
        title="UDAS data dependency: labelled target images, Supervised vs UDAS (GTA5 → Cityscapes)",
        x="labelled",
        x_log=True,
        group="method",
        reference="udas_data",
        columns=("method", "labelled"),
        labels={"labelled": "labelled target images"},
        name=lambda r: f"{NAMES.get(r['method'], r['method'])}, {r['labelled']:g} labelled",
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY))
