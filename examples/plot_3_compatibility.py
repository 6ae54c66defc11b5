"""
======================================================
Compatibility report: from "it failed" to "fix this"
======================================================

The toolchain reports problems one at a time, in ONNX node names
(``/4/Gemm``), and sometimes not at all (a truncated conversion only warns).
:func:`~akida_workflows.compat.check_compatibility` runs the real toolchain on
a copy of a model and reports *every* module in PyTorch terms — ``ok``,
``fixable`` or ``unsupported`` — with the stage that refused it, the reason,
and the fix. This tour applies it to patterns users meet, applies each fix,
and checks again.
"""

# %%
# A model that is ready
# ---------------------
#
# Compatibility does not depend on the weights, so no training is needed:
# the check quantizes with random calibration data.
import torch
from torch import nn

from akida_workflows.compat import check_compatibility

torch.manual_seed(0)
ready = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU6(),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
)
report = check_compatibility(ready, (1, 28, 28), target="akida2")
assert report.ok
report

# %%
# The same check against Akida 1.0 (4-bit, AKD1000) goes through the Keras
# path of :mod:`akida_workflows.keras_bridge`:
report_v1 = check_compatibility(ready, (1, 28, 28), target="akida1")
assert report_v1.ok
print(report_v1.summary_line())

# %%
# 1. Valid padding and a wide Dense layer
# ---------------------------------------
#
# BrainChip's MNIST model, in spirit: an unpadded strided convolution and a
# Dense layer with 2304 inputs. Everything converts, but the mapper leaves
# three of four layers in software.
torch.manual_seed(0)
brainchip_like = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=2), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),
    nn.Flatten(), nn.Linear(2304, 512), nn.ReLU(), nn.Linear(512, 10),
)
before = check_compatibility(brainchip_like, (1, 28, 28), "akida2")
before

# %%
# The fixes the report names: "same" padding, pooling inside a sequence, a
# Dense input within 2048.
fixed = nn.Sequential(
    nn.Conv2d(1, 32, 5, padding=2), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
    nn.Flatten(), nn.Linear(1568, 512), nn.ReLU(), nn.Linear(512, 10),
)
after = check_compatibility(fixed, (1, 28, 28), "akida2")
print(after.summary_line())
assert not before.ok and after.ok

# %%
# The same verdict as a picture. Mapping needs no training either: convert
# both models with random calibration data, map them on the virtual Akida 2.0
# device the check used, and draw where each layer runs (orange boxes carry
# the mapper's reason, green ones the neural processors they take).
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from akida_workflows.convert import quantize_onnx, to_akida
from akida_workflows.deploy import map_report
from akida_workflows.export import export_onnx
from akida_workflows.plots import mapping_figure

workdir = Path(tempfile.mkdtemp(prefix="akida-compat-"))
samples = np.random.default_rng(0).uniform(-1, 1, (64, 1, 28, 28)).astype(np.float32)
maps = {}
for name, model in [("Before: valid padding, 2304-wide Dense", brainchip_like),
                    ("After the fixes the report names", fixed)]:
    exported = export_onnx(model.eval(), torch.from_numpy(samples[:1]), workdir / "model.onnx")
    maps[name] = map_report(to_akida(quantize_onnx(exported, samples)), before.device)
mapping_figure(maps)
plt.show()
assert not maps["Before: valid padding, 2304-wide Dense"].fully_mapped
assert maps["After the fixes the report names"].fully_mapped

# %%
# 2. BatchNorm after the activation
# ---------------------------------
#
# QuantizeML stops at this BatchNorm and CNN2SNN would silently drop the rest
# of the network. Here it sits before a *padded* convolution, where even
# :func:`~akida_workflows.folding.fold_batchnorm` cannot fold it exactly, and
# the report says so.
bn_after = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU6(), nn.BatchNorm2d(16), nn.MaxPool2d(2),
    nn.Conv2d(16, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10),
).eval()
before = check_compatibility(bn_after, (1, 28, 28), "akida2")
before

# %%
# Moving it before the activation makes it foldable (the exporter folds it
# into the convolution):
bn_before = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(16, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10),
).eval()
after = check_compatibility(bn_before, (1, 28, 28), "akida2")
print(after.summary_line())
assert not before.ok and after.ok

# %%
# 3. Unbounded ReLU on Akida 1.0
# ------------------------------
#
# Akida 2.0 takes plain ReLUs; Akida 1.0 quantizes activations to a fixed
# range and needs a maximum. The same model is fine for one target and
# fixable for the other:
relu_model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10),
)
print(check_compatibility(relu_model, (1, 28, 28), "akida2").summary_line())
before = check_compatibility(relu_model, (1, 28, 28), "akida1")
before

# %%
relu6_model = nn.Sequential(*[nn.ReLU6() if isinstance(m, nn.ReLU) else m for m in relu_model])
after = check_compatibility(relu6_model, (1, 28, 28), "akida1")
print(after.summary_line())
assert not before.ok and after.ok

# %%
# 4. What has no fix
# ------------------
#
# Recurrent layers and attention have no Akida equivalent; activations such
# as Tanh inside the network stop the quantizer. The report marks them
# ``unsupported``: those parts must be redesigned or run on the host.
tanh_model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2), nn.Tanh(),
    nn.Conv2d(16, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10),
)
tanh_report = check_compatibility(tanh_model, (1, 28, 28), "akida2")
assert [issue.status for issue in tanh_report.issues] == ["unsupported"]
tanh_report

# %%
# Conclusion
# ----------
#
# One call lists everything between a PyTorch model and an Akida target, in
# the model's own module names, with a fix for what can be fixed; since it
# runs the real toolchain, "ok" means the model converts and maps entirely.
# The same check is available from the shell:
# ``akida-workflows check model.pt --input-shape 1,28,28 --target akida1``.
