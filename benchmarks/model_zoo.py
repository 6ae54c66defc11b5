"""Model zoo: each family, float vs Akida 2.0 8-bit vs Akida 1.0 4-bit (PTQ and fine-tuned).

Per family and stage: test accuracy, share of compute layers in hardware on the
target's virtual device, program size of the mapped model, and the time each
stage took. Writes ``<out>/model_zoo.json`` (:mod:`results_io`).

Usage::

    python benchmarks/model_zoo.py --out docs/results [--families 1d] [--epochs 200]

Families are functions ``family(args) -> (rows, data_description)``, registered
in :data:`FAMILIES`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import write_result  # noqa: E402

#: Published CNN results of the UCR sets the 1-D family may run on (test accuracy).
#: Ismail Fawaz et al., "Adversarial attacks on deep neural networks for time series
#: classification", IJCNN 2019: ResNet / FCN trained on the UCR 2015 archive.
PUBLISHED_1D = {
    "OSULeaf": "ResNet 97.9 %, FCN 98.3 % (Ismail Fawaz et al., IJCNN 2019)",
    "ECG5000": "ResNet 93.5 %, FCN 93.9 % (Ismail Fawaz et al., IJCNN 2019); "
               "InceptionTime 94.2 %, HIVE-COTE 2 94.7 %",
}

COLUMNS = ["family", "stage", "accuracy", "float - stage (pt)", "device", "in hardware",
           "program bytes", "seconds", "published CNN"]


def _program_bytes(mapping) -> int:
    return int(sum(len(seq.program) for seq in mapping.model.sequences
                   if getattr(seq, "program", None) is not None))


def one_d_cnn(args) -> tuple[list[dict], str]:
    """The 1-D CNN family: the gallery's ECG network, trained to convergence.

    Data: ECG5000 when it can be downloaded, else the offline UCR set
    (:data:`akida_workflows.datasets.OFFLINE_TIMESERIES`); signals longer than
    256 samples are decimated to half their length (Akida 1.0 input width).
    """
    import numpy as np
    import torch
    from torch import nn

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.datasets import load_timeseries, resample_signals, to_torch_loaders
    from akida_workflows.deploy import map_report
    from akida_workflows.evaluate import evaluate
    from akida_workflows.export import export_onnx
    from akida_workflows.keras_bridge import convert_keras, fine_tune, quantize_4bit, to_keras
    from akida_workflows.lowering import lower_1d
    from akida_workflows.training import train

    data = load_timeseries(args.series)
    length = data.x_train.shape[-1]
    if length > 256:
        length //= 2
        data.x_train = resample_signals(data.x_train, length)
        data.x_test = resample_signals(data.x_test, length)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    classes = len(data.classes)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU6(),
        nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU6(),
        nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(32, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU6(),
        nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU6(),
        nn.MaxPool1d(2, ceil_mode=True),
        nn.Conv1d(32, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU6(),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * math.ceil(length / 16), classes),
    )
    train_loader, _ = to_torch_loaders(data, batch_size=32)
    # Adam, then a smaller learning rate: converges on the small UCR training sets.
    start = time.perf_counter()
    train(model, train_loader, epochs=args.epochs, lr=2e-3, seed=0, progress=False)
    train(model, train_loader, epochs=max(1, args.epochs // 4), lr=2e-4, seed=1, progress=False)
    rows = []
    published = PUBLISHED_1D.get(data.name, "")

    def row(stage, metrics, seconds, device="-", mapping=None):
        return {"family": "1-D CNN (Conv1d, lowered)", "stage": stage,
                "accuracy": round(metrics.accuracy, 4), "device": device,
                "in hardware": None if mapping is None else round(mapping.hw_fraction, 4),
                "program bytes": None if mapping is None else _program_bytes(mapping),
                "seconds": round(seconds, 1), "published CNN": published}

    float_metrics = evaluate(model, x_test, y_test)
    rows.append(row("float (PyTorch)", float_metrics, time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        akida_v2 = to_akida(quantize_onnx(export_onnx(model, x_train[:1], Path(tmp) / "m.onnx"),
                                          x_train))
        mapping = map_report(akida_v2, "SixNodesIPv2")
        rows.append(row("Akida 2.0 8-bit", evaluate(akida_v2, x_test, y_test),
                        time.perf_counter() - start, "SixNodesIPv2", mapping))
        start = time.perf_counter()
        lowered = lower_1d(model, (1, length), target="akida1")
        train_nhwc = lowered.lift(x_train, "nhwc")
        quantized = quantize_4bit(to_keras(lowered.model, lowered.shape), train_nhwc)
        akida_v1 = convert_keras(quantized)
        mapping = map_report(akida_v1, "AKD1000")
        rows.append(row("Akida 1.0 4-bit PTQ", evaluate(akida_v1, x_test, y_test),
                        time.perf_counter() - start, "AKD1000", mapping))
        start = time.perf_counter()
        fine_tune(quantized, train_nhwc, y_train, epochs=args.fine_tune_epochs,
                  lr=args.fine_tune_lr, batch_size=32, seed=0)
        akida_v1 = convert_keras(quantized)
        mapping = map_report(akida_v1, "AKD1000")
        rows.append(row("Akida 1.0 4-bit fine-tuned", evaluate(akida_v1, x_test, y_test),
                        time.perf_counter() - start, "AKD1000", mapping))
    for r in rows:
        r["float - stage (pt)"] = round(100 * (rows[0]["accuracy"] - r["accuracy"]), 2)
    note = (f"lowered to 2-D with {lowered.rows} rows (max |difference| "
            f"{lowered.max_abs_diff:.1e}); {args.epochs}+{max(1, args.epochs // 4)} epochs, "
            f"4-bit fine-tuning {args.fine_tune_epochs} epochs at lr {args.fine_tune_lr:g}")
    print(note)
    assert np.isfinite(lowered.max_abs_diff)
    return rows, f"{data.description} ({length} samples); {note}"


#: family name -> function(args) -> (rows, data description)
FAMILIES = {"1d": one_d_cnn}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks"))
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--fine-tune-epochs", type=int, default=30)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4)
    parser.add_argument("--series", default="ECG5000",
                        help="UCR set of the 1-D family (offline: the bundled fallback)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows, data = [], []
    for name in args.families:
        family_rows, description = FAMILIES[name](args)
        rows += family_rows
        data.append(description)
    for r in rows:
        print({k: r.get(k) for k in COLUMNS})
    path = write_result(args.out / "model_zoo.json", rows, benchmark="model_zoo",
                        title="Model zoo: float vs Akida 2.0 8-bit vs Akida 1.0 4-bit",
                        columns=COLUMNS, data="; ".join(data),
                        command="python benchmarks/model_zoo.py " + " ".join(argv or sys.argv[1:]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
