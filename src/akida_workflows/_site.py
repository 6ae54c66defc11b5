"""Hand an example's key numbers to the documentation site (private; a no-op elsewhere).

The gallery examples end with a hidden block (``# sphinx_gallery_start_ignore``)
that calls :func:`record`. During the site build, ``conf.py`` sets
``AKIDA_WORKFLOWS_SITE_RESULTS`` to a build folder; the landing page's headline
table is then rendered from the files written there (``docs/_ext/akida_site.py``),
so its numbers are those of the run that made the example pages. Without the
variable (a reader running a downloaded script) nothing is written.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

ENV = "AKIDA_WORKFLOWS_SITE_RESULTS"


def _mapping(report) -> dict:
    compute = report.compute_layers
    return {
        "device": str(report.device),
        "hardware": sum(layer.backend == "hardware" for layer in compute),
        "compute": len(compute),
    }


def record(example: str, data, rows: list[dict]) -> Path | None:
    """Write ``<example>.json`` into ``$AKIDA_WORKFLOWS_SITE_RESULTS`` (if set).

    Parameters
    ----------
    example : str
        The example's file stem, e.g. ``"plot_0_mnist_pytorch_to_akida"``.
    data : akida_workflows.datasets.Dataset
        The data the numbers were measured on (its ``name``, test-set size,
        ``source`` and ``description``).
    rows : list of dict
        One per model: ``model`` (str), accuracies ``float``, ``akida2_8bit``,
        ``akida1_4bit`` (fractions, or None when not measured) and ``mappings``
        (a list of :class:`~akida_workflows.deploy.MapReport`).

    Returns
    -------
    pathlib.Path or None
        The file written, or None outside a site build.
    """
    folder = os.environ.get(ENV)
    if not folder:
        return None
    out = []
    for row in rows:
        entry = {"model": str(row["model"])}
        for key in ("float", "akida2_8bit", "akida1_4bit"):
            value = row.get(key)
            entry[key] = None if value is None else float(value)
        entry["mappings"] = [_mapping(r) for r in row.get("mappings", ())]
        out.append(entry)
    record_ = {
        "example": example,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data_name": str(data.name),
        "test_size": int(len(data.y_test)),
        "data_source": str(data.source),
        "data": str(data.description),
        "rows": out,
    }
    path = Path(folder) / f"{example}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record_, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
