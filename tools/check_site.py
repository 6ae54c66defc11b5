"""Fail when a built example page is incomplete.

Checks, for every ``examples/plot_*.py``, that its page in the built site

- exists and reports a non-zero running time (a page saying
  "0 minutes 0.000 seconds" was not executed),
- shows as many figures (with their image files) as the example's source has
  ``plt.show()`` calls,
- offers the ``.py`` and ``.ipynb`` downloads, and those files exist,
- contains no Python traceback,

and that sphinx-gallery's JUnit report lists every example without failure.

Usage: ``python tools/check_site.py build/html [--junit build/gallery-junit.xml]``
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_FIGURES = 1


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


def check_site(html_dir: Path, junit: Path | None = None) -> list[str]:
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
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("--junit", type=Path, default=None)
    args = parser.parse_args(argv)
    problems = check_site(args.html_dir, args.junit)
    for p in problems:
        print(f"SITE CHECK FAILED: {p}", file=sys.stderr)
    if not problems:
        print(f"site check: every example page in {args.html_dir} ran, has figures and downloads")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
