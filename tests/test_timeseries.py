"""Time series: sktime's bundled sets, a download served on loopback, the offline fallback."""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest

from akida_workflows.datasets import (
    OFFLINE_TIMESERIES,
    UCR_SETS,
    OfflineDataWarning,
    bundled_timeseries,
    load_timeseries,
    resample_signals,
    to_torch_loaders,
    window_signals,
)
from akida_workflows.errors import DatasetError


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


def test_bundled_sets_include_the_offline_one():
    names = bundled_timeseries()
    assert OFFLINE_TIMESERIES in names and "PLAID" in names


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
    assert data.source == "bundled-fallback" and data.name == OFFLINE_TIMESERIES
    message = str(caught[0].message)
    assert "ECG5000 not available" in message and "OSULeaf set bundled with sktime" in message
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
    assert data.source == "bundled-fallback"
    assert any("offline mode" in str(w.message) for w in caught)
    with pytest.raises(DatasetError, match="allow the download"):
        load_timeseries("ECG5000", tmp_path, offline_fallback=False)
    with pytest.raises(DatasetError, match="not bundled"):
        load_timeseries("ECG5000", tmp_path, fallback="NoSuchSet")


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
