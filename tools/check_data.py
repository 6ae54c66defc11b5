"""Fail fast when a data set the examples load is missing: before any example runs.

Reads every ``examples/plot_*.py`` (without running it), finds its calls to the
loaders of :mod:`akida_workflows.datasets` and asks
:func:`akida_workflows.availability.data_status` whether each set is here or can be
downloaded. Prints one line per set; when any is missing, prints one message that
lists them all with the command or variable that supplies each, and exits 1.
``nox -s gallery`` and ``nox -s tests`` run it right after installing.

Usage::

    python tools/check_data.py [EXAMPLES_DIR]
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class UnknownLoaderCall(Exception):
    """A loader call whose data set cannot be read off the source."""


def _callee(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def loader_calls(path: Path) -> list[tuple[str, str | None]]:
    """``(loader, name)`` for every data-set loader call in ``path``.

    Raises
    ------
    UnknownLoaderCall
        A ``load_timeseries`` call whose set is not a string literal (the check
        cannot tell which set it needs).
    """
    from akida_workflows.availability import LOADERS

    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call) or _callee(node) not in LOADERS:
            continue
        loader = _callee(node)
        name = None
        if loader == "load_timeseries":
            arg = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "name"), None)
            if arg is not None and not (isinstance(arg, ast.Constant)
                                        and isinstance(arg.value, str)):
                raise UnknownLoaderCall(
                    f"{path.name}:{node.lineno}: load_timeseries() with a computed set name; "
                    "write the name as a string literal so the data check can see it")
            name = arg.value if arg is not None else None
        calls.append((loader, name))
    return calls


def main(argv: list[str] | None = None) -> int:
    from akida_workflows.availability import data_status, missing_report

    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else ROOT / "examples"
    start = time.perf_counter()
    needs: dict[str, list[str]] = {}
    statuses = {}
    try:
        for path in sorted(folder.glob("plot_*.py")):
            for loader, name in loader_calls(path):
                status = data_status(loader, name)
                statuses.setdefault(status.name, status)
                needs.setdefault(status.name, []).append(path.name)
    except UnknownLoaderCall as exc:
        print(f"check_data: {exc}", file=sys.stderr)
        return 2
    for name, status in statuses.items():
        mark = "ok     " if status.available else "MISSING"
        print(f"data {mark} {name:<14} {status.source}  "
              f"(used by {', '.join(sorted(set(needs[name])))})")
    report = missing_report({k: sorted(set(v)) for k, v in needs.items()}, statuses)
    print(f"data check: {len(statuses)} set(s) in {time.perf_counter() - start:.1f} s")
    if report:
        print(report, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
