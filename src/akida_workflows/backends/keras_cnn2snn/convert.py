"""QuantizeML Keras model → Akida with CNN2SNN: :func:`convert_keras`.

CNN2SNN's refusals are explained with the fix, found in the model's structure
(:func:`_diagnose`), and
an Akida model shorter than the quantized Keras model is refused or, on
request, accepted with a warning (:func:`_check_complete`).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..._quiet import import_toolchain
from ...errors import IncompatibleModelError
from .geometry import FLIPPED_SUFFIX, input_flip
from .toolchain import _inbound, _version

#: Keras layer types that carry weights or merge tensors: what an Akida layer must compute.
_COMPUTE_TYPES = frozenset({
    "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Conv2DTranspose",
    "DepthwiseConv2DTranspose", "Add", "Concatenate",
})
#: Keras layers that may stay on the host after the last Akida layer: argmax is unchanged.
_HEAD_TYPES = frozenset({"Softmax", "Dequantizer"})
_HEAD_ACTIVATIONS = frozenset({"softmax", "log_softmax", "sigmoid"})
#: Akida layer types that compute nothing.
_AKIDA_NON_COMPUTE = frozenset({"InputData", "Quantizer", "Dequantizer"})

#: Fixes for the structures CNN2SNN refuses on the Keras path, found in the model itself
#: (:func:`_diagnose`): the Keras layer names fill the ``{}`` fields.
_GAP_THEN = (
    "Akida 1.0 cannot run global average pooling after an activation (CNN2SNN v1: 'gap "
    "followed by dense is not valid'). Fix: end the network with average pooling → "
    "(Flatten) → Linear, which to_keras converts exactly into one Dense on the unpooled "
    "map; or pool before the activation (Conv2d → AdaptiveAvgPool2d(1) → ReLU6).")
_DEPTHWISE_ALONE = (
    "Akida 1.0 runs a depthwise convolution only inside a separable layer: the depthwise "
    "Conv2d (groups=C) must feed its 1x1 pointwise Conv2d directly, with BatchNorm, ReLU6 "
    "and pooling after the pointwise (AkidaNet-style blocks). Published MobileNetV1 blocks "
    "(depthwise → BN → ReLU → pointwise) cannot run on Akida 1.0: remove the activation "
    "after {0} (a BatchNorm there folds away), retrain or fine-tune, convert again; or "
    "target Akida 2.0, which runs standalone depthwise layers.")
_DEPTHWISE_STRIDED = (
    "Akida 1.0 runs a depthwise convolution only inside a separable layer, whose 1x1 half "
    "has stride 1: {0} feeds {1}, a 1x1 convolution with stride {2}. Move the stride into "
    "the depthwise convolution ({0} with stride {2}, {1} with stride 1: the same "
    "downsampling, as MobileNet does it), retrain or fine-tune, convert again.")
_NO_ACTIVATION = (
    "on Akida 1.0 every layer that feeds another must end with a bounded ReLU (its output "
    "quantizer): put nn.ReLU6() (or a clamp) after {0}, retrain or fine-tune, convert again.")
_FINAL_ACTIVATION = (
    "Akida 1.0 cannot end with an activation after the last layer: remove {0} (the final "
    "ReLU/clamp) from the model and train on the logits.")
_POOL_PADDING = (
    "Akida pools with the padding of the convolution before it: give the MaxPool2d {0} "
    "padding matching {1} ({2}), or use a pool whose window tiles the map exactly.")


def _conv_padding(conv) -> str:
    """The padding Akida builds a quantized convolution with (CNN2SNN's own test)."""
    if getattr(conv, "padding_value", None) is not None or tuple(conv.kernel_size) == (1, 1):
        return "same"
    return conv.padding


_CONVS = frozenset({"QuantizedConv2D", "QuantizedSeparableConv2D", "QuantizedDepthwiseConv2D"})


def _block_conv(pool):
    """The convolution that starts the block of ``pool`` (CNN2SNN checks their paddings
    agree), or None: back through single inputs, stopping at a block's end (an output
    quantizer)."""
    layer = pool
    while True:
        before = _inbound(layer)
        if len(before) != 1:
            return None
        layer = before[0]
        if type(layer).__name__ in _CONVS:
            return layer
        if getattr(layer, "out_quantizer", None) or not type(layer).__name__.startswith(
                "Quantized"):
            return None


def _diagnose(quantized_model, akida_version: str) -> tuple[str, list[str]]:
    """The fix for a model CNN2SNN refused and the Keras layer at fault, read from the
    model's structure (never from the exception's text): ``("", [])`` when none of the
    structures CNN2SNN is known to refuse is there.

    The tests are CNN2SNN's own, in its order: first how it splits an Akida 1.0 model
    into blocks (``cnn2snn.quantizeml.blocks``: a layer with an output quantizer that is
    not a ReLU ends a block and may feed nothing), then each block (a depthwise
    convolution is no block on its own; a max pooling takes its convolution's padding,
    ``padding``; a ReLU needs an output quantizer, ``activations``).
    """
    layers = quantized_model.layers
    if akida_version == "v1":
        for layer in layers:
            for prev in _inbound(layer):
                kind = type(prev).__name__
                if not getattr(prev, "out_quantizer", None) or kind == "QuantizedReLU":
                    continue
                if kind == "QuantizedDepthwiseConv2D":
                    strides = tuple(getattr(layer, "strides", (1, 1)))
                    if type(layer).__name__ == "QuantizedConv2D" and strides != (1, 1):
                        return (_DEPTHWISE_STRIDED.format(prev.name, layer.name, strides[0]),
                                [prev.name])
                    return _DEPTHWISE_ALONE.format(prev.name), [prev.name]
                if "GlobalAveragePooling" in kind:
                    return _GAP_THEN, [prev.name]
                return _NO_ACTIVATION.format(prev.name), [prev.name]
    for layer in layers:
        kind = type(layer).__name__
        if akida_version == "v1" and kind == "QuantizedDepthwiseConv2D":
            return _DEPTHWISE_ALONE.format(layer.name), [layer.name]
        conv = _block_conv(layer) if kind == "QuantizedMaxPool2D" else None
        padding = _conv_padding(conv) if conv is not None else None
        if padding is not None and padding != getattr(layer, "padding", ""):
            return _POOL_PADDING.format(layer.name, conv.name, padding), [layer.name]
        if (akida_version == "v1" and kind == "QuantizedReLU"
                and not getattr(layer, "out_quantizer", None)):
            return _FINAL_ACTIVATION.format(layer.name), [layer.name]
    return "", []


def _after_dequantizer(quantized_model) -> list[tuple[str, str]]:
    """(name, type) of the layers CNN2SNN leaves out: every layer after the model's first
    ``Dequantizer``, in layer order (its own rule, ``cnn2snn.quantizeml.blocks``; the
    "Conversion stops" warning lists the same layers)."""
    layers = quantized_model.layers
    first = next((i for i, layer in enumerate(layers)
                  if type(layer).__name__ == "Dequantizer"), None)
    return [] if first is None else [(layer.name, type(layer).__name__)
                                     for layer in layers[first + 1:]]


def _dropped_fix(layer_type: str) -> str:
    if layer_type == "AveragePooling2D":
        return ("Akida has no average-pooling layer. Average pooling followed (through "
                "Flatten) by a Linear is converted exactly by to_keras into one Dense; "
                "elsewhere use nn.MaxPool2d or a stride-2 convolution.")
    return (f"QuantizeML has no quantized form of {layer_type} at this place, so it left it in "
            "float and CNN2SNN dropped it and everything after it. Replace it with a "
            "supported layer (Conv2d, depthwise-separable block, Linear, ReLU6, MaxPool2d).")


def _check_complete(quantized_model, akida_model, stop_message: str, akida_version: str,
                    allow_partial: bool) -> None:
    """Refuse (or, with ``allow_partial``, warn about) an Akida model shorter than the
    quantized Keras model: fewer compute layers or another output shape."""
    akida_names = {layer.name for layer in akida_model.layers}
    compute = [layer for layer in quantized_model.layers
               if type(layer).__name__.replace("Quantized", "") in _COMPUTE_TYPES]
    dropped = [layer for layer in compute if layer.name not in akida_names]
    n_akida = sum(str(layer.parameters.layer_type).split(".")[-1] not in _AKIDA_NON_COMPUTE
                  for layer in akida_model.layers)
    def is_head(name, kind):
        if kind in _HEAD_TYPES:
            return True
        if kind == "Activation":
            layer = next((lay for lay in quantized_model.layers if lay.name == name), None)
            return layer is not None and layer.get_config().get("activation") in _HEAD_ACTIVATIONS
        return False

    tail = [(name, kind) for name, kind in _after_dequantizer(quantized_model)
            if not is_head(name, kind)]
    keras_shape = tuple(int(d) for d in quantized_model.output_shape[1:])
    akida_shape = tuple(int(d) for d in akida_model.output_shape)
    same_shape = (int(np.prod(keras_shape)) == int(np.prod(akida_shape))
                  and keras_shape[-1:] == akida_shape[-1:])
    if not dropped and n_akida >= len(compute) and same_shape and not tail:
        return
    if tail:
        first, kind = tail[0]
    elif dropped:
        first, kind = dropped[0].name, type(dropped[0]).__name__
    else:  # pragma: no cover - defensive: shapes differ without a named cause
        first, kind = quantized_model.layers[-1].name, type(quantized_model.layers[-1]).__name__
    why = "CNN2SNN returned a shorter model"
    if stop_message:
        why = "CNN2SNN: " + " ".join(stop_message.split(".")[0].split())
    summary = (f"the Akida {akida_version} model is incomplete: {n_akida} of {len(compute)} "
               f"compute layers converted, output {list(akida_shape)} instead of "
               f"{list(keras_shape)}. It stops before {first} ({kind}) ({why}).")
    if allow_partial:
        warnings.warn(f"partial Akida model: {summary} The layers from {first} on must run on "
                      "the host.", stacklevel=3)
        return
    raise IncompatibleModelError(
        f"{summary} {_dropped_fix(kind.replace('Quantized', ''))} Or pass allow_partial=True "
        "to accept a model that ends there.", nodes=[first])


def convert_keras(quantized_model, akida_version: str | None = None, *,
                  allow_partial: bool = False):
    """Convert a QuantizeML Keras model to Akida with ``cnn2snn.convert``.

    CNN2SNN stops, with only a warning, at the first layer QuantizeML left in
    float (an ``AveragePooling2D`` head, for instance) and returns the layers
    before it. Here that is an error naming the first dropped layer and the fix,
    unless ``allow_partial=True``.

    Parameters
    ----------
    quantized_model : tf_keras.Model
        From :func:`quantize_4bit` (or :func:`fine_tune`).
    akida_version : {"v1", "v2"}, optional
        Defaults to the version the model was quantized for.
    allow_partial : bool, default False
        Accept an Akida model that computes only the first part of the network
        (a warning names where it stops; the rest must run on the host). A final
        Softmax is never counted as dropped: Akida returns the logits, whose
        argmax is the same.

    Returns
    -------
    akida.Model
        Takes float NHWC input (its first layer quantizes it), flipped in H and
        W if the Keras model was built in flipped coordinates: its first layer's
        name then ends in ``"_flipped"`` (:func:`input_flip`); prepare inputs
        with ``to_nhwc(x, flip=akida_model)``.

    Raises
    ------
    IncompatibleModelError
        CNN2SNN refuses the model (the layer is named, with the fix), or the
        converted model is shorter than the Keras model (fewer compute layers,
        another output shape) while ``allow_partial`` is False.
    """
    import_toolchain()
    from cnn2snn import convert, set_akida_version

    akida_version = akida_version or getattr(quantized_model, "akida_version", None)
    if akida_version is None:
        raise IncompatibleModelError(
            "say which Akida version to convert for (akida_version='v1' or 'v2')")
    version = _version(akida_version)
    # A model that takes flipped input says so in its input quantizer's name, which the
    # Akida model (and its .fbz file) keeps.
    flipped = input_flip(quantized_model)
    quantizer = _input_quantizer(quantized_model, flipped)
    original_name = quantizer.name if quantizer is not None else None
    with set_akida_version(version), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if flipped and not original_name.endswith(FLIPPED_SUFFIX):
                quantizer._name = original_name + FLIPPED_SUFFIX
            akida_model = convert(quantized_model)
        except Exception as exc:
            fix, names = _diagnose(quantized_model, akida_version)
            raise IncompatibleModelError(
                f"cnn2snn.convert failed for Akida {akida_version}: {exc}"
                + (f" Fix: {fix}" if fix else ""), nodes=names) from exc
        finally:
            if quantizer is not None:
                quantizer._name = original_name
    if flipped != input_flip(akida_model):  # pragma: no cover - defensive
        raise IncompatibleModelError("the Akida model lost the mark of its flipped input")
    stop = _conversion_stop(caught)
    _check_complete(quantized_model, akida_model, stop, akida_version, allow_partial)
    return akida_model


def _input_quantizer(quantized_model, flipped: bool):
    """The model's InputQuantizer layer, None without; required when ``flipped``."""
    quantizer = next((layer for layer in quantized_model.layers
                      if type(layer).__name__ == "InputQuantizer"), None)
    if flipped and quantizer is None:
        raise IncompatibleModelError(
            "the model takes spatially flipped input but has no input quantizer to record it "
            "in the Akida model: quantize it with quantize_4bit")
    return quantizer


def _conversion_stop(caught) -> str:
    """The first of CNN2SNN's "Conversion stops" warnings among ``caught`` ("" without);
    the other warnings are issued again."""
    stop = ""
    for w in caught:
        if "Conversion stops" in str(w.message):
            stop = stop or str(w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return stop
