"""The 4-bit path: PyTorch → tf-keras → QuantizeML (4-bit) → CNN2SNN → Akida 1.0.

QuantizeML's ONNX path accepts only 8-bit parameters ("Only default bitwidth
qparams is allowed") and targets Akida 2.0, while the AKD1000/AKD1500 chips
run Akida 1.0 models with 1/2/4-bit weights. QuantizeML's *Keras* quantizer has
no such limit. This package rebuilds a PyTorch model as the equivalent tf-keras
model, with its trained weights, so that the Keras quantizer can produce a
4-bit Akida 1.0 model:

>>> keras_model = to_keras(torch_model, (1, 28, 28))           # doctest: +SKIP
>>> quantized = quantize_4bit(keras_model, samples_nhwc)        # doctest: +SKIP
>>> akida_model = convert_keras(quantized)                      # doctest: +SKIP

Supported layers: Conv2d (groups 1 or depthwise), Linear, ReLU, ReLU6,
Hardtanh(0, m) (a clamped ReLU), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
Flatten, Dropout/Identity, and BatchNorm (folded first with
:func:`akida_workflows.folding.fold_batchnorm`). Models are traced with
``torch.fx``: custom blocks, modules called several times, functional
activations (``F.relu``, ``F.relu6``, ``torch.clamp``/``F.hardtanh`` to
``[0, m]``), functional pools, ``x.mean((2, 3))`` and reshapes that keep the
batch axis (``x.view(x.size(0), -1)``, ``torch.flatten(x, 1)``, ``squeeze``)
are followed. What cannot be mapped (``tanh``, residual additions, functional
convolutions, …) is named with the fix.

Exact rewrites, listed in the Keras model's ``rewrites`` attribute:

- average pooling followed (through Flatten) by a Linear becomes one Dense on
  the unpooled map (weights divided by the pool area, tiled over positions):
  Akida has no average-pooling layer, and Akida 1.0 refuses global average
  pooling after an activation;
- a max-pooled convolution that feeds a Dense gets an identity 1x1
  convolution after its pool: Akida cannot end a hardware sequence with a
  pooled convolution.

A final ``softmax``/``log_softmax``/``sigmoid`` (the model's last op) stays in
the Keras model, so that it computes what PyTorch computes; QuantizeML leaves it
in float and the Akida model ends before it: Akida returns the logits, whose
argmax is the same. Anywhere else these are refused.

Modules: :mod:`.trace` (the ``torch.fx`` op chain), :mod:`.geometry` (padding,
flipped coordinates, :func:`to_nhwc`), :mod:`.layers` (one converter per
``torch.nn`` type), :mod:`.build` (:func:`to_keras`), :mod:`.calibration`
(weight codes), :mod:`.quantize` (:func:`quantize_4bit`, :func:`fine_tune`),
:mod:`.convert` (:func:`convert_keras`), :mod:`.toolchain` (tf-keras, Akida
versions).
"""

from __future__ import annotations

from .build import to_keras
from .convert import convert_keras
from .geometry import input_flip, to_nhwc
from .layers import converter
from .quantize import fine_tune, quantize_4bit, separable_blocks, unbounded_relus

__all__ = [
    "to_keras",
    "quantize_4bit",
    "fine_tune",
    "convert_keras",
    "to_nhwc",
    "input_flip",
    "unbounded_relus",
    "separable_blocks",
    "converter",
]
