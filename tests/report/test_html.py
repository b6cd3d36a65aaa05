import pandas as pd

from danemap.report import DISCLAIMER, Section, forest_plot_svg, render_html, write_report


def test_text_is_escaped_and_disclaimer_present():
    df = pd.DataFrame({"feature": ["<script>x</script>"], "d": [-0.1234567], "p": [float("nan")]})
    page = render_html("T & <b>", [Section("S", text="a < b\n\nsecond", table=df)])
    assert "<script>x" not in page
    assert "&lt;script&gt;" in page
    assert "T &amp; &lt;b&gt;" in page
    assert DISCLAIMER.split(".")[0] in page
    assert "-0.123" in page and "n/a" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_forest_plot_marks_every_row():
    svg = forest_plot_svg(["a", "b<"], [-0.1, 0.2], [-0.3, 0.0], [0.1, 0.4],
                          reference=[-0.11, float("nan")])
    assert svg.count("<circle") == 2
    assert svg.count("<path") == 1
    assert "b&lt;" in svg


def test_write_report_atomic(tmp_path):
    path = write_report(tmp_path / "r" / "x.html", "t", [Section("s", svg="<svg></svg>")])
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["x.html"]
