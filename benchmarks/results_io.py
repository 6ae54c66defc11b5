"""One format for every benchmark result the site renders: JSON under ``docs/results/``.

A result file holds the measured rows *and* where they come from, so a page that shows
them can say it (and a test can check that every number on the Results page and the
landing page comes from such a file, never typed by hand)::

    {
      "benchmark": "fidelity",                  # file stem; benchmarks/<benchmark>.py made it
      "title": "Fidelity: float, Akida 2.0 8-bit, Akida 1.0 4-bit",
      "command": "python benchmarks/fidelity.py --out docs/results",
      "date": "2026-11-25T20:14:03+00:00",       # UTC, when the run finished
      "machine": {"platform": "...", "machine": "x86_64", "cpus": 2, "python": "3.11.7"},
      "versions": {"torch": "2.13.0+cpu", "quantizeml": "1.2.5", ...},
      "data": "Fashion-MNIST (60k / 10k) from /usr/share/... (Debian dataset-fashion-mnist)",
      "notes": "free text, optional",
      "columns": ["data", "stage", "accuracy", ...],   # display order
      "rows": [{"data": "...", "stage": "...", "accuracy": 0.9057, ...}, ...]
    }

Values in ``rows`` are plain JSON numbers/strings (accuracies as fractions in [0, 1]);
formatting belongs to the page that renders them.

Usage from a benchmark script::

    from results_io import write_result
    write_result(args.out / "fidelity.json", rows, benchmark="fidelity", title=...,
                 columns=[...], data=dataset.description, command=" ".join(sys.argv))
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "versions", "machine", "write_result", "read_result"]

#: Packages whose versions every result records.
PACKAGES = ("torch", "quantizeml", "cnn2snn", "akida", "onnx", "onnxruntime", "tensorflow",
            "tf-keras", "numpy")

REQUIRED_KEYS = ("benchmark", "title", "date", "machine", "versions", "columns", "rows")


def versions(packages=PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when absent)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict:
    """What the run was measured on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def write_result(path, rows: list[dict], *, benchmark: str, title: str, columns=None,
                 data: str = "", notes: str = "", command: str | None = None,
                 formats: dict | None = None) -> Path:
    """Write a result file atomically (a temporary file renamed over the target).

    Parameters
    ----------
    path : path-like
        Usually ``docs/results/<benchmark>.json``.
    rows : list of dict
        One dict per measured row; JSON-serialisable values.
    benchmark, title : str
    columns : list of str, optional
        Display order (default: the keys of the first row).
    data : str
        Which data the run used (the dataset's description).
    notes : str
    command : str, optional
        The command line that made the file (default: ``sys.argv``).
    formats : dict, optional
        Column → display format for the site (``"percent"``, ``"int"``, ``"text"``
        or a Python format spec such as ``"+.2f"``).

    Returns
    -------
    pathlib.Path
    """
    if not rows:
        raise ValueError("a result needs at least one row")
    columns = list(columns or rows[0].keys())
    missing = [c for c in columns if not any(c in r for r in rows)]
    if missing:
        raise ValueError(f"columns {missing} appear in no row")
    record = {
        "benchmark": benchmark,
        "title": title,
        "command": command or "python " + " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "data": data,
        "notes": notes,
        "columns": columns,
        "rows": rows,
        **({"formats": dict(formats)} if formats else {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_result(path) -> dict:
    """Read and validate a result file; ``ValueError`` naming the file when malformed."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable benchmark result: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a benchmark result is a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if not isinstance(record["rows"], list) or not all(isinstance(r, dict)
                                                       for r in record["rows"]):
        raise ValueError(f"{path}: 'rows' must be a list of objects")
    return record
