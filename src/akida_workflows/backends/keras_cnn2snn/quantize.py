"""Quantization for Akida: QuantizeML's Keras quantizer, calibrated, and its preparation.

:func:`quantize_4bit` checks the options, prepares the float model for Akida
1.0 (bounded activations, :func:`separable_blocks`), quantizes it with
QuantizeML (activations calibrated on samples, the feature layer's width from
``feature_bits``) and writes the calibrated weight codes
(:mod:`.calibration`). :func:`fine_tune` is quantization-aware training.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import warnings

import numpy as np

from ...errors import IncompatibleModelError
from .calibration import _calibrate_weights
from .geometry import input_flip, to_nhwc
from .toolchain import _inbound, _keras, _version

_LOG = logging.getLogger(__name__)


def unbounded_relus(keras_model) -> list[str]:
    """Names of ReLU layers without a maximum (Akida 1.0 needs one)."""
    keras = _keras()
    return [layer.name for layer in keras_model.layers
            if isinstance(layer, keras.layers.ReLU) and layer.max_value is None]


def _chain(keras_model) -> bool:
    """Whether every layer of a Keras model reads exactly the layer before it."""
    layers = keras_model.layers
    for previous, layer in zip(layers, layers[1:]):
        if len(layer._inbound_nodes) != 1:
            return False
        inbound = _inbound(layer)
        if len(inbound) != 1 or inbound[0] is not previous or len(previous._outbound_nodes) != 1:
            return False
    return True


def _is_separable_pair(dw, pw) -> bool:
    keras = _keras()
    return (type(dw) is keras.layers.DepthwiseConv2D and dw.depth_multiplier == 1
            and dw.get_config()["activation"] == "linear"
            and tuple(dw.dilation_rate) == (1, 1)
            and type(pw) is keras.layers.Conv2D and tuple(pw.kernel_size) == (1, 1)
            and tuple(pw.strides) == (1, 1) and tuple(pw.dilation_rate) == (1, 1)
            and pw.groups == 1)


def separable_blocks(keras_model):
    """Merge each depthwise convolution that feeds a 1x1 convolution into one SeparableConv2D.

    Akida 1.0 (AKD1000/AKD1500) has no standalone depthwise layer: a depthwise
    convolution runs only as the first half of a ``SeparableConvolutional``
    layer. :func:`to_keras` emits PyTorch's depthwise (``groups=C``) and
    pointwise (1x1) convolutions as two Keras layers, which QuantizeML
    quantizes separately (an output quantizer between them) and CNN2SNN v1
    then refuses. This rewrite is exact: the depthwise bias ``b_d`` moves into
    the pointwise bias (``b_p + W_p b_d``).

    Parameters
    ----------
    keras_model : tf_keras.Model
        A chain-shaped float Keras model (e.g. from :func:`to_keras`).

    Returns
    -------
    tf_keras.Model
        The same model when there is nothing to merge (or the model is not a
        chain); otherwise a new model with ``SeparableConv2D`` layers, whose
        ``rewrites`` list the merges after those of ``keras_model``. A depthwise
        convolution followed by an activation (published MobileNetV1:
        depthwise → BN → ReLU → pointwise) is left alone: Akida 1.0 cannot run it.
    """
    keras = _keras()
    layers = keras_model.layers
    pairs = [i for i in range(len(layers) - 1) if _is_separable_pair(layers[i], layers[i + 1])]
    if not pairs or not _chain(keras_model):
        return keras_model
    first = layers[0]
    x = inputs = keras.Input(tuple(keras_model.input_shape[1:]), name=first.name)
    assignments, merged = [], []
    skip = set(i + 1 for i in pairs)
    for i, layer in enumerate(layers[1:], start=1):
        if i in skip:
            continue
        if i in pairs:
            dw, pw = layer, layers[i + 1]
            new, weights = _separable_layer(keras, dw, pw)
            merged.append(f"{dw.name} + {pw.name}")
        else:
            new, weights = type(layer).from_config(layer.get_config()), layer.get_weights()
        x = new(x)
        assignments.append((new, weights))
    model = keras.Model(inputs, x, name=keras_model.name)
    for layer, weights in assignments:
        layer.set_weights(weights)
    model.rewrites = tuple(getattr(keras_model, "rewrites", ())) + (
        f"{', '.join(merged)}: depthwise convolution feeding a 1x1 convolution merged into one "
        "SeparableConv2D (Akida 1.0 runs depthwise convolutions only in separable layers; the "
        "depthwise bias moved into the pointwise bias; exact)",)
    model.input_flip = input_flip(keras_model)
    return model


def _separable_layer(keras, dw, pw):
    """(SeparableConv2D, its weights) computing depthwise ``dw`` then pointwise ``pw``: the
    depthwise bias moves into the pointwise bias."""
    dw_kernel, *dw_bias = dw.get_weights()
    pw_kernel, *pw_bias = pw.get_weights()
    bias = (pw_bias[0].astype(np.float64) if pw_bias
            else np.zeros(pw.filters, np.float64))
    if dw_bias:
        bias = bias + np.einsum("c,cf->f", dw_bias[0].astype(np.float64),
                                pw_kernel[0, 0].astype(np.float64))
    new = keras.layers.SeparableConv2D(
        pw.filters, dw.kernel_size, strides=dw.strides, padding=dw.padding,
        activation=pw.get_config()["activation"], use_bias=True,
        name=f"sep_{dw.name}")
    return new, [dw_kernel, pw_kernel, bias.astype(np.float32)]


def _check_samples(keras_model, samples) -> np.ndarray:
    from ...convert import _check_sample_dtype, _check_sample_values

    x = _check_sample_dtype(samples, "akida_workflows.datasets.preprocess, then to_nhwc")
    expected = tuple(keras_model.input_shape[1:])
    if x.ndim == 4 and tuple(x.shape[1:]) != expected and (
            x.shape[2], x.shape[3], x.shape[1]) == expected:
        # PyTorch's NCHW layout: converted here, flipped if the model takes flipped input.
        x = to_nhwc(x, flip=keras_model)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise IncompatibleModelError(
            f"samples have shape {x.shape}; the Keras model takes "
            f"(N, {', '.join(map(str, expected))}) NHWC (to_nhwc(x, flip=model)) or "
            f"(N, {expected[2]}, {expected[0]}, {expected[1]}) NCHW.")
    return _check_sample_values(x)


#: Known causes of QuantizeML failures on the Keras path, per Akida version.
_KERAS_CAUSES = {
    "v1": (("impossible to quantize inputs",
            "Akida 1.0's input layer must be a convolution: it runs a fully connected input "
            "layer only on inputs of at most 4 bits, and images are 8-bit; start the model "
            "with a Conv2d, or convert it for Akida 2.0, which takes a Linear first"),),
    "v2": (("impossible to quantize inputs",
            "start the model with a Conv2d, or take the ONNX path, quantize_onnx, which runs "
            "a Linear input layer on Akida 2.0"),),
}


def quantize_4bit(keras_model, samples, akida_version: str = "v1", weight_bits: int = 4,
                  activation_bits: int = 4, input_weight_bits: int = 8,
                  per_channel: bool = True, *, weight_calibration: str = "maxabs",
                  weight_percentile: float = 99.9, num_samples: int | None = None,
                  batch_size: int | None = None, calibration_epochs: int = 1,
                  feature_bits: int | None = None):
    """Quantize a tf-keras model with QuantizeML's Keras quantizer, calibrating on samples.

    **Weights** get one scale per output channel. ``weight_calibration`` picks
    each channel's range with :func:`akida_workflows.int4.quantize_per_channel`
    (``narrow_range=True``, QuantizeML's convention) and writes the resulting
    codes into the quantized model, so the Akida model that
    :func:`convert_keras` builds carries exactly those codes (checked per layer).
    The first layer's weights use ``input_weight_bits``, the others ``weight_bits``.

    **Activations** are calibrated by QuantizeML: the float model runs on the
    samples and each quantized activation's range is an exponential moving
    average (momentum 0.9) of the largest ``|activation|`` of each batch.
    QuantizeML offers no percentile for activations; what can be chosen is how
    many samples, in which batch size, and how many passes
    (``num_samples``, ``batch_size``, ``calibration_epochs``). Larger batches give
    larger (max-like) ranges, batches of one a running mean of per-image maxima.

    Parameters
    ----------
    keras_model : tf_keras.Model
        Float model, e.g. from :func:`to_keras`.
    samples : numpy.ndarray
        Float NHWC calibration inputs, preprocessed as for training.
    akida_version : {"v1", "v2"}, default "v1"
        Akida 1.0 (AKD1000/AKD1500: 1/2/4-bit weights, bounded activations,
        per-tensor activations) or Akida 2.0.
    weight_bits, activation_bits : int, default 4
    input_weight_bits : int, default 8
        Bit-width of the first layer's weights.
    per_channel : bool, default True
        One weight scale per output channel (QuantizeML's default); ``False``
        uses one scale per layer.
    weight_calibration : {"maxabs", "mse", "percentile"}, default "maxabs"
        Per-channel weight calibrator (see :func:`akida_workflows.int4.quantize_per_channel`):
        ``"maxabs"`` is QuantizeML's own (each channel's largest weight maps to the
        largest code); ``"mse"`` clips each channel where the squared error of its
        codes is least; ``"percentile"`` clips at ``weight_percentile`` of ``|w|``.
    weight_percentile : float, default 99.9
        In ``(0, 100]``, for ``weight_calibration="percentile"``.
    num_samples : int, optional
        Calibrate on the first ``num_samples`` samples (default: all).
    batch_size : int, optional
        Calibration batch size. The default, ``None``, is QuantizeML's: one sample
        per batch.
    calibration_epochs : int, default 1
        Passes over the calibration samples.
    feature_bits : {1, 2, 4}, optional
        Bit-width of the activations of the model's *last* ReLU (the feature
        layer: the output of a feature extractor, or the activation feeding the
        classifier of a full model). ``1`` gives the binary features that Akida
        1.0 edge learning takes (:func:`akida_workflows.edge.to_edge_model`).
        QuantizeML leaves a model's final activation unquantized; with
        ``feature_bits`` it gets an output quantizer of that width, calibrated
        like the others (a ``q_config`` entry for that layer, which QuantizeML
        applies over ``qparams``). Default: ``activation_bits``, and a final activation
        stays as QuantizeML leaves it.

    Returns
    -------
    tf_keras.Model
        The quantized model. Its ``akida_version`` attribute records the target,
        ``weight_calibration`` the calibrator, and ``weight_calibration_report``
        one dict per weight tensor (layer, bits, channels, clipped channels,
        weight SQNR with max-abs and as deployed).

    Raises
    ------
    IncompatibleModelError
        Bad samples or calibration options, an unbounded ReLU for Akida 1.0
        (named, with the fix), or a QuantizeML failure.
    """
    version = _version(akida_version)
    x = _check_samples(keras_model, samples)
    _check_options(akida_version, weight_bits, input_weight_bits, weight_calibration,
                   weight_percentile, num_samples, batch_size, calibration_epochs)
    x = _first_samples(x, num_samples)
    feature_config = _feature_config(keras_model, feature_bits)
    if akida_version == "v1":
        keras_model = _prepare_akida1(keras_model, per_channel)
    bits = (weight_bits, activation_bits, input_weight_bits)
    quantized = _quantize(keras_model, x, version, akida_version, bits, per_channel,
                          batch_size, calibration_epochs, feature_config)
    report = _calibrate_weights(quantized, weight_calibration, weight_percentile)
    quantized.akida_version = akida_version
    quantized.rewrites = tuple(getattr(keras_model, "rewrites", ()))
    quantized.weight_calibration = weight_calibration
    quantized.weight_calibration_report = report
    quantized.feature_bits = feature_bits
    return quantized


def _check_options(akida_version, weight_bits, input_weight_bits, weight_calibration,
                   weight_percentile, num_samples, batch_size, calibration_epochs) -> None:
    """Refuse calibration options and bit-widths that QuantizeML or Akida cannot take."""
    from ...int4 import METHODS

    if weight_calibration not in METHODS:
        raise IncompatibleModelError(
            f"weight_calibration must be one of {METHODS}, got {weight_calibration!r}")
    if (isinstance(weight_percentile, bool) or not isinstance(weight_percentile, (int, float))
            or not 0 < weight_percentile <= 100):
        raise IncompatibleModelError(
            f"weight_percentile must be a number in (0, 100], got {weight_percentile!r}")
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size),
                        ("calibration_epochs", calibration_epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise IncompatibleModelError(f"{name} must be a positive integer, got {value!r}")
    if akida_version == "v1" and weight_bits not in (1, 2, 4):
        raise IncompatibleModelError(
            f"weight_bits={weight_bits!r}: Akida 1.0 layers hold 1, 2 or 4-bit weights "
            "(and input_weight_bits up to 8 for the input layer)")
    if weight_calibration != "maxabs" and min(weight_bits, input_weight_bits) < 2:
        raise IncompatibleModelError(
            f"weight_calibration={weight_calibration!r} needs weights of 2 bits or more "
            "(1-bit weights have no range to clip); use weight_calibration='maxabs'")


def _first_samples(x, num_samples: int | None) -> np.ndarray:
    """The first ``num_samples`` calibration samples (all without)."""
    if num_samples is None:
        return x
    if num_samples > len(x):
        raise IncompatibleModelError(
            f"num_samples={num_samples} but only {len(x)} calibration samples were given")
    return x[:num_samples]


def _prepare_akida1(keras_model, per_channel: bool):
    """The float model ready for Akida 1.0: per-channel weights and bounded ReLUs are
    required, depthwise + pointwise pairs merged (:func:`separable_blocks`)."""
    if not per_channel:
        raise IncompatibleModelError(
            "per_channel=False cannot reach Akida 1.0: CNN2SNN 2.19 needs one activation step "
            "per output channel and fails on per-tensor weight scales ('Unexpected tensor "
            "shape'). Use per_channel=True; study per-tensor error with akida_workflows.int4.")
    loose = unbounded_relus(keras_model)
    if loose:
        raise IncompatibleModelError(
            f"Akida 1.0 needs bounded activations, but ReLU layer(s) {', '.join(loose)} "
            "have no maximum. In PyTorch use nn.ReLU6() or a clamp "
            "(nn.Hardtanh(0, max_value)) instead of nn.ReLU(), retrain or fine-tune, and "
            "convert again.", nodes=loose,
            reason="Akida 1.0 needs bounded activations; this ReLU has no maximum",
            fix="use nn.ReLU6() or a clamp (nn.Hardtanh(0, max_value)) instead of nn.ReLU(), "
                "then retrain or fine-tune")
    return separable_blocks(keras_model)


def _quantize(keras_model, x, version, akida_version: str, bits: tuple, per_channel: bool,
              batch_size, calibration_epochs: int, feature_config):
    """QuantizeML's quantization of ``keras_model`` calibrated on ``x``, with ``bits``
    (weight, activation, input weight); its failures become IncompatibleModelError."""
    from quantizeml.models import QuantizationParams

    weight_bits, activation_bits, input_weight_bits = bits
    qparams = QuantizationParams(
        weight_bits=weight_bits, activation_bits=activation_bits,
        input_weight_bits=input_weight_bits,
        per_tensor_activations=(akida_version == "v1"),
    )
    kwargs = {"samples": x, "num_samples": len(x), "epochs": calibration_epochs}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    for attempt in (1, 2):
        try:
            quantized = _quantize_once(keras_model, qparams, feature_config, per_channel,
                                       version, kwargs)
        except IncompatibleModelError:
            raise
        except Exception as exc:
            race = _autograph_binding_race(exc)
            if attempt == 2 or race is None:
                raise _quantize_error(exc, akida_version) from exc
            # Seen once in about twenty runs of one quantization (a notebook kernel in CI),
            # never reproduced alone: TensorFlow's autograph called one of QuantizeML's
            # tf.function methods with its binding object (TfMethodTarget) as ``self``.
            # Quantization builds a new model from the float one each time, so it is tried
            # once more; the log and ``quantization_attempts`` say so (a warning would
            # change the output of a notebook that is otherwise the same).
            _LOG.info("QuantizeML's tracing failed inside TensorFlow's autograph (%s); "
                      "quantizing once more", race)
            gc.collect()
            continue
        quantized.quantization_attempts = attempt
        return quantized
    raise AssertionError("unreachable")


def _autograph_binding_race(exc: BaseException) -> str | None:
    """The line of ``exc`` (or of an exception it chains to) that shows TensorFlow's
    'TfMethodTarget' binding failure (``self`` of a traced method was the binding object,
    not the layer), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for line in str(exc).splitlines():
            if "'TfMethodTarget' object has no attribute" in line:
                return line.strip()
        exc = exc.__cause__ or exc.__context__
    return None


def _quantize_error(exc: BaseException, akida_version: str) -> IncompatibleModelError:
    """QuantizeML's failure ``exc`` as an IncompatibleModelError, its causes explained."""
    from ...errors import describe_exception

    text = describe_exception(exc, causes=_KERAS_CAUSES.get(akida_version, ()))
    return IncompatibleModelError(f"QuantizeML could not quantize the Keras model: {text}")


def _quantize_once(keras_model, qparams, feature_config, per_channel: bool, version,
                   kwargs: dict):
    """One QuantizeML quantization (two passes for per-tensor weights)."""
    from cnn2snn import set_akida_version
    from quantizeml.models import dump_config, quantize

    # Calibration runs Keras' predict, whose per-batch progress bar is noise here.
    with set_akida_version(version), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # q_config has priority over qparams for the layers it names: the feature
        # layer's output quantizer is set in the same (single) quantization pass.
        quantized = quantize(keras_model, qparams=qparams, q_config=feature_config, **kwargs)
        if not per_channel:
            config = dump_config(quantized)
            for layer_cfg in config.values():
                if isinstance(layer_cfg, dict) and "weight_quantizer" in layer_cfg:
                    layer_cfg["weight_quantizer"]["axis"] = None
            quantized = quantize(keras_model, q_config=config, **kwargs)
    return quantized


def _feature_relu(keras_model, feature_bits) -> str | None:
    """The name of the model's last ReLU, which ``feature_bits`` quantizes (None without)."""
    if feature_bits is None:
        return None
    if isinstance(feature_bits, bool) or feature_bits not in (1, 2, 4):
        raise IncompatibleModelError(
            f"feature_bits must be 1, 2 or 4 (Akida 1.0 activation widths), got {feature_bits!r}")
    relus = [layer.name for layer in keras_model.layers if type(layer).__name__ == "ReLU"]
    if not relus:
        raise IncompatibleModelError(
            "feature_bits needs a ReLU/ReLU6 feature layer (its activations are the features); "
            "the model has none: end the feature extractor with nn.ReLU6()")
    return relus[-1]


def _feature_config(keras_model, feature_bits) -> dict | None:
    """The ``q_config`` that gives the feature layer (:func:`_feature_relu`) an unsigned
    per-tensor output quantizer of ``feature_bits``; None without ``feature_bits``.

    QuantizeML applies ``q_config`` over ``qparams`` for the layers it names, so the
    feature layer is quantized in the same (single) pass as the others.
    """
    feature_layer = _feature_relu(keras_model, feature_bits)
    if feature_layer is None:
        return None
    return {feature_layer: {
        "output_quantizer": {"bitwidth": feature_bits, "signed": False,
                             "axis": "per-tensor", "buffer_bitwidth": 32},
        "buffer_bitwidth": 32}}


def fine_tune(quantized_model, x, y, epochs: int = 3, lr: float = 1e-4, batch_size: int = 64,
              seed: int = 0, verbose: int = 0, callbacks=None):
    """Quantization-aware training of a QuantizeML Keras model, in place.

    The quantized weights keep their bit-widths; training adjusts the float
    weights behind them (straight-through estimator), which recovers accuracy
    lost to 4-bit calibration.

    Parameters
    ----------
    quantized_model : tf_keras.Model
        From :func:`quantize_4bit`.
    x : numpy.ndarray
        Float NHWC training inputs.
    y : numpy.ndarray
        Integer labels.
    epochs : int, default 3
    lr : float, default 1e-4
    batch_size : int, default 64
    seed : int, default 0
        Seeds Keras/TensorFlow; TensorFlow's op determinism is switched on
        (process-wide) so that two runs give the same weights.
    verbose : int, default 0
        Keras' verbosity.
    callbacks : list of tf_keras.callbacks.Callback, optional
        Passed to ``fit`` (e.g. to judge each epoch; the model is compiled and
        traced once for all epochs, so a callback costs no recompilation).

    Returns
    -------
    list of float
        Training loss of each epoch.
    """
    keras = _keras()
    import tensorflow as tf

    x = _check_samples(quantized_model, x)
    y = np.asarray(y, dtype=np.int64)
    if len(y) != len(x):
        raise IncompatibleModelError(f"{len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    quantized_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = quantized_model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True,
                                  verbose=verbose, callbacks=callbacks)
    return [float(v) for v in history.history["loss"]]
