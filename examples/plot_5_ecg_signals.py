"""
=================================================
ECG signals: a Conv1d network on both Akida chips
=================================================

Heartbeat classifiers are 1-D convolutional networks, and Akida has no 1-D
layers. This example trains a small ``Conv1d`` network on real ECG heartbeats,
lowers it automatically to the exactly equivalent 2-D form that Akida maps,
converts it to an 8-bit Akida 2.0 model and a 4-bit Akida 1.0 (AKD1000) model,
checks that both run entirely in hardware, and recovers the 4-bit accuracy
with quantization-aware training distilled from the float model. The test set is small, so every accuracy
comes with its 95 % interval and the whole pipeline is repeated over seeds.
"""

# %%
# The heartbeats
# --------------
#
# :func:`~akida_workflows.datasets.load_timeseries` reads the UCR archive's
# ECG5000 set (500 training and 4 500 test heartbeats of 140 samples, five
# classes), downloading it once. Without a network, or with
# ``AKIDA_WORKFLOWS_OFFLINE=1``, it uses ECG200, which ships inside
# akida-workflows (SHA-256 checked): one heartbeat per series, 96 samples,
# normal vs myocardial infarction, the archive's own 100 / 100 split. Both are
# real ECG; the printed source tells which one this page shows.
import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from akida_workflows.datasets import load_timeseries, to_torch_loaders
from akida_workflows.plots import signals_per_class

torch.set_num_threads(1)  # one thread: the same numbers on every machine
data = load_timeseries("ECG5000")
print(f"data source: {data.source} ({data.description})")
assert data.name in ("ECG5000", "ECG200"), f"not ECG data: {data.name}"
# The whole pipeline runs once per seed (section "Repeated over seeds"): three
# on ECG200's 100 test signals; ECG5000's 4 500 give a narrow interval from one.
SEEDS = (0, 1, 2) if data.name == "ECG200" else (0,)
x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
length, n_test = x_train.shape[-1], len(y_test)
counts = np.bincount(y_train, minlength=len(data.classes))
print("training signals per class:", dict(zip(data.classes, counts.tolist())))
workdir = Path(tempfile.mkdtemp(prefix="akida-ecg-"))
fig = signals_per_class(x_train, y_train, data.classes, ylabel="amplitude (z-normalized)",
                        title=f"{data.name}: training signals per class")

# %%
# A Conv1d network
# ----------------
#
# Written as any PyTorch user writes it, with the two habits Akida needs:
# bounded activations (``ReLU6``, for Akida 1.0) and "same" pooling
# (``ceil_mode=True``, because Akida's pooling keeps a last partial window).
# The last convolution is not pooled and the Dense layer reads at most 2048
# features. Adam at 2e-3, then a quarter of the epochs at 2e-4.
from torch import nn

from akida_workflows.training import evaluate_torch, train

EPOCHS, BATCH = 60, 20
torch.manual_seed(SEEDS[0])
classes = len(data.classes)
model = nn.Sequential(
    nn.Conv1d(1, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
    nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
    nn.Conv1d(32, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
    nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU6(), nn.MaxPool1d(2, ceil_mode=True),
    nn.Conv1d(32, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU6(),
    nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * math.ceil(length / 16), classes),
)
untrained = copy.deepcopy(model)  # the other seeds start from this architecture
train_loader, test_loader = to_torch_loaders(data, batch_size=BATCH, seed=SEEDS[0])
train(model, train_loader, epochs=EPOCHS, lr=2e-3, seed=SEEDS[0])
train(model, train_loader, epochs=EPOCHS // 4, lr=2e-4, seed=SEEDS[0] + 100, progress=False)
float_accuracy = evaluate_torch(model, test_loader)
print(f"float test accuracy {100 * float_accuracy:.2f} %")

# %%
# Lowered to 2-D, automatically and exactly
# -----------------------------------------
#
# :func:`~akida_workflows.lowering.lower_1d` is a graph pass: it folds the
# BatchNorms, copies the signal into identical rows, turns each ``Conv1d``
# into a square ``Conv2d`` whose other rows are zero, makes the pooling
# square, and permutes the Dense weights to the new feature order. It checks
# every rewritten layer, then the whole model, against the original, and
# refuses what a target cannot take with the fix (``target="akida1"`` checks
# the AKD1000's limits: width, kernels, rows).
from akida_workflows.lowering import lower_1d

lowered = lower_1d(model, (1, length), target="akida1", example_input=x_test[:256])
print(f"input {lowered.input_shape} -> {lowered.shape}; max |difference| "
      f"{lowered.max_abs_diff:.1e}")
lowered.report

# %%
# Akida 2.0, 8-bit
# ----------------
#
# PyTorch → ONNX → QuantizeML → CNN2SNN, from the 1-D signals themselves:
# :func:`~akida_workflows.export.export_onnx` lowers a 1-D model given
# ``(N, C, L)`` signals, and the quantizer lifts its calibration signals.
import warnings

from akida_workflows.convert import quantize_onnx, to_akida
from akida_workflows.deploy import map_report
from akida_workflows.evaluate import evaluate
from akida_workflows.export import export_onnx

exported = export_onnx(model, x_train[:1], workdir / "ecg.onnx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    akida_v2 = to_akida(quantize_onnx(exported, x_train))
mapping_v2 = map_report(akida_v2, "SixNodesIPv2")
print(mapping_v2)
metrics = {"float": evaluate(model, x_test, y_test, classes=data.classes),
           "Akida 2.0 8-bit": evaluate(akida_v2, x_test, y_test, classes=data.classes)}

# %%
# Akida 1.0, 4-bit
# ----------------
#
# PyTorch → tf-keras → QuantizeML (4-bit weights and activations, 8-bit input
# layer) → CNN2SNN for the AKD1000. The lowered model is an ordinary 2-D CNN,
# so :func:`~akida_workflows.keras_bridge.to_keras` takes it; Keras wants
# NHWC, which ``lowered.lift(x, "nhwc")`` gives.
from akida_workflows.keras_bridge import convert_keras, quantize_4bit, to_keras

train_nhwc = lowered.lift(x_train, "nhwc")
quantized = quantize_4bit(to_keras(lowered.model, lowered.shape), train_nhwc,
                          akida_version="v1", batch_size=100)
akida_v1_ptq = convert_keras(quantized)
mapping_v1 = map_report(akida_v1_ptq, "AKD1000")
print(mapping_v1)
metrics["Akida 1.0 4-bit"] = evaluate(akida_v1_ptq, x_test, y_test, classes=data.classes)

# %%
# Fine-tuning recovers the 4-bit loss
# -----------------------------------
#
# Quantization-aware training of the 4-bit Keras model (straight-through
# estimator) adjusts the weights to the 4-bit grid. With a hundred training
# signals the true labels teach it almost nothing: the 4-bit model already
# classifies every training signal correctly (its loss is near zero), and a
# longer or faster fine-tuning only drifts. So it learns from the float model
# instead (knowledge distillation, no test data involved):
# :func:`~akida_workflows.training.distill_fine_tune` trains on nine noisy copies
# of each training signal (Gaussian noise, 0.2 of the z-normalized amplitude)
# labelled by the float model, the neighbourhood of the training set where the
# two models' decisions can differ, one epoch at a time; after each it measures
# how often the 4-bit model agrees with the float one on *other* noisy copies
# (held out, never the test set) and keeps the best epoch — epoch 0, the
# calibrated model, included — since on a hundred signals fine-tuning can
# also drift. Three epochs: run for ten on each of the three seeds, the best
# of the first three epochs was never more than 0.1 pt (one held-out copy in
# a thousand) below the best of all ten.
from akida_workflows.training import distill_fine_tune

FT_EPOCHS, FT_LR, COPIES, NOISE = 3, 3e-4, 9, 0.2
tuning = distill_fine_tune(quantized, model, x_train, prepare=lambda x: lowered.lift(x, "nhwc"),
                           epochs=FT_EPOCHS, lr=FT_LR, copies=COPIES, noise=NOISE, seed=SEEDS[0])
print(f"fine-tuning on {(COPIES + 1) * len(x_train)} signals; the float model relabels "
      f"{tuning['relabelled']:.1%} of the noisy copies; agreement with float on held-out "
      f"copies {100 * tuning['agreement'][0]:.1f} % → {100 * max(tuning['agreement']):.1f} % "
      f"(epoch {tuning['best_epoch']} kept)")
akida_v1 = convert_keras(quantized)
metrics["Akida 1.0 4-bit, fine-tuned"] = evaluate(akida_v1, x_test, y_test, classes=data.classes)
mapping_v1_tuned = map_report(akida_v1, "AKD1000")
print(mapping_v1_tuned.summary_line())

# %%
# Results of one run
# ------------------
#
# Accuracy and per-class F1 of every stage on the test set (the Akida models
# run in the software backend, bit-exact with the chips). With few test
# signals an accuracy is known only to within its 95 % Wilson interval
# (:func:`~akida_workflows.evaluate.wilson_interval`); per-class F1 shows what
# the accuracy hides on an unbalanced set.
from akida_workflows.evaluate import Table, wilson_interval
from akida_workflows.plots import confusion_matrix_figure

hardware = {"Akida 2.0 8-bit": mapping_v2, "Akida 1.0 4-bit": mapping_v1,
            "Akida 1.0 4-bit, fine-tuned": mapping_v1_tuned}
rows = []
for stage, m in metrics.items():
    low, high = wilson_interval(round(m.accuracy * n_test), n_test)
    row = {"stage": stage, "accuracy": f"{100 * m.accuracy:.2f} %",
           "95 % interval": f"{100 * low:.1f} – {100 * high:.1f} %"}
    row.update({f"F1 {name}": f"{f1:.2f}" for name, f1 in zip(data.classes, m.f1)})
    mapping = hardware.get(stage)
    row["in hardware"] = "-" if mapping is None else f"{100 * mapping.hw_fraction:.0f} %"
    rows.append(row)
print(f"data: {data.description}; seed {SEEDS[0]}; one test signal = {100 / n_test:.2g} pt")
Table(rows, title=f"{data.name}, seed {SEEDS[0]}: float vs Akida, per-class F1")

# %%
# Where each layer runs: the lowered network on both chips, one box per layer
# along the data flow (green on a neural processor of the device, with the NPs
# it takes; orange in software with the mapper's reason). The 1-D network
# became square convolutions the mappers place like any 2-D CNN.
import matplotlib.pyplot as plt

from akida_workflows.plots import mapping_figure

mapping_figure({"Akida 2.0 8-bit on SixNodesIPv2": mapping_v2,
                "Akida 1.0 4-bit (fine-tuned) on AKD1000": mapping_v1_tuned},
               title=f"The lowered Conv1d network ({data.name}) on two Akida devices")
plt.show()

# %%
# Where the fine-tuned 4-bit model errs:
fig = confusion_matrix_figure(metrics["Akida 1.0 4-bit, fine-tuned"].confusion, data.classes,
                              title=f"{data.name}, 4-bit fine-tuned, seed {SEEDS[0]}",
                              unit="signals")

# %%
# Repeated over seeds
# -------------------
#
# A hundred training signals leave the weights sensitive to their
# initialisation and to the order of the batches, and a hundred test signals
# measure accuracy in steps of 1 pt. So the same pipeline runs again with the
# other seeds (initial weights, shuffling, dropout, fine-tuning), from the same
# architecture; every model is mapped on both devices.
per_seed = {stage: [m.accuracy] for stage, m in metrics.items()}
in_hardware = [min(mapping_v2.hw_fraction, mapping_v1_tuned.hw_fraction)]
for seed in SEEDS[1:]:
    torch.manual_seed(seed)
    net = copy.deepcopy(untrained)
    for layer in net.modules():  # fresh initial weights for this seed
        getattr(layer, "reset_parameters", lambda: None)()
    loader, _ = to_torch_loaders(data, batch_size=BATCH, seed=seed)
    train(net, loader, epochs=EPOCHS, lr=2e-3, seed=seed, progress=False)
    train(net, loader, epochs=EPOCHS // 4, lr=2e-4, seed=seed + 100, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v2 = to_akida(quantize_onnx(export_onnx(net, x_train[:1], workdir / f"ecg{seed}.onnx"),
                                    x_train))
    low = lower_1d(net, (1, length), target="akida1", example_input=x_test[:256])
    q4 = quantize_4bit(to_keras(low.model, low.shape), low.lift(x_train, "nhwc"),
                       akida_version="v1", batch_size=100)
    ptq = convert_keras(q4)
    distill_fine_tune(q4, net, x_train, prepare=lambda x, low=low: low.lift(x, "nhwc"),
                      epochs=FT_EPOCHS, lr=FT_LR, copies=COPIES, noise=NOISE, seed=seed)
    tuned = convert_keras(q4)
    for stage, m in zip(per_seed, (net, v2, ptq, tuned)):
        per_seed[stage].append(evaluate(m, x_test, y_test).accuracy)
    in_hardware.append(min(map_report(v2, "SixNodesIPv2").hw_fraction,
                           map_report(tuned, "AKD1000").hw_fraction))
    print(f"seed {seed}: " + ", ".join(f"{s} {100 * a[-1]:.1f} %" for s, a in per_seed.items()))

# %%
# Per seed, each accuracy with its 95 % interval, and how many test signals
# each Akida model gets right or wrong compared with the float model of the
# same seed:
float_runs = np.array(per_seed["float"])
seed_rows = []
for i, seed in enumerate(SEEDS):
    row = {"seed": seed}
    for stage, runs in per_seed.items():
        low, high = wilson_interval(round(runs[i] * n_test), n_test)
        row[stage] = f"{100 * runs[i]:.0f} % ({100 * low:.0f}–{100 * high:.0f})"
    for stage in ("Akida 2.0 8-bit", "Akida 1.0 4-bit, fine-tuned"):
        gained = round((per_seed[stage][i] - float_runs[i]) * n_test)
        row[f"{stage} vs float (signals)"] = f"{gained:+d}"
    row["in hardware (both chips)"] = f"{100 * in_hardware[i]:.0f} %"
    seed_rows.append(row)
Table(seed_rows, title=f"{data.name}: every seed (accuracy, 95 % Wilson interval)")

# %%
# Mean and spread over the seeds, and the published results of deep networks
# trained on the same split of the same set:
from akida_workflows.datasets import UCR_PUBLISHED
from akida_workflows.plots import accuracy_per_seed_figure

source, published = UCR_PUBLISHED.get(data.name, ("", {}))
summary = [{"stage": stage, "mean": f"{100 * np.mean(runs):.2f} %",
            "spread (std)": f"{100 * np.std(runs, ddof=1):.2f} pt" if len(runs) > 1 else "-",
            "range": f"{100 * min(runs):.0f} – {100 * max(runs):.0f} %"}
           for stage, runs in per_seed.items()]
summary += [{"stage": f"published: {name} ({source})", "mean": f"{100 * value:.1f} %",
             "spread (std)": "-", "range": "-"} for name, value in published.items()]
low, high = wilson_interval(round(float_runs.mean() * n_test), n_test)
print(f"float, mean of {len(SEEDS)} seed(s): {100 * float_runs.mean():.2f} %; one run at that "
      f"accuracy has the 95 % interval {100 * low:.1f} – {100 * high:.1f} %")
for name, value in published.items():
    inside = "inside" if low <= value <= high else "outside"
    print(f"published {name} {100 * value:.1f} % ({source}): {inside} that interval, "
          f"{100 * (float_runs.mean() - value):+.2f} pt from our mean")
fig = accuracy_per_seed_figure(per_seed, n_test, published=published,
                               title=f"{data.name}: test accuracy of every stage and seed")
Table(summary, title=f"{data.name}: {len(SEEDS)} seeds")

# %%
# The goals this example keeps, checked on every seed: the float model at
# 90 % or more on ECG200 (mean over the seeds; the published MLP, FCN and
# ResNet reach 92, 90 and 87 %), both Akida models within one test signal of
# the float model of the same seed (no more than one signal lost; on ECG5000,
# whose test set is 45 times larger, within 2 pt), and every model entirely in
# hardware. A goal that is missed is printed as MISSED, with by how much.
tolerance = 1 if data.name == "ECG200" else round(0.02 * n_test)  # test signals
worst = {stage: round(min(np.array(per_seed[stage]) - float_runs) * n_test)
         for stage in ("Akida 2.0 8-bit", "Akida 1.0 4-bit, fine-tuned")}
for stage, diff in worst.items():
    verdict = "met" if diff >= -tolerance else f"MISSED by {-diff - tolerance} signal(s)"
    print(f"{stage}: worst seed {diff:+d} signals vs float (goal >= -{tolerance}): {verdict}")
if data.name == "ECG200":
    gap = 100 * (float_runs.mean() - 0.90)
    print(f"float mean {100 * float_runs.mean():.2f} % (goal >= 90 %): "
          + ("met" if gap >= 0 else f"MISSED by {-gap:.2f} pt"))
print(f"in hardware: {', '.join(f'{100 * h:.0f} %' for h in in_hardware)}")

# %%
# The checks that guard this page. The float, 8-bit and hardware goals are
# asserted. The fine-tuned 4-bit goal is reported by the verdict above and
# not asserted: on ECG200 it is within reach but not kept on every seed (a
# hundred test signals, and quantization moves the few signals near the
# decision boundary). What is asserted for it, on every seed, is the guard
# this example has always had: the fine-tuned model within 2 pt of the lower
# of the float and calibrated 4-bit accuracies, and within 5 pt of float.
assert lowered.max_abs_diff < 1e-4
assert mapping_v1.fully_mapped and min(in_hardware) == 1.0
assert worst["Akida 2.0 8-bit"] >= -tolerance, worst
if data.name == "ECG200":
    assert float_runs.mean() >= 0.90, float_runs
for i, tuned in enumerate(per_seed["Akida 1.0 4-bit, fine-tuned"]):
    assert tuned >= min(per_seed["Akida 1.0 4-bit"][i], float_runs[i]) - 0.02, (i, tuned)
    assert tuned >= float_runs[i] - 0.05, (i, tuned)
# sphinx_gallery_start_ignore
# Key numbers for the site's landing page (a no-op outside the site build).
from akida_workflows._site import record

_ = record("plot_5_ecg_signals", data, [
    {"model": "Conv1d signal classifier (ECG example"
              + (f", mean of {len(SEEDS)} seeds)" if len(SEEDS) > 1 else ")"),
     "float": float(np.mean(per_seed["float"])),
     "akida2_8bit": float(np.mean(per_seed["Akida 2.0 8-bit"])),
     "akida1_4bit": float(np.mean(per_seed["Akida 1.0 4-bit, fine-tuned"])),
     "mappings": [mapping_v2, mapping_v1_tuned]},
])
# sphinx_gallery_end_ignore

# %%
# Conclusion
# ----------
#
# A ``Conv1d`` heartbeat classifier needs no rewriting by hand:
# :func:`~akida_workflows.lowering.lower_1d` turns it into the exactly
# equivalent 2-D network (square kernels on identical rows, "same" pooling, a
# permuted Dense), and the usual paths take it from there — 8-bit to Akida 2.0,
# 4-bit to the AKD1000 — both fully in hardware. On a test set of a hundred
# signals, report the interval and the spread over seeds with the accuracy:
# differences of a point or two between stages, or between this network and
# published ones, are within what the data can resolve. Design the network with
# ``ReLU6`` and ``ceil_mode=True`` pooling and keep signals within the input
# width (384 samples on Akida 2.0, 256 on Akida 1.0; decimate with
# :func:`~akida_workflows.datasets.resample_signals` or window longer ones).
# The same lowering runs inside ``check_compatibility`` and the
# ``akida-workflows`` command (``--input-shape C,L``, ``(N, C, L)`` samples).
