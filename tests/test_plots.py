from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from akida_workflows.evaluate import wilson_interval  # noqa: E402
from akida_workflows.plots import (  # noqa: E402
    accuracy_per_seed_figure,
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


# --- plot_mapping ---------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from matplotlib.patches import FancyBboxPatch  # noqa: E402

from akida_workflows.deploy import LayerMapping, MapReport  # noqa: E402
from akida_workflows.plots import MAPPING_COLORS, mapping_figure, plot_mapping  # noqa: E402

PADDING_REASON = "Only padding 'Same' and 'SameUpper' are supported."
LONG_REASON = ("Bad mapping on skip connection. No valid merge layer. Add layer requires an "
               "outbound that is mappable on a CNP. " * 3)


def _report(n_compute=4, software=(1,), reason=PADDING_REASON, device="SixNodesIPv2"):
    layers = [LayerMapping("quantize", "Quantizer", "software", "", "", False)]
    for i in range(n_compute):
        sw = i in software
        layers.append(LayerMapping(
            f"/{2 * i}/Conv", "InputConv2D" if i == 0 else "Conv2D",
            "software" if sw else "hardware", "" if sw else ("1 HRC" if i == 0 else f"{i} CNP1"),
            reason if sw else "", True))
    layers.append(LayerMapping("dequantizer", "Dequantizer", "hardware", "", "", False))
    return MapReport(device=device, layers=layers, np_counts={"CNP1": 3})


def _boxes(ax):
    return [p for p in ax.patches if isinstance(p, FancyBboxPatch)]


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_plot_mapping_one_box_per_layer_coloured_by_backend():
    report = _report(4, software=(1,))
    ax = plot_mapping(report, title="model")
    boxes = _boxes(ax)
    assert len(boxes) == len(report.layers)
    kinds = ["none", "hardware", "software", "hardware", "hardware", "none"]
    for box, kind in zip(boxes, kinds):
        assert matplotlib.colors.same_color(box.get_facecolor(), MAPPING_COLORS[kind][0])
    texts = _texts(ax)
    assert "1 HRC" in texts and "2 CNP1" in texts and "in software" in texts
    assert any("Only padding 'Same'" in t for t in texts)
    assert report.summary_line() in texts and "model" in texts
    # Boxes run left to right along the data flow, on one row for six layers.
    xs = [b.get_x() for b in boxes]
    assert xs == sorted(xs) and len({b.get_y() for b in boxes}) == 1


def test_plot_mapping_labels_fit_inside_their_boxes():
    report = _report(6, software=(1, 4), reason=LONG_REASON)
    report.layers[2].name = "/features/features.3/block/conv_with_a_very_long_name/Conv"
    ax = plot_mapping(report)
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [b.get_window_extent(renderer) for b in _boxes(ax)]
    for text in ax.texts:
        if not text.get_text() or text.get_text() == report.summary_line():
            continue
        extent = text.get_window_extent(renderer)
        assert any(b.x0 <= extent.x0 and extent.x1 <= b.x1 and b.y0 <= extent.y0
                   and extent.y1 <= b.y1 for b in boxes), text.get_text()
    # The long reason is cut with an ellipsis, not spilled out of the box.
    assert any(t.endswith("…") for t in _texts(ax))


def test_plot_mapping_wraps_forty_layers_into_rows():
    small, large = _report(3), _report(40, software=(5, 17))
    ax_small, ax_large = plot_mapping(small), plot_mapping(large)
    rows = {round(b.get_y(), 3) for b in _boxes(ax_large)}
    assert len(rows) >= 6
    # Same width, taller figure; boxes keep their size (readable whatever the model).
    assert ax_large.figure.get_figwidth() <= 10.0
    assert ax_large.figure.get_figheight() > 3 * ax_small.figure.get_figheight()
    widths = {round(b.get_width(), 3) for b in _boxes(ax_large)}
    assert widths == {round(b.get_width(), 3) for b in _boxes(ax_small)}


def test_plot_mapping_draws_into_a_given_axes():
    fig, ax = plt.subplots(figsize=(6, 4))
    assert plot_mapping(_report(4), ax=ax, legend=False) is ax
    assert ax.get_legend() is None
    # A 6-inch axes holds fewer boxes per row than the default 10-inch figure.
    assert len({round(b.get_y(), 3) for b in _boxes(ax)}) == 2


def test_plot_mapping_reads_layers_with_extra_fields():
    @dataclass
    class NotedMapping(LayerMapping):
        note: str = ""

    layers = [
        NotedMapping("conv", "Conv2D", "hardware", "4 CNP1", "", True),
        NotedMapping("add", "Add", "hardware", "", "", True, note="no NP needed"),
        NotedMapping("dense", "Dense1D", "software", "", "too wide", True, note="x"),
    ]
    ax = plot_mapping(MapReport(device="AKD1000", layers=layers))
    texts = _texts(ax)
    assert "no NP needed" in texts and "too wide" in texts
    assert [matplotlib.colors.to_hex(b.get_facecolor()) for b in _boxes(ax)] == [
        MAPPING_COLORS["hardware"][0], MAPPING_COLORS["hardware"][0],
        MAPPING_COLORS["software"][0]]


def test_plot_mapping_refuses_an_empty_report():
    with pytest.raises(ValueError, match="no layers"):
        plot_mapping(MapReport(device="AKD1000"))


def test_mapping_figure_stacks_models():
    fig = mapping_figure({"BrainChip's CNN": _report(4, software=(0, 1, 2)),
                          "ours": _report(5, software=())}, title="two models")
    assert len(fig.axes) == 2
    assert [t for t in _texts(fig.axes[0]) if t == "BrainChip's CNN"]
    assert fig.axes[0].get_legend() is None and fig.axes[1].get_legend() is not None
    assert fig.axes[0].get_position().y0 > fig.axes[1].get_position().y1


def test_plot_mapping_keeps_short_labels():
    layers = [LayerMapping("a", "Add", "software", "", "why", True)]
    assert {"a", "Add", "in software", "why"} <= set(_texts(plot_mapping(MapReport("X", layers))))


def test_accuracy_per_seed_figure_draws_every_run_with_its_interval():
    runs = {"float": [0.91, 0.90, 0.92], "Akida 2.0 8-bit": [0.91, 0.89, 0.92]}
    fig = accuracy_per_seed_figure(runs, 100, published={"MLP": 0.92, "FCN": 0.90})
    ax = fig.axes[0]
    containers = ax.containers  # one errorbar per seed
    assert len(containers) == 3
    seed1 = containers[1]
    ys = seed1.lines[0].get_ydata()
    assert np.allclose(ys, [90.0, 89.0])
    low, high = wilson_interval(90, 100)
    bar = seed1.lines[2][0].get_segments()[0]  # the float stage's vertical bar
    assert np.allclose(sorted(bar[:, 1]), [100 * low, 100 * high])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(runs)
    references = [line for line in ax.lines if line.get_transform() == ax.get_yaxis_transform()]
    assert sorted(line.get_ydata()[0] for line in references) == [90.0, 92.0]
    assert [t.get_text() for t in ax.texts] == ["MLP 92.0 %", "FCN 90.0 %"]
    assert "95 % Wilson interval, 100 test samples" in ax.get_title()
