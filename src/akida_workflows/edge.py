"""Akida 1.0 edge learning: new classes learned on the chip, on top of a converted backbone.

The AKD1000 learns on the device itself: a last ``FullyConnected`` layer with
1-bit weights, compiled with ``akida.AkidaUnsupervised``, is trained by
``model.fit`` one sample at a time, with no gradient and no host. It takes
binary (1-bit) features, so the backbone must end in a layer with 1-bit
activations:

>>> quantized = quantize_4bit(to_keras(model), x_nhwc, feature_bits=1)   # doctest: +SKIP
>>> backbone = convert_keras(quantized)                                 # doctest: +SKIP
>>> edge = to_edge_model(backbone, 10, samples=x_nhwc[:256])             # doctest: +SKIP
>>> seconds = learn(edge, x_few, y_few)                                 # doctest: +SKIP
>>> edge.predict_classes(x_test, num_classes=10)                        # doctest: +SKIP

Each class owns ``neurons_per_class`` neurons (contiguous: neuron ``i`` belongs
to class ``i // neurons_per_class``). A neuron connects to ``num_weights`` of
the binary features, chosen when it first learns, and the class of its most
active neuron is the prediction. What is learned lives in the layer's variables,
which ``.fbz`` files keep (:func:`akida_workflows.deploy.save` /
:func:`~akida_workflows.deploy.load`).

Every function here leaves the model it is given unchanged when it refuses its
input (:class:`~akida_workflows.errors.IncompatibleModelError` for a model that
cannot learn, :class:`~akida_workflows.errors.InvalidInputError` for bad
samples or labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import IncompatibleModelError, InvalidInputError

__all__ = [
    "EdgeLayerInfo",
    "LEARNING_LAYER",
    "edge_info",
    "features",
    "choose_num_weights",
    "to_edge_model",
    "learn",
    "learned_variables",
    "few_shot_indices",
    "nearest_class_mean",
]

#: Name of the learning layer that :func:`to_edge_model` appends.
LEARNING_LAYER = "edge_learning"
#: Variables of an Akida 1.0 learning layer that learning changes.
_LEARNED = ("weights", "threshold", "threshold_learning", "act_step", "thswap")


@dataclass(frozen=True)
class EdgeLayerInfo:
    """The learning layer of a compiled Akida 1.0 model.

    Attributes
    ----------
    name : str
    num_classes, neurons_per_class : int
    num_weights : int
        Non-zero (1-bit) weights per neuron: the features each neuron listens to.
    num_features : int
        Inputs of the layer (binary features of the backbone).
    learning_competition : float
    """

    name: str
    num_classes: int
    neurons_per_class: int
    num_weights: int
    num_features: int
    learning_competition: float

    def __str__(self) -> str:
        return (f"learning layer {self.name}: {self.num_classes} classes x "
                f"{self.neurons_per_class} neurons, {self.num_weights} of {self.num_features} "
                f"binary features per neuron (learning_competition {self.learning_competition:g})")


def _ip_version(model) -> str:
    return str(model.ip_version).split(".")[-1]


def edge_info(model) -> EdgeLayerInfo | None:
    """The learning layer of ``model``, or ``None`` if it was not compiled for learning.

    Parameters
    ----------
    model : akida.Model

    Returns
    -------
    EdgeLayerInfo or None
    """
    learning = getattr(model, "learning", None)
    if learning is None or not model.layers:
        return None
    layer = model.layers[-1]
    num_classes = int(learning.num_classes)
    units = int(layer.parameters.units)
    return EdgeLayerInfo(
        name=layer.name, num_classes=num_classes, neurons_per_class=units // num_classes,
        num_weights=int(learning.num_weights),
        num_features=int(np.prod(layer.input_dims)),
        learning_competition=round(float(learning.learning_competition), 6))


def _check_backbone(model) -> int:
    """The number of binary features of an Akida 1.0 backbone; IncompatibleModelError if
    it cannot feed a learning layer."""
    if type(model).__name__ != "Model" or not hasattr(model, "layers"):
        raise IncompatibleModelError(
            f"expected an akida.Model (from keras_bridge.convert_keras), got {type(model).__name__}")
    if _ip_version(model) != "v1":
        raise IncompatibleModelError(
            f"edge learning runs on Akida 1.0 (AKD1000/AKD1500) only; this model is Akida "
            f"{_ip_version(model)}. Convert for Akida 1.0: keras_bridge.quantize_4bit(..., "
            "akida_version='v1', feature_bits=1), then convert_keras.")
    if getattr(model, "learning", None) is not None:
        raise IncompatibleModelError(
            f"the model already ends in a learning layer ({model.layers[-1].name}): learn on it "
            "with edge.learn, or give the backbone without it")
    last = model.layers[-1]
    params = last.parameters
    bits = int(params.act_bits) if hasattr(params, "act_bits") else None
    active = bool(params.activation) if hasattr(params, "activation") else False
    if not active or bits != 1:
        what = "no activation" if not active else f"{bits}-bit activations"
        raise IncompatibleModelError(
            f"the backbone's last layer {last.name} has {what}; Akida edge learning takes "
            "binary (1-bit) features. End the backbone with its feature layer (remove the "
            "classifier: akida_model.pop_layer(), or convert the feature extractor) and "
            "quantize with keras_bridge.quantize_4bit(..., feature_bits=1).",
            nodes=[last.name])
    return int(np.prod(last.output_dims))


def _check_inputs(model, inputs, what: str = "inputs") -> np.ndarray:
    """A contiguous float32/uint8 NHWC batch of the model's input shape, else InvalidInputError."""
    x = np.asarray(inputs)
    shape = tuple(int(d) for d in model.input_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise InvalidInputError(
            f"{what} must be a batch of shape (N, {', '.join(map(str, shape))}) (NHWC, as "
            f"keras_bridge.to_nhwc gives), got {x.shape}")
    if len(x) == 0:
        raise InvalidInputError(f"{what} is an empty batch: give at least one sample")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidInputError(
            f"{what} have dtype {x.dtype}; give float inputs preprocessed as for training "
            "(or uint8 for a model whose input layer takes 8-bit images)")
    if not np.isfinite(x).all():
        raise InvalidInputError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def features(backbone, inputs, *, batch_size: int = 256) -> np.ndarray:
    """The backbone's output activations on ``inputs``, one flat row per sample.

    Parameters
    ----------
    backbone : akida.Model
        A model whose last layer has an activation (``forward`` is used:
        Akida's ``predict`` refuses such models).
    inputs : numpy.ndarray
        NHWC batch of the model's input shape.
    batch_size : int, default 256

    Returns
    -------
    numpy.ndarray
        ``(N, features)`` integer codes (0/1 for a 1-bit feature layer).
    """
    x = _check_inputs(backbone, inputs)
    out = [backbone.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    out = np.concatenate(out)
    return out.reshape(len(out), -1)


def choose_num_weights(binary_features) -> int:
    """Weights per neuron for binary features: the mean number of active features.

    A learning neuron connects to ``num_weights`` of its inputs, picked among the
    active ones of the samples it learns. BrainChip's guidance is to match it to
    the number of active (non-zero) inputs of a typical sample: fewer weights
    ignore part of each pattern, more cannot all be placed on active inputs.
    This takes the mean count over the given samples, rounded, at least 1.

    Parameters
    ----------
    binary_features : numpy.ndarray
        ``(N, features)`` from :func:`features`.

    Returns
    -------
    int
    """
    f = np.asarray(binary_features)
    if f.ndim != 2 or len(f) == 0:
        raise InvalidInputError(f"expected (N, features) binary features, got {f.shape}")
    return max(1, int(round(float((f != 0).sum(axis=1).mean()))))


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def to_edge_model(akida_model, num_classes: int, neurons_per_class: int = 5,
                  num_weights: int | None = None, learning_competition: float = 0.1, *,
                  samples=None, seed: int | None = 0):
    """A copy of an Akida 1.0 backbone with a compiled learning layer appended.

    Parameters
    ----------
    akida_model : akida.Model
        Akida 1.0 backbone whose last layer emits 1-bit activations, e.g.
        :func:`~akida_workflows.keras_bridge.convert_keras` of a model
        quantized with ``quantize_4bit(..., feature_bits=1)``. It is not modified.
    num_classes : int
        Classes the layer can learn (labels ``0 .. num_classes - 1``).
    neurons_per_class : int, default 5
        Neurons of each class: several let a class keep several prototypes.
    num_weights : int, optional
        Non-zero weights per neuron. By default :func:`choose_num_weights` on
        the backbone's features of ``samples`` (the mean number of active
        binary features per sample).
    learning_competition : float, default 0.1
        In ``[0, 1]``: how strongly neurons of a class compete for a sample
        (``akida.AkidaUnsupervised``).
    samples : numpy.ndarray, optional
        NHWC inputs to measure the feature sparsity; needed when
        ``num_weights`` is not given.
    seed : int or None, default 0
        Akida's ``compile`` connects each neuron to ``num_weights`` inputs
        drawn at random from an unseeded generator, so two compilations learn
        differently. With a seed, those initial connections are redrawn the same
        way (``num_weights`` distinct inputs per neuron, weight 1) from
        ``numpy.random.default_rng(seed)``: learning is then reproducible.
        ``None`` keeps Akida's draw.

    Returns
    -------
    akida.Model
        The backbone's layers plus a ``FullyConnected`` learning layer named
        :data:`LEARNING_LAYER` (``num_classes * neurons_per_class`` units,
        1-bit weights, no activation), compiled with
        ``akida.AkidaUnsupervised``.

    Raises
    ------
    IncompatibleModelError
        The model is not Akida 1.0, already learns, or its last layer does not
        emit 1-bit activations.
    InvalidInputError
        Bad counts, competition or samples, or ``num_weights`` larger than the
        number of features.
    """
    import akida

    n_features = _check_backbone(akida_model)
    num_classes = _positive_int("num_classes", num_classes)
    neurons_per_class = _positive_int("neurons_per_class", neurons_per_class)
    if (isinstance(learning_competition, bool)
            or not isinstance(learning_competition, (int, float))
            or not 0 <= learning_competition <= 1):
        raise InvalidInputError(
            f"learning_competition must be a number in [0, 1], got {learning_competition!r}")
    if num_weights is None:
        if samples is None:
            raise InvalidInputError(
                "give num_weights, or samples to choose it from the feature sparsity")
        num_weights = choose_num_weights(features(akida_model, samples))
    num_weights = _positive_int("num_weights", num_weights)
    if num_weights > n_features:
        raise InvalidInputError(
            f"num_weights={num_weights} but the backbone has only {n_features} features")
    model = akida.Model(layers=list(akida_model.layers))
    model.add(akida.FullyConnected(name=LEARNING_LAYER, units=num_classes * neurons_per_class,
                                   weights_bits=1, activation=False))
    model.compile(optimizer=akida.AkidaUnsupervised(
        num_weights=num_weights, num_classes=num_classes,
        learning_competition=float(learning_competition)))
    if seed is not None:
        _seed_connections(model.layers[-1], num_weights, seed)
    return model


def _seed_connections(layer, num_weights: int, seed: int) -> None:
    """Redraw the initial connections Akida's compile made: ``num_weights`` distinct
    inputs per neuron with weight 1, from a seeded generator."""
    weights = np.array(layer.get_variable("weights"))
    flat = np.zeros((int(np.prod(weights.shape[:-1])), weights.shape[-1]), dtype=weights.dtype)
    rng = np.random.default_rng(seed)
    for neuron in range(flat.shape[1]):
        flat[rng.choice(len(flat), num_weights, replace=False), neuron] = 1
    layer.set_variable("weights", flat.reshape(weights.shape))


def _check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise InvalidInputError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise InvalidInputError(f"{len(y)} labels for {n} samples")
    bad = y[(y < 0) | (y >= num_classes)]
    if len(bad):
        raise InvalidInputError(
            f"labels must be in 0..{num_classes - 1} (the learning layer has {num_classes} "
            f"classes), got {bad[:5].tolist()}")
    return np.ascontiguousarray(y, dtype=np.int32)


def learn(model, inputs, labels) -> float:
    """Learn ``inputs`` with their ``labels`` on the learning layer of ``model``, in place.

    Samples are checked first (shape, dtype, finite values, labels in range),
    so a refused call leaves the model as it was.

    Parameters
    ----------
    model : akida.Model
        From :func:`to_edge_model` (or an ``.fbz`` of one, loaded again).
    inputs : numpy.ndarray
        NHWC batch of the model's input shape (float, as for training).
    labels : numpy.ndarray
        Integer classes in ``0 .. num_classes - 1``, one per sample.

    Returns
    -------
    float
        Seconds spent in ``model.fit`` (backbone and learning, software backend).

    Raises
    ------
    IncompatibleModelError
        The model has no learning layer.
    InvalidInputError
        Inputs or labels of the wrong shape, dtype or range, or an empty batch.
    """
    info = edge_info(model)
    if info is None:
        raise IncompatibleModelError(
            "the model has no learning layer: make one with edge.to_edge_model(backbone, "
            "num_classes)")
    x = _check_inputs(model, inputs)
    y = _check_labels(labels, len(x), info.num_classes)
    start = time.perf_counter()
    model.fit(x, y)
    return time.perf_counter() - start


def learned_variables(model) -> dict[str, np.ndarray]:
    """Copies of the learning layer's variables (weights, thresholds), to compare or save.

    Parameters
    ----------
    model : akida.Model
        A model with a learning layer.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    if edge_info(model) is None:
        raise IncompatibleModelError("the model has no learning layer")
    layer = model.layers[-1]
    return {name: np.array(layer.get_variable(name)) for name in layer.get_variable_names()
            if name in _LEARNED}


def few_shot_indices(labels, shots: int, classes=None, *, seed: int = 0) -> np.ndarray:
    """Indices of ``shots`` samples of each class, drawn without replacement.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels of the pool to draw from.
    shots : int
    classes : sequence of int, optional
        Default: every class present in ``labels``.
    seed : int, default 0
        The draw is a function of the seed (``numpy.random.default_rng``).

    Returns
    -------
    numpy.ndarray
        Indices, grouped by class in the order of ``classes``.
    """
    labels = np.asarray(labels)
    shots = _positive_int("shots", shots)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels) if classes is None else classes
    picked = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise InvalidInputError(f"class {c} has {len(pool)} samples, fewer than {shots} shots")
        picked.append(rng.choice(pool, shots, replace=False))
    return np.concatenate(picked)


def nearest_class_mean(train_features, train_labels, test_features) -> np.ndarray:
    """Classes predicted by the nearest class mean (Euclidean) of the training features.

    The float reference for few-shot learning on the same features: each class
    is the mean of its examples' features, each test sample goes to the nearest.

    Parameters
    ----------
    train_features : numpy.ndarray
        ``(N, F)``.
    train_labels : numpy.ndarray
        ``(N,)`` integer classes.
    test_features : numpy.ndarray
        ``(M, F)``.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` predicted classes.
    """
    f = np.asarray(train_features, dtype=np.float64).reshape(len(train_features), -1)
    t = np.asarray(test_features, dtype=np.float64).reshape(len(test_features), -1)
    y = np.asarray(train_labels)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    distances = ((t[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return classes[np.argmin(distances, axis=1)]
