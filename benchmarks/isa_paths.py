"""Which library's instruction-set path changes trained numbers (noxfile.REPRODUCIBLE_ENV).

Trains a small CNN in PyTorch (30 Adam steps) and one in Keras (2 epochs), multiplies
two matrices with numpy, and runs an ONNX export in ONNX Runtime; prints a short hash
of each result. Run it once per setting of the variables the sessions pin and compare:

    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/isa_paths.py                       # native paths
    ... ATEN_CPU_CAPABILITY=avx2 python benchmarks/isa_paths.py torch
    ... ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/isa_paths.py torch tf
    ... OPENBLAS_CORETYPE=Haswell python benchmarks/isa_paths.py np

Measured on 2026-12-04 (AMD EPYC with AVX-512, one thread): each of ATen, oneDNN
(torch convolutions; TensorFlow matmuls, also with TF_ENABLE_ONEDNN_OPTS=0) and
OpenBLAS changed its hash between the AVX2 and the native path; MKL_CBWR changed nothing.
"""

from __future__ import annotations

import hashlib
import io
import sys

import numpy as np


def _hash(array) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:10]


def _numpy() -> str:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 257)).astype(np.float32)
    b = rng.standard_normal((257, 129)).astype(np.float32)
    return _hash(a @ b)


def _torch():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 14 * 14, 10))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        x = torch.randn(64, 1, 28, 28, generator=generator)
        y = torch.randint(0, 10, (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    return model, _hash(weights), torch.backends.cpu.get_cpu_capability()


def _onnxruntime(model) -> str:
    import onnxruntime as ort
    import torch

    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), buffer, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((64, 1, 28, 28)).astype(np.float32)
    return _hash(session.run(None, {"x": x})[0])


def _tensorflow() -> str:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)), layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPool2D(), layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Flatten(), layers.Dense(10)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((512, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, shuffle=False)
    return _hash(np.concatenate([w.flatten() for w in model.get_weights()]))


def main(which: list[str]) -> None:
    which = which or ["np", "torch", "tf", "ort"]
    out = {}
    if "np" in which:
        out["np"] = _numpy()
    if "torch" in which or "ort" in which:
        model, out["torch"], out["torch_capability"] = _torch()
        if "ort" in which:
            out["ort"] = _onnxruntime(model)
    if "tf" in which:
        out["tf"] = _tensorflow()
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
