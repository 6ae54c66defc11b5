"""
==================================================
One model, two Akida targets: 2.0 8-bit, 1.0 4-bit
==================================================

Akida 2.0 IP (8-bit, the QuantizeML ONNX path) and the Akida 1.0 chips
AKD1000/AKD1500 (4-bit, through tf-keras) take different models from the same
PyTorch network. This example converts one trained CNN for both, maps each on
virtual devices, compares accuracy, neural processors, size and throughput,
saves and reloads the ``.fbz`` files, and does the same from the shell with
the ``akida-workflows`` command.
"""

# %%
# Train once
# ----------
#
# A CNN that suits both targets: "same" padding, bounded activations (ReLU6)
# for Akida 1.0, a last convolution without pooling, a Dense input of 1568.
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from akida_workflows.compat import check_compatibility
from akida_workflows.datasets import load_mnist, preprocess, to_torch_loaders
from akida_workflows.training import evaluate_torch, train

data = load_mnist()
print(f"data source: {data.source} ({data.description})")
workdir = Path(tempfile.mkdtemp(prefix="akida-targets-"))
x_train, x_test = preprocess(data.x_train), preprocess(data.x_test)
train_loader, test_loader = to_torch_loaders(data, batch_size=64)

torch.manual_seed(0)
cnn = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=2), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(64, 32, 3, padding=1), nn.ReLU6(),
    nn.Dropout(0.25), nn.Flatten(), nn.Linear(1568, 512), nn.ReLU6(), nn.Dropout(0.5),
    nn.Linear(512, 10),
)
for target in ("akida2", "akida1"):
    print(check_compatibility(cnn, (1, 28, 28), target).summary_line())
epochs = 4 if len(data.y_train) <= 10_000 else 2
train(cnn, train_loader, epochs=epochs, lr=3e-3, seed=0, schedule="onecycle")
float_accuracy = evaluate_torch(cnn, test_loader)
print(f"float test accuracy {100 * float_accuracy:.2f} %")

# %%
# Akida 2.0, 8-bit
# ----------------
#
# PyTorch → ONNX → QuantizeML → CNN2SNN. The model takes NCHW float input.
from akida_workflows.convert import quantize_onnx, to_akida
from akida_workflows.export import export_onnx

exported = export_onnx(cnn, torch.from_numpy(x_test[:1]), workdir / "cnn.onnx")
akida_v2 = to_akida(quantize_onnx(exported, x_train[:1024]))

# %%
# Akida 1.0, 4-bit
# ----------------
#
# PyTorch → tf-keras → QuantizeML (4-bit weights and activations, 8-bit input
# layer) → CNN2SNN under Akida 1.0, with one epoch of quantization-aware
# training. The model takes NHWC float input.
from akida_workflows.keras_bridge import (
    convert_keras,
    fine_tune,
    quantize_4bit,
    to_keras,
    to_nhwc,
)

x_train_nhwc, x_test_nhwc = to_nhwc(x_train), to_nhwc(x_test)
quantized = quantize_4bit(to_keras(cnn, (1, 28, 28)), x_train_nhwc[:1024], akida_version="v1")
fine_tune(quantized, x_train_nhwc, data.y_train, epochs=1, lr=1e-4, seed=0)
akida_v1 = convert_keras(quantized)

# %%
# On the devices
# --------------
#
# :func:`~akida_workflows.deploy.summarize` maps each model on a virtual
# device and measures the software backend's throughput on this machine's CPU
# (a real chip runs at its own pace; this figure is for comparing models).
# Akida 2.0 models go on 2.0 IP (two and six nodes), the 1.0 model on the
# AKD1000.
from akida_workflows.deploy import summarize

summaries = {
    "Akida 2.0 8-bit on TwoNodesIPv2": summarize(akida_v2, "TwoNodesIPv2"),
    "Akida 2.0 8-bit on SixNodesIPv2": summarize(akida_v2, "SixNodesIPv2"),
    "Akida 1.0 4-bit on AKD1000": summarize(akida_v1, "AKD1000"),
}
print(summaries["Akida 1.0 4-bit on AKD1000"])

# %%
# Save, reload, and compare
# -------------------------
#
# Both models are saved as ``.fbz``; :func:`~akida_workflows.deploy.save`
# reloads each and checks bit-identical outputs.
from akida_workflows.deploy import load, save
from akida_workflows.evaluate import Table, evaluate

files = {
    "v2": save(akida_v2, workdir / "cnn_akida2_8bit.fbz", check_inputs=x_test[:64]),
    "v1": save(akida_v1, workdir / "cnn_akida1_4bit.fbz", check_inputs=x_test_nhwc[:64]),
}
accuracy = {
    "v2": evaluate(load(files["v2"]), x_test, data.y_test).accuracy,
    "v1": evaluate(load(files["v1"]), x_test_nhwc, data.y_test).accuracy,
}
rows = []
for name, summary in summaries.items():
    version = "v1" if "1.0" in name else "v2"
    nps = ", ".join(f"{n} {t}" for t, n in sorted(summary.mapping.np_counts.items()))
    rows.append({
        "model / device": name,
        "accuracy": f"{100 * accuracy[version]:.2f} %",
        "in hardware": f"{100 * summary.mapping.hw_fraction:.0f} %",
        "NPs": nps,
        ".fbz size": f"{files[version].stat().st_size / 1024:.0f} KiB",
        "program": f"{summary.program_bytes / 1024:.0f} KiB",
        "throughput (CPU backend)": f"{summary.images_per_second:,.0f} img/s",
    })
print(f"float: {100 * float_accuracy:.2f} % on {data.source}")
Table(rows, title="The same CNN on two Akida targets")

# %%
# Where each layer runs, device by device: the same five compute layers take a
# different number of neural processors on each device, and all of them run on
# the chip.
import matplotlib.pyplot as plt

from akida_workflows.plots import mapping_figure

mapping_figure({name: summary.mapping for name, summary in summaries.items()},
               title="One CNN on three virtual Akida devices")
plt.show()

# %%
# Both fit their devices entirely and stay within a point of the float model:
assert all(summary.fits for summary in summaries.values())
assert accuracy["v2"] >= float_accuracy - 0.01
assert accuracy["v1"] >= float_accuracy - 0.01
# sphinx_gallery_start_ignore
# Key numbers for the site's landing page (a no-op outside the site build).
from akida_workflows._site import record

_ = record("plot_4_akida_targets", data, [
    {"model": "Two-target CNN (targets example)", "float": float_accuracy,
     "akida2_8bit": accuracy["v2"], "akida1_4bit": accuracy["v1"],
     "mappings": [summaries["Akida 2.0 8-bit on SixNodesIPv2"].mapping,
                  summaries["Akida 1.0 4-bit on AKD1000"].mapping]},
])
# sphinx_gallery_end_ignore

# %%
# The same from the shell
# -----------------------
#
# ``akida-workflows convert`` runs the whole path on a saved model and a
# ``.npy`` of calibration samples, maps the result, saves the ``.fbz`` and
# prints the stage report. Here it converts our own pickled PyTorch model for
# Akida 1.0 in one line (without the fine-tuning). A pickle runs code when it
# is loaded, so the command asks for ``--trust-pickle``; a model from someone
# else comes as ONNX, TorchScript, or a state dict with ``--model-class``
# (see :ref:`safe-model-files`).
import subprocess
import sys

torch.save(cnn, workdir / "cnn.pt")
np.save(workdir / "calibration.npy", x_train[:256])
command = [sys.executable, "-m", "akida_workflows", "convert", str(workdir / "cnn.pt"),
           "--trust-pickle", "--samples", str(workdir / "calibration.npy"),
           "--target", "akida1", "-o", str(workdir / "cnn_cli.fbz")]
print("$ akida-workflows convert cnn.pt --trust-pickle --samples calibration.npy "
      "--target akida1 -o cnn_cli.fbz")
result = subprocess.run(command, capture_output=True, text=True)
print(result.stdout.replace(str(workdir) + "/", ""))
assert result.returncode == 0, result.stderr

# %%
# ``akida-workflows info`` tells how a saved model sits on a device:
info = subprocess.run([sys.executable, "-m", "akida_workflows", "info",
                       str(workdir / "cnn_cli.fbz")], capture_output=True, text=True)
print(info.stdout)
assert info.returncode == 0, info.stderr

# %%
# Conclusion
# ----------
#
# One PyTorch network, designed with both targets' rules in mind, gives an
# 8-bit Akida 2.0 model and a 4-bit Akida 1.0 model that both map entirely
# and keep the float accuracy; the 4-bit model is the one the AKD1000/AKD1500
# chips run. The library calls and the command line do the same work.
