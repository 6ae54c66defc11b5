"""UCR/UEA time series: ``.ts`` files read with sktime and checked line by line, the
archive's zip downloads, and the checksums of the sets shipped with this package.

Part of :mod:`akida_workflows.datasets`, which re-exports the public names and decides
where files are looked for (:func:`akida_workflows.datasets.locate`).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._datacore import Dataset, _digest
from ._inputs import resample_signals
from .errors import ChecksumError, DatasetError


@dataclass(frozen=True)
class _SeriesSet:
    """What the archive says a known set holds: its sizes, its subject and class names."""

    train: int
    test: int
    length: int  # 0: unequal lengths
    classes: int
    channels: int
    about: str
    names: tuple[str, ...] = ()  # class names, in the archive's label order


def _sktime_data_dir() -> Path:
    try:
        import sktime
    except ImportError as exc:
        raise DatasetError(
            "time series are read with sktime: pip install sktime (or akida-workflows[timeseries])"
        ) from exc
    return Path(sktime.__file__).parent / "datasets" / "data"


def _ts_pair(directory: Path, name: str) -> tuple[Path, Path] | None:
    pair = (directory / f"{name}_TRAIN.ts", directory / f"{name}_TEST.ts")
    return pair if all(p.is_file() for p in pair) else None


def _sha256(path: Path) -> str:
    return _digest(path, "sha256")


def _verify_packaged(pair: Sequence[Path], sha256: dict[str, str]) -> None:
    """Check files shipped with this package against their SHA-256 (by file name)."""
    for path in pair:
        expected = sha256[path.name]
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


def _series_dataset(name, pair, source, where, length, spec: _SeriesSet | None) -> Dataset:
    """The set ``name`` from its two ``.ts`` files, checked against ``spec`` when known."""
    x_train, y_train = _read_ts(pair[0], length)
    x_test, y_test = _read_ts(pair[1], length if length is not None else x_train.shape[-1]
                              if x_train.ndim == 3 else None)
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


def _download_ucr(name: str, root: Path, mirrors: Sequence[str], timeout: float,
                  spec: _SeriesSet | None) -> str:
    """Fetch ``<mirror>/<name>.zip`` and extract its two ``.ts`` files into ``root / name``.

    Only the two expected members are read (no other path is written); they are
    extracted into a hidden folder under their own names, checked (against ``spec``
    when known), and moved into place only once both are complete and valid.
    Returns the mirror used.
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
                                    None, spec)
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

