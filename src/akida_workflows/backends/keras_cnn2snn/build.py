"""PyTorch → tf-keras: :func:`to_keras` rebuilds a traced PyTorch chain in Keras.

The ops come from :mod:`.trace`, each is rebuilt by its converter in
:mod:`.layers`, in the orientation :mod:`.geometry` chooses.
"""

from __future__ import annotations

import numpy as np

from ...errors import IncompatibleModelError
from .geometry import FLIPPED_SUFFIX, _choose_flip
from .layers import _Build, _converter_for, _Map, _unsupported
from .toolchain import _keras
from .trace import _sequence

#: The rewrite recorded when the network is built in flipped coordinates.
_FLIPPED_REWRITE = (
    "the whole network runs in spatially flipped coordinates (kernels flipped, the "
    "Dense after Flatten permuted): its stride-2 padding=1 convolutions are exact "
    "Keras/Akida 'same' convolutions there. The model takes H- and W-flipped input: "
    "prepare it with to_nhwc(x, flip=model)")


def to_keras(torch_model, input_shape, *, flip: bool | None = None):
    """Rebuild a PyTorch model as the equivalent tf-keras model, weights included.

    Each PyTorch layer type has one converter function (registered with
    :func:`converter`); exact rewrites made on the way (average pooling folded
    into a Dense, an identity convolution after a pooled conv that feeds a
    Dense, flipped coordinates) are listed in the result's ``rewrites``
    attribute.

    Stride-2 ``padding=1`` convolutions on even maps (ResNet/MobileNet
    down-sampling) pad differently from Keras/Akida 'same'. They are exact
    'same' convolutions on the *spatially flipped* map with flipped kernels, so
    when a model needs it the whole Keras network is built in flipped
    coordinates: it then takes flipped images. The model records it
    (:func:`input_flip`), :func:`to_nhwc` with ``flip=model`` prepares its
    input, and :func:`convert_keras` passes the mark on to the Akida model.

    Parameters
    ----------
    torch_model : torch.nn.Module
        A chain-shaped model (``nn.Sequential`` or traceable). BatchNorm layers
        are folded first; the model itself is not modified.
    input_shape : tuple of int
        Channel-first input shape as in PyTorch, without batch: ``(C, H, W)``.
    flip : bool, optional
        Build in flipped coordinates (True) or not (False); by default only
        when the model's padding needs it.

    Returns
    -------
    tf_keras.Model
        Takes NHWC input (``(N, H, W, C)``), flipped in H and W when its
        ``input_flip`` attribute is True; its outputs equal the PyTorch
        model's on the same images (up to float32 rounding). Layer names carry
        the PyTorch module names (``conv_0``, ``relu_1``, …).

    Raises
    ------
    IncompatibleModelError
        Unsupported modules (named, with the fix), branching models, padding
        Keras cannot express in either orientation, a non-positive or
        inconsistent ``input_shape``.

    Examples
    --------
    >>> keras_model = to_keras(torch_model, (1, 28, 28))          # doctest: +SKIP
    >>> keras_model.predict(to_nhwc(x_nchw, flip=keras_model))     # doctest: +SKIP
    """
    shape = _input_shape(input_shape)
    torch_model = _folded(torch_model).eval()
    keras = _keras()
    c, h, w = shape
    sequence = _sequence(torch_model, shape)
    flipped = _choose_flip(sequence, shape, flip)
    inputs = keras.Input((h, w, c), name="input" + (FLIPPED_SUFFIX if flipped else ""))
    b = _Build(layers=keras.layers, sequence=sequence, x=inputs, state=_Map(c, h, w),
               flip=flipped)
    if flipped:
        b.rewrites.append(_FLIPPED_REWRITE)
    _convert_layers(b)

    keras_model = keras.Model(inputs, b.x, name=_keras_model_name(torch_model))
    for layer, kweights in b.assignments:
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in kweights])
    keras_model.rewrites = tuple(b.rewrites)
    keras_model.input_flip = flipped
    _check_output_shape(torch_model, shape, keras_model)
    return keras_model


def _input_shape(input_shape) -> tuple:
    """``input_shape`` as a tuple of ints, refused unless it is (C, H, W) and positive."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise IncompatibleModelError(
            f"input_shape must be channel-first (C, H, W) as in PyTorch, got {input_shape}"
        )
    return shape


def _folded(torch_model):
    """The model with its BatchNorm layers folded (a copy), or the model itself without."""
    from torch import nn

    from ...folding import fold_batchnorm

    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in torch_model.modules()):
        return fold_batchnorm(torch_model, strict=True)
    return torch_model


def _convert_layers(b: _Build) -> None:
    """Run the converter of each entry of ``b.sequence`` (skipping those already consumed
    by a rewrite); anything but a deliberate refusal becomes an IncompatibleModelError."""
    from ...errors import AkidaWorkflowError

    for index, (name, m) in enumerate(b.sequence):
        if index in b.consumed:
            continue
        b.index = index
        convert = _converter_for(m)
        if convert is None:
            raise _unsupported(name, m)
        try:
            convert(name, m, b)
        except AkidaWorkflowError:
            raise
        except Exception as exc:  # Keras refusing a shape, e.g. a pool larger than the map
            raise IncompatibleModelError(
                f"{name} ({type(m).__name__}) cannot be rebuilt in Keras: {exc}",
                nodes=[name]) from exc


def _check_output_shape(torch_model, shape, keras_model) -> None:
    """Refuse a Keras model whose output shape is not the PyTorch model's."""
    import torch

    with torch.no_grad():  # a batch of two: torch.squeeze would drop a batch of one
        torch_shape = tuple(torch_model(torch.zeros(2, *shape)).shape[1:])
    if torch_shape != tuple(keras_model.output_shape[1:]):
        raise IncompatibleModelError(
            f"the Keras model's output {keras_model.output_shape[1:]} does not match "
            f"the PyTorch model's {torch_shape}")


def _keras_model_name(torch_model) -> str:
    """The Keras model's name from the PyTorch class name, usable as a TensorFlow root scope
    (``^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$``): a private class ``_Fire`` made QuantizeML's
    calibration fail with "'_fire/' is not a valid root scope name"."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.>-]", "_", type(torch_model).__name__.lower()).lstrip("_.->")
    return name or "model"

