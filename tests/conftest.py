"""Shared fixtures: tiny IDX data sets, a loopback HTTP server, tiny models."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI runs the same examples every time (derandomized); local runs keep exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    group = parser.getgroup("akida-workflows")
    group.addoption("--live-toolchain", action="store_true",
                    help="compute every toolchain verdict (tests/zoo.py real_toolchain) instead "
                         "of replaying tests/toolchain_verdicts.json, and fail on a disagreement")
    group.addoption("--record-verdicts", action="store_true",
                    help="rewrite tests/toolchain_verdicts.json with the verdicts of this run")


#: Seconds each test file and golden notebook took in the last recorded run
#: (``benchmarks/durations.json``, written by ``python tools/durations.py record`` from
#: the JUnit report ``nox -s tests`` leaves in ``build/junit.xml``): only to hand the
#: longest files out first. pytest-xdist's ``--dist loadfile`` otherwise hands out the
#: files with the most tests first, so the notebooks (few cells, minutes each) started
#: last and the run ended about 40 s after the CPU work could have. A stale or missing
#: figure costs time, never a result; an unlisted file goes last.
FILE_SECONDS = json.loads((ROOT / "benchmarks" / "durations.json").read_text())["tests"]


def file_seconds(path) -> float:
    """Recorded seconds of test file or notebook ``path`` (0 when not recorded)."""
    return float(FILE_SECONDS.get(Path(str(path)).name, 0))


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (:data:`FILE_SECONDS`); each file's tests keep their order."""
    items.sort(key=lambda item: -file_seconds(item.path))


def pytest_configure(config):
    """One folder per test run for the zoo's conversions and reports (``tests/zoo.py``),
    and Python's garbage collector set for a long run of conversions (:mod:`akida_workflows._gc`).

    Made by the controlling process before pytest-xdist starts its workers, which
    inherit the variable: each zoo model is converted and checked once per run,
    in whichever worker asks first, instead of once per worker.
    """
    import tempfile

    from akida_workflows._gc import for_long_runs

    for_long_runs()  # each test process: rarer full collections, none at exit (_gc)
    if config.getoption("--live-toolchain", False) and not hasattr(config, "workerinput"):
        os.environ["AW_TOOLCHAIN_LIVE"] = "1"
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order above
        config.option.loadscopereorder = False
    if hasattr(config, "workerinput") or os.environ.get("AW_ZOO_CACHE"):
        return
    config._aw_zoo_cache = tempfile.TemporaryDirectory(prefix="aw-zoo-")
    os.environ["AW_ZOO_CACHE"] = config._aw_zoo_cache.name


def pytest_sessionfinish(session, exitstatus):
    """How many toolchain verdicts were computed and replayed (printed in the summary);
    the record rewritten on request; with ``--live-toolchain``, a computed verdict that
    the current record contradicts fails the run."""
    config = session.config
    folder = os.environ.get("AW_ZOO_CACHE")
    if hasattr(config, "workerinput") or not folder:
        return
    from zoo import VERDICT_RECORD, verdict_run_summary, write_verdict_record

    summary = verdict_run_summary(Path(folder))
    if not summary["used"]:
        return
    state = ("recorded for this code and toolchain" if summary["current"] else
             "not replayed: recorded for other code or another toolchain version; "
             "`nox -s tests -- --record-verdicts` refreshes it")
    lines = [f"toolchain verdicts: {len(summary['computed'])} computed, {summary['replayed']} "
             f"replayed from tests/{VERDICT_RECORD.name} ({state})"]
    if summary["disagree"] and summary["current"]:
        lines.append(f"toolchain verdicts DISAGREE with tests/{VERDICT_RECORD.name} for "
                     f"{', '.join(summary['disagree'])}: the toolchain is not deterministic here")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if config.getoption("--record-verdicts"):
        count = write_verdict_record(summary)
        lines.append(f"tests/{VERDICT_RECORD.name}: {count} verdicts recorded")
    config._aw_verdict_lines = lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in getattr(config, "_aw_verdict_lines", ()):
        terminalreporter.write_line(line, red="DISAGREE" in line)


def pytest_unconfigure(config):
    cache = getattr(config, "_aw_zoo_cache", None)
    if cache is not None:
        os.environ.pop("AW_ZOO_CACHE", None)
        cache.cleanup()
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialize an array in IDX format (uint8 or int32, big-endian)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    code = codes[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def fake_split(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_fake_mnist(root: Path, n_train=30, n_test=20, gz=True, parts=tuple(STEMS)) -> dict:
    """Write canonical-named IDX files; returns {stem.gz: md5} of what was written."""
    root.mkdir(parents=True, exist_ok=True)
    train = fake_split(n_train, 1)
    test = fake_split(n_test, 2)
    arrays = {
        "train_images": train[0], "train_labels": train[1],
        "test_images": test[0], "test_labels": test[1],
    }
    md5s = {}
    for key in parts:
        path = root / (STEMS[key] + (".gz" if gz else ""))
        write_idx(path, arrays[key])
        md5s[key] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5s


@pytest.fixture
def http_dir(tmp_path):
    """A loopback HTTP server serving a temporary folder; yields (folder, base_url)."""
    serve = tmp_path / "served"
    serve.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(serve), **kwargs)

        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield serve, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_network_env(monkeypatch, tmp_path):
    """Default data folder pointed at an empty temporary folder, network allowed."""
    monkeypatch.setenv("AKIDA_WORKFLOWS_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("AKIDA_WORKFLOWS_OFFLINE", raising=False)
    return tmp_path / "data"
