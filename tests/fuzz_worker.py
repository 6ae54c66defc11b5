"""Child process of tests/test_fuzz.py: runs one file reader per request.

Reads JSON requests ``{"reader": ..., "path": ...}`` from stdin, one a line, and
answers each with one JSON line: ``{"status": "ok" | "error" | "unexpected", ...}``.
A reader that crashes the process (segfault, abort) or hangs is seen by the
parent as a dead or silent worker. The address space is capped after the
imports, so a reader that tries to allocate what a forged header claims fails
with MemoryError (reported as "unexpected") instead of swapping the machine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from models import SHAPE, mappable  # noqa: E402

from akida_workflows import deploy, loading  # noqa: E402
from akida_workflows.datasets import read_idx  # noqa: E402

#: Extra address space a reader may use (the imports above are already mapped).
HEADROOM = 2 * 2**30


def _forward(model) -> str:
    """Run a loaded PyTorch model once: Python errors are fine, a crash is not."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, *SHAPE))
        return "loaded, forward ok"
    except Exception as exc:
        return f"loaded, forward raised {type(exc).__name__}"


def _onnx(path: Path) -> str:
    import onnxruntime as ort

    model = loading.load_model(path)
    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: np.zeros((1, *SHAPE), np.float32)})
        return "loaded, onnxruntime ok"
    except Exception as exc:
        return f"loaded, onnxruntime raised {type(exc).__name__}"


def _fbz(path: Path) -> str:
    model = deploy.load(path, timeout=60)
    shape = tuple(int(d) for d in model.input_shape)
    for dtype in (np.float32, np.uint8, np.int8):
        try:
            model.predict(np.zeros((1, *shape), dtype=dtype))
            return "loaded, predict ok"
        except Exception:
            pass
    return "loaded, predict raised"


def _result_json(path: Path) -> str:
    import results_io

    results_io.read_result(path)
    return "loaded"


READERS = {
    "idx": lambda p: f"loaded {read_idx(p).shape}",
    "npy": lambda p: f"loaded {loading.load_samples(p).shape}",
    "onnx": _onnx,
    "torchscript": lambda p: _forward(loading.load_model(p)),
    "state_dict": lambda p: _forward(loading.load_model(weights=p, model_class=mappable)),
    "fbz": _fbz,
    "result_json": _result_json,
}


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    import akida  # noqa: F401  (mapped before the cap)
    import onnxruntime  # noqa: F401

    size = _vm_size()
    if size:
        resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, size + HEADROOM))
    print(json.dumps({"status": "ready"}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        path = Path(request["path"])
        try:
            detail = READERS[request["reader"]](path)
            answer = {"status": "ok", "detail": detail}
        except Exception as exc:
            answer = {
                "status": "error",
                "types": [cls.__name__ for cls in type(exc).__mro__],
                "message": str(exc),
                "traceback": traceback.format_exc(limit=6),
            }
        except BaseException as exc:  # MemoryError is an Exception; this is SystemExit & co.
            answer = {"status": "unexpected", "types": [type(exc).__name__],
                      "message": str(exc), "traceback": traceback.format_exc(limit=6)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
