"""Generated reports open in a real browser: headless Chromium (Debian's chromium package; .ci/run
installs it where missing) loads report.html from file://, every Plotly figure renders (an SVG
.main-svg inside its div) and no JavaScript error is raised."""
import re

import pytest

from udalab.analysis.browser import check_page, find_browser
from udalab.analysis.report import write_index, write_report
from udalab.analysis.report_spec import ReportSpec

from test_tables import MML, _frame

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no Chromium / Chrome: apt-get install chromium (.ci/run does this where apt is reachable), "
           "or set BROWSER_PATH")


def _search_frame():
    rows = []
    for i, lam in enumerate((0.1, 0.35, 0.6, 0.67, 0.9)):
        rows.append({"method": "intrada", "lambda_split": lam, "seed": 0, "miou": 12 + 3 * lam - 2 * (lam - 0.6) ** 2,
                     "pixel_acc": 60.0 + i, **{f"iou.{c}": 10.0 * (k + 1) + lam for k, c in
                                               enumerate(("road", "sky", "car", "person"))}})
    rows.append({"method": "intrada", "lambda_split": 0.8, "seed": 0, "miou": float("nan"), "status": "RUNNING"})
    return _frame(rows)


def test_report_figures_render_without_js_errors(tmp_path):
    spec = ReportSpec(title="IntraDA λ search", x="lambda_split", reference="intrada", class_groups="stuff_thing")
    path = write_report(tmp_path / "intrada_split_optuna", spec, df=_search_frame(), preset="mini",
                        static_figures=False)
    html = path.read_text(encoding="utf-8")
    ids = re.findall(r'<div id="(fig-[a-z]+)" class="plotly-graph-div"', html)
    assert set(ids) == {"fig-history", "fig-importance", "fig-slices", "fig-parallel", "fig-metric", "fig-classes",
                        "fig-cost"}

    result = check_page(path)
    assert result.errors == []
    assert result.figures == {i: True for i in ids}, result.figures
    assert result.title == "IntraDA λ search"

    # a grid ablation (bars, published rows, heatmap) and the index page
    ablation = write_report(tmp_path / "mml_ablation", ReportSpec(title="MML Table 3", reference="mml_ablation"),
                            df=MML, preset="paper", static_figures=False)
    result = check_page(ablation)
    assert result.errors == [] and set(result.figures) == {"fig-metric", "fig-classes", "fig-cost"}
    assert all(result.figures.values())
    index = check_page(write_index(tmp_path))
    assert index.errors == [] and index.title == "udalab results"


def test_check_page_sees_errors_and_unrendered_figures(tmp_path):
    """The check itself: a thrown exception, a console.error and a figure div without a plot are reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>bad</title></head><body>'
                    '<div id="fig-x" class="plotly-graph-div" style="height:300px"></div>'
                    '<script>console.error("planted console error"); undefinedFunction();</script></body></html>')
    result = check_page(page)
    assert result.figures == {"fig-x": False}
    assert any("planted console error" in e for e in result.errors)
    assert any("undefinedFunction" in e for e in result.errors)
