"""Build the gallery's notebooks and their executed golden copies.

The notebooks are made exactly as the site makes its downloads: with
sphinx-gallery's converter and the ``sphinx_gallery_conf`` of ``conf.py``.

Usage::

    python tools/notebooks.py build OUT_DIR        # one .ipynb per example, no outputs
    python tools/notebooks.py regenerate           # execute and store tests/notebooks/*.ipynb
    python tools/notebooks.py check                # golden copies match the examples' code

Golden copies are executed offline on the embedded MNIST subset (the data
every machine has), so they compare the same run anywhere. Cells whose output
is not deterministic (training progress bars) are tagged
``nbval-ignore-output``; the rest is compared by nbval through
``tests/notebooks/sanitize.cfg``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "notebooks"

#: Cells whose source matches are not compared (their output is not deterministic).
IGNORE_OUTPUT_PATTERNS = [
    re.compile(r"\btrain\("),  # tqdm progress bars and wall times of training
    re.compile(r"\bfine_tune\("),  # Keras training: losses and wall time
]


def gallery_conf() -> dict:
    """sphinx-gallery's defaults updated with ``conf.py``'s settings."""
    from sphinx_gallery import gen_gallery

    sys.path.insert(0, str(ROOT))
    try:
        import conf  # the project's conf.py
    finally:
        sys.path.pop(0)
    merged = copy.deepcopy(gen_gallery.DEFAULT_GALLERY_CONF)
    merged.update(conf.sphinx_gallery_conf)
    return merged


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("plot_*.py"))


def _site_extension():
    """``docs/_ext/akida_site.py``, set up as in the site build (its ``html_baseurl``)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import akida_site

        import conf
    finally:
        del sys.path[:2]
    akida_site.SITE_URL = getattr(conf, "html_baseurl", "") or ""
    return akida_site


def to_notebook(src: Path):
    """The notebook sphinx-gallery offers for ``src`` (a nbformat node).

    As in the site build: hidden (``sphinx_gallery_start_ignore``) blocks and
    configuration comments are removed, and the notebook starts with the site's
    install cell (``docs/_ext/akida_site.py``).
    """
    import nbformat
    from sphinx_gallery import py_source_parser
    from sphinx_gallery.py_source_parser import split_code_and_text_blocks

    conf = gallery_conf()
    _, blocks = split_code_and_text_blocks(str(src))
    blocks = [py_source_parser.Block(label, py_source_parser.remove_ignore_blocks(content), line)
              for label, content, line in blocks]
    if conf["remove_config_comments"]:
        blocks = [py_source_parser.Block(label, py_source_parser.remove_config_comments(content),
                                         line) for label, content, line in blocks]
    if blocks and blocks[-1].content.isspace():
        blocks = blocks[:-1]
    content = _site_extension().notebook_with_install_cell(blocks, conf, src.parent)
    # Round-trip through JSON so cell sources are strings, as when read from disk.
    return nbformat.reads(json.dumps(content), as_version=4)


def build(out_dir: Path) -> list[Path]:
    """Write one notebook per example into ``out_dir``."""
    import nbformat

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in examples():
        target = out_dir / f"{src.stem}.ipynb"
        nbformat.write(to_notebook(src), target)
        written.append(target)
    return written


def code_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def golden_env(tmp: Path) -> dict:
    """Environment of the golden runs: offline, with an empty data folder."""
    env = dict(os.environ)
    env["AKIDA_WORKFLOWS_OFFLINE"] = "1"
    env["AKIDA_WORKFLOWS_DATA"] = str(tmp / "no-data")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _execute_golden(src: Path, folder: Path, timeout: int) -> Path:
    """Execute ``src``'s notebook in ``folder`` and store it as its golden copy."""
    import nbformat
    from nbclient import NotebookClient

    nb = to_notebook(src)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if any(p.search(cell.source) for p in IGNORE_OUTPUT_PATTERNS):
            tags.add("nbval-ignore-output")
        if tags:
            cell.metadata["tags"] = sorted(tags)
    print(f"executing {src.name} ...", flush=True)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    for cell in nb.cells:  # nbval does not compare these: keep the copy small
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            cell.outputs = []
    target = GOLDEN / f"{src.stem}.ipynb"
    nbformat.write(nb, target)
    return target


def regenerate(timeout: int = 1800, only: list[str] | None = None,
               jobs: int = 2) -> list[Path]:
    """Execute every example's notebook offline and store it in tests/notebooks/.

    ``jobs`` notebooks run at a time, each in its own kernel (a process), as nbval
    runs them; run this under ``nox -s regenerate`` (one thread and one instruction-set
    path per process: see ``noxfile.REPRODUCIBLE_ENV``), or the copies hold numbers
    that another machine does not reproduce.
    """
    from concurrent.futures import ThreadPoolExecutor

    GOLDEN.mkdir(parents=True, exist_ok=True)
    chosen = [src for src in examples()
              if not only or src.stem in only or src.name in only]
    with tempfile.TemporaryDirectory() as tmp:
        saved = dict(os.environ)
        os.environ.update(golden_env(Path(tmp)))
        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = [pool.submit(_execute_golden, src, Path(tmp), timeout)
                           for src in chosen]
                return [future.result() for future in futures]
        finally:
            os.environ.clear()
            os.environ.update(saved)


def check() -> list[str]:
    """Problems that make the golden copies stale (empty when in sync)."""
    import nbformat

    problems = []
    for src in examples():
        golden = GOLDEN / f"{src.stem}.ipynb"
        if not golden.is_file():
            problems.append(f"{golden.relative_to(ROOT)} is missing")
            continue
        if code_cells(nbformat.read(golden, as_version=4)) != code_cells(to_notebook(src)):
            problems.append(f"{golden.relative_to(ROOT)} is stale: its code differs from {src.name}")
    for golden in GOLDEN.glob("*.ipynb"):
        if not (EXAMPLES / f"{golden.stem}.py").is_file():
            problems.append(f"{golden.relative_to(ROOT)} has no example")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="write the gallery notebooks (no outputs)")
    p_build.add_argument("out_dir", type=Path)
    p_regen = sub.add_parser("regenerate", help="execute and store the golden copies")
    p_regen.add_argument("examples", nargs="*", help="only these examples (default: all)")
    sub.add_parser("check", help="check the golden copies are in sync with the examples")
    args = parser.parse_args(argv)
    if args.command == "build":
        for path in build(args.out_dir):
            print(path)
    elif args.command == "regenerate":
        for path in regenerate(only=args.examples):
            print(f"wrote {path}")
    else:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `nox -s regenerate` to refresh them", file=sys.stderr)
            return 1
        print("golden notebooks in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
