"""Sphinx extension of the akida-workflows site: pages made from files, never typed numbers.

Directives
----------
``.. akida-result:: NAME``
    Renders ``docs/results/NAME.json`` (written by ``benchmarks/NAME.py`` through
    ``benchmarks/results_io.py``): the table, the date, the machine, the versions,
    the command and a link to the file itself. Without the file the page says
    there is no result yet (no number is ever typed in a page).
``.. akida-headline:: EXAMPLE [EXAMPLE ...]``
    The landing page's table of key numbers, from the files the executed examples
    wrote during this build (``akida_workflows._site.record``).
``.. akida-pipeline::``
    The pipeline picture (an inline SVG drawn here, in the theme's colours).
``.. akida-downloads::``
    The ``akida-workflows`` wheel and the lock the site offers, and how to install them.

It also starts every downloadable notebook with a markdown cell that says how to
install the wheel and the lock (:func:`notebook_with_install_cell`, used by
``tools/notebooks.py`` too, so the tested notebooks are the offered ones), and copies
the files a page was made from into the built site (``_results/``), where
``tools/check_site.py`` checks every number on the page against them.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: Where the built site keeps copies of the files its numbers come from.
RESULTS_URL = "_results"
#: Where the built site offers the wheel and the lock.
DOWNLOADS_URL = "downloads"
LOCK_NAME = "akida-workflows-lock.txt"
#: The published site's address (``html_baseurl``), for links in downloaded notebooks.
SITE_URL = ""
#: Column names whose fractions are shown as percentages.
PERCENT_WORDS = ("accuracy", "fraction", "share", "in hardware", "on hardware")
HEADLINE_COLUMNS = ["model (example)", "test data", "float (PyTorch)", "Akida 2.0, 8-bit",
                    "Akida 1.0, 4-bit", "compute layers on the chip"]
#: How data set names are shown.
DATA_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
MISSING = "—"


# --- Formatting: one function per kind of value, shared with tools/check_site.py -------------

def _significant(value: float, digits: int = 3) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{value:,.{decimals}f}"


def format_percent(value) -> str:
    """A fraction in [0, 1] as ``"98.70 %"`` (``—`` when missing)."""
    if value is None:
        return MISSING
    return f"{100 * float(value):.2f} %"


def format_value(column: str, value, kind: str | None = None) -> str:
    """How a result value is shown on a page.

    Parameters
    ----------
    column : str
        The column's name; names with "accuracy", "fraction", "share" or "in
        hardware" show fractions in [0, 1] as percentages.
    value : str, int, float, bool or None
    kind : str, optional
        Force a format: ``"percent"`` (fraction → %), ``"int"``, ``"text"``, or a
        Python format spec such as ``".1f"``.
    """
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) or kind == "text":
        return str(value)
    if kind is None and any(w in column.lower() for w in PERCENT_WORDS) and 0 <= value <= 1:
        kind = "percent"
    if kind == "percent":
        return format_percent(value)
    if kind == "int" or (kind is None and isinstance(value, int)):
        return f"{int(value):,}"
    if kind:
        return format(value, kind)
    return _significant(float(value))


def result_table(record: dict, columns=None) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted cells of a benchmark result (``benchmarks/results_io.py``).

    ``columns`` (names or indices into the file's columns) selects and orders them;
    by default every column of the file, in its order.
    """
    names = list(record["columns"])
    if columns is None:
        columns = names
    else:
        columns = [names[c] if isinstance(c, int) else c for c in columns]
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise ValueError(f"no column(s) {unknown} in the file (it has {names})")
    formats = record.get("formats") or {}
    rows = [[format_value(c, row.get(c), formats.get(c)) for c in columns]
            for row in record["rows"]]
    return columns, rows


def _mapping_text(mappings: list[dict]) -> str:
    if not mappings:
        return MISSING
    return "; ".join(f"{m['hardware']} of {m['compute']} on {m['device']}" for m in mappings)


def _data_text(record: dict) -> str:
    name = record.get("data_name")
    if not name:
        return str(record.get("data_source", MISSING))
    name = DATA_NAMES.get(name, name)
    size = record.get("test_size")
    return f"{name}, {size:,} test" if size else name


def headline_table(records: list[dict]) -> list[list[str]]:
    """Formatted headline rows of the examples' records (the model cell links its example)."""
    rows = []
    for record in records:
        for row in record["rows"]:
            rows.append([
                row["model"], _data_text(record), format_percent(row.get("float")),
                format_percent(row.get("akida2_8bit")), format_percent(row.get("akida1_4bit")),
                _mapping_text(row.get("mappings", [])),
            ])
    return rows


def read_json(path: Path) -> dict:
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("rows"), list):
        raise ValueError(f"{Path(path).name}: not a result file (no 'rows' list)")
    return record


def read_benchmark(path: Path) -> dict:
    """A benchmark result, validated by ``benchmarks/results_io.read_result``."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from results_io import read_result
    finally:
        sys.path.pop(0)
    return read_result(path)


# --- Nodes ------------------------------------------------------------------------------------

def _table(columns: list[str], rows: list[list], classes: list[str]) -> nodes.table:
    # Cells show the file's text exactly: no typographic quotes (checked against the file).
    table = nodes.table(classes=["table", *classes], support_smartquotes=False)
    group = nodes.tgroup(cols=len(columns))
    table += group
    for _ in columns:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for c in columns:
        row += nodes.entry("", nodes.paragraph(text=c))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            content = cell if isinstance(cell, nodes.Node) else nodes.paragraph(text=str(cell))
            row += nodes.entry("", content)
        body += row
    return table


def _prefix(docname: str) -> str:
    """Relative path from a page to the site's root."""
    return "../" * docname.count("/")


def _link(text: str, url: str) -> nodes.reference:
    return nodes.reference(text, text, refuri=url)


def _date(iso: str) -> str:
    try:
        when = datetime.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _sources(env) -> dict:
    if not hasattr(env, "akida_sources"):
        env.akida_sources = {}
    return env.akida_sources


def _column_list(argument: str) -> list[str]:
    return [c.strip() for c in argument.split(",") if c.strip()]


class ResultDirective(Directive):
    """``.. akida-result:: NAME`` — a benchmark's result file as a table with its provenance.

    Options: ``:columns: a, b, c`` shows only these columns (in this order);
    ``:brief:`` shows the table and one line (date, command, a link to the Results
    page) instead of the data, notes, machine and versions.
    """

    required_arguments = 1
    has_content = False
    option_spec = {"columns": _column_list, "brief": lambda arg: True}

    def run(self):
        env = self.state.document.settings.env
        name = self.arguments[0]
        path = Path(env.config.akida_results_dir) / f"{name}.json"
        env.note_dependency(str(path))
        script = f"benchmarks/{name}.py"
        if not path.is_file():
            para = nodes.paragraph(classes=["akida-no-result"])
            para += nodes.strong(text="No result file yet. ")
            para += nodes.Text(f"docs/results/{name}.json is written by ")
            para += nodes.literal(text=f"python {script}")
            para += nodes.Text("; this table appears once it has run and its file is committed.")
            return [para]
        try:
            record = read_benchmark(path)
        except ValueError as exc:
            raise self.error(f"docs/results/{name}.json: {exc}") from None
        _sources(env)[f"results/{name}"] = path
        try:
            columns, rows = result_table(record, self.options.get("columns"))
        except ValueError as exc:
            raise self.error(f"docs/results/{name}.json: {exc}") from None
        classes = ["akida-sourced", f"akida-src-results-{name}"]
        if "columns" in self.options:
            # The checker re-makes the table from the file: it needs the selection.
            index = [list(record["columns"]).index(c) for c in columns]
            classes.append("akida-cols-" + "-".join(map(str, index)))
        out = [_table(columns, rows, classes)]
        if record.get("data"):
            out.append(nodes.paragraph(text=f"Data: {record['data']}",
                                       classes=["akida-from-file"], support_smartquotes=False))
        if self.options.get("brief"):
            note = nodes.paragraph(classes=["akida-provenance", "akida-from-file"])
            note += nodes.Text(f"Measured {_date(record['date'])} by ")
            note += nodes.literal(text=record.get("command") or f"python {script}")
            note += nodes.Text(". Notes, machine, versions and every column: ")
            ref = addnodes.pending_xref("", refdomain="std", reftype="doc", refexplicit=True,
                                        reftarget="/results", refwarn=True,
                                        refdoc=env.docname)
            ref += nodes.inline(text="Results")
            note += ref
            note += nodes.Text(" page; the file: ")
            note += _link(f"{name}.json", f"{_prefix(env.docname)}{RESULTS_URL}/{name}.json")
            note += nodes.Text(".")
            out.append(note)
            return out
        if record.get("notes"):
            out.append(nodes.paragraph(text=record["notes"], classes=["akida-from-file"],
                                       support_smartquotes=False))
        machine = record.get("machine", {})
        prov = nodes.paragraph(classes=["akida-provenance", "akida-from-file"])
        prov += nodes.Text(f"Measured {_date(record['date'])} by ")
        prov += nodes.literal(text=record.get("command") or f"python {script}")
        prov += nodes.Text(
            f" on {machine.get('machine', '?')} with {machine.get('cpus', '?')} CPUs, "
            f"Python {machine.get('python', '?')} ({machine.get('platform', '?')}); ")
        versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
        if versions:
            prov += nodes.Text(f"{versions}. ")
        prov += nodes.Text("The file: ")
        prov += _link(f"{name}.json", f"{_prefix(env.docname)}{RESULTS_URL}/{name}.json")
        out.append(prov)
        return out


class HeadlineDirective(Directive):
    """``.. akida-headline:: EXAMPLE ...`` — key numbers of the executed examples."""

    required_arguments = 1
    optional_arguments = 20
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = Path(env.config.akida_example_results_dir)
        records, missing = [], []
        for stem in self.arguments:
            path = folder / f"{stem}.json"
            if path.is_file():
                records.append((stem, read_json(path)))
                _sources(env)[f"examples/{stem}"] = path
            else:
                missing.append(stem)
        if missing:
            executed = str(env.config.sphinx_gallery_conf.get("plot_gallery", "True")) == "True"
            message = (f"no key numbers from {', '.join(missing)}: "
                       + ("the examples ran but wrote no result file (do they still call "
                          "akida_workflows._site.record?)" if executed else
                          "examples were not executed in this build (plot_gallery=0)"))
            if executed:
                logger.warning(f"akida-headline: {message}", location=(env.docname, self.lineno))
            absent = nodes.paragraph(classes=["akida-no-result"])
            absent += nodes.strong(text="Headline table not generated: ")
            absent += nodes.Text(message + ".")
            if not records:
                return [absent]
        rows = []
        formatted = iter(headline_table([r for _, r in records]))
        for stem, record in records:
            for _ in record["rows"]:
                cells = next(formatted)
                ref = addnodes.pending_xref(
                    "", refdomain="std", reftype="ref", refexplicit=True,
                    reftarget=f"sphx_glr_auto_examples_{stem}.py", refwarn=True)
                ref += nodes.inline(text=cells[0])
                para = nodes.paragraph()
                para += ref
                rows.append([para, *cells[1:]])
        classes = ["akida-sourced", "akida-headline",
                   *(f"akida-src-examples-{stem}" for stem, _ in records)]
        out = [_table(HEADLINE_COLUMNS, rows, classes)]
        dates = sorted(r["date"] for _, r in records)
        note = nodes.paragraph(classes=["akida-provenance", "akida-from-file"])
        note += nodes.Text(
            "Accuracy on each row's test set (each example's page says which data it "
            f"used and where from). Measured when this site was built ({_date(dates[-1])}) "
            "by the examples each model links to; their files: ")
        for j, (stem, _) in enumerate(records):
            if j:
                note += nodes.Text(", ")
            note += _link(f"{stem}.json",
                          f"{_prefix(env.docname)}{RESULTS_URL}/examples/{stem}.json")
        note += nodes.Text(".")
        out.append(note)
        if missing:
            out.append(absent)
        return out


class PipelineDirective(Directive):
    """``.. akida-pipeline::`` — the two routes from PyTorch to Akida, as an inline SVG."""

    has_content = False

    def run(self):
        return [nodes.raw("", pipeline_svg(), format="html")]


class DownloadsDirective(Directive):
    """``.. akida-downloads::`` — the wheel and the lock this site offers, and the commands."""

    has_content = False

    def run(self):
        env = self.state.document.settings.env
        files = offered_files(env.config)
        prefix = _prefix(env.docname)
        items = nodes.bullet_list()
        what = {
            "wheel": "the akida-workflows library, built from the same sources as this site",
            "lock": "every package at the exact version this site was built and tested with",
        }
        for kind, (name, path) in files.items():
            item = nodes.list_item()
            para = nodes.paragraph()
            if path is not None:
                para += _link(name, f"{prefix}{DOWNLOADS_URL}/{name}")
                para += nodes.Text(f": {what[kind]}.")
            else:
                para += nodes.literal(text=name)
                para += nodes.Text(f": {what[kind]} (not part of this build: ")
                para += nodes.literal(text="nox -s gallery")
                para += nodes.Text(" builds the wheel and offers the lock).")
            item += para
            items += item
        block = nodes.literal_block(install_commands(env.config.release),
                                    install_commands(env.config.release), language="console")
        return [items, block]


# --- The wheel, the lock and the notebooks' first cell ----------------------------------------

def wheel_name(version: str) -> str:
    return f"akida_workflows-{version}-py3-none-any.whl"


def offered_files(config) -> dict[str, tuple[str, Path | None]]:
    """``{"wheel": (name, path or None), "lock": (name, path or None)}``."""
    wheel = Path(config.akida_wheel_dir) / wheel_name(config.release)
    lock = Path(config.akida_lock_file)
    return {
        "wheel": (wheel.name, wheel if wheel.is_file() else None),
        "lock": (LOCK_NAME, lock if lock.is_file() else None),
    }


def install_commands(version: str) -> str:
    """The commands a reader runs to get the environment of the notebooks."""
    return (
        "python -m venv akida-env && source akida-env/bin/activate\n"
        f"python -m pip install -r {LOCK_NAME} {wheel_name(version)}\n"
        "python -m ipykernel install --user --name akida-workflows"
    )


def install_markdown(version: str, site_url: str = "") -> str:
    """The markdown cell every downloadable notebook starts with."""
    where = (f"[the Examples page]({site_url.rstrip('/')}/auto_examples/index.html)"
             if site_url else "the Examples page of the akida-workflows documentation")
    return (
        "**To run this notebook** you need the `akida-workflows` library and the package "
        "versions the documentation was built with. Download "
        f"`{wheel_name(version)}` and `{LOCK_NAME}` from {where} "
        "(\"Run the notebooks yourself\"), then, in a terminal, in their folder "
        "(Python 3.10 to 3.12):\n\n"
        f"```console\n{install_commands(version)}\n```\n\n"
        "and open this notebook with the `akida-workflows` Jupyter kernel (the last line "
        "registers it). The lock pins PyTorch's CPU build (`torch==2.13.0+cpu`): if your "
        "package index is PyPI alone, add "
        "`--extra-index-url https://download.pytorch.org/whl/cpu` to the `pip install` line."
    )


def notebook_with_install_cell(script_blocks, gallery_conf, target_dir):
    """sphinx-gallery's notebook of an example, starting with the install cell."""
    from sphinx_gallery.notebook import jupyter_notebook

    import akida_workflows

    notebook = jupyter_notebook(script_blocks, gallery_conf, target_dir)
    notebook["cells"].insert(0, {
        "cell_type": "markdown", "metadata": {},
        "source": [install_markdown(akida_workflows.__version__, SITE_URL)],
    })
    return notebook


GALLERY_FOOTER = """

.. _run-the-notebooks:

Run the notebooks yourself
--------------------------

A downloaded notebook needs the ``akida-workflows`` library and the packages the
site was built with; each notebook's first cell says so too. This site offers
both:

.. akida-downloads::
"""


def _gallery_footer(app):
    """Append the "Run the notebooks yourself" section to the gallery's index page.

    Runs after sphinx-gallery has written ``auto_examples/index.rst`` (thumbnails,
    then the "download all" buttons), so the section comes last on the page.
    """
    conf = app.config.sphinx_gallery_conf
    for gallery_dir in conf.get("gallery_dirs", []):
        index = Path(app.srcdir) / gallery_dir / "index.rst"
        if index.is_file():
            text = index.read_text(encoding="utf-8")
            if "_run-the-notebooks:" not in text:
                index.write_text(text.rstrip("\n") + "\n" + GALLERY_FOOTER, encoding="utf-8")
        break  # the first gallery only


# --- The pipeline picture ---------------------------------------------------------------------

def pipeline_svg() -> str:
    """Two routes from PyTorch to Akida, drawn as plain SVG in the page's text colour."""
    w, box_h = 940, 46
    cols = [10, 184, 373, 562, 751]
    box_w = 164
    lanes = [
        ("8-bit route (BrainChip's)", 40, "akida-lane-v2",
         ["ONNX", "QuantizeML 8-bit", "CNN2SNN", "Akida 2.0 IP"],
         ["export_onnx", "quantize_onnx", "to_akida", "map_report"],
         ["float graph, checked", "weights + activations", "akida.Model, NCHW input",
          "which layer runs where"]),
        ("4-bit route (added here)", 150, "akida-lane-v1",
         ["tf-keras", "QuantizeML 4-bit", "CNN2SNN v1", "Akida 1.0 chips"],
         ["to_keras", "quantize_4bit", "convert_keras", "map_report"],
         ["same outputs as PyTorch", "+ fine_tune (QAT)", "akida.Model, NHWC input",
          "AKD1000 / AKD1500"]),
    ]
    parts = [
        f'<svg class="akida-pipeline" viewBox="0 0 {w} 230" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="PyTorch to ONNX, QuantizeML 8-bit, '
        'CNN2SNN and Akida 2.0; or PyTorch to tf-keras, QuantizeML 4-bit, CNN2SNN and '
        'Akida 1.0">',
        '<defs><marker id="akida-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="currentColor"/></marker></defs>',
    ]

    def box(x, y, title, sub, cls):
        parts.append(
            f'<rect class="{cls}" x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="7"/>'
            f'<text x="{x + box_w / 2}" y="{y + 20}" class="akida-box-title">'
            f'{html.escape(title)}</text>'
            f'<text x="{x + box_w / 2}" y="{y + 37}" class="akida-box-sub">'
            f'{html.escape(sub)}</text>')

    # PyTorch spans both lanes.
    torch_w = 136
    top, bottom = lanes[0][1], lanes[1][1] + box_h
    parts.append(f'<rect class="akida-lane-torch" x="{cols[0]}" y="{top}" width="{torch_w}" '
                 f'height="{bottom - top}" rx="7"/>')
    cx = cols[0] + torch_w / 2
    parts.append(f'<text x="{cx}" y="{(top + bottom) / 2 - 4}" class="akida-box-title">'
                 'PyTorch</text><text x="' + f'{cx}" y="{(top + bottom) / 2 + 14}" '
                 'class="akida-box-sub">your trained model</text>')
    for label, y, cls, titles, calls, subs in lanes:
        parts.append(f'<text x="{cols[1]}" y="{y - 10}" class="akida-lane-label">'
                     f'{html.escape(label)}</text>')
        x_prev = cols[0] + torch_w
        for x, title, sub in zip(cols[1:], titles, subs):
            box(x, y, title, sub, cls)
            parts.append(f'<line x1="{x_prev + 3}" y1="{y + box_h / 2}" x2="{x - 3}" '
                         f'y2="{y + box_h / 2}" class="akida-arrow" '
                         'marker-end="url(#akida-arrow)"/>')
            x_prev = x + box_w
        for x, call in zip(cols[1:], calls):
            parts.append(f'<text x="{x + box_w / 2}" y="{y + box_h + 17}" class="akida-call">'
                         f'{html.escape(call)}()</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- Build steps ------------------------------------------------------------------------------

def _config_inited(app, config):
    import os

    folder = Path(config.akida_example_results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # The examples (executed in this process by sphinx-gallery) write their key numbers here.
    os.environ["AKIDA_WORKFLOWS_SITE_RESULTS"] = str(folder)
    global SITE_URL
    SITE_URL = config.html_baseurl or ""
    for kind, (name, path) in offered_files(config).items():
        if path is None:
            where = ("build/dist (build it with `pip wheel --no-deps -w build/dist .` or "
                     "`nox -s gallery`)" if kind == "wheel" else "requirements/lock.txt")
            message = f"akida-site: {name} not found in {where}; the site will not offer it"
            if config.akida_require_downloads:
                logger.warning(message)
            else:
                logger.info(f"NOTE: {message}")


def _env_get_outdated(app, env, added, changed, removed):
    # Pages made from files are re-read on every build: the files change without them.
    return [doc for doc in env.akida_pages if doc in env.found_docs] if hasattr(
        env, "akida_pages") else []


def _doctree_read(app, doctree):
    env = app.env
    if not hasattr(env, "akida_pages"):
        env.akida_pages = set()
    if any(isinstance(n, nodes.table) and "akida-sourced" in n["classes"]
           for n in doctree.findall(nodes.table)) or any(
           "akida-no-result" in n["classes"] for n in doctree.findall(nodes.paragraph)):
        env.akida_pages.add(env.docname)


def _build_finished(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for key, path in _sources(app.env).items():
        if not Path(path).is_file():  # gone since an earlier build read it
            continue
        target = out / RESULTS_URL / f"{key}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for name, path in offered_files(app.config).values():
        if path is not None:
            (out / DOWNLOADS_URL).mkdir(exist_ok=True)
            shutil.copyfile(path, out / DOWNLOADS_URL / name)


def patch_notebooks(gallery_conf=None, fname=None, when=None):
    """Make sphinx-gallery write every notebook with the install cell first.

    Called by :func:`setup` in the build process and, as one of ``conf.py``'s
    ``reset_modules``, in each worker process of a parallel gallery build (a worker
    imports sphinx-gallery afresh, without this build's patch).
    """
    from sphinx_gallery import gen_rst

    if not hasattr(gen_rst, "jupyter_notebook"):
        raise ExtensionError("akida-site: sphinx_gallery.gen_rst.jupyter_notebook is gone; "
                             "update notebook_with_install_cell for this sphinx-gallery")
    gen_rst.jupyter_notebook = notebook_with_install_cell


#: Growth (bytes) a parallel gallery worker may show between examples before joblib's loky
#: replaces it (its default, 300 MB, is a leak check for small tasks).
WORKER_GROWTH_LIMIT = 8 * 2**30


def keep_gallery_workers(gallery_conf=None, fname=None, when=None):
    """Let a parallel gallery worker run all its examples instead of being replaced.

    joblib's loky stops a worker whose memory grew by more than 300 MB since its first
    task and starts a new one, which imports the whole stack again. An example here
    grows its worker by more than that (TensorFlow's graphs, PyTorch, the Akida
    simulator), so workers were replaced after most examples: 2-13 s of restart each,
    and once an example waited for a new worker while the other core idled. Measured on
    2 cores (with the examples handed out longest first by their current durations as
    well): the last example ended 250 s into the build and the two workers 32 s apart;
    kept, 229 s and 1 s apart, peak 3.0 GB per worker. The limit is raised to
    :data:`WORKER_GROWTH_LIMIT`; what a fresh process would not have is reset before
    every example by ``conf.py``'s other ``reset_modules`` (the seeds, and tf-keras'
    session: :func:`fresh_keras_session`). Called, as one of those, inside the worker,
    where loky reads the limit after each task.
    """
    from joblib.externals.loky import process_executor

    if not hasattr(process_executor, "_MAX_MEMORY_LEAK_SIZE"):
        raise ExtensionError("akida-site: joblib's loky has no _MAX_MEMORY_LEAK_SIZE any more; "
                             "update keep_gallery_workers for this joblib")
    process_executor._MAX_MEMORY_LEAK_SIZE = max(process_executor._MAX_MEMORY_LEAK_SIZE,
                                                 WORKER_GROWTH_LIMIT)


def lean_gallery_gc(gallery_conf=None, fname=None, when=None):
    """Python's garbage collector set for a worker that runs example after example.

    Each example leaves TensorFlow graphs in its worker (millions of tracked objects):
    full collections become rarer and the worker skips the final one when the build
    ends (:func:`akida_workflows._gc.for_long_runs`), where ``sphinx-build`` waited
    12.6 s for its two workers to exit, 1.5 s after. Nothing an example computes
    changes. One of ``conf.py``'s ``reset_modules``: it runs inside the worker.
    """
    from akida_workflows._gc import for_long_runs

    for_long_runs()


def fresh_keras_session(gallery_conf=None, fname=None, when=None):
    """Clear tf-keras' session before an example, as in a fresh process.

    A worker that already ran an example has its models in tf-keras' session: the next
    example's layers would be named ``input_quantizer_5`` where its notebook has
    ``input_quantizer``, and the earlier graphs would stay in memory. Nothing to do where
    tf-keras was never imported. One of ``conf.py``'s ``reset_modules``.
    """
    import sys

    keras = sys.modules.get("tf_keras")
    if keras is not None:
        keras.backend.clear_session()


#: Seconds each example took in the gallery in the last recorded run
#: (``benchmarks/durations.json``, written by ``python tools/durations.py record`` from
#: sphinx-gallery's ``sg_execution_times.rst``): only to hand the longest out first. A
#: stale value costs build time, never a result; an example missing here runs last
#: (tests/test_tools.py checks the list).
EXAMPLE_SECONDS = json.loads((ROOT / "benchmarks" / "durations.json").read_text())["gallery"]


def example_seconds(fname: str) -> float:
    """Recorded seconds of example ``fname`` (``plot_….py``), 0 when not recorded."""
    return float(EXAMPLE_SECONDS.get(Path(fname).name, 0.0))


def longest_first(split):
    """Wrap sphinx-gallery's ``_split_parallel``: the examples it runs in parallel are
    handed to the workers longest first (the pages keep the gallery's order; sphinx-gallery
    restores it after execution). With the figures recorded on 2026-12-07, two workers
    given the examples in file order ended after 281 s, longest first after 254 s."""
    def split_longest_first(sorted_listdir, src_dir, gallery_conf):
        serial, parallel = split(sorted_listdir, src_dir, gallery_conf)
        return serial, sorted(parallel, key=lambda f: -example_seconds(f))

    split_longest_first.wrapped = split
    return split_longest_first


def patch_execution_order():
    """Run the gallery's parallel examples longest first (:func:`longest_first`)."""
    from sphinx_gallery import gen_rst

    split = getattr(gen_rst, "_split_parallel", None)
    if split is None:
        raise ExtensionError("akida-site: sphinx_gallery.gen_rst._split_parallel is gone; "
                             "update longest_first for this sphinx-gallery")
    if not hasattr(split, "wrapped"):
        gen_rst._split_parallel = longest_first(split)


def setup(app):
    app.add_config_value("akida_results_dir", str(ROOT / "docs" / "results"), "env")
    # Beside sphinx-gallery's output, so that the key numbers live and die with the pages
    # made by the same run (an example that is not re-run keeps both).
    app.add_config_value("akida_example_results_dir",
                         str(ROOT / "docs" / "auto_examples" / "site-results"), "env")
    app.add_config_value("akida_wheel_dir", str(ROOT / "build" / "dist"), "env")
    app.add_config_value("akida_lock_file", str(ROOT / "requirements" / "lock.txt"), "env")
    app.add_config_value("akida_require_downloads", False, "env", bool)
    app.add_directive("akida-result", ResultDirective)
    app.add_directive("akida-headline", HeadlineDirective)
    app.add_directive("akida-pipeline", PipelineDirective)
    app.add_directive("akida-downloads", DownloadsDirective)
    app.connect("config-inited", _config_inited)
    app.connect("builder-inited", _gallery_footer, priority=900)  # after sphinx-gallery
    app.connect("env-get-outdated", _env_get_outdated)
    app.connect("doctree-read", _doctree_read)
    app.connect("build-finished", _build_finished)
    patch_notebooks()
    patch_execution_order()
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True}


__all__ = [
    "format_value", "format_percent", "result_table", "headline_table", "install_markdown",
    "install_commands", "notebook_with_install_cell", "pipeline_svg", "offered_files",
]
