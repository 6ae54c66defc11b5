"""Fail when the built site is incomplete, shows machine paths or typed numbers.

Checks, for every ``examples/plot_*.py``, that its page in the built site

- exists and reports a non-zero running time (a page saying
  "0 minutes 0.000 seconds" was not executed),
- shows as many figures (with their image files) as the example's source has
  ``plt.show()`` calls,
- offers the ``.py`` and ``.ipynb`` downloads, and those files exist,
- contains no Python traceback,

that sphinx-gallery's JUnit report lists every example without failure, and,
for the whole site,

- every gallery thumbnail is a real image, not sphinx-gallery's placeholder
  (``no_image.png``, used when an example draws no figure),
- no page names an absolute path of the build machine (the repository, ``$HOME``,
  ``/tmp``, ``/usr``, ``site-packages`` …),
- every table on the landing and Results pages was made from a result file
  (``docs/_ext/akida_site.py``), its cells equal to the file's values as the page
  formats them, and no percentage is typed in their text,
- the landing page shows its headline table,
- every downloadable notebook starts with the install cell, and (with
  ``--require-downloads``) the site offers the wheel and the lock.

Usage: ``python tools/check_site.py build/html [--junit build/gallery-junit.xml]
[--require-downloads]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_FIGURES = 1
#: Pages whose numbers must all come from result files.
SOURCED_PAGES = ("index.html", "results.html")
#: Absolute paths that are facts for every reader, not places on the build machine.
DOCUMENTED_PATHS = ("/usr/share/datasets/fashion-mnist",)  # Debian's dataset-fashion-mnist
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.downloads: dict[str, str] = {}
        self._download_kind: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "img" and any(c.startswith("sphx-glr-") and c.endswith("-img") for c in classes):
            self.images.append(attrs.get("src", ""))
        if tag == "div":
            for kind in ("python", "jupyter"):
                if f"sphx-glr-download-{kind}" in classes:
                    self._download_kind = kind
        if tag == "a" and self._download_kind and "href" in attrs:
            self.downloads.setdefault(self._download_kind, attrs["href"])
            self._download_kind = None


def check_page(page: Path, min_figures: int = MIN_FIGURES) -> list[str]:
    """Problems found on one built example page (empty list when fine)."""
    if not page.is_file():
        return [f"{page}: page missing"]
    text = page.read_text(encoding="utf-8")
    problems = []
    match = re.search(r"Total running time of the script:(?:\s*</\w+>)?\s*\(\s*(\d+) minutes\s+([\d.]+) seconds", text)
    if not match:
        problems.append(f"{page.name}: no running time reported")
    elif int(match.group(1)) == 0 and float(match.group(2)) == 0.0:
        problems.append(f"{page.name}: reports 0 minutes 0.000 seconds (the example did not run)")
    if "Traceback (most recent call last)" in text:
        problems.append(f"{page.name}: contains a Python traceback")
    parser = _PageParser()
    parser.feed(text)
    present = [src for src in parser.images if (page.parent / src).is_file()]
    if len(present) < min_figures:
        problems.append(
            f"{page.name}: {len(present)} figure(s) with image files, expected >= {min_figures}"
        )
    for kind, suffix in (("python", ".py"), ("jupyter", ".ipynb")):
        href = parser.downloads.get(kind)
        if not href:
            problems.append(f"{page.name}: no {suffix} download link")
        elif not href.endswith(suffix) or not (page.parent / href).is_file():
            problems.append(f"{page.name}: {suffix} download {href!r} missing")
    return problems


def check_junit(path: Path, expected: int) -> list[str]:
    if not path.is_file():
        return [f"{path}: JUnit report missing"]
    root = ET.parse(path).getroot()
    cases = root.findall(".//testcase")
    problems = []
    if len(cases) < expected:
        problems.append(f"{path.name}: {len(cases)} example(s) ran, expected {expected}")
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            problems.append(f"{path.name}: example {case.get('name')} failed")
        if case.find("skipped") is not None:
            problems.append(f"{path.name}: example {case.get('name')} was skipped")
    return problems


# --- Thumbnails --------------------------------------------------------------------------------

def _thumbnail_sources(page: Path) -> list[Path]:
    text = page.read_text(encoding="utf-8")
    return [(page.parent / src).resolve()
            for src in re.findall(r'<img[^>]+src="([^"]*sphx_glr_[^"]*_thumb\.(?:png|svg))"', text)]


def _placeholder_thumbnails(size: tuple[int, int]) -> list[Path]:
    """sphinx-gallery's stand-in images, scaled as it scales them into thumbnails."""
    try:
        from sphinx_gallery import glr_path_static
        from sphinx_gallery.utils import scale_image
    except ImportError:
        return []
    out = Path(tempfile.mkdtemp())
    thumbs = []
    for name in ("no_image.png", "broken_example.png"):
        thumbs.append(out / name)
        scale_image(str(Path(glr_path_static()) / name), str(thumbs[-1]), *size)
    return thumbs


def is_placeholder(png: Path, size: tuple[int, int] = (400, 280)) -> bool:
    """True when ``png`` is sphinx-gallery's "no image" (or "broken example") thumbnail."""
    from PIL import Image, ImageChops

    with Image.open(png) as image:
        pixels = image.convert("RGB")
    for reference in _placeholder_thumbnails(size):
        with Image.open(reference) as ref:
            if ref.size != pixels.size:
                continue
            diff = ImageChops.difference(pixels, ref.convert("RGB")).convert("L")
            histogram = diff.histogram()
            if sum(i * n for i, n in enumerate(histogram)) / max(1, sum(histogram)) < 2.0:
                return True
    return False


def check_thumbnails(html_dir: Path, pages=("auto_examples/index.html", "index.html"),
                     expected: int = 0) -> list[str]:
    """Every gallery thumbnail exists and is not the placeholder."""
    problems = []
    for name in pages:
        page = html_dir / name
        if not page.is_file():
            continue
        thumbs = _thumbnail_sources(page)
        if name.startswith("auto_examples") and len(thumbs) < expected:
            problems.append(f"{name}: {len(thumbs)} thumbnail(s), expected {expected}")
        for thumb in thumbs:
            if not thumb.is_file():
                problems.append(f"{name}: thumbnail {thumb.name} missing")
            elif thumb.suffix == ".png" and is_placeholder(thumb):
                problems.append(f"{name}: thumbnail {thumb.name} is sphinx-gallery's placeholder "
                                "(the example shows no figure, or the wrong thumbnail number)")
    return problems


# --- Machine paths -------------------------------------------------------------------------------

_GENERIC_PATH = re.compile(
    r"(?<![\w.~$/%-])/(?:tmp|home|root|usr|var|opt|private|Users|work|srv|mnt|scratch)/"
    r"[^\s\"'<>`),;]*")


def machine_paths(text: str) -> list[str]:
    """Absolute paths of the build machine found in ``text``."""
    found = set()
    for prefix in {str(ROOT), str(Path.home()), tempfile.gettempdir(), sys.prefix,
                   sys.base_prefix}:
        # The prefix as a path of its own (also in file:///…), not the tail of a relative
        # path ("docs/tmp/y" when the checkout is /tmp/y) nor the head of "/tmp/yz".
        if len(prefix) > 4 and re.search(
                r"(?<![\w.~$%-])" + re.escape(prefix) + r"(?![\w.~$%-])", text):
            found.add(prefix)
    for match in _GENERIC_PATH.finditer(text):
        path = match.group(0)
        if not path.startswith(DOCUMENTED_PATHS):
            found.add(path)
    if "site-packages" in text:
        found.add("site-packages")
    found.update(re.findall(r"\b[A-Z]:\\\\?(?:Users|Windows|Program Files)\b", text))
    return sorted(found)


def check_paths(html_dir: Path) -> list[str]:
    """No page, page source or notebook names an absolute path of the build machine."""
    problems = []
    files = [*html_dir.rglob("*.html"), *html_dir.glob("_sources/**/*.txt"),
             *html_dir.glob("_downloads/**/*.ipynb")]
    for path in sorted(files):
        found = machine_paths(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            shown = ", ".join(found[:3]) + (" …" if len(found) > 3 else "")
            problems.append(f"{path.relative_to(html_dir)}: absolute machine path(s): {shown}")
    return problems


# --- Numbers from files ----------------------------------------------------------------------------

class _TableParser(HTMLParser):
    """Tables (classes and cell texts) and the text outside file-made elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self.free_text: list[str] = []
        self.classes_seen: set[str] = set()
        self._stack: list[tuple[str, bool]] = []
        self._cell: list[str] | None = None
        self._in_article = 0

    def _sourced(self) -> bool:
        return any(flag for _, flag in self._stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.classes_seen.update(classes)
        if tag in _VOID:
            return
        flag = "akida-sourced" in classes or "akida-from-file" in classes
        self._stack.append((tag, flag))
        if tag == "table":
            self.tables.append({"classes": classes, "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if not self._sourced() and not any(t in ("script", "style") for t, _ in self._stack):
            self.free_text.append(data)


def _extension():
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import akida_site
    finally:
        sys.path.pop(0)
    return akida_site


def _expected_rows(table: dict, html_dir: Path) -> tuple[list[list[str]] | None, str]:
    """What the file(s) say a sourced table holds, and the files' names."""
    site = _extension()
    files = [c[len("akida-src-"):] for c in table["classes"] if c.startswith("akida-src-")]
    if not files:
        return None, ""
    paths = []
    for key in files:
        kind, _, name = key.partition("-")
        paths.append(html_dir / site.RESULTS_URL / kind / f"{name}.json")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        return None, f"source file(s) {', '.join(missing)} not in the built site"
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    names = ", ".join(p.name for p in paths)
    if "akida-headline" in table["classes"]:
        return site.headline_table(records), names
    selection = None
    for c in table["classes"]:
        if c.startswith("akida-cols-"):
            selection = [int(i) for i in c[len("akida-cols-"):].split("-")]
    columns, rows = site.result_table(records[0], selection)
    return [columns, *rows], names


def check_sourced(html_dir: Path, pages=SOURCED_PAGES) -> list[str]:
    """Every table on these pages comes from a result file and says what the file says."""
    problems = []
    for name in pages:
        page = html_dir / name
        if not page.is_file():
            problems.append(f"{name} missing")
            continue
        parser = _TableParser()
        parser.feed(page.read_text(encoding="utf-8"))
        for i, table in enumerate(parser.tables, 1):
            if "akida-sourced" not in table["classes"]:
                problems.append(f"{name}: table {i} was not made from a result file "
                                "(typed by hand?): render it with an akida_site directive")
                continue
            expected, names = _expected_rows(table, html_dir)
            if expected is None:
                problems.append(f"{name}: table {i}: {names or 'names no source file'}")
                continue
            got = [r for r in table["rows"] if r]
            if "akida-headline" in table["classes"]:
                got = [r[: len(expected[0])] for r in got[1:]]  # the header is fixed text
            if _normalized(got) != _normalized(expected):  # HTML collapses whitespace
                problems.append(f"{name}: table {i} differs from {names}: page {got!r}, "
                                f"file {expected!r}")
        free = " ".join(" ".join(parser.free_text).split())
        typed = re.findall(r"\d+(?:[.,]\d+)?\s?%", free)
        if typed:
            problems.append(f"{name}: percentage(s) typed in the page text, not from a file: "
                            f"{', '.join(typed[:5])}")
    return problems


def _normalized(rows) -> list[list[str]]:
    """Cells with whitespace collapsed and trimmed, as a browser shows them."""
    return [[" ".join(str(cell).split()) for cell in row] for row in rows]


def check_landing(html_dir: Path) -> list[str]:
    """The landing page shows the headline table with rows."""
    page = html_dir / "index.html"
    if not page.is_file():
        return [f"{html_dir}/index.html missing"]
    parser = _TableParser()
    parser.feed(page.read_text(encoding="utf-8"))
    headline = [t for t in parser.tables if "akida-headline" in t["classes"]]
    problems = []
    if not headline or len([r for r in headline[0]["rows"] if r]) < 2:
        problems.append("index.html: no headline table (did the examples run and call "
                        "akida_workflows._site.record?)")
    if "akida-no-result" in parser.classes_seen:
        problems.append("index.html: says a result is missing")
    return problems


def _cells(cells) -> list[tuple[str, str]]:
    return [(c.get("cell_type", ""), "".join(c.get("source", [])).strip()) for c in cells]


def check_notebooks(html_dir: Path, compare: bool = False) -> list[str]:
    """Every downloadable notebook starts with the markdown cell that says how to install.

    With ``compare``, each must also equal what ``tools/notebooks.py`` builds (the
    notebooks nbval tests are the ones the site offers).
    """
    problems = []
    for path in sorted(html_dir.glob("_downloads/**/plot_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        first = cells[0] if cells else {}
        source = "".join(first.get("source", []))
        if first.get("cell_type") != "markdown" or "pip install -r" not in source:
            problems.append(f"{path.name}: does not start with the install cell")
        src = ROOT / "examples" / f"{path.stem}.py"
        if compare and src.is_file():
            sys.path.insert(0, str(ROOT / "tools"))
            try:
                import notebooks
            finally:
                sys.path.pop(0)
            if _cells(cells) != _cells(notebooks.to_notebook(src).cells):
                problems.append(f"{path.name}: differs from what tools/notebooks.py builds "
                                "(the notebooks nbval runs)")
    return problems


def check_downloads(html_dir: Path, required: bool = False) -> list[str]:
    """Links to the wheel and the lock resolve; with ``required``, both are offered."""
    site = _extension()
    problems, offered = [], set()
    for page in (html_dir / "auto_examples" / "index.html", html_dir / "index.html",
                 html_dir / "getting_started.html"):
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        for href in re.findall(rf'href="([^"]*{site.DOWNLOADS_URL}/[^"]+)"', text):
            target = (page.parent / href).resolve()
            if not target.is_file():
                problems.append(f"{page.name}: download {href} missing")
            else:
                offered.add(target.name)
    if required:
        if not any(n.endswith(".whl") for n in offered):
            problems.append("the site does not offer the akida-workflows wheel")
        if site.LOCK_NAME not in offered:
            problems.append(f"the site does not offer the lock ({site.LOCK_NAME})")
    return problems


def check_site(html_dir: Path, junit: Path | None = None, *,
               require_downloads: bool = False) -> list[str]:
    sources = sorted((ROOT / "examples").glob("plot_*.py"))
    stems = [p.stem for p in sources]
    problems = []
    for src in sources:
        expected = src.read_text(encoding="utf-8").count("plt.show()")
        problems += check_page(html_dir / "auto_examples" / f"{src.stem}.html", expected)
    if not (html_dir / "index.html").is_file():
        problems.append(f"{html_dir}/index.html missing")
    if junit is not None:
        problems += check_junit(junit, len(stems))
    problems += check_thumbnails(html_dir, expected=len(stems))
    problems += check_paths(html_dir)
    problems += check_sourced(html_dir)
    problems += check_landing(html_dir)
    problems += check_notebooks(html_dir, compare=True)
    problems += check_downloads(html_dir, require_downloads)
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("--junit", type=Path, default=None)
    parser.add_argument("--require-downloads", action="store_true",
                        default=bool(os.environ.get("AKIDA_SITE_REQUIRE_DOWNLOADS")),
                        help="fail unless the site offers the wheel and the lock")
    args = parser.parse_args(argv)
    problems = check_site(args.html_dir, args.junit, require_downloads=args.require_downloads)
    for p in problems:
        print(f"SITE CHECK FAILED: {p}", file=sys.stderr)
    if not problems:
        print(f"site check: every example page in {args.html_dir} ran, has figures and "
              "downloads; real thumbnails, no machine paths, numbers from result files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
