from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from akida_workflows.plots import (  # noqa: E402
    confusion_matrix_figure,
    prediction_figure,
    sample_grid,
    training_curve,
)
from akida_workflows.training import TrainHistory  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_sample_grid_titles_are_labels():
    images = np.zeros((30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 10
    fig = sample_grid(images, labels, rows=2, cols=5, title="digits")
    axes = fig.axes
    assert len(axes) == 10
    assert [ax.get_title() for ax in axes] == [str(i) for i in range(10)]
    assert fig._suptitle.get_text() == "digits"


def test_sample_grid_with_fewer_images_and_class_names():
    fig = sample_grid(np.zeros((3, 28, 28), np.uint8), [0, 1, 2], classes=["a", "b", "c"],
                      rows=1, cols=4)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", ""]


def test_prediction_figure_probabilities():
    fig = prediction_figure(np.zeros((28, 28)), [0.0, 5.0, 0.0], true_label=1)
    bars = fig.axes[1].patches
    heights = [b.get_height() for b in bars]
    assert sum(heights) == pytest.approx(1.0)
    assert int(np.argmax(heights)) == 1
    assert fig.axes[1].get_ylabel() == "softmax probability"
    assert fig.axes[0].get_title() == "true: 1"


def test_confusion_matrix_figure_annotates_counts():
    cm = np.array([[5, 1], [0, 7]])
    fig = confusion_matrix_figure(cm, classes=["x", "y"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["1", "5", "7"]
    assert fig.axes[0].get_xlabel() == "predicted class"


def test_training_curve():
    hist = TrainHistory(loss=[1.0, 0.5], accuracy=[0.5, 0.9])
    fig = training_curve({"cnn": hist})
    assert list(fig.axes[1].lines[0].get_ydata()) == [50.0, 90.0]
