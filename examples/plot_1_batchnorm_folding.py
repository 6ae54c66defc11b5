"""
==========================================================
BatchNorm folding: what the toolchain folds, and what not
==========================================================

BatchNorm is everywhere in PyTorch models, and Akida has no BatchNorm layer:
every BatchNorm must disappear into a neighbouring convolution or dense
layer before conversion. This example shows which BatchNorms the toolchain
handles by itself, which one it *silently drops*, and how
:func:`~akida_workflows.folding.fold_batchnorm` folds them all exactly, so
that the whole network reaches Akida.
"""

# %%
# Three places for a BatchNorm
# ----------------------------
#
# Three small networks, each with its BatchNorm in a different place. We
# export each to ONNX, quantize it and convert it, asking the toolchain to
# keep going where it cannot (``allow_partial=True``) to see what it does.
import warnings

import torch
from torch import nn

from akida_workflows.convert import quantize_onnx, to_akida, unquantized_nodes
from akida_workflows.datasets import load_mnist, preprocess
from akida_workflows.evaluate import Table
from akida_workflows.export import export_onnx

torch.manual_seed(0)
cases = {
    "Conv → BN → ReLU": nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)),
    "Linear → BN1d → ReLU": nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 14 * 14, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)),
    "Conv → ReLU → BN": nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)),
}

# %%
# Calibration needs a few real images; the same loader as in the first
# example says which data it found.
import tempfile
from pathlib import Path

data = load_mnist()
print(f"data source: {data.source} ({data.description})")
x_train = preprocess(data.x_train)
x_test = preprocess(data.x_test)
workdir = Path(tempfile.mkdtemp(prefix="akida-bn-"))

# %%
# Untrained BatchNorms hold neutral statistics (mean 0, variance 1); a few
# batches in training mode give them real ones, as training would.
with torch.no_grad():
    for model in cases.values():
        model.train()
        for start in range(0, 1024, 128):
            model(torch.from_numpy(x_train[start : start + 128]))
        model.eval()

# %%
# For each case: the ONNX ops after export, the nodes QuantizeML leaves in
# float, and the layers of the Akida model CNN2SNN returns.
rows = []
for name, model in cases.items():
    exported = export_onnx(model, torch.from_numpy(x_test[:1]), workdir / "case.onnx")
    ops = [node.op_type for node in exported.model.graph.node]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        quantized = quantize_onnx(exported, x_train[:256], allow_partial=True)
        akida_model = to_akida(quantized, allow_partial=True)
    compute = [layer.name for layer in akida_model.layers
               if str(layer.parameters.layer_type).split(".")[-1] not in
               ("Quantizer", "Dequantizer", "InputData")]
    weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model)
    rows.append({
        "case": name,
        "BN in ONNX": "yes" if "BatchNormalization" in ops else "folded by exporter",
        "left in float by QuantizeML": ", ".join(op for _, op in unquantized_nodes(quantized)) or "none",
        "Akida compute layers": f"{len(compute)} of {weighted}",
    })
Table(rows, title="What the toolchain does with a BatchNorm")

# %%
# * **Conv → BN → ReLU**: PyTorch's ONNX exporter folds the BatchNorm into the
#   convolution; nothing is left to do.
# * **Linear → BN1d → ReLU**: the BatchNorm reaches ONNX, and QuantizeML
#   recognises the Dense → BatchNorm pattern and folds it while quantizing.
# * **Conv → ReLU → BN**: QuantizeML finds no pattern for a BatchNorm after an
#   activation, leaves it and everything after it in float and only warns;
#   CNN2SNN then stops at the BatchNorm ("the end of the graph is ignored")
#   and returns an Akida model with **1 of the 3** layers. Nothing fails:
#   a user who only looks at the returned object ships a truncated model.
#
# Without ``allow_partial=True`` the library refuses that result, naming the
# nodes and the fix:
from akida_workflows.errors import IncompatibleModelError

truncated = cases["Conv → ReLU → BN"]
exported = export_onnx(truncated, torch.from_numpy(x_test[:1]), workdir / "truncated.onnx")
try:
    quantize_onnx(exported, x_train[:256])
except IncompatibleModelError as error:
    print(error)

# %%
# A BatchNorm-heavy CNN
# ---------------------
#
# The Akida-ready CNN of the first example, with BatchNorm where PyTorch users
# put it: after convolutions, *after* an activation, and after a Linear.
from akida_workflows.datasets import to_torch_loaders
from akida_workflows.training import evaluate_torch, train

torch.manual_seed(0)
bn_cnn = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(32),
    nn.Flatten(), nn.Dropout(0.25),
    nn.Linear(1568, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5),
    nn.Linear(512, 10),
)
train_loader, test_loader = to_torch_loaders(data, batch_size=64)
# A few epochs: what this example measures (the folded model computes what the
# unfolded one does; Akida stays within a point of float) needs trained BatchNorm
# statistics, not a converged model (two epochs, one-cycle schedule).
epochs = 2 if len(data.y_train) <= 10_000 else 1
history = train(bn_cnn, train_loader, epochs=epochs, lr=3e-3, seed=0, schedule="onecycle")
print(f"float test accuracy {100 * evaluate_torch(bn_cnn, test_loader):.2f} %")

# %%
# Why folding changes what quantization sees
# ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
#
# Folding multiplies each channel of the neighbouring layer by the
# BatchNorm's scale ``|γ| / σ``. After training these scales spread over an
# order of magnitude or more, so the folded weights of some channels grow and
# others shrink: per-tensor 8-bit weights must cover the largest channel,
# which is why per-channel weight scales matter after folding.
import matplotlib.pyplot as plt

from akida_workflows.plots import batchnorm_scale_figure

batchnorm_scale_figure(bn_cnn, title="Trained BatchNorm scales |γ|/σ, per channel")
plt.show()

# %%
# Fold
# ^^^^
#
# :func:`~akida_workflows.folding.fold_batchnorm` returns a new model (the
# trained one is untouched) and a report of what went where: backward into
# the Conv2d/Linear before a BatchNorm, or forward into the Linear after it
# (through ``Flatten``, in channel-major order).
from akida_workflows.folding import fold_batchnorm

folded_cnn = fold_batchnorm(bn_cnn)
print(folded_cnn.folding_report)
print(folded_cnn)

# %%
# Folding is exact: on the whole test set the logits of the two models agree
# to float32 rounding, and so do their predictions.
import numpy as np

from akida_workflows.evaluate import predict

logits = predict(bn_cnn, x_test)
folded_logits = predict(folded_cnn, x_test)
max_abs_diff = float(np.abs(logits - folded_logits).max())
max_rel_diff = max_abs_diff / float(np.abs(logits).max())
print(f"max |unfolded - folded| = {max_abs_diff:.2e} "
      f"(relative to the largest logit: {max_rel_diff:.1e}); "
      f"identical predictions: {np.array_equal(logits.argmax(1), folded_logits.argmax(1))}")
assert max_rel_diff < 1e-5

# %%
# Why a BatchNorm before a padded convolution is refused
# ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
#
# A BatchNorm after an activation and before a *padded* convolution cannot be
# folded exactly: the convolution pads the BatchNorm's output with zeros,
# whereas a folded convolution would pad its input with zeros, i.e. the
# BatchNorm's output ``b`` instead of 0 along the borders. The library refuses
# it (and names it) rather than fold approximately. Measured on the third case
# above, folding it anyway would leave the interior exact and the borders off:
from akida_workflows.folding import fold_bn_into_next_conv

bn, conv = truncated[2], truncated[3]
unpadded = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=conv.stride)
unpadded.load_state_dict(conv.state_dict())
weight, bias = fold_bn_into_next_conv(bn, unpadded)
naive = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=conv.stride, padding=1)
naive.weight.data, naive.bias.data = weight, bias
with torch.no_grad():
    features = truncated[1](truncated[0](torch.from_numpy(x_test[:256])))
    error = (naive(features) - conv(bn(features))).abs()
    reference = conv(bn(features)).abs().max()
interior = error[..., 1:, 1:]  # with stride 2, only the first row and column touch padding
border_error = max(error[..., 0, :].max(), error[..., :, 0].max())
print(f"max error on the border: {border_error:.3f} ({100 * border_error / reference:.0f} % "
      f"of the largest output), in the interior: {interior.max():.1e}")

# %%
# The folded network through the whole pipeline
# ---------------------------------------------
#
# With every BatchNorm folded, QuantizeML quantizes every node and CNN2SNN
# converts the whole network.
from akida_workflows.deploy import map_report
from akida_workflows.evaluate import evaluate

exported = export_onnx(folded_cnn, torch.from_numpy(x_test[:1]), workdir / "folded.onnx")
quantized = quantize_onnx(exported, x_train[:1024])
akida_cnn = to_akida(quantized)
akida_cnn.summary()

mapping = map_report(akida_cnn, "SixNodesIPv2")
print(mapping.summary_line())

# %%
# Results
# -------
results = {
    "float, with BatchNorm": evaluate(bn_cnn, x_test, data.y_test),
    "float, folded": evaluate(folded_cnn, x_test, data.y_test),
    "ONNX quantized (8-bit)": evaluate(quantized, x_test, data.y_test),
    "Akida": evaluate(akida_cnn, x_test, data.y_test),
}
weighted_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in folded_cnn.modules())
float_accuracy = results["float, with BatchNorm"].accuracy
akida_accuracy = results["Akida"].accuracy
print(f"data: {data.description}")
print(f"float {100 * float_accuracy:.2f} %, folded {100 * results['float, folded'].accuracy:.2f} %, "
      f"Akida {100 * akida_accuracy:.2f} %")
Table([{"model": stage, "accuracy": f"{100 * m.accuracy:.2f} %"} for stage, m in results.items()],
      title=f"BatchNorm CNN: {len(mapping.compute_layers)} Akida compute layers for "
            f"{weighted_layers} Conv2d/Linear layers, {100 * mapping.hw_fraction:.0f} % on hardware")

# %%
# The guards of this example: the Akida model keeps every layer of the
# network, maps entirely, and loses at most one point to quantization.
assert len(mapping.compute_layers) == weighted_layers
assert mapping.fully_mapped
assert results["float, folded"].accuracy == float_accuracy
assert akida_accuracy >= float_accuracy - 0.01

# %%
# Conclusion
# ----------
#
# The exporter and QuantizeML fold a BatchNorm that directly follows a
# convolution or a dense layer; anywhere else the toolchain stops and drops the
# rest of the network without an error. Fold first with
# :func:`~akida_workflows.folding.fold_batchnorm`: it folds backward or
# forward exactly, reports what it cannot fold by module name, and refuses the
# one case (before a padded convolution) that only an approximation could fold.
