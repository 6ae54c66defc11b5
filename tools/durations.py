"""The recorded seconds that order the work on two cores: read from a run, not kept by hand.

``benchmarks/durations.json`` holds, per gallery example and per test file or golden
notebook, the seconds the last recorded run took. The gallery hands its examples out
longest first (``docs/_ext/akida_site.py``) and pytest its files (``tests/conftest.py``):
on two workers, a long file started last ends the run alone. A stale figure costs time,
never a result.

Usage, after ``nox -s gallery`` and ``nox -s tests`` (or ``bash .ci/run``)::

    python tools/durations.py record [--junit build/junit.xml]
                                     [--gallery docs/sg_execution_times.rst]

``nox -s tests`` writes the JUnit report (each test's setup + call + teardown), the
gallery build sphinx-gallery's ``sg_execution_times.rst``. ``record`` rewrites the file
with both and prints what moved.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "durations.json"


def load(path: Path = RECORD) -> dict:
    """``{"gallery": {example: s}, "tests": {file: s}, ...}`` from the record."""
    return json.loads(path.read_text())


def seconds_per_test_file(junit: Path) -> dict[str, float]:
    """Seconds per test file or notebook (``test_cli.py``, ``plot_0_….ipynb``) in a
    pytest JUnit report: the sum of its test cases' times."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit).getroot().iter("testcase"):
        classname = case.get("classname", "")
        if ".ipynb" in classname:  # tests.notebooks.plot_7_edge_learning.ipynb
            name = classname[: classname.index(".ipynb")].rsplit(".", 1)[-1] + ".ipynb"
        else:  # tests.test_cli, or tests.test_cli.TestClass
            parts = [p for p in classname.split(".") if p.startswith("test_")]
            if not parts:
                continue
            name = parts[0] + ".py"
        seconds[name] += float(case.get("time", 0.0))
    if not seconds:
        raise ValueError(f"{junit}: no test case with a test file or notebook")
    return dict(seconds)


_EXAMPLE = re.compile(r"``\.\./examples/(?P<name>[^`]+\.py)``\)\s*\n\s*- (?P<time>[\d:.]+)")


def example_seconds(sg_times: Path) -> dict[str, float]:
    """Seconds per example from sphinx-gallery's ``sg_execution_times.rst`` (``mm:ss.fff``)."""
    seconds = {}
    for match in _EXAMPLE.finditer(sg_times.read_text()):
        total = 0.0
        for part in match["time"].split(":"):
            total = 60 * total + float(part)
        seconds[match["name"]] = total
    if not seconds:
        raise ValueError(f"{sg_times}: no example time found (not sphinx-gallery's table?)")
    return seconds


def record(junit: Path, sg_times: Path, path: Path = RECORD) -> list[str]:
    """Rewrite the record from a run; returns one line per figure that changed."""
    old = load(path) if path.exists() else {"gallery": {}, "tests": {}}
    new = {
        "about": "Seconds of the last recorded run, only to hand the longest work out first "
                 "(docs/_ext/akida_site.py, tests/conftest.py). Written by "
                 "`python tools/durations.py record`; not kept by hand.",
        "recorded": f"{datetime.date.today().isoformat()}, {platform.machine()}",
        "gallery": {k: round(v) for k, v in sorted(example_seconds(sg_times).items())},
        "tests": {k: round(v) for k, v in sorted(seconds_per_test_file(junit).items())},
    }
    changes = []
    for section in ("gallery", "tests"):
        for name in sorted(set(old.get(section, {})) | set(new[section])):
            before, after = old.get(section, {}).get(name), new[section].get(name)
            if before != after:
                changes.append(f"{section}: {name} {before} -> {after}")
    path.write_text(json.dumps(new, indent=1) + "\n")
    return changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="rewrite benchmarks/durations.json from a run")
    rec.add_argument("--junit", type=Path, default=ROOT / "build" / "junit.xml")
    rec.add_argument("--gallery", type=Path, default=ROOT / "docs" / "sg_execution_times.rst")
    args = parser.parse_args(argv)
    for source in (args.junit, args.gallery):
        if not source.is_file():
            print(f"durations: {source} not found (run `nox -s gallery` and `nox -s tests` "
                  "first)", file=sys.stderr)
            return 1
    changes = record(args.junit, args.gallery)
    print("\n".join(changes) or "durations: nothing changed")
    print(f"durations: wrote {RECORD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
