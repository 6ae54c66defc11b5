"""Akida 1.0 edge learning (akida_workflows.edge) on a tiny synthetic problem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from akida_workflows import edge
from akida_workflows.errors import IncompatibleModelError, InvalidInputError

CLASSES = 4


def _patterns(n_per_class: int, seed: int):
    """8x8 images: class c is a bright 4x4 quadrant c (plus noise), NHWC float32."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, (CLASSES * n_per_class, 8, 8, 1)).astype(np.float32)
    y = np.repeat(np.arange(CLASSES), n_per_class)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 4 * r:4 * r + 4, 4 * q:4 * q + 4, 0] += 0.7
    return x, y


@pytest.fixture(scope="module")
def keras_model():
    """A feature extractor (64 ReLU6 features) rebuilt in tf-keras.

    Brightness-detecting convolutions (positive random weights), then features that
    each sum random weights over one quadrant's pooled map, biased so that the
    bright quadrant's 16 features are on and the others off once binarized (random
    signed weights give 1-bit features too sparse to learn from: 2-3 of 64).
    """
    import torch
    from torch import nn

    from akida_workflows.keras_bridge import to_keras

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 64), nn.ReLU6()).eval()
    weights = torch.zeros(64, 8, 4, 4)
    generator = torch.Generator().manual_seed(0)
    for j in range(64):
        r, q = divmod(j % 4, 2)
        weights[j, :, 2 * r:2 * r + 2, 2 * q:2 * q + 2] = torch.rand(8, 2, 2,
                                                                     generator=generator)
    with torch.no_grad():
        net[0].weight.abs_()
        net[0].bias.zero_()
        net[4].weight.copy_(0.1 * weights.reshape(64, -1))
        net[4].bias.fill_(-1.0)
    return to_keras(net, (1, 8, 8))


@pytest.fixture(scope="module")
def backbones(keras_model):
    """(1-bit backbone, 4-bit backbone): Akida 1.0 conversions of the feature extractor."""
    from akida_workflows.keras_bridge import convert_keras, quantize_4bit

    x, _ = _patterns(16, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binary = convert_keras(quantize_4bit(keras_model, x, feature_bits=1, batch_size=16))
        four_bit = convert_keras(quantize_4bit(keras_model, x, feature_bits=4, batch_size=16))
    return binary, four_bit


@pytest.fixture(scope="module")
def data():
    return _patterns(5, seed=2), _patterns(25, seed=3)


def _learner(backbone, **kwargs):
    kwargs = {"neurons_per_class": 2, "num_weights": 12, **kwargs}
    return edge.to_edge_model(backbone, CLASSES, **kwargs)


def _state(model):
    return {k: v.copy() for k, v in edge.learned_variables(model).items()}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_feature_bits_give_one_bit_features(backbones, data):
    binary, four_bit = backbones
    (x, _), _ = data
    assert int(binary.layers[-1].parameters.act_bits) == 1
    assert int(four_bit.layers[-1].parameters.act_bits) == 4
    f = edge.features(binary, x)
    assert f.shape == (len(x), 64)
    assert set(np.unique(f)) <= {0, 1} and 0 < f.mean() < 1


def test_feature_bits_refused(keras_model):
    from akida_workflows.keras_bridge import quantize_4bit

    for bits in (3, 8, True):
        with pytest.raises(IncompatibleModelError, match="feature_bits must be 1, 2 or 4"):
            quantize_4bit(keras_model, np.zeros((1, 8, 8, 1), np.float32),
                          feature_bits=bits)


def test_to_edge_model_copies_and_compiles(backbones, data):
    binary, _ = backbones
    (x, _), _ = data
    n_layers = len(binary.layers)
    model = edge.to_edge_model(binary, CLASSES, neurons_per_class=3, samples=x)
    info = edge.edge_info(model)
    assert (info.num_classes, info.neurons_per_class, info.num_features) == (CLASSES, 3, 64)
    assert info.num_weights == edge.choose_num_weights(edge.features(binary, x))
    assert info.name == edge.LEARNING_LAYER and info.learning_competition == pytest.approx(0.1)
    assert int(model.layers[-1].parameters.units) == 12
    assert len(binary.layers) == n_layers and edge.edge_info(binary) is None


def test_seeded_learning_is_reproducible(backbones, data):
    binary, _ = backbones
    (x, y), _ = data
    a, b, c = _learner(binary), _learner(binary), _learner(binary, seed=1)
    assert _same(_state(a), _state(b)) and not _same(_state(a), _state(c))
    per_neuron = _state(a)["weights"].reshape(-1, 8).sum(axis=0)
    assert per_neuron.tolist() == [12] * 8  # num_weights connections per neuron, as Akida's
    for model in (a, b):
        edge.learn(model, x, y)
    assert _same(_state(a), _state(b))


def test_choose_num_weights_is_mean_active_count():
    f = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]])
    assert edge.choose_num_weights(f) == 3  # (3 + 1 + 4) / 3 = 2.67 -> 3
    with pytest.raises(InvalidInputError):
        edge.choose_num_weights(np.zeros((0, 4)))


def test_learns_the_patterns(backbones, data):
    from akida_workflows.evaluate import evaluate

    binary, _ = backbones
    (x, y), (x_test, y_test) = data
    model = _learner(binary)
    before = model.predict_classes(x_test, num_classes=CLASSES)
    seconds = edge.learn(model, x, y)
    assert seconds > 0
    predicted = model.predict_classes(x_test, num_classes=CLASSES)
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.95, accuracy
    assert float((before == y_test).mean()) <= 0.5  # nothing learned yet: near chance
    # evaluate() scores each class by its best neuron: the same classes as predict_classes.
    assert evaluate(model, x_test, y_test).accuracy == pytest.approx(accuracy)
    weights = edge.learned_variables(model)["weights"]
    assert set(np.unique(weights)) == {0, 1}
    assert (weights.reshape(-1, weights.shape[-1]).sum(axis=0) <= 12).all()


def test_learned_weights_survive_save_and_load(backbones, data, tmp_path):
    from akida_workflows.deploy import load, save

    binary, _ = backbones
    (x, y), (x_test, _) = data
    model = _learner(binary)
    edge.learn(model, x, y)
    path = save(model, tmp_path / "learned.fbz", check_inputs=x_test[:8])
    reloaded = load(path)
    assert _same(edge.learned_variables(model), edge.learned_variables(reloaded))
    assert edge.edge_info(reloaded) == edge.edge_info(model)
    assert np.array_equal(reloaded.predict_classes(x_test, num_classes=CLASSES),
                          model.predict_classes(x_test, num_classes=CLASSES))
    # Learning goes on after loading, on both copies alike.
    edge.learn(model, x[:2], y[:2])
    edge.learn(reloaded, x[:2], y[:2])
    assert _same(edge.learned_variables(model), edge.learned_variables(reloaded))


def test_maps_on_akd1000_in_hardware(backbones):
    from akida_workflows.deploy import map_report

    report = map_report(_learner(backbones[0]), "AKD1000")
    assert report.fully_mapped
    assert any(row.name == edge.LEARNING_LAYER and "FNP3" in row.nps for row in report.layers)


def test_refuses_backbones_that_cannot_learn(backbones):
    import akida

    binary, four_bit = backbones
    with pytest.raises(IncompatibleModelError, match="4-bit activations.*feature_bits=1"):
        edge.to_edge_model(four_bit, CLASSES, num_weights=8)
    no_activation = akida.Model(layers=list(binary.layers)[:-1])
    no_activation.add(akida.FullyConnected(name="head", units=3, activation=False))
    with pytest.raises(IncompatibleModelError, match="no activation"):
        edge.to_edge_model(no_activation, CLASSES, num_weights=8)
    with pytest.raises(IncompatibleModelError, match="already ends in a learning layer"):
        edge.to_edge_model(_learner(binary), CLASSES, num_weights=8)
    v2 = akida.Model(layers=[akida.InputData(input_shape=(1, 1, 16), input_bits=8),
                             akida.Dense1D(units=4, output_bits=8)])
    with pytest.raises(IncompatibleModelError, match="Akida 1.0.*only.*v2"):
        edge.to_edge_model(v2, CLASSES, num_weights=8)
    assert edge.edge_info(binary) is None and len(binary.layers) == len(four_bit.layers)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_weights": 65}, "only 64 features"),
    ({"num_weights": None}, "give num_weights, or samples"),
    ({"num_weights": 0}, "num_weights must be a positive integer"),
    ({"neurons_per_class": 0}, "neurons_per_class must be"),
    ({"learning_competition": 1.5}, r"learning_competition must be a number in \[0, 1\]"),
])
def test_to_edge_model_refuses_bad_settings(backbones, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        _learner(backbones[0], **kwargs)


@pytest.mark.parametrize("inputs, labels, message", [
    (lambda x: x, lambda y: np.where(y == 3, CLASSES, y), r"labels must be in 0\.\.3.*\[4"),
    (lambda x: x, lambda y: y - 1, r"labels must be in 0\.\.3.*\[-1"),
    (lambda x: x, lambda y: y.astype(np.float32), "1-D integer array"),
    (lambda x: x, lambda y: y[:-1], "19 labels for 20 samples"),
    (lambda x: x[:, :4], lambda y: y, r"shape \(N, 8, 8, 1\)"),
    (lambda x: x.transpose(0, 3, 1, 2), lambda y: y, r"shape \(N, 8, 8, 1\)"),
    (lambda x: x.astype(np.int32), lambda y: y, "dtype int32"),
    (lambda x: np.where(x > 0.9, np.nan, x), lambda y: y, "NaN"),
    (lambda x: x[:0], lambda y: y[:0], "empty batch"),
])
def test_learn_refuses_bad_input_and_keeps_the_model(backbones, data, inputs, labels, message):
    (x, y), _ = data
    model = _learner(backbones[0])
    edge.learn(model, x[:4], y[:4])
    before = _state(model)
    with pytest.raises(InvalidInputError, match=message) as raised:
        edge.learn(model, inputs(x), labels(y))
    assert isinstance(raised.value, ValueError)
    assert _same(before, edge.learned_variables(model))


def test_learn_needs_a_learning_layer(backbones, data):
    (x, y), _ = data
    with pytest.raises(IncompatibleModelError, match="no learning layer"):
        edge.learn(backbones[0], x, y)


def test_nearest_class_mean_and_draws():
    f = np.array([[0.0, 0.0], [0.2, 0.0], [4.0, 4.0], [4.2, 4.0]])
    y = np.array([0, 0, 7, 7])
    assert edge.nearest_class_mean(f, y, np.array([[3.0, 3.5], [0.5, 0.1]])).tolist() == [7, 0]
    labels = np.repeat(np.arange(3), 10)
    a = edge.few_shot_indices(labels, 4, seed=5)
    assert np.array_equal(a, edge.few_shot_indices(labels, 4, seed=5))
    assert np.bincount(labels[a]).tolist() == [4, 4, 4] and len(set(a)) == 12
    assert not np.array_equal(a, edge.few_shot_indices(labels, 4, seed=6))
    with pytest.raises(InvalidInputError, match="fewer than 11 shots"):
        edge.few_shot_indices(labels, 11)


def test_cli_learn_and_info(backbones, data, tmp_path, capsys):
    from akida_workflows.cli import main
    from akida_workflows.deploy import load

    binary, _ = backbones
    (x, y), _ = data
    backbone_path, edge_path = tmp_path / "backbone.fbz", tmp_path / "edge.fbz"
    binary.save(str(backbone_path))
    _learner(binary).save(str(edge_path))
    untouched = edge_path.read_bytes()
    np.save(tmp_path / "x.npy", x.transpose(0, 3, 1, 2))  # NCHW, as convert takes
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "bad.npy", y + 1)
    args = ["--samples", str(tmp_path / "x.npy"), "--labels"]
    assert main(["learn", str(edge_path), *args, str(tmp_path / "y.npy"),
                 "-o", str(tmp_path / "learned.fbz")]) == 0
    out = capsys.readouterr().out
    assert "learned 20 samples" in out and "accuracy on them afterwards" in out
    learned, fresh = load(tmp_path / "learned.fbz"), load(edge_path)
    assert not _same(edge.learned_variables(learned), edge.learned_variables(fresh))
    assert edge_path.read_bytes() == untouched  # the input file is not modified
    accuracy = (learned.predict_classes(x, num_classes=CLASSES) == y).mean()
    assert f"accuracy on them afterwards {100 * accuracy:.1f} %" in out
    assert main(["learn", str(edge_path), *args, str(tmp_path / "bad.npy"),
                 "-o", str(tmp_path / "bad.fbz")]) == 2
    assert "labels must be in 0..3" in capsys.readouterr().err
    assert not (tmp_path / "bad.fbz").exists()
    assert main(["learn", str(backbone_path), *args, str(tmp_path / "y.npy"),
                 "-o", str(tmp_path / "x.fbz")]) == 3
    assert "no learning layer" in capsys.readouterr().err
    assert main(["learn", str(backbone_path), *args, str(tmp_path / "y.npy"), "--classes", "4",
                 "--neurons-per-class", "2", "-o", str(tmp_path / "new.fbz")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "learned.fbz")]) == 0
    out = capsys.readouterr().out
    assert "learning layer edge_learning: 4 classes x 2 neurons, 12 of 64 binary features" in out


def test_few_shot_figure_draws_each_method_per_group():
    from akida_workflows.plots import few_shot_figure

    shots = (1, 2, 5)
    acc = np.array([[0.2, 0.4, 0.6], [0.3, 0.5, 0.7]])
    fig = few_shot_figure(shots, {"a": {"seen": acc, "unseen": acc / 2}, "b": {"seen": acc}},
                          chance=0.1, title="t")
    seen, unseen = fig.axes
    assert (seen.get_title(), unseen.get_title()) == ("seen", "unseen")
    means = [line.get_ydata().tolist() for line in seen.lines if line.get_label() != "chance"]
    assert np.allclose(means, [[25, 45, 65], [25, 45, 65]])
    assert len(unseen.lines) == 2  # method "a" and chance; "b" has no unseen curve
    with pytest.raises(ValueError):
        few_shot_figure(shots, {})
