"""Time series: the shipped ECG200, sktime's bundled sets, a download served on loopback,
the offline fallback, and refused files."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import akida_workflows
from akida_workflows import datasets
from akida_workflows.datasets import (
    OFFLINE_TIMESERIES,
    PACKAGED_SHA256,
    UCR_SETS,
    OfflineDataWarning,
    bundled_timeseries,
    load_timeseries,
    packaged_timeseries,
    resample_signals,
    to_torch_loaders,
    window_signals,
)
from akida_workflows.errors import ChecksumError, DatasetError


def ts_text(name: str, n: int, length: int, seed: int, classes=("a", "b", "c")) -> str:
    rng = np.random.default_rng(seed)
    lines = [f"@problemName {name}", "@timeStamps false", "@missing false",
             "@univariate true", "@equalLength true", f"@seriesLength {length}",
             f"@classLabel true {' '.join(classes)}", "@data"]
    for i in range(n):
        values = ",".join(f"{v:.4f}" for v in rng.normal(size=length))
        lines.append(f"{values}:{classes[i % len(classes)]}")
    return "\n".join(lines) + "\n"


def ucr_zip(name: str, n_train=6, n_test=4, length=20, extra_members=()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/{name}_TRAIN.ts", ts_text(name, n_train, length, 1))
        archive.writestr(f"{name}/{name}_TEST.ts", ts_text(name, n_test, length, 2))
        archive.writestr(f"{name}/{name}.txt", "readme")
        for member, data in extra_members:
            archive.writestr(member, data)
    return buffer.getvalue()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)


def test_the_offline_set_is_shipped_with_the_package():
    assert OFFLINE_TIMESERIES == "ECG200" and packaged_timeseries() == ["ECG200"]
    assert "PLAID" in bundled_timeseries() and "OSULeaf" in bundled_timeseries()


def test_ecg200_is_read_offline_with_its_real_contents(tmp_path, monkeypatch):
    monkeypatch.setenv("AKIDA_WORKFLOWS_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the requested set itself: no fallback warning
        data = load_timeseries("ECG200", tmp_path)
    assert data.source == "packaged" and data.name == "ECG200"
    assert data.x_train.shape == (100, 1, 96) and data.x_test.shape == (100, 1, 96)
    assert data.x_train.dtype == np.float32
    assert data.classes == ("myocardial infarction", "normal")  # archive labels -1, 1
    assert np.bincount(data.y_train).tolist() == [31, 69]
    assert np.bincount(data.y_test).tolist() == [36, 64]
    # the first value of the archive's first training series, as in the file
    assert data.x_train[0, 0, 0] == pytest.approx(0.50205548) and data.y_train[0] == 0
    assert "shipped with akida-workflows" in data.description
    assert not list(tmp_path.iterdir())  # nothing copied into the cache


def packaged_copy(tmp_path, monkeypatch) -> Path:
    """A writable copy of the shipped sets that the loader reads instead of the package's."""
    copy = tmp_path / "packaged"
    shutil.copytree(datasets.PACKAGED_DATA_DIR, copy)
    for path in copy.rglob("*.ts"):
        path.chmod(0o644)
    monkeypatch.setattr(datasets, "PACKAGED_DATA_DIR", copy)
    return copy / "ECG200"


def test_damaged_shipped_file_fails_its_checksum(tmp_path, monkeypatch):
    folder = packaged_copy(tmp_path, monkeypatch)
    text = (folder / "ECG200_TEST.ts").read_text()
    (folder / "ECG200_TEST.ts").write_text(text.replace("0.50", "0.51", 1))  # one digit
    with pytest.raises(ChecksumError, match="ECG200_TEST.ts .*SHA-256 .*reinstall") as caught:
        load_timeseries("ECG200", tmp_path / "cache", download=False)
    assert PACKAGED_SHA256["ECG200"]["ECG200_TEST.ts"] in str(caught.value)
    # the fallback checks the same files
    with pytest.raises(ChecksumError, match="ECG200_TEST.ts"):
        load_timeseries("ECG5000", tmp_path / "cache", download=False)


def ecg200_lines() -> list[str]:
    path = datasets.PACKAGED_DATA_DIR / "ECG200" / "ECG200_TRAIN.ts"
    return path.read_text().splitlines(keepends=True)


def cached_ecg200(root: Path, train_lines: list[str]) -> None:
    folder = root / "ECG200"
    folder.mkdir(parents=True)
    (folder / "ECG200_TRAIN.ts").write_text("".join(train_lines))
    shutil.copy(datasets.PACKAGED_DATA_DIR / "ECG200" / "ECG200_TEST.ts", folder)


def first_data_line(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if line.strip() == "@data") + 1


def test_truncated_file_is_named_with_its_line(tmp_path):
    lines = ecg200_lines()
    cut = "".join(lines)[: len("".join(lines[:60])) + 300]  # cut inside line 61
    cached_ecg200(tmp_path, [cut])
    with pytest.raises(DatasetError, match=r"ECG200_TRAIN.ts, line 61: .*truncated"):
        load_timeseries("ECG200", tmp_path)


def test_file_cut_at_a_line_end_fails_the_size_check(tmp_path):
    cached_ecg200(tmp_path, ecg200_lines()[:-10])
    with pytest.raises(DatasetError, match="ECG200_TRAIN.ts: 90 series, .* has 100 there"):
        load_timeseries("ECG200", tmp_path)


def test_series_of_the_wrong_length_is_refused(tmp_path):
    lines = ecg200_lines()
    row = first_data_line(lines) + 4
    values, label = lines[row].rsplit(":", 1)
    lines[row] = values.rsplit(",", 1)[0] + ":" + label  # 95 values
    cached_ecg200(tmp_path, lines)
    with pytest.raises(DatasetError, match=rf"ECG200_TRAIN.ts, line {row + 1}: channel 0 has "
                                           r"95 values, the header declares @seriesLength 96"):
        load_timeseries("ECG200", tmp_path)


def test_unknown_label_is_refused(tmp_path):
    lines = ecg200_lines()
    row = first_data_line(lines)
    lines[row] = lines[row].rsplit(":", 1)[0] + ":2\n"
    cached_ecg200(tmp_path, lines)
    with pytest.raises(DatasetError, match=rf"ECG200_TRAIN.ts, line {row + 1}: label '2' is "
                                           r"not one of the classes the header declares \(-1, 1\)"):
        load_timeseries("ECG200", tmp_path)


def test_file_without_data_is_refused(tmp_path):
    lines = ecg200_lines()
    cached_ecg200(tmp_path, lines[: first_data_line(lines) - 1])
    with pytest.raises(DatasetError, match="ECG200_TRAIN.ts: no @data line"):
        load_timeseries("ECG200", tmp_path)
    (tmp_path / "ECG200" / "ECG200_TRAIN.ts").write_text("".join(lines[: first_data_line(lines)]))
    with pytest.raises(DatasetError, match="ECG200_TRAIN.ts: no series after @data"):
        load_timeseries("ECG200", tmp_path)


def test_bad_labels_in_a_download_keep_nothing(tmp_path, http_dir, online):
    served, url = http_dir
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Tiny/Tiny_TRAIN.ts", ts_text("Tiny", 6, 20, 1))
        bad = ts_text("Tiny", 4, 20, 2).replace(":c\n", ":z\n")
        archive.writestr("Tiny/Tiny_TEST.ts", bad)
    (served / "Tiny.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match=r"Tiny_TEST.ts, line \d+: label 'z'"):
        load_timeseries("Tiny", tmp_path / "cache", mirrors=[url], offline_fallback=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not list((tmp_path / "cache" / "Tiny").iterdir())  # no hidden leftovers either


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_offline_fallback_from_python_c_and_stdin(tmp_path, how):
    """``python -c`` and ``python -`` run in ``__main__`` with BuiltinImporter as loader."""
    code = ("from akida_workflows.datasets import load_timeseries\n"
            "data = load_timeseries('ECG5000')\n"
            "print(data.name, data.source, data.x_test.shape)\n")
    package_parent = str(Path(akida_workflows.__file__).resolve().parents[1])
    env = {**os.environ, "AKIDA_WORKFLOWS_OFFLINE": "1", "AKIDA_WORKFLOWS_DATA": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]),
           "PYTHONWARNINGS": "default"}
    args, stdin = ([sys.executable, "-c", code], None) if how == "-c" else \
        ([sys.executable, "-"], code)
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ECG200 packaged-fallback (100, 1, 96)"
    where = "<string>" if how == "-c" else "<stdin>"
    assert f"{where}:2: OfflineDataWarning: ECG5000 not available (offline mode" in done.stderr


def test_bundled_set_is_read_with_its_real_sizes(tmp_path):
    data = load_timeseries("OSULeaf", tmp_path)
    spec = UCR_SETS["OSULeaf"]
    assert data.source == "bundled"
    assert data.x_train.shape == (spec.train, 1, spec.length) and data.x_train.dtype == np.float32
    assert data.x_test.shape == (spec.test, 1, spec.length)
    assert data.classes == ("1", "2", "3", "4", "5", "6")
    assert set(np.unique(data.y_train)) == set(range(6))
    assert "OSULeaf" in data.description and "sktime" in data.description


def test_unequal_lengths_are_resampled(tmp_path):
    data = load_timeseries("PLAID", tmp_path, length=128)
    assert data.x_train.shape == (537, 1, 128) and "resampled to length 128" in data.description
    assert np.isfinite(data.x_train).all()


def test_download_is_extracted_cached_and_read(tmp_path, http_dir, online):
    served, url = http_dir
    (served / "TinyECG.zip").write_bytes(ucr_zip("TinyECG"))
    root = tmp_path / "cache"
    data = load_timeseries("TinyECG", root, mirrors=["http://127.0.0.1:9/none", url])
    assert data.source == "download"
    assert data.x_train.shape == (6, 1, 20) and data.x_test.shape == (4, 1, 20)
    assert data.classes == ("a", "b", "c") and data.y_train.tolist() == [0, 1, 2, 0, 1, 2]
    assert "downloaded from 127.0.0.1" in data.description
    assert sorted(p.name for p in (root / "TinyECG").iterdir()) == ["TinyECG_TEST.ts",
                                                                   "TinyECG_TRAIN.ts"]
    (served / "TinyECG.zip").unlink()  # the cache answers now
    again = load_timeseries("TinyECG", root, mirrors=[url])
    assert again.source == "ts-cache"
    assert np.array_equal(again.x_train, data.x_train)


def test_known_set_with_wrong_sizes_is_refused_and_not_kept(tmp_path, http_dir, online):
    served, url = http_dir
    (served / "ECG5000.zip").write_bytes(ucr_zip("ECG5000"))  # 6/4 series, not 500/4500
    with pytest.raises(DatasetError, match="truncated or another set"):
        load_timeseries("ECG5000", tmp_path, mirrors=[url], offline_fallback=False)
    assert not list((tmp_path / "ECG5000").glob("*.ts"))
    assert not list((tmp_path / "ECG5000").glob(".*"))


def test_corrupt_download_falls_back_with_a_warning(tmp_path, http_dir, online):
    served, url = http_dir
    (served / "ECG5000.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match="not a zip"):
        load_timeseries("ECG5000", tmp_path, mirrors=[url], offline_fallback=False)
    with pytest.warns(OfflineDataWarning) as caught:
        data = load_timeseries("ECG5000", tmp_path, mirrors=[url])
    assert data.source == "packaged-fallback" and data.name == OFFLINE_TIMESERIES
    message = str(caught[0].message)
    assert "ECG5000 not available" in message
    assert "the ECG200 set shipped with akida-workflows instead" in message
    assert str(tmp_path) not in message and "/" not in message.split("(", 1)[0]
    assert "instead of ECG5000" in data.description


def test_archive_members_cannot_write_elsewhere(tmp_path, http_dir, online):
    served, url = http_dir
    evil = [("../../evil.txt", "x"), ("/abs/evil.txt", "x")]
    (served / "Tiny.zip").write_bytes(ucr_zip("Tiny", extra_members=evil))
    root = tmp_path / "deep" / "cache"
    load_timeseries("Tiny", root, mirrors=[url])
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                     if p.is_file() and p.parent != served)
    assert written == ["deep/cache/Tiny/Tiny_TEST.ts", "deep/cache/Tiny/Tiny_TRAIN.ts"]


def test_offline_mode_never_touches_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("AKIDA_WORKFLOWS_OFFLINE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_timeseries("ECG5000", tmp_path, mirrors=["http://127.0.0.1:9/"])
    assert data.source == "packaged-fallback" and data.name == "ECG200"
    assert any("offline mode" in str(w.message) for w in caught)
    with pytest.raises(DatasetError, match="allow the download"):
        load_timeseries("ECG5000", tmp_path, offline_fallback=False)
    with pytest.raises(DatasetError, match="not shipped with akida-workflows nor bundled"):
        load_timeseries("ECG5000", tmp_path, fallback="NoSuchSet")
    with pytest.warns(OfflineDataWarning, match="OSULeaf set bundled with sktime"):
        other = load_timeseries("ECG5000", tmp_path, fallback="OSULeaf")
    assert other.source == "bundled-fallback" and other.x_train.shape == (200, 1, 427)


def test_corrupt_cached_file_says_what_to_do(tmp_path):
    folder = tmp_path / "Broken"
    folder.mkdir()
    (folder / "Broken_TRAIN.ts").write_text("@problemName Broken\n@data\n1,2,x:q\n")
    (folder / "Broken_TEST.ts").write_text(ts_text("Broken", 3, 5, 0))
    with pytest.raises(DatasetError, match="Delete it"):
        load_timeseries("Broken", tmp_path)


def test_resample_keeps_slow_content_and_removes_aliases():
    t = np.arange(400) / 400
    slow = np.sin(2 * np.pi * 3 * t)
    fast = np.sin(2 * np.pi * 180 * t)  # above the new Nyquist frequency (100 cycles)
    out = resample_signals((slow + fast)[None, None], 200)
    assert out.shape == (1, 1, 200) and out.dtype == np.float32
    expected = np.sin(2 * np.pi * 3 * np.arange(200) / 200)
    assert np.abs(out[0, 0, 10:-10] - expected[10:-10]).max() < 0.1
    assert resample_signals(np.ones((2, 3, 427)), 214).shape == (2, 3, 214)
    assert resample_signals(np.ones((2, 50)), 50).shape == (2, 1, 50)
    with pytest.raises(DatasetError, match="N, C, L"):
        resample_signals(np.ones((2, 3, 4, 5)), 10)


def test_windows_cover_the_whole_signal():
    x = np.arange(2 * 500, dtype=np.float32).reshape(2, 1, 500)
    windows, source = window_signals(x, 256, 122)
    assert windows.shape == (6, 1, 256) and source.tolist() == [0, 0, 0, 1, 1, 1]
    assert windows[2, 0, -1] == x[0, 0, -1] and windows[3, 0, 0] == x[1, 0, 0]
    windows, source = window_signals(x, 200)
    assert windows.shape == (6, 1, 200) and windows[2, 0, -1] == x[0, 0, -1]
    with pytest.raises(DatasetError, match="window length"):
        window_signals(x, 600)


def test_torch_loaders_take_signals(tmp_path):
    data = load_timeseries("GunPoint", tmp_path)
    train, test = to_torch_loaders(data, batch_size=16)
    x, y = next(iter(test))
    assert tuple(x.shape) == (16, 1, 150) and x.dtype.is_floating_point
    assert np.allclose(x.numpy(), data.x_test[:16])


def test_signals_per_class_figure():
    import matplotlib

    matplotlib.use("Agg")
    from akida_workflows.plots import signals_per_class

    x = np.random.default_rng(0).normal(size=(20, 1, 50))
    y = np.arange(20) % 4
    fig = signals_per_class(x, y, ["normal", "1", "c", "d"], per_class=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["normal (5 signals)", "class 1 (5 signals)", "c (5 signals)",
                      "d (5 signals)"]
    assert len(fig.axes[0].lines) == 4  # three signals and the class mean
