"""The site's pages made from files: formatting, the built-site checks, no typed numbers."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import akida_site  # noqa: E402
import check_site  # noqa: E402

from akida_workflows import _site  # noqa: E402
from akida_workflows.deploy import LayerMapping, MapReport  # noqa: E402

TYPED_PERCENT = re.compile(r"\d+(?:[.,]\d+)?\s?%")


# --- Formatting -------------------------------------------------------------------------------

@pytest.mark.parametrize(("column", "value", "shown"), [
    ("accuracy", 0.9057, "90.57 %"),
    ("in hardware", 1.0, "100.00 %"),
    ("accuracy %", 90.57, "90.6"),        # already a percentage: not multiplied again
    ("weights", 99999744, "99,999,744"),
    ("vectorised (M weights/s)", 468.32, "468"),
    ("per-element loop (M weights/s)", 2.9312, "2.93"),
    ("loop", 0.26077, "0.261"),
    ("speed-up (x)", 1523.7, "1,524"),
    ("stage", "float (PyTorch)", "float (PyTorch)"),
    ("size KiB", None, "—"),
    ("fits", True, "yes"),
])
def test_format_value(column, value, shown):
    assert akida_site.format_value(column, value) == shown


def test_format_value_with_explicit_kinds():
    assert akida_site.format_value("x", 0.5, "percent") == "50.00 %"
    assert akida_site.format_value("x", 3.14159, ".1f") == "3.1"
    assert akida_site.format_value("accuracy", 0.5, "text") == "0.5"


def _record(**over):
    record = {
        "benchmark": "demo", "title": "Demo", "command": "python benchmarks/demo.py",
        "date": "2026-11-25T19:38:35+00:00",
        "machine": {"platform": "Linux", "machine": "x86_64", "cpus": 2, "python": "3.11.7"},
        "versions": {"numpy": "2.1.3"}, "data": "random", "notes": "",
        "columns": ["stage", "accuracy", "build s"],
        "rows": [{"stage": "float", "accuracy": 0.9057, "build s": 162.71},
                 {"stage": "Akida", "accuracy": 0.9052, "build s": 5.52}],
    }
    record.update(over)
    return record


def test_result_table_follows_the_columns_and_formats():
    columns, rows = akida_site.result_table(_record(formats={"build s": ".1f"}))
    assert columns == ["stage", "accuracy", "build s"]
    assert rows == [["float", "90.57 %", "162.7"], ["Akida", "90.52 %", "5.5"]]


def test_result_table_selects_columns_by_name_or_index():
    assert akida_site.result_table(_record(), ["build s", "stage"]) == (
        ["build s", "stage"], [["163", "float"], ["5.52", "Akida"]])
    assert akida_site.result_table(_record(), [1]) == (["accuracy"], [["90.57 %"], ["90.52 %"]])
    with pytest.raises(ValueError, match="no column"):
        akida_site.result_table(_record(), ["accuracy %"])


def _mapping(device, hw, n):
    layers = [LayerMapping(f"l{i}", "Conv2D", "hardware" if i < hw else "software", "", "", True)
              for i in range(n)]
    return MapReport(device=device, layers=layers)


class _Data:
    name = "mnist"
    source = "embedded-subset"
    description = "embedded MNIST subset"
    y_test = [0] * 1000


def test_record_writes_only_in_a_site_build(tmp_path, monkeypatch):
    monkeypatch.delenv(_site.ENV, raising=False)
    rows = [{"model": "BrainChip's CNN", "float": 0.987, "akida2_8bit": 0.98,
             "mappings": [_mapping("SixNodesIPv2", 1, 4)]}]
    assert _site.record("plot_x", _Data(), rows) is None
    monkeypatch.setenv(_site.ENV, str(tmp_path / "out"))
    path = _site.record("plot_x", _Data(), rows)
    record = json.loads(path.read_text())
    assert path.name == "plot_x.json" and record["data_source"] == "embedded-subset"
    assert record["rows"][0]["mappings"] == [
        {"device": "SixNodesIPv2", "hardware": 1, "compute": 4}]
    assert record["rows"][0]["akida1_4bit"] is None
    assert akida_site.headline_table([record]) == [
        ["BrainChip's CNN", "MNIST, 1,000 test", "98.70 %", "98.00 %", "—",
         "1 of 4 on SixNodesIPv2"]]
    assert len(akida_site.HEADLINE_COLUMNS) == len(akida_site.headline_table([record])[0])


# --- Notebooks and downloads -------------------------------------------------------------------

def test_install_cell_names_the_wheel_and_the_lock():
    text = akida_site.install_markdown("1.2.3")
    assert "akida_workflows-1.2.3-py3-none-any.whl" in text and akida_site.LOCK_NAME in text
    assert f"pip install -r {akida_site.LOCK_NAME}" in text
    assert "](" not in text  # no link without the site's address
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text  # torch +cpu pin
    assert "](https://example.org/auto_examples/index.html)" in akida_site.install_markdown(
        "1.2.3", "https://example.org/")


def test_offered_notebooks_start_with_the_install_cell_without_hidden_code():
    pytest.importorskip("sphinx_gallery")
    import notebooks

    for src in notebooks.examples():
        nb = notebooks.to_notebook(src)
        assert nb.cells[0].cell_type == "markdown"
        assert "pip install -r" in nb.cells[0].source
        code = "\n".join(notebooks.code_cells(nb))
        assert "sphinx_gallery" not in code  # ignore blocks and config comments removed
        assert "_site" not in code


# --- The built-site checks -----------------------------------------------------------------

PAGE = """<html><body><article class="bd-article">
<p>{text}</p>
<table class="table akida-sourced akida-src-results-demo">
<thead><tr><th><p>stage</p></th><th><p>accuracy</p></th><th><p>build s</p></th></tr></thead>
<tbody><tr><td><p>float</p></td><td><p>{cell}</p></td><td><p>163</p></td></tr>
<tr><td><p>Akida</p></td><td><p>90.52 %</p></td><td><p>5.52</p></td></tr></tbody></table>
<p class="akida-from-file">Target: 90 % (from the file)</p>
{extra}</article></body></html>"""


def _site_dir(tmp_path, text="Measured by the benchmark.", cell="90.57 %", extra=""):
    (tmp_path / "_results" / "results").mkdir(parents=True)
    (tmp_path / "_results" / "results" / "demo.json").write_text(json.dumps(_record()))
    (tmp_path / "results.html").write_text(PAGE.format(text=text, cell=cell, extra=extra))
    return tmp_path


def test_sourced_table_that_matches_its_file(tmp_path):
    assert check_site.check_sourced(_site_dir(tmp_path), pages=("results.html",)) == []


def test_a_table_of_selected_columns_is_checked_against_them(tmp_path):
    site = _site_dir(tmp_path)
    page = ('<table class="table akida-sourced akida-src-results-demo akida-cols-1-0">'
            "<tr><th>accuracy</th><th>stage</th></tr>"
            "<tr><td>90.57 %</td><td>float</td></tr><tr><td>{}</td><td>Akida</td></tr></table>")
    (site / "index.html").write_text(page.format("90.52 %"))
    assert check_site.check_sourced(site, pages=("index.html",)) == []
    (site / "index.html").write_text(page.format("90.62 %"))
    problems = check_site.check_sourced(site, pages=("index.html",))
    assert len(problems) == 1 and "differs from demo.json" in problems[0]


def test_a_number_that_differs_from_the_file_fails(tmp_path):
    problems = check_site.check_sourced(_site_dir(tmp_path, cell="91.57 %"),
                                        pages=("results.html",))
    assert len(problems) == 1 and "differs from demo.json" in problems[0]


def test_a_typed_table_or_percentage_fails(tmp_path):
    site = _site_dir(tmp_path, text="The 4-bit model reaches 91.7 % here.",
                     extra="<table><tr><td>98 %</td></tr></table>")
    problems = check_site.check_sourced(site, pages=("results.html",))
    assert any("typed in the page text" in p and "91.7 %" in p for p in problems)
    assert any("table 2 was not made from a result file" in p for p in problems)


def test_machine_paths():
    home = str(Path.home())
    assert check_site.machine_paths(f"see {ROOT}/examples/x.py:33: Warning")
    assert check_site.machine_paths(f"cache {home}/.cache/akida-workflows/mnist")
    assert check_site.machine_paths("wrote /tmp/akida-mnist-x1/cnn.fbz")
    assert check_site.machine_paths("lib/python3.11/site-packages/akida/core.py")
    assert check_site.machine_paths("from /usr/lib/python3/dist-packages")
    assert check_site.machine_paths(r"C:\Users\me\data")
    assert check_site.machine_paths(
        "in $AKIDA_WORKFLOWS_DATA/mnist or ~/.cache/akida-workflows, see "
        "https://github.com/home/x, docs/tmp/y, 2/tmp/, /usr/share/datasets/fashion-mnist") == []


def test_machine_paths_of_a_short_checkout_path(monkeypatch):
    """A checkout at /tmp/y (CI's clean clone once was) is found as a path of its own,
    not inside "docs/tmp/y" or as the head of "/tmp/yz"."""
    monkeypatch.setattr(check_site, "ROOT", Path("/tmp/y"))
    assert check_site.machine_paths("docs/tmp/y, 2/tmp/") == []
    assert "/tmp/y" in check_site.machine_paths("see /tmp/y/examples/x.py")
    assert "/tmp/y" in check_site.machine_paths("cd /tmp/y")
    assert "/tmp/y" in check_site.machine_paths("file:///tmp/y/build/html/index.html")
    assert "/tmp/y" not in check_site.machine_paths("cd /tmp/yz")


def test_check_paths_names_the_page(tmp_path):
    (tmp_path / "a.html").write_text("<pre>/tmp/akida-x/cnn.onnx</pre>")
    (tmp_path / "b.html").write_text("<pre>cnn.onnx</pre>")
    problems = check_site.check_paths(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("a.html:")


def test_placeholder_thumbnails_are_recognised(tmp_path):
    pytest.importorskip("PIL")
    pytest.importorskip("sphinx_gallery")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sphinx_gallery import glr_path_static
    from sphinx_gallery.utils import scale_image

    placeholder = tmp_path / "sphx_glr_a_thumb.png"
    scale_image(str(Path(glr_path_static()) / "no_image.png"), str(placeholder), 400, 280)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "fig.png")
    plt.close(fig)
    real = tmp_path / "sphx_glr_b_thumb.png"
    scale_image(str(tmp_path / "fig.png"), str(real), 400, 280)
    assert check_site.is_placeholder(placeholder)
    assert not check_site.is_placeholder(real)

    (tmp_path / "auto_examples").mkdir()
    (tmp_path / "auto_examples" / "index.html").write_text(
        '<div class="sphx-glr-thumbcontainer"><img src="../sphx_glr_a_thumb.png"/>'
        '<img src="../sphx_glr_b_thumb.png"/></div>')
    problems = check_site.check_thumbnails(tmp_path, expected=2)
    assert len(problems) == 1 and "sphx_glr_a_thumb.png is sphinx-gallery's placeholder" in \
        problems[0]


def test_landing_page_needs_its_headline(tmp_path):
    (tmp_path / "index.html").write_text('<p class="akida-no-result">none</p>')
    problems = check_site.check_landing(tmp_path)
    assert any("no headline table" in p for p in problems)
    assert any("says a result is missing" in p for p in problems)


def test_downloaded_notebooks_need_the_install_cell(tmp_path):
    folder = tmp_path / "_downloads" / "ab"
    folder.mkdir(parents=True)
    (folder / "plot_a.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": ["%matplotlib inline"]}]}))
    (folder / "plot_b.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": [akida_site.install_markdown("0.1.0")]}]}))
    assert check_site.check_notebooks(tmp_path) == ["plot_a.ipynb: does not start with the "
                                                    "install cell"]


def test_required_downloads(tmp_path):
    (tmp_path / "auto_examples").mkdir()
    (tmp_path / "auto_examples" / "index.html").write_text(
        '<a href="../downloads/akida_workflows-0.1.0-py3-none-any.whl">w</a>')
    problems = check_site.check_downloads(tmp_path, required=True)
    assert any("download ../downloads/akida_workflows" in p and "missing" in p
               for p in problems)
    assert any("does not offer the lock" in p for p in problems)


# --- Sources of the pages: nothing typed ------------------------------------------------------

@pytest.mark.parametrize("page", ["index.rst", "results.rst"])
def test_pages_with_results_type_no_numbers(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert not TYPED_PERCENT.findall(text)
    assert not re.search(r"^\s*\.\. (list-table|csv-table|table)::", text, re.M)
    assert not re.search(r"^\s*[=+-]{3,}[ +=-]*$\n.*\d", text, re.M), "a grid table"


def test_readme_links_the_results_instead_of_copying_them():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert not TYPED_PERCENT.findall(section)
    assert "docs/results" in section and "results" in section.lower()


def test_committed_result_files_are_valid():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from results_io import read_result
    finally:
        sys.path.pop(0)
    for path in sorted((ROOT / "docs" / "results").glob("*.json")):
        record = read_result(path)
        assert record["benchmark"] == path.stem
        assert (ROOT / "benchmarks" / f"{path.stem}.py").is_file()
        assert not check_site.machine_paths(json.dumps(record)), path.name


def test_cells_compare_as_the_browser_shows_them():
    # A result note ending in a space (an empty toolchain message) is shown trimmed.
    assert check_site._normalized([["refused: no reason: ", "a  b\n c"]]) == [
        ["refused: no reason:", "a b c"]]
    assert check_site._normalized([["83.88 %"]]) != check_site._normalized([["83.89 %"]])
