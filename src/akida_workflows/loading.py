"""Load a user's model and calibration samples from files, safely by default.

A model file from someone else must not run code on your machine. The forms
accepted without any opt-in run none of their author's Python code:

- **ONNX** (``.onnx``): a protobuf graph, parsed by ``onnx.load`` and checked by
  ``onnx.checker``. External tensor data is read only from files inside the
  model's folder (``onnx`` refuses absolute paths and ``..``).
- **TorchScript** (``torch.jit.save``): loaded with ``torch.jit.load``, which does
  not unpickle Python objects; it compiles the TorchScript code the archive
  carries and runs the ``__setstate__`` methods of that code while loading.
  Calling the model runs its TorchScript code: only TorchScript operators, but
  some of them touch files (``torch.save`` is ``aten::save``, which writes a file;
  ``torch.from_file`` maps one) and others reach the network (``c10d``/RPC ops)
  or custom C++ classes. Before loading, the code in the archive is read and a
  file whose code names any of these is refused (:data:`TORCHSCRIPT_DENIED`);
  after loading, every method's graph is checked again. What remains is the
  author's computation on the inputs: it can be slow, use much memory, or
  compute something other than its name says. TorchScript is not a sandbox.
- **A state dict** (``torch.save(model.state_dict())``) loaded with
  ``torch.load(weights_only=True)``, which refuses every object but tensors and
  plain containers, into a class *you* name (``model_class``): the pattern of
  ``torch.hub`` and ``timm``. Checkpoints that keep the state dict under a
  ``"state_dict"``, ``"model"`` or ``"model_state_dict"`` key are accepted too.

A full pickle (``torch.save(model)``) is unpickled only with
``trust_pickle=True`` (CLI ``--trust-pickle``): unpickling runs whatever code the
file's author put in it, with your permissions. Without that flag the file is
read with ``weights_only=True`` and refused with the classes it names.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pickletools
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from .errors import DatasetError, ModelFileError, UnsafeModelFileError

__all__ = [
    "PICKLE_RISK",
    "TORCHSCRIPT_DENIED",
    "load_model",
    "load_samples",
    "model_file_format",
    "resolve_model_class",
]

#: The one sentence on the risk of ``--trust-pickle`` (error messages, --help, docs).
PICKLE_RISK = ("Unpickling runs whatever code the file's author put in it, with your "
               "permissions.")

#: Names that TorchScript code may not use: file access (``aten::save``,
#: ``aten::from_file``) and distributed / RPC communication. Operator namespaces
#: outside :data:`TORCHSCRIPT_NAMESPACES` and custom C++ classes
#: (``torch.classes``) are refused too.
TORCHSCRIPT_DENIED = frozenset({
    "save", "from_file", "c10d", "_c10d_functional", "_c10d_functional_autograd",
    "symm_mem", "rpc_async", "rpc_sync", "distributed",
})
#: Operator namespaces a TorchScript model's graphs may use.
TORCHSCRIPT_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized", "prims"})

#: Checkpoint keys that hold a state dict (``torch.save({"state_dict": ...})``).
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")

_FIX_PICKLE = ("save model.state_dict() and give it with --model-class MODULE:CLASS --weights "
               "FILE (API: model_class=..., weights=...), or save TorchScript "
               "(torch.jit.save) or ONNX instead")


# ------------------------------------------------------------------ file formats


def model_file_format(path: str | os.PathLike) -> str:
    """The kind of model file at ``path``, read from its content (and ``.onnx``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        ``"onnx"``, ``"torchscript"``, ``"torch.save"`` (a zip archive written by
        ``torch.save``: a state dict, a checkpoint or a pickled module),
        ``"torch.save-legacy"`` (the pre-1.6 format), ``"torch.export"``, or
        ``"unknown"``. Nothing in the file is unpickled or executed.

    Raises
    ------
    ModelFileError
        If the file is missing or cannot be read.
    """
    data = _read_bytes(Path(path))
    return _sniff(Path(path), data)[0]


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from None


def _sniff(path: Path, data: bytes):
    """(format, records or None) from the bytes; records of a zip archive by name."""
    if path.suffix.lower() == ".onnx":
        return "onnx", None
    if data[:4] == b"PK\x03\x04":
        records = _zip_records(path, data)
        names = set(records)
        if "archive_format" in names or any(n.startswith("models/") for n in names):
            return "torch.export", records
        if "constants.pkl" in names or any(n.startswith("code/") for n in names):
            return "torchscript", records
        if "data.pkl" in names:
            return "torch.save", records
        return "unknown", records
    if path.suffix.lower() == ".pt2":
        return "torch.export", None
    if data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "torch.save-legacy", None
    return "unknown", None


def _zip_records(path: Path, data: bytes):
    """{record name: reader} read through PyTorch's own zip reader (what torch.load uses)."""
    import torch

    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        names = reader.get_all_records()
    except Exception as exc:
        raise ModelFileError(
            f"{path} is a damaged zip archive (truncated or corrupt): {_first_line(exc)}"
        ) from None
    return _Records(reader, names, path)


class _Records(dict):
    """Record names of a PyTorch zip archive; ``read(name)`` returns its bytes."""

    def __init__(self, reader, names, path=None):
        super().__init__((n, None) for n in names)
        self._reader, self._path = reader, path

    def read(self, name: str) -> bytes:
        try:
            return self._reader.get_record(name)
        except RuntimeError as exc:  # a record whose bytes fail their CRC or header
            raise ModelFileError(
                f"{self._path} is a damaged zip archive (truncated or corrupt): record {name} "
                f"cannot be read: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return text.splitlines()[0][:300] if text else type(exc).__name__


# ------------------------------------------------------------------ model class


def resolve_model_class(spec: str | Callable) -> Callable:
    """The class (or factory function) named by ``spec``.

    Parameters
    ----------
    spec : str or callable
        ``"package.module:ClassName"`` (imported from ``sys.path``, i.e.
        ``PYTHONPATH``), ``"path/to/file.py:ClassName"``, or the callable itself.
        Importing runs that module's code: it is code you chose, unlike the
        weights file.
        The part after the colon may be dotted (``"module:Outer.Inner"``) and may
        name a factory function that returns an ``nn.Module``.

    Returns
    -------
    callable

    Raises
    ------
    ModelFileError
        If the module cannot be imported or has no such attribute.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelFileError(
            f"model class {spec!r}: write it as package.module:ClassName or "
            "path/to/file.py:ClassName")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ModelFileError(f"model class {spec!r}: write it as package.module:ClassName")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ModelFileError(f"model class {spec!r}: file not found: {file}")
            unique = f"_akida_workflows_user_{abs(hash(str(file.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(unique, file)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[unique] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModelFileError:
        raise
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            f"model class {spec!r}: cannot import {exc.name or module_name}; put the folder "
            f"that holds {module_name.split('.')[0]} on PYTHONPATH (or give "
            "path/to/file.py:ClassName)") from None
    except Exception as exc:
        raise ModelFileError(
            f"model class {spec!r}: importing {module_name} failed: "
            f"{type(exc).__name__}: {_first_line(exc)}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelFileError(f"model class {spec!r}: {module_name} has no attribute {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelFileError(f"model class {spec!r}: {attr} is not a class or function")
    return obj


def _instantiate(cls: Callable, kwargs: Mapping | None):
    import torch

    name = getattr(cls, "__qualname__", repr(cls))
    kwargs = dict(kwargs or {})
    try:
        model = cls(**kwargs)
    except Exception as exc:
        raise ModelFileError(
            f"{name}(**{json.dumps(kwargs)}) failed: {type(exc).__name__}: {_first_line(exc)}; "
            "give the constructor's arguments with --model-kwargs '{...}' "
            "(API: model_kwargs=...)") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"{name}(...) returned a {type(model).__name__}, not an nn.Module")
    return model


# ------------------------------------------------------------------ state dicts


def _torch_load_safe(path: Path, data: bytes):
    """``torch.load(weights_only=True)`` on the bytes; refuses full pickles with reasons."""
    import pickle

    import torch

    if tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
        raise UnsafeModelFileError(
            f"{path}: torch {torch.__version__} is older than 2.6, whose weights_only loader "
            "can be exploited (CVE-2025-32434); upgrade torch (pip install 'torch>=2.6') "
            "to load weights safely")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "global" in message.lower() or "GLOBAL" in message:
            raise _full_pickle_error(path, data) from None
        raise ModelFileError(
            f"{path} is not a readable PyTorch file (truncated or corrupt): "
            f"{_weights_only_reason(message)}") from None
    except Exception as exc:  # zip / storage errors of a damaged file
        raise ModelFileError(
            f"{path} is not a readable PyTorch file (truncated or corrupt): "
            f"{type(exc).__name__}: {_first_line(exc)}") from None


def _weights_only_reason(message: str) -> str:
    for line in message.splitlines():
        if "WeightsUnpickler error" in line or "Unsupported" in line:
            return line.strip()[:300]
    return _first_line(Exception(message))


def _pickle_globals(path: Path, data: bytes) -> list[str]:
    """``module.name`` of each class/function a pickle refers to, read without unpickling."""
    blobs = []
    if data[:4] == b"PK\x03\x04":
        try:
            records = _zip_records(path, data)
            blobs = [records.read(n) for n in records if n.endswith(".pkl")]
        except ModelFileError:
            return []
    else:
        blobs = [data]
    found: list[str] = []
    for blob in blobs:
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            strings: list[str] = []
            try:
                for op, arg, _ in pickletools.genops(stream):
                    if op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:
                break
    return list(dict.fromkeys(found))


def _weights_only_globals() -> set[str]:
    """Names torch's weights_only unpickler accepts (not worth reporting)."""
    try:
        from torch import _weights_only_unpickler

        return set(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # private API: fall back to the storage rebuild helpers
        return set()


def _full_pickle_error(path: Path, data: bytes) -> UnsafeModelFileError:
    allowed = _weights_only_globals()
    names = [g for g in _pickle_globals(path, data)
             if g not in allowed and not g.startswith(("torch._utils._rebuild", "collections.",
                                                       "__builtin__.", "builtins."))]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    refers = f" (it refers to {shown})" if names else ""
    return UnsafeModelFileError(
        f"{path}: this file is a full pickle{refers}, not a state dict, TorchScript or ONNX; "
        f"it was not unpickled. {PICKLE_RISK} Pass --trust-pickle (API: trust_pickle=True) "
        f"only if you trust its author, or {_FIX_PICKLE}.")


def _is_state_dict(obj) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and any(isinstance(v, torch.Tensor) for v in obj.values()))


def _extract_state_dict(path: Path, obj):
    """(state dict, where) from a loaded object: the dict itself or a checkpoint's key."""
    if _is_state_dict(obj):
        return obj, ""
    if isinstance(obj, Mapping):
        for key in CHECKPOINT_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return obj[key], f" (checkpoint key {key!r})"
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise ModelFileError(
            f"{path} holds a dict without tensors or a state dict under "
            f"{' / '.join(repr(k) for k in CHECKPOINT_KEYS)} (its keys: {keys or 'none'}); "
            "save model.state_dict()")
    raise ModelFileError(
        f"{path} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")


def _strip_prefix(state: Mapping, wanted: set[str]) -> tuple[dict, str]:
    """Drop a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix."""
    for prefix in ("module.", "_orig_mod."):
        if (state and all(k.startswith(prefix) for k in state)
                and not any(k.startswith(prefix) for k in wanted)):
            return {k[len(prefix):]: v for k, v in state.items()}, prefix
    return dict(state), ""


def _listing(items: list[str], limit: int = 5) -> str:
    more = f", … and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _load_state_dict(path: Path, model, state: Mapping, where: str, class_name: str):
    import torch

    expected = model.state_dict()
    state, _ = _strip_prefix(state, set(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.endswith("_extra_state")]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor)
        and isinstance(expected[k], torch.Tensor) and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_listing(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es) ({_listing(mismatched, 3)})")
        raise ModelFileError(
            f"{path}{where} does not fit {class_name}: " + "; ".join(parts)
            + ". Check that --model-class and --model-kwargs build the network that saved "
            "these weights.")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelFileError(
            f"{path}{where} does not fit {class_name}: {_first_line(exc)}") from None
    return model.eval()


# ------------------------------------------------------------------ TorchScript


_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_OPS_NAMESPACE = re.compile(rb"\bops[\s\\]*\.[\s\\]*([A-Za-z_][A-Za-z0-9_]*)")
#: ``torch.classes.NS.NAME``: custom C++ classes registered in the process.
_CUSTOM_CLASSES = re.compile(rb"\btorch[\s\\]*\.[\s\\]*classes\b")


def _check_torchscript_code(path: Path, records) -> None:
    """Refuse a TorchScript archive whose code names denied operators (before loading)."""
    denied = set()
    for name in records:
        if not name.startswith("code/") or not name.endswith(".py"):
            continue
        code = records.read(name)
        words = {w.decode() for w in _IDENT.findall(code)}
        denied |= words & TORCHSCRIPT_DENIED
        for ns in _OPS_NAMESPACE.findall(code):
            if ns.decode() not in TORCHSCRIPT_NAMESPACES:
                denied.add(f"ops.{ns.decode()}")
        if _CUSTOM_CLASSES.search(code):
            denied.add("torch.classes")
    if denied:
        raise UnsafeModelFileError(
            f"{path}: its TorchScript code names {', '.join(sorted(denied))}, operators that "
            "reach files, the network or custom C++ classes (torch.save writes files, "
            "torch.from_file maps them); it was not loaded. Export the model to ONNX or save "
            "its state_dict() and give it with --model-class/--weights.")


def _check_torchscript_graphs(path: Path, module) -> None:
    """Check every method's graph of a loaded TorchScript module (defence in depth)."""
    import torch

    bad = set()

    def visit(block):
        for node in block.nodes():
            kind = node.kind()
            namespace, _, op = kind.partition("::")
            if namespace not in TORCHSCRIPT_NAMESPACES or op in TORCHSCRIPT_DENIED:
                bad.add(kind)
            for sub in node.blocks():
                visit(sub)

    for sub in module.modules():
        c_module = getattr(sub, "_c", None)
        if c_module is None:
            continue
        for method_name in c_module._method_names():
            graph = c_module._get_method(method_name).graph.copy()
            torch._C._jit_pass_inline(graph)
            visit(graph)
    if bad:
        raise UnsafeModelFileError(
            f"{path}: its TorchScript graphs call {', '.join(sorted(bad))}, operators outside "
            "the tensor operators a model needs; it will not be run. Export the model to ONNX "
            "or save its state_dict() and give it with --model-class/--weights.")


#: Bytes per element of the storage classes pickles name (``torch.FloatStorage`` ...).
_STORAGE_ITEMSIZE = {
    "Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QInt8": 1,
    "QUInt8": 1, "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1,
}


class _Storage:
    def __init__(self, record: str, itemsize: int | None, numel: int):
        self.record, self.itemsize, self.numel = record, itemsize, numel


def _tensor_views(path: Path, pickled: bytes, prefix: str):
    """(storage, offset, size, stride) of each tensor a pickle rebuilds, read without
    importing or calling anything: every class the pickle names becomes an inert stub."""
    import pickle

    views = []

    class Stub:
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    def rebuild(storage, offset, size, stride, *rest):
        views.append((storage, offset, size, stride))
        return Stub()

    class Inspector(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            return type(name, (Stub,), {"module": module})

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
            kind = getattr(pid[1], "__name__", "")
            itemsize = _STORAGE_ITEMSIZE.get(kind.removesuffix("Storage"))
            return _Storage(f"{prefix}{pid[2]}", itemsize, int(pid[4]))

    try:
        Inspector(io.BytesIO(pickled)).load()
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a loadable TorchScript file (truncated or corrupt): {prefix}*.pkl: "
            f"{type(exc).__name__}: {_first_line(exc)}") from None
    return views


def _check_tensor_records(path: Path, records) -> None:
    """Every tensor of a TorchScript archive must lie inside a stored record.

    ``torch.jit.load`` (torch 2.13) does not check this: a tensor record cut short
    loads, then reads past its buffer (garbage outputs, or a segfault when it is
    empty).
    """
    for pickle_name, prefix in (("data.pkl", "data/"), ("constants.pkl", "constants/")):
        if pickle_name not in records:
            continue
        for storage, offset, size, stride in _tensor_views(path, records.read(pickle_name),
                                                           prefix):
            if not isinstance(storage, _Storage) or storage.itemsize is None:
                continue
            if storage.record not in records:
                raise ModelFileError(
                    f"{path} is not a loadable TorchScript file: tensor record "
                    f"{storage.record} is missing (truncated or corrupt archive)")
            stored = len(records.read(storage.record))
            if stored < storage.numel * storage.itemsize:
                raise ModelFileError(
                    f"{path} is not a loadable TorchScript file: tensor record "
                    f"{storage.record} holds {stored} bytes, its header says "
                    f"{storage.numel * storage.itemsize} (truncated or corrupt archive)")
            try:
                size, stride, offset = tuple(size), tuple(stride), int(offset)
                last = offset + sum((n - 1) * s for n, s in zip(size, stride))
                empty = any(n == 0 for n in size)
                bad = len(size) != len(stride) or min((*size, *stride, offset), default=0) < 0
            except (TypeError, ValueError):
                bad, empty, last = True, False, 0
            if bad or (not empty and last >= storage.numel):
                raise ModelFileError(
                    f"{path} is not a loadable TorchScript file: a tensor of shape {size!r:.60} "
                    f"reaches past its storage {storage.record} (corrupt archive)")


def _load_torchscript(path: Path, data: bytes, records):
    import torch

    _check_torchscript_code(path, records)
    _check_tensor_records(path, records)
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a loadable TorchScript file (truncated or corrupt): "
            f"{_first_line(exc)}") from None
    _check_torchscript_graphs(path, module)
    return module.eval()


# ------------------------------------------------------------------ full pickles


def _load_pickle(path: Path, data: bytes):
    """``torch.load(weights_only=False)``, only ever called with trust_pickle=True."""
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as exc:
        missing = _missing_class(exc, path, data)
        module, _, cls = missing.rpartition(".")
        if module == "__main__":
            raise ModelFileError(
                f"{path}: the pickle refers to {missing}, a class defined in the script that "
                f"saved the file, which no module provides: define {cls} in a module, put it "
                "on PYTHONPATH and save again. Better: " + _FIX_PICKLE + ".") from None
        raise ModelFileError(
            f"{path}: the pickle refers to {missing}, which cannot be imported: put the "
            f"module defining {cls} ({module}) on PYTHONPATH (a pickle stores a "
            "class's name, not its code). Better: " + _FIX_PICKLE + ".") from None
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a readable PyTorch pickle (truncated or corrupt): "
            f"{type(exc).__name__}: {_first_line(exc)}") from None
    return obj


def _missing_class(exc: BaseException, path: Path, data: bytes) -> str:
    text = str(exc)
    match = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", text)
    if match:
        for name in _pickle_globals(path, data):
            if name.endswith("." + match.group(1)):
                return name
        return f"{match.group(2)}.{match.group(1)}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        for name in _pickle_globals(path, data):
            if name == exc.name or name.startswith(exc.name + "."):
                return name
        return exc.name
    return _first_line(exc)


# ------------------------------------------------------------------ public API


def load_model(path: str | os.PathLike | None = None, *,
               model_class: str | Callable | None = None,
               model_kwargs: Mapping | None = None,
               weights: str | os.PathLike | None = None,
               trust_pickle: bool = False):
    """Load a model from a file without running its author's code (unless trusted).

    Parameters
    ----------
    path : str or path-like, optional
        ``.onnx``, a TorchScript file (``torch.jit.save``), a state dict /
        checkpoint (with ``model_class``), or, with ``trust_pickle=True``, a full
        pickle (``torch.save(model)``). May be omitted when ``weights`` is given.
    model_class : str or callable, optional
        The network that holds the weights: ``"package.module:ClassName"``,
        ``"path/to/file.py:ClassName"`` or the class itself (see
        :func:`resolve_model_class`). The file is then read as a state dict with
        ``torch.load(weights_only=True)``.
    model_kwargs : mapping, optional
        Keyword arguments of ``model_class``.
    weights : str or path-like, optional
        The state dict file (same as ``path``; the name the torch.hub pattern uses).
    trust_pickle : bool, default False
        Unpickle a full pickle. Unpickling runs whatever code the file's author
        put in it, with your permissions: only for files from people you trust.

    Returns
    -------
    torch.nn.Module or torch.jit.ScriptModule or onnx.ModelProto
        PyTorch models are returned in eval mode.

    Raises
    ------
    UnsafeModelFileError
        A full pickle without ``trust_pickle=True`` (nothing was unpickled), or
        TorchScript code that names file-access / network operators.
    ModelFileError
        Missing, truncated or corrupt file; unsupported format (``torch.export``
        archives); a state dict without ``model_class``; a class that cannot be
        imported or built; missing, unexpected or mis-shaped weights. The
        message names the file and the fix.

    Examples
    --------
    >>> model = load_model("kws.onnx")  # doctest: +SKIP
    >>> model = load_model(weights="kws_state.pt", model_class="kws.models:DSCNN",
    ...                    model_kwargs={"n_classes": 12})  # doctest: +SKIP
    """
    path = _model_path(path, weights, model_class, model_kwargs)
    data = _read_bytes(path)
    kind, records = _sniff(path, data)
    if model_class is not None:
        return _load_with_class(path, data, kind, model_class, model_kwargs)
    if kind == "onnx":
        return _load_onnx(path)
    if kind == "torchscript":
        return _load_torchscript(path, data, records)
    if kind in ("torch.export", "unknown"):
        raise _unsupported(path, kind)
    # torch.save files: a state dict, a checkpoint, or a pickled module.
    return _load_torch_save(path, data, trust_pickle)


def _model_path(path, weights, model_class, model_kwargs) -> Path:
    """The one model file :func:`load_model`'s arguments name (ModelFileError if they clash)."""
    if path is not None and weights is not None and Path(path) != Path(weights):
        raise ModelFileError(
            f"give the model file once: path={path} and weights={weights} differ")
    if path is None and weights is None:
        raise ModelFileError("no model file given (path or weights)")
    path = Path(path if path is not None else weights)
    if model_kwargs is not None and model_class is None:
        raise ModelFileError("model_kwargs given without model_class")
    return path


def _load_with_class(path: Path, data: bytes, kind: str, model_class, model_kwargs):
    """A state dict (or checkpoint) loaded safely into ``model_class(**model_kwargs)``."""
    if kind not in ("torch.save", "torch.save-legacy"):
        what = {"onnx": "an ONNX model", "torchscript": "a TorchScript file",
                "torch.export": "a torch.export archive"}.get(kind, "not a PyTorch file")
        hint = (": give it as the model file, without --model-class"
                if kind in ("onnx", "torchscript") else "")
        raise ModelFileError(
            f"{path} is {what}, not a state dict saved with torch.save{hint}")
    cls = resolve_model_class(model_class)
    class_name = getattr(cls, "__qualname__", str(model_class))
    state, where = _extract_state_dict(path, _torch_load_safe(path, data))
    return _load_state_dict(path, _instantiate(cls, model_kwargs), state,
                            where, class_name)


def _unsupported(path: Path, kind: str) -> ModelFileError:
    """Why a torch.export archive, or a file of no known kind, is not loaded."""
    if kind == "torch.export":
        return ModelFileError(
            f"{path.name}: torch.export programs are not supported: they hold ATen operations, "
            "not nn.Module layers (which check and the Akida 1.0 path need), fix the batch size, "
            "and their ONNX exporter needs a newer onnx-ir than QuantizeML 1.2.5 allows. Save "
            "the model's state_dict() and give it with --model-class/--weights, save TorchScript "
            "(torch.jit.save(torch.jit.trace(model, x))), or export it to ONNX with "
            "torch.onnx.export(..., dynamo=False).")
    return ModelFileError(
        f"cannot read {path} as a model: it is neither ONNX (.onnx), TorchScript, nor a "
        "file written by torch.save (it may be truncated or corrupt)")


def _load_torch_save(path: Path, data: bytes, trust_pickle: bool):
    """A pickled module (only with ``trust_pickle``), else an error that says what the
    file holds: a state dict needs its class, anything else is not a model."""
    if trust_pickle:
        obj = _load_pickle(path, data)
    else:
        obj = _torch_load_safe(path, data)
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    try:
        state, where = _extract_state_dict(path, obj)
    except ModelFileError:
        raise ModelFileError(
            f"{path} holds a {type(obj).__name__}, not a model: save the model with "
            "torch.jit.save, export it to ONNX, or save model.state_dict() and give it with "
            "--model-class/--weights") from None
    keys = _listing(list(state), 3)
    raise ModelFileError(
        f"{path}{where} holds a state dict ({len(state)} entries: {keys}), i.e. weights "
        "without the network: name the class that defines it with --model-class "
        "MODULE:CLASS [--model-kwargs '{...}'] --weights FILE (API: model_class=..., "
        "model_kwargs=...)")


def _load_onnx(path: Path):
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from None
    return model


# ------------------------------------------------------------------ samples


def _npy_header(path: Path, f):
    """(shape, dtype) of a .npy file, checked against the file size before any read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = fmt._read_array_header(f, version)
    except Exception as exc:
        raise DatasetError(f"{path} is not a .npy array: {_first_line(exc)}") from None
    if dtype.hasobject:
        raise DatasetError(
            f"{path} holds Python objects (dtype {dtype}); object arrays are pickles and are "
            "not loaded: save a numeric array")
    count = 1
    for d in shape:
        count *= int(d)
    expected = count * dtype.itemsize
    available = os.fstat(f.fileno()).st_size - f.tell()
    if available != expected:
        what = "truncated" if available < expected else "longer than its header says"
        raise DatasetError(
            f"{path}: .npy data is {what}: header {dtype} {tuple(shape)} needs {expected} "
            f"bytes, file has {available}")
    return shape, dtype


def load_samples(path: str | os.PathLike) -> np.ndarray:
    """Calibration / evaluation inputs from a ``.npy`` file, as ``float32``.

    The header is checked against the file size before any data is read (a
    header that claims 10^12 values allocates nothing), and pickled object
    arrays are refused.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file (``numpy.save``) holding a float batch, preprocessed as
        for training (e.g. NCHW images or NCL signals).

    Returns
    -------
    numpy.ndarray
        C-contiguous ``float32`` array of at least 2 dimensions.

    Raises
    ------
    DatasetError
        Missing, truncated or corrupt file, object or non-float dtype, fewer than
        2 dimensions, an empty batch, or NaN/inf values.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"samples file not found: {path}")
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(path, f)
            f.seek(0)
            samples = np.lib.format.read_array(f, allow_pickle=False)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path} is not a .npy array: {_first_line(exc)}") from None
    if not np.issubdtype(samples.dtype, np.floating):
        raise DatasetError(
            f"{path}: samples must be float (preprocessed as for training), got {samples.dtype}")
    if samples.ndim < 2 or samples.shape[0] == 0:
        raise DatasetError(f"{path}: samples must be a non-empty batch, got shape "
                           f"{samples.shape}")
    if not np.isfinite(samples).all():
        raise DatasetError(f"{path}: samples contain NaN or inf")
    return np.ascontiguousarray(samples, dtype=np.float32)
