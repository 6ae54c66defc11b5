"""Render built pages to PNG with headless Chromium, to look at them.

Usage: ``python tools/screenshot.py build/html OUT_DIR [page.html ...]``
(default pages: the index and every example page).
"""

from __future__ import annotations

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


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 4000) -> Path:
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


def main(argv: list[str]) -> int:
    html, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    pages = [html / p for p in argv[2:]] or [
        html / "index.html", *sorted((html / "auto_examples").glob("plot_*.html"))
    ]
    for page in pages:
        print(screenshot(page, out / f"{page.stem}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
