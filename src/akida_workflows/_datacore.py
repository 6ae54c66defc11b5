"""What every data-set loader shares: the :class:`Dataset` and :class:`Location` records,
the data folder, the offline switch, and how data is named on pages and in warnings.

Part of :mod:`akida_workflows.datasets`, which re-exports the public names.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MNIST_CLASSES = tuple(str(i) for i in range(10))


class OfflineDataWarning(UserWarning):
    """Warns that a loader fell back to offline data (embedded digits, a bundled series set)."""


@dataclass
class Dataset:
    """Train and test images with their labels, and where they came from.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"`` or a UCR/UEA set name (``"ECG5000"``).
    x_train, x_test : numpy.ndarray
        ``uint8`` images of shape ``(N, 28, 28)``, or for time series ``float32``
        signals of shape ``(N, C, L)``.
    y_train, y_test : numpy.ndarray
        ``int64`` labels of shape ``(N,)``.
    source : str
        ``"idx-cache"``, ``"download"``, ``"embedded-subset"`` or
        ``"embedded-train+idx-test"``; for time series ``"ts-cache"``,
        ``"download"``, ``"packaged"``, ``"bundled"``, ``"packaged-fallback"`` or
        ``"bundled-fallback"``.
    description : str
        One human-readable sentence saying which data this is.
    classes : tuple of str
        Class names, indexed by label.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    description: str
    classes: tuple[str, ...] = field(default=MNIST_CLASSES)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, source={self.source!r}, "
            f"train={self.x_train.shape[0]}, test={self.x_test.shape[0]})"
        )


@dataclass(frozen=True)
class Location:
    """Where a loader would read a data set from, as :func:`locate` finds it.

    Attributes
    ----------
    name : str
        The set: ``"mnist"``, ``"fashion-mnist"`` or a UCR/UEA set name.
    source : str or None
        ``"idx-cache"`` (IDX files in ``folder``), ``"ts-cache"`` (``.ts`` files in the
        cache), ``"packaged"`` (shipped with akida-workflows) or ``"bundled"`` (with
        sktime); None when no folder holds the set: the loader downloads it into
        ``cache``, or falls back to offline data.
    folder : pathlib.Path or None
        The folder holding the set's files (None when not found).
    files : dict of str to pathlib.Path
        The files by role: ``"train_images"``, ``"train_labels"``, ``"test_images"``
        and ``"test_labels"`` (IDX), or ``"train"`` and ``"test"`` (``.ts``). All of
        them when the set is found, else those already in ``cache``.
    cache : pathlib.Path
        The folder looked in first, where downloads go.
    missing : tuple of str
        When the set is not found, the file names ``cache`` lacks; else empty.
    """

    name: str
    source: str | None
    folder: Path | None
    files: dict[str, Path]
    cache: Path
    missing: tuple[str, ...] = ()


def _digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_requested(download: bool) -> bool:
    flag = os.environ.get("AKIDA_WORKFLOWS_OFFLINE", "").strip().lower()
    return (not download) or flag in {"1", "true", "yes", "on"}


def default_data_dir() -> Path:
    """The folder data sets live in: ``$AKIDA_WORKFLOWS_DATA`` or a user cache.

    Returns
    -------
    pathlib.Path
        ``$AKIDA_WORKFLOWS_DATA`` if set, else ``$XDG_CACHE_HOME/akida-workflows``
        (``~/.cache/akida-workflows`` by default). Each data set has a sub-folder
        (``mnist``, ``fashion-mnist``).
    """
    env = os.environ.get("AKIDA_WORKFLOWS_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "akida-workflows"


def _display(path: Path) -> str:
    """``path`` as a reader can place it: under ``$AKIDA_WORKFLOWS_DATA``, ``~`` or here.

    Descriptions and warnings end up on pages and in notebooks: they name data by
    its source and relative location, never by the build machine's absolute path.
    """
    path = Path(path)
    anchors = [("$AKIDA_WORKFLOWS_DATA", os.environ.get("AKIDA_WORKFLOWS_DATA")),
               ("$XDG_CACHE_HOME", os.environ.get("XDG_CACHE_HOME")),
               (".", os.getcwd()), ("~", str(Path.home()))]
    for name, anchor in anchors:
        if not anchor:
            continue
        try:
            rel = path.resolve().relative_to(Path(anchor).expanduser().resolve())
        except (OSError, ValueError):
            continue
        return name if str(rel) == "." else f"{name}/{rel.as_posix()}"
    return str(path)


def _warn_offline(message: str) -> None:
    """Warn from the caller's line, its file named relative to the working directory."""
    frame = sys._getframe(1)
    package = str(Path(__file__).resolve().parent)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
    if frame is None:  # pragma: no cover - always called from user code
        warnings.warn(message, OfflineDataWarning, stacklevel=2)
        return
    filename = frame.f_code.co_filename
    try:
        filename = Path(filename).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (OSError, ValueError):
        pass
    warnings.warn_explicit(
        message, OfflineDataWarning, filename, frame.f_lineno,
        module=frame.f_globals.get("__name__"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
        module_globals=_with_source(frame.f_globals),
    )


def _with_source(module_globals: dict) -> dict | None:
    """``module_globals`` if its loader can give the module's source, else None.

    :func:`warnings.warn_explicit` asks ``module_globals["__loader__"]`` for the
    source of ``__name__``; for code run by ``python -c`` or piped to ``python -``
    that loader is ``BuiltinImporter``, which raises ``ImportError`` for
    ``__main__``. Without the globals the warning is shown from the file name alone.
    """
    get_source = getattr(module_globals.get("__loader__"), "get_source", None)
    if get_source is None:
        return module_globals
    try:
        get_source(module_globals.get("__name__"))
    except Exception:  # ImportError for __main__; any loader failure: show no source line
        return None
    return module_globals

