"""Fuzzed inputs: every file reader ends in its documented error, never a crash.

Each reader gets valid files damaged by hypothesis (truncated, bit-flipped,
overwritten, spliced, empty, random, records mutated inside intact zip
archives), forged headers that claim huge sizes, and files of the wrong type.
The readers run in a child process (tests/fuzz_worker.py) with a capped
address space, so that a segfault, an abort, a hang or an attempt to allocate
what a forged header claims fails the test with the case that caused it,
instead of killing or swapping the test run. The command line is fuzzed as a
subprocess: exit code 2, one line naming the file, no traceback, no output file.

Outcomes per reader are printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import idx_bytes
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from models import mappable, samples

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}

#: Documented error of each reader (its class or a base class, by name).
DOCUMENTED = {
    "idx": "DatasetError", "npy": "DatasetError", "onnx": "ModelFileError",
    "torchscript": "ModelFileError", "state_dict": "ModelFileError",
    "fbz": "AkidaWorkflowError", "result_json": "ValueError",
}
SUFFIX = {"idx": "-idx3-ubyte", "npy": ".npy", "onnx": ".onnx", "torchscript": ".pt",
          "state_dict": ".pt", "fbz": ".fbz", "result_json": ".json"}
CASE_TIMEOUT = 90.0  # seconds; a reader silent for longer is a hang
COMMON = dict(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large],
              deadline=timedelta(seconds=30))
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


# ------------------------------------------------------------------ the worker


class Worker:
    """A fuzz_worker.py child; restarted after a crash or a hang."""

    def __init__(self):
        self.proc = None
        self.cases = 0

    def start(self):
        import tempfile

        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "fuzz_worker.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=ENV)
        answer = self._answer(300)
        assert answer["status"] == "ready", (answer, self.stderr_tail())

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def _answer(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return {"status": "hang"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            return {"status": "crash", "signal": name}
        return json.loads(line)

    def run(self, reader: str, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.cases += 1
        self.proc.stdin.write(json.dumps({"reader": reader, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        return self._answer(CASE_TIMEOUT)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()
    lines = [f"{reader}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
             for reader, c in sorted(OUTCOMES.items())]
    print(f"\nfuzz cases run in the worker: {w.cases}\n" + "\n".join(lines))


def check(worker: Worker, reader: str, path: Path, data: bytes, kind: str,
          must_fail: bool = False) -> dict:
    """Write ``data`` to ``path``, run ``reader`` on it, assert the contract."""
    path.write_bytes(data)
    answer = worker.run(reader, path)
    status = answer["status"]
    label = answer.get("detail", "") if status == "ok" else status
    if status == "error":
        label = f"error {answer['types'][0]}"
    OUTCOMES[reader][label.split(" (")[0]] += 1
    try:
        event(f"{reader} {kind}: {label}")
    except Exception:  # outside a hypothesis test
        pass
    case = f"{reader} on a {kind} file ({len(data)} bytes, starts {data[:16].hex()})"
    assert status != "crash", f"{case}: the reader crashed the process ({answer['signal']})"
    assert status != "hang", f"{case}: no answer within {CASE_TIMEOUT:.0f} s"
    if status == "ok":
        assert not must_fail, f"{case}: accepted ({answer['detail']})"
        return answer
    assert status == "error", answer
    assert DOCUMENTED[reader] in answer["types"], (
        f"{case}: raised {answer['types'][0]} instead of {DOCUMENTED[reader]}: "
        f"{answer['message']}\n{answer['traceback']}")
    assert str(path) in answer["message"] or path.name in answer["message"], (
        f"{case}: the message does not name the file: {answer['message']}")
    return answer


# ------------------------------------------------------------------ valid files


class Files(dict):
    """File name -> bytes, with a short repr for hypothesis's falsifying examples."""

    def __repr__(self):
        return f"<{len(self)} files: {', '.join(self)}>"


def _zip_bytes(records: dict[str, bytes], name: str) -> bytes:
    """A PyTorch zip archive (correct CRCs) holding ``records``."""
    buffer = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(buffer)
    for record, data in records.items():
        writer.write_record(record, data, len(data))
    writer.write_end_of_file()
    return buffer.getvalue()


def _records(data: bytes) -> dict[str, bytes]:
    reader = torch._C.PyTorchFileReader(io.BytesIO(data))
    return {n: reader.get_record(n) for n in reader.get_all_records()
            if n != ".data/serialization_id"}


def _tiny_fbz(path: Path) -> bytes:
    import akida

    model = akida.Model()
    model.add(akida.InputData(input_shape=(1, 1, 16), input_bits=8))
    model.add(akida.Dense1D(units=4, output_bits=8))
    model.add(akida.Dequantizer())
    layer = model.layers[1]
    weights = layer.variables["weights"]
    layer.variables["weights"] = np.random.default_rng(0).integers(
        -100, 100, weights.shape).astype(weights.dtype)
    model.save(str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """Bytes of one valid file per reader."""
    import results_io

    tmp = tmp_path_factory.mktemp("valid")
    x = torch.from_numpy(samples(1))
    good = mappable()
    files = Files()
    files["idx"] = idx_bytes(np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))
    buffer = io.BytesIO()
    np.save(buffer, samples(2))
    files["npy"] = buffer.getvalue()
    torch.onnx.export(good, (x,), str(tmp / "m.onnx"), dynamo=False, input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}})
    files["onnx"] = (tmp / "m.onnx").read_bytes()
    torch.jit.save(torch.jit.trace(good, x), tmp / "ts.pt")
    files["torchscript"] = (tmp / "ts.pt").read_bytes()
    torch.save(good.state_dict(), tmp / "sd.pt")
    files["state_dict"] = (tmp / "sd.pt").read_bytes()
    files["fbz"] = _tiny_fbz(tmp / "tiny.fbz")
    results_io.write_result(tmp / "r.json", [{"stage": "float", "accuracy": 0.9}],
                            benchmark="r", title="fuzz", columns=["stage", "accuracy"])
    files["result_json"] = (tmp / "r.json").read_bytes()
    return files


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cases")


def test_valid_files_load(worker, valid, case_dir):
    """Control: the undamaged files load, so the damaged cases test the readers."""
    for reader, data in valid.items():
        answer = check(worker, reader, case_dir / f"valid{SUFFIX[reader]}", data, "valid")
        assert answer["status"] == "ok", answer
        if reader == "idx":  # also gzipped
            answer = check(worker, reader, case_dir / "valid-idx3-ubyte.gz",
                           gzip.compress(data), "valid")
            assert answer["status"] == "ok", answer


# ------------------------------------------------------------------ damage


def damaged(base: bytes):
    """(kind, bytes): ``base`` truncated, bit-flipped, overwritten, spliced, or replaced."""
    n = len(base)

    def flip(flips):
        out = bytearray(base)
        for i, bit in flips:
            out[i] ^= 1 << bit
        return "bit-flipped", bytes(out)

    def overwrite(args):
        i, chunk = args
        return "overwritten", base[:i] + chunk + base[i + len(chunk):]

    return st.one_of(
        st.integers(0, n - 1).map(lambda i: ("truncated", base[:i])),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)),
                 min_size=1, max_size=8).map(flip),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=32)).map(overwrite),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
            lambda a: ("inserted", base[:a[0]] + a[1] + base[a[0]:])),
        st.tuples(st.integers(0, n - 1), st.integers(1, 256)).map(
            lambda a: ("cut", base[:a[0]] + base[a[0] + a[1]:])),
        st.just(("empty", b"")),
        st.binary(min_size=1, max_size=256).map(lambda b: ("random", b)),
        st.just(("doubled", base + base)),
    )


def _fuzz(worker, reader, valid, case_dir, data):
    kind, blob = data.draw(damaged(valid[reader]))
    must_fail = kind in ("empty", "truncated", "cut", "doubled") and reader in ("idx", "npy")
    check(worker, reader, case_dir / f"case{SUFFIX[reader]}", blob, kind, must_fail)


@settings(max_examples=150, **COMMON)
@given(data=st.data())
def test_fuzz_idx(worker, valid, case_dir, data):
    _fuzz(worker, "idx", valid, case_dir, data)


@settings(max_examples=100, **COMMON)
@given(data=st.data(), on_compressed=st.booleans())
def test_fuzz_idx_gz(worker, valid, case_dir, data, on_compressed):
    base = gzip.compress(valid["idx"])
    if on_compressed:  # damage the gzip stream itself
        kind, blob = data.draw(damaged(base))
    else:  # damage the IDX content, then compress it correctly
        kind, blob = data.draw(damaged(valid["idx"]))
        blob = gzip.compress(blob)
    check(worker, "idx", case_dir / "case-idx3-ubyte.gz", blob, f"gz {kind}",
          must_fail=not on_compressed and kind in ("empty", "truncated", "cut", "doubled"))


@settings(max_examples=150, **COMMON)
@given(data=st.data())
def test_fuzz_npy(worker, valid, case_dir, data):
    _fuzz(worker, "npy", valid, case_dir, data)


@settings(max_examples=100, **COMMON)
@given(data=st.data())
def test_fuzz_onnx(worker, valid, case_dir, data):
    _fuzz(worker, "onnx", valid, case_dir, data)


@settings(max_examples=60, **COMMON)
@given(data=st.data())
def test_fuzz_torchscript(worker, valid, case_dir, data):
    _fuzz(worker, "torchscript", valid, case_dir, data)


@settings(max_examples=60, **COMMON)
@given(data=st.data())
def test_fuzz_state_dict(worker, valid, case_dir, data):
    _fuzz(worker, "state_dict", valid, case_dir, data)


@settings(max_examples=80, **COMMON)
@given(data=st.data())
def test_fuzz_zip_records(worker, valid, case_dir, data):
    """Damage one record (pickle, code, constants, tensor data) inside an intact archive."""
    reader = data.draw(st.sampled_from(["torchscript", "state_dict"]))
    records = _records(valid[reader])
    name = data.draw(st.sampled_from(sorted(records)))
    kind, blob = data.draw(damaged(records[name]) if records[name] else
                           st.just(("random", b"x")))
    archive = _zip_bytes({**records, name: blob}, "case")
    check(worker, reader, case_dir / f"zip{SUFFIX[reader]}", archive, f"{kind} {name}")


@settings(max_examples=25, **COMMON)
@given(data=st.data())
def test_fuzz_fbz(worker, valid, case_dir, data):
    _fuzz(worker, "fbz", valid, case_dir, data)


@settings(max_examples=100, **COMMON)
@given(data=st.data())
@example(data=None)
def test_fuzz_result_json(worker, valid, case_dir, data):
    if data is None:  # deeply nested JSON: the recursion limit, not a crash
        check(worker, "result_json", case_dir / "deep.json", b"[" * 100_000, "deeply nested",
              must_fail=True)
        return
    _fuzz(worker, "result_json", valid, case_dir, data)


# ------------------------------------------------------------------ forged headers


@settings(max_examples=100, **COMMON)
@given(code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
       dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6),
       payload=st.integers(0, 64), gz=st.booleans())
@example(code=0x08, dims=[10**6, 10**6], payload=16, gz=False)  # 10^12 items
@example(code=0x08, dims=[10**6, 10**6], payload=16, gz=True)
@example(code=0x08, dims=[65536] * 4, payload=0, gz=False)  # 2^64: wraps int64 to 0
def test_idx_headers_claiming_huge_sizes(worker, case_dir, code, dims, payload, gz):
    header = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    blob = header + bytes(payload)
    count = 1
    for d in dims:
        count *= d
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[code]
    fits = count * itemsize == payload
    check(worker, "idx", case_dir / f"huge-idx{'.gz' if gz else ''}",
          gzip.compress(blob) if gz else blob, "forged-header", must_fail=not fits)


@settings(max_examples=60, **COMMON)
@given(shape=st.lists(st.integers(0, 10**9), min_size=1, max_size=5),
       dtype=st.sampled_from(["<f4", "<f8", "<f2", "|u1", "<i8", "|O", "<c8", "V8"]),
       payload=st.integers(0, 64))
@example(shape=[10**12, 1, 28, 28], dtype="<f4", payload=64)
def test_npy_headers_claiming_huge_sizes(worker, case_dir, shape, dtype, payload):
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    check(worker, "npy", case_dir / "huge.npy", buffer.getvalue() + bytes(payload),
          "forged-header", must_fail=dtype in ("|O", "<c8", "V8", "<i8", "|u1"))


class _Storage:
    def __init__(self, numel):
        self.numel = numel


class _Tensor:
    def __init__(self, size, numel):
        self.size, self.numel = size, numel

    def __reduce__(self):
        stride = tuple(int(np.prod(self.size[i + 1:])) for i in range(len(self.size)))
        return (torch._utils._rebuild_tensor_v2,
                (_Storage(self.numel), 0, self.size, stride, False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
        return None


@pytest.mark.parametrize("size, numel", [((10**6, 10**6), 10**12), ((8, 1, 3, 3), 10**12),
                                         ((10**6, 10**6), 4)])
def test_state_dict_whose_tensor_claims_huge_storage(worker, case_dir, size, numel):
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(collections.OrderedDict([("0.weight", _Tensor(size, numel))]))
    archive = _zip_bytes({"data.pkl": buffer.getvalue(), "byteorder": b"little",
                          "data/0": bytes(16)}, "huge")
    check(worker, "state_dict", case_dir / "huge_sd.pt", archive, "forged-header",
          must_fail=True)


# ------------------------------------------------------------------ wrong types


@pytest.fixture(scope="module")
def other_files(valid, tmp_path_factory):
    """Files of every kind, to be given to every reader."""
    tmp = tmp_path_factory.mktemp("evil")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch '{tmp / 'PWNED'}'",))

    buffer = io.BytesIO()
    torch.save(Evil(), buffer)
    pickled_module = io.BytesIO()
    torch.save(mappable(), pickled_module)
    return Files(**valid, evil_pickle=buffer.getvalue(), pickled_module=pickled_module.getvalue(),
                 plain_pickle=pickle.dumps({"a": 1}), png=b"\x89PNG\r\n\x1a\n" + bytes(64),
                 text=b"hello, world\n" * 20, gzip_text=gzip.compress(b"hello"),
                 zip=_zip_bytes({"a.txt": b"a"}, "z")), tmp


@pytest.mark.parametrize("reader", sorted(DOCUMENTED))
def test_wrong_type_files(worker, other_files, case_dir, reader):
    files, evil_dir = other_files
    for kind, data in files.items():
        if kind == reader:
            continue
        check(worker, reader, case_dir / f"wrong{SUFFIX[reader]}", data, f"wrong-type {kind}",
              must_fail=True)
    assert not (evil_dir / "PWNED").exists()


# ------------------------------------------------------------------ the command line


def _cli(*args, cwd):
    try:
        return subprocess.run([sys.executable, "-m", "akida_workflows", *map(str, args)],
                              capture_output=True, text=True, timeout=300, env=ENV, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"akida-workflows {' '.join(map(str, args))} did not finish in 300 s")


CLI_CASES = {  # reader -> command line (the damaged file is {f})
    "torchscript": ["check", "{f}", "--input-shape", "1,16,16"],
    "state_dict": ["check", "--model-class", "models:mappable", "--weights", "{f}",
                   "--input-shape", "1,16,16"],
    "onnx": ["convert", "{f}", "--samples", "calib.npy", "-o", "out.fbz"],
    "npy": ["convert", "model.onnx", "--samples", "{f}", "-o", "out.fbz"],
    "fbz": ["info", "{f}"],
}


@pytest.mark.parametrize("reader", sorted(CLI_CASES))
@settings(max_examples=2, **{**COMMON, "deadline": timedelta(seconds=300)})
@given(data=st.data())
def test_fuzz_cli(valid, tmp_path, data, reader):
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="cli-", dir=tmp_path))
    np.save(work / "calib.npy", samples(8))
    (work / "model.onnx").write_bytes(valid["onnx"])
    base = valid[reader]
    kind, blob = data.draw(st.one_of(  # damage that no reader may accept
        st.integers(0, len(base) // 2).map(lambda i: ("truncated", base[:i])),
        st.binary(min_size=1, max_size=256).map(lambda b: ("random", b))))
    target = work / f"damaged{SUFFIX[reader]}"
    target.write_bytes(blob)
    result = _cli(*[a.format(f=target) for a in CLI_CASES[reader]], cwd=work)
    event(f"cli {reader} {kind}: exit {result.returncode}")
    assert result.returncode == 2, (kind, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert target.name in result.stderr
    assert not (work / "out.fbz").exists()
    assert not list(work.glob(".out.*")), "a temporary output file was left behind"
