"""udalab.analysis: scoring of saved predictions, the result store, published reference numbers
and the HTML report. The scores themselves (ConfusionMatrix, iIoU, label subsets) live below
methods, in udalab.datasets.metrics.

    score_predictions  `udalab eval`: score prediction PNGs like cityscapesScripts
    store              Tune experiment dir -> DataFrame / trials.parquet (schema: docs/architecture.md),
                       learning curves
    reference          published numbers (reference_data.json)
    tables             paper-shaped tables (✓/✗, factors, mean ± std, Δ, bold, per-class) -> Markdown /
                       HTML / LaTeX
    figures            Plotly figures (curves with seed bands, bars, heatmaps, Optuna history / importance,
                       parallel coordinates, cost)
    report_spec        ReportSpec: what a study's report shows (studies import it from here)
    sections           the report's sections (header, reproduction, search, metric, results, per-class,
                       pictures, learning curves, cost, errors, published, files) from its ReportData
    report             the page: build_report, write_report -> report.html (+ tables/, figures/),
                       write_index -> index.html
    export             static PNG / SVG copies of the report's figures (kaleido)
    browser            find_browser (a Chromium / Chrome); check_page: a report in headless Chromium
                       (rendered figures, JavaScript errors, screenshot)

Submodules are imported on use (`from udalab.analysis import store`), so that importing the
package stays cheap.
"""
