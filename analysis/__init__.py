"""udalab.analysis: metrics, evaluation of saved predictions, the result store, published
reference numbers and the HTML report.

    metrics    ConfusionMatrix (IoU / mIoU / pixel accuracy, Cityscapes conventions)
    evaluate   `udalab eval`: score prediction PNGs like cityscapesScripts
    store      Tune experiment dir -> DataFrame / trials.parquet, learning curves
    reference  published numbers (reference_data.json)
    report     ReportSpec, write_report -> report.html

Submodules are imported on use (`from udalab.analysis import store`), so that importing the
package stays cheap.
"""
