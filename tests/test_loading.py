"""akida_workflows.loading: model files load without running their author's code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Tuple  # noqa: UP035  (TorchScript wants typing's names)

import numpy as np
import onnx
import pytest
import torch
from models import mappable, samples, valid_padding

from akida_workflows.errors import DatasetError, ModelFileError, UnsafeModelFileError
from akida_workflows.export import export_onnx
from akida_workflows.loading import (
    PICKLE_RISK,
    load_model,
    load_samples,
    model_file_format,
    resolve_model_class,
)

TESTS = Path(__file__).resolve().parent


class Evil:
    """Unpickling this runs ``touch TARGET``: the attack of issue 14."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


class WritesOnLoad(torch.nn.Module):
    """TorchScript whose ``__setstate__`` (run by torch.jit.load) writes a file."""

    def __init__(self, target: str):
        super().__init__()
        self.a = torch.zeros(1)
        self.target = target

    def forward(self, x):
        return x + self.a

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:  # noqa: UP006
        return (self.a, self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:  # noqa: UP006
        self.a = state[0]
        self.target = state[1]
        self.training = state[2]
        torch.save(self.a, self.target)


class ReadsFiles(torch.nn.Module):
    def forward(self, x):
        y = torch.from_file("/etc/hostname", shared=False, size=1, dtype=torch.uint8)
        return x + y.float().sum()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loading")
    x = torch.from_numpy(samples(1))
    good = mappable()
    torch.save(good.state_dict(), tmp / "sd.pt")
    torch.save({"epoch": 3, "state_dict": good.state_dict()}, tmp / "ckpt_state_dict.pt")
    torch.save({"model": good.state_dict(), "optimizer": {}}, tmp / "ckpt_model.pt")
    torch.save({"model_state_dict": good.state_dict()}, tmp / "ckpt_model_state_dict.pt")
    torch.save({f"module.{k}": v for k, v in good.state_dict().items()}, tmp / "dp.pt")
    torch.save(good, tmp / "pickled.pt")
    torch.jit.save(torch.jit.trace(good, x), tmp / "ts.pt")
    export_onnx(good, x, tmp / "good.onnx")
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x01garbage")
    torch.export.save(torch.export.export(good, (x,)), tmp / "good.pt2")
    return tmp


def _same(a, b):
    x = torch.from_numpy(samples(4))
    with torch.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


# ------------------------------------------------------------------ pickles


def test_full_pickle_is_never_unpickled(tmp_path):
    target = tmp_path / "PWNED"
    torch.save(Evil(target), tmp_path / "model.pt")
    with pytest.raises(UnsafeModelFileError) as info:
        load_model(tmp_path / "model.pt")
    assert not target.exists()
    message = str(info.value)
    assert str(tmp_path / "model.pt") in message and "this file is a full pickle" in message
    assert "posix.system" in message  # what the pickle would have called, read statically
    assert "--trust-pickle" in message and "only if you trust its author" in message
    assert PICKLE_RISK in message
    assert "state dict / TorchScript / ONNX" in message or "state_dict()" in message
    # Named as weights of a class, the same file is still only read with weights_only=True.
    with pytest.raises(UnsafeModelFileError, match="full pickle"):
        load_model(weights=tmp_path / "model.pt", model_class=mappable)
    assert not target.exists()


def test_trust_pickle_does_unpickle(tmp_path):
    """Control: the same file does run its code once trusted (the test above can fail)."""
    target = tmp_path / "PWNED"
    torch.save(Evil(target), tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="holds a int, not a model"):
        load_model(tmp_path / "model.pt", trust_pickle=True)
    assert target.exists()


def test_pickled_module_needs_trust(files):
    with pytest.raises(UnsafeModelFileError, match=r"torch\.nn\.modules\.container\.Sequential"):
        load_model(files / "pickled.pt")
    model = load_model(files / "pickled.pt", trust_pickle=True)
    assert not model.training
    _same(model, mappable())


def test_pickled_class_not_importable_says_pythonpath(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "user_nets_14.py").write_text(
        "import torch\nclass TinyNet(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(2, 2)\n"
        "    def forward(self, x):\n        return self.fc(x)\n")
    monkeypatch.syspath_prepend(str(package))
    import user_nets_14

    torch.save(user_nets_14.TinyNet(), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, "user_nets_14")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "net.pt", trust_pickle=True)
    message = str(info.value)
    assert "put the module defining TinyNet (user_nets_14) on PYTHONPATH" in message
    assert "corrupt" not in message


def test_pickle_of_a_script_class_says_main(tmp_path):
    import subprocess

    script = ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
              "        super().__init__(); self.fc = torch.nn.Linear(2, 2)\n"
              f"torch.save(Net(), {str(tmp_path / 'net.pt')!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with pytest.raises(UnsafeModelFileError, match=r"__main__\.Net"):
        load_model(tmp_path / "net.pt")
    with pytest.raises(ModelFileError, match="defined in the script that saved the file"):
        load_model(tmp_path / "net.pt", trust_pickle=True)


def test_old_torch_is_refused(files, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(UnsafeModelFileError, match="CVE-2025-32434"):
        load_model(weights=files / "sd.pt", model_class=mappable)


# ------------------------------------------------------------------ state dicts


@pytest.mark.parametrize("spec", ["models:mappable", str(TESTS / "models.py") + ":mappable",
                                  mappable])
def test_state_dict_into_named_class(files, spec):
    model = load_model(weights=files / "sd.pt", model_class=spec)
    assert isinstance(model, torch.nn.Sequential) and not model.training
    _same(model, mappable())


@pytest.mark.parametrize("name", ["ckpt_state_dict.pt", "ckpt_model.pt",
                                  "ckpt_model_state_dict.pt", "dp.pt"])
def test_checkpoints_and_dataparallel_prefix(files, name):
    _same(load_model(files / name, model_class="models:mappable"), mappable())


def test_state_dict_with_kwargs(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 5)
    torch.save(net.state_dict(), tmp_path / "lin.pt")
    model = load_model(weights=tmp_path / "lin.pt", model_class="torch.nn:Linear",
                       model_kwargs={"in_features": 3, "out_features": 5})
    _x = torch.ones(2, 3)
    torch.testing.assert_close(model(_x), net(_x), rtol=0, atol=0)


def test_state_dict_mismatches_are_listed(files):
    with pytest.raises(ModelFileError) as info:
        load_model(weights=files / "sd.pt", model_class="models:valid_padding")
    message = str(info.value)
    assert "does not fit valid_padding" in message and str(files / "sd.pt") in message
    assert "1 shape mismatch(es) (6.weight: file (10, 512), model (10, 288))" in message
    torch.save({"extra.weight": torch.zeros(1), **mappable().state_dict()},
               files / "extra.pt")
    partial = dict(mappable().state_dict())
    partial.pop("0.bias")
    torch.save(partial, files / "partial.pt")
    with pytest.raises(ModelFileError, match=r"1 unexpected key\(s\) \(extra\.weight\)"):
        load_model(weights=files / "extra.pt", model_class="models:mappable")
    with pytest.raises(ModelFileError, match=r"1 missing key\(s\) \(0\.bias\)"):
        load_model(weights=files / "partial.pt", model_class="models:mappable")


def test_state_dict_without_class_says_model_class(files):
    with pytest.raises(ModelFileError, match="holds a state dict .*--model-class"):
        load_model(files / "sd.pt")
    with pytest.raises(ModelFileError, match=r"checkpoint key 'state_dict'.*--model-class"):
        load_model(files / "ckpt_state_dict.pt")


def test_checkpoint_without_state_dict(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ModelFileError, match="'epoch', 'lr'"):
        load_model(weights=tmp_path / "meta.pt", model_class=mappable)


@pytest.mark.parametrize("spec, message", [
    ("models.mappable", "package.module:ClassName"),
    ("no_such_module_14:Net", "cannot import no_such_module_14; put the folder"),
    ("models:NoSuchNet", "has no attribute NoSuchNet"),
    ("models:SHAPE", "not a class or function"),
    ("missing_file_14.py:Net", "file not found"),
])
def test_bad_model_class(files, spec, message):
    with pytest.raises(ModelFileError, match=message):
        load_model(weights=files / "sd.pt", model_class=spec)


def test_model_class_that_fails_or_is_not_a_module(files):
    with pytest.raises(ModelFileError, match=r"mappable\(\*\*\{\"width\": 3\}\) failed.*"
                                             "--model-kwargs"):
        load_model(weights=files / "sd.pt", model_class=mappable, model_kwargs={"width": 3})
    with pytest.raises(ModelFileError, match="not an nn.Module"):
        load_model(weights=files / "sd.pt", model_class=lambda: 3)
    with pytest.raises(ModelFileError, match="model_kwargs given without model_class"):
        load_model(files / "sd.pt", model_kwargs={})


@pytest.mark.parametrize("name, kind", [("ts.pt", "a TorchScript file"),
                                        ("good.onnx", "an ONNX model")])
def test_model_class_with_other_formats(files, name, kind):
    with pytest.raises(ModelFileError, match=f"is {kind}, not a state dict"):
        load_model(weights=files / name, model_class=mappable)


# ------------------------------------------------------------------ TorchScript / ONNX


def test_torchscript_and_onnx_load(files):
    ts = load_model(files / "ts.pt")
    assert isinstance(ts, torch.jit.ScriptModule)
    _same(ts, mappable())
    assert isinstance(load_model(files / "good.onnx"), onnx.ModelProto)


def test_torchscript_that_writes_files_on_load_is_refused(tmp_path):
    target = tmp_path / "WRITTEN"
    scripted = torch.jit.script(WritesOnLoad(str(target)))
    torch.jit.save(scripted, tmp_path / "ts.pt")
    assert not target.exists()
    torch.jit.load(str(tmp_path / "ts.pt"))  # control: plain torch.jit.load writes it
    assert target.exists()
    target.unlink()
    with pytest.raises(UnsafeModelFileError, match="names save, operators that reach files"):
        load_model(tmp_path / "ts.pt")
    assert not target.exists()


def test_torchscript_that_reads_files_is_refused(tmp_path):
    torch.jit.save(torch.jit.script(ReadsFiles()), tmp_path / "ts.pt")
    with pytest.raises(UnsafeModelFileError, match="from_file"):
        load_model(tmp_path / "ts.pt")


@pytest.mark.parametrize("name, message", [
    ("corrupt.onnx", "not a valid ONNX model"),
    ("good.pt2", "torch.export programs are not supported"),
    ("missing.pt", "model file not found"),
])
def test_unreadable_model_files(files, name, message):
    with pytest.raises(ModelFileError, match=message):
        load_model(files / name)


def test_model_file_format(files):
    assert {n: model_file_format(files / n) for n in
            ("sd.pt", "pickled.pt", "ts.pt", "good.onnx", "good.pt2")} == {
        "sd.pt": "torch.save", "pickled.pt": "torch.save", "ts.pt": "torchscript",
        "good.onnx": "onnx", "good.pt2": "torch.export"}


def test_resolve_model_class_returns_callables():
    assert resolve_model_class("models:valid_padding") is valid_padding
    assert resolve_model_class(mappable) is mappable


# ------------------------------------------------------------------ samples


def test_load_samples(tmp_path):
    np.save(tmp_path / "ok.npy", samples(3).astype(np.float64))
    out = load_samples(tmp_path / "ok.npy")
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 1, 16, 16)


def test_load_samples_refuses_pickles_without_unpickling(tmp_path):
    target = tmp_path / "PWNED"
    np.save(tmp_path / "obj.npy", np.array([Evil(target)], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="obj.npy holds Python objects"):
        load_samples(tmp_path / "obj.npy")
    assert not target.exists()


def test_load_samples_huge_header_allocates_nothing(tmp_path):
    import tracemalloc

    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**12, 1, 28, 28)
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    tracemalloc.start()
    with pytest.raises(DatasetError, match=r"huge\.npy: \.npy data is truncated"):
        load_samples(tmp_path / "huge.npy")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3), np.uint8), "must be float"),
    (np.array([1.0, np.nan], np.float32).reshape(1, 2), "NaN or inf"),
    (np.zeros(3, np.float32), "non-empty batch"),
    (np.zeros((0, 3), np.float32), "non-empty batch"),
])
def test_load_samples_bad_content(tmp_path, array, message):
    np.save(tmp_path / "s.npy", array)
    with pytest.raises(DatasetError, match=message):
        load_samples(tmp_path / "s.npy")


@pytest.mark.parametrize("record, keep", [("data/0", 100), ("data/1", 0)])
def test_torchscript_with_a_short_tensor_record_is_refused(files, tmp_path, record, keep):
    """torch.jit.load accepts these and then reads past the buffer (segfault when empty)."""
    import io

    reader = torch._C.PyTorchFileReader(io.BytesIO((files / "ts.pt").read_bytes()))
    records = {n: reader.get_record(n) for n in reader.get_all_records()
               if n != ".data/serialization_id"}
    records[record] = records[record][:keep]
    writer = torch._C.PyTorchFileWriter(str(tmp_path / "cut.pt"))
    for name, data in records.items():
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    with pytest.raises(ModelFileError, match=f"tensor record {record} holds {keep} bytes"):
        load_model(tmp_path / "cut.pt")


class Labelled(torch.nn.Module):
    """Attributes named like denied operators' namespaces must not be refused."""

    def __init__(self):
        super().__init__()
        self.classes = ["cat", "dog"]
        self.remote = 2
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x) * self.remote


def test_torchscript_attribute_names_are_not_operators(tmp_path):
    torch.jit.save(torch.jit.script(Labelled()), tmp_path / "labelled.pt")
    model = load_model(tmp_path / "labelled.pt")
    assert model.classes == ["cat", "dog"]


def test_torchscript_with_custom_classes_is_refused(tmp_path):
    """Quantized TorchScript calls custom C++ classes (torch.classes), which are refused."""
    quantized = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(torch.nn.Linear(4, 4)), {torch.nn.Linear}, dtype=torch.qint8)
    torch.jit.save(torch.jit.script(quantized), tmp_path / "q.pt")
    with pytest.raises(UnsafeModelFileError, match="torch.classes"):
        load_model(tmp_path / "q.pt")


def test_torchscript_with_a_damaged_code_record_is_a_model_file_error(tmp_path):
    """A damaged local header of a code record fails when the record is read (before
    loading): a ModelFileError naming the record, not torch's RuntimeError (found by
    tests/test_fuzz.py)."""
    path = tmp_path / "ts.pt"
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2))
    torch.jit.save(torch.jit.script(model), path)
    import struct
    import zipfile

    data = bytearray(path.read_bytes())
    info = next(i for i in zipfile.ZipFile(path).infolist()
                if "/code/" in i.filename and i.filename.endswith(".py"))
    assert struct.unpack("<I", data[info.header_offset:info.header_offset + 4])[0] == 0x04034B50
    data[info.header_offset] ^= 0xFF  # the record's local header signature
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"damaged zip archive.*record .*code/"):
        load_model(path)
