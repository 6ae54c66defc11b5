"""Render built pages to PNG with headless Chromium, to look at them.

Usage: ``python tools/screenshot.py build/html OUT_DIR [page.html ...]
[--width 1280] [--height 2400]``

By default every page type is rendered: the landing page, the gallery index,
each example page, the Results page, Getting started (the downloads), the API
index and one API module page.
Each PNG is named after the page (``auto_examples/index.html`` →
``auto_examples-index.png``). Chromium renders one window, so long pages are cut
at ``--height`` pixels; give a larger height to see a page to its end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def default_pages(html: Path) -> list[Path]:
    """One page of each type: landing, gallery index, examples, results, install, API."""
    pages = [html / "index.html", html / "auto_examples" / "index.html",
             *sorted((html / "auto_examples").glob("plot_*.html")),
             html / "results.html", html / "getting_started.html", html / "api.html"]
    modules = sorted((html / "generated").glob("akida_workflows.deploy.html"))
    return [p for p in pages + modules[:1] if p.is_file()]


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={png}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("pages", nargs="*", help="pages relative to HTML (default: all types)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pages = [args.html / p for p in args.pages] or default_pages(args.html)
    for page in pages:
        name = page.relative_to(args.html).with_suffix("").as_posix().replace("/", "-")
        print(screenshot(page, args.out / f"{name}.png", args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
