"""The data check that runs before any example: every set found, or one message with fixes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_fake_mnist

from akida_workflows import availability
from akida_workflows import datasets as ds
from akida_workflows.availability import data_status, missing_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_data  # noqa: E402


@pytest.fixture
def offline_empty(monkeypatch, tmp_path):
    """Offline, an empty data folder, and no Debian Fashion-MNIST."""
    monkeypatch.setenv("AKIDA_WORKFLOWS_OFFLINE", "1")
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    return tmp_path / "data"


def test_every_example_loader_call_is_seen():
    calls = {path.name: check_data.loader_calls(path)
             for path in sorted((ROOT / "examples").glob("plot_*.py"))}
    assert calls["plot_0_mnist_pytorch_to_akida.py"] == [("load_mnist", None)]
    assert ("load_fashion_mnist", None) in calls["plot_2_int4_per_channel.py"]
    assert any(loader == "load_timeseries" and name for loader, name
               in calls["plot_5_ecg_signals.py"])
    # Every example that reads data declares it in a way the check can see.
    for name, found in calls.items():
        source = (ROOT / "examples" / name).read_text()
        if "load_" in source and "datasets import" in source:
            assert found, name


def test_missing_fashion_mnist_is_named_with_every_fix(offline_empty):
    status = data_status("load_fashion_mnist")
    assert not status.available
    assert "AKIDA_WORKFLOWS_OFFLINE" in status.source
    fixes = "\n".join(status.fixes)
    assert "apt-get install dataset-fashion-mnist" in fixes
    assert "AKIDA_WORKFLOWS_DATA" in fixes and "fashion-mnist" in fixes
    report = missing_report({"fashion-mnist": ["plot_2.py", "plot_6.py"]},
                            {"fashion-mnist": status})
    assert "1 data set(s)" in report and "plot_2.py, plot_6.py" in report
    assert "nothing was executed" in report


def test_found_files_make_a_set_available(offline_empty):
    write_fake_mnist(offline_empty / "fashion-mnist")
    status = data_status("load_fashion_mnist")
    assert status.available and "IDX files in $AKIDA_WORKFLOWS_DATA/fashion-mnist" in status.source


def test_mnist_is_never_missing_but_says_subset(offline_empty):
    status = data_status("load_mnist")
    assert status.available and "embedded subset" in status.source
    write_fake_mnist(offline_empty / "mnist", parts=("test_images", "test_labels"))
    status = data_status("load_mnist")
    assert "the canonical test set in $AKIDA_WORKFLOWS_DATA/mnist" in status.source


def test_a_reachable_mirror_counts_as_available(monkeypatch, tmp_path, http_dir):
    _, url = http_dir
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(ds, "FASHION_MNIST_MIRRORS", ["http://127.0.0.1:9/", url])
    status = data_status("load_fashion_mnist", timeout=1.0)
    assert status.available and status.source.startswith("download from 127.0.0.1:")


def test_unreachable_mirrors_are_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(ds, "FASHION_MNIST_MIRRORS", ["http://127.0.0.1:9/"])
    status = data_status("load_fashion_mnist", timeout=1.0)
    assert not status.available and "no mirror answered" in status.source


def test_unknown_loader():
    with pytest.raises(ValueError, match="unknown data loader 'load_cifar'"):
        data_status("load_cifar")
    assert set(availability.LOADERS) <= set(dir(ds))


def test_computed_timeseries_name_is_refused(tmp_path):
    (tmp_path / "plot_9_x.py").write_text(
        "from akida_workflows.datasets import load_timeseries\n"
        "name = 'ECG' + '5000'\ndata = load_timeseries(name)\n")
    assert check_data.main([str(tmp_path)]) == 2


def test_check_fails_in_seconds_with_the_fix(offline_empty, tmp_path):
    """The gallery's first step: a missing set stops it before any example runs."""
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    # The subprocess cannot see monkeypatched module state: point the Debian folder
    # away through a copy of the examples that needs only Fashion-MNIST.
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "plot_2_x.py").write_text(
        "from akida_workflows.datasets import load_fashion_mnist\ndata = load_fashion_mnist()\n")
    tools, debian = str(ROOT / "tools"), str(tmp_path / "no-debian")
    code = (f"import sys; sys.path.insert(0, {tools!r}); "
            "import akida_workflows.datasets as ds, pathlib; "
            f"ds.DEBIAN_FASHION_MNIST_DIR = pathlib.Path({debian!r}); "
            f"import check_data; sys.exit(check_data.main([{str(examples)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "MISSING fashion-mnist" in done.stdout
    assert "apt-get install dataset-fashion-mnist" in done.stderr
    assert "plot_2_x.py" in done.stderr


def test_ecg_is_available_offline_from_the_package(offline_empty):
    assert data_status("load_timeseries", "ECG200").source == "shipped with akida-workflows"
    status = data_status("load_timeseries", "ECG5000")
    assert status.available and status.source.startswith("fallback ECG200, shipped with")


def test_unknown_series_offline_is_missing_with_fixes(offline_empty, monkeypatch):
    monkeypatch.setattr(ds, "OFFLINE_TIMESERIES", "NoSuchSet")
    status = data_status("load_timeseries", "NoSuchSet")
    assert not status.available
    assert any("timeseries/NoSuchSet" in fix for fix in status.fixes)
