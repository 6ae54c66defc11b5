"""Figures of the gallery: sample grids, predictions, confusion matrices, hardware maps."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

__all__ = [
    "sample_grid",
    "prediction_figure",
    "confusion_matrix_figure",
    "training_curve",
    "batchnorm_scale_figure",
    "weight_distribution_figure",
    "sqnr_figure",
    "signals_per_class",
    "accuracy_per_seed_figure",
    "few_shot_figure",
    "plot_mapping",
    "mapping_figure",
]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def sample_grid(images, labels, classes=None, *, rows: int = 3, cols: int = 8, title: str = ""):
    """Show the first ``rows * cols`` images with their labels.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` uint8 images.
    labels : numpy.ndarray
    classes : sequence of str, optional
    rows, cols : int
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    n = min(rows * cols, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.4 * rows))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
            label = int(labels[i])
            ax.set_title(classes[label] if classes else str(label), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def prediction_figure(image, scores, true_label, classes=None, *, title: str = ""):
    """One image beside the model's class scores (softmax), true class highlighted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    names = list(classes) if classes else [str(i) for i in range(len(probs))]
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(7, 2.8), width_ratios=[1, 2])
    ax_img.imshow(np.squeeze(image), cmap="gray_r")
    ax_img.axis("off")
    ax_img.set_title(f"true: {names[int(true_label)]}")
    colors = ["tab:green" if i == int(true_label) else "tab:gray" for i in range(len(probs))]
    ax_bar.bar(range(len(probs)), probs, color=colors)
    ax_bar.set_xticks(range(len(probs)), names, rotation=45 if len(names[0]) > 2 else 0)
    ax_bar.set_ylim(0, 1)
    ax_bar.set_ylabel("softmax probability")
    ax_bar.set_xlabel("class")
    ax_bar.set_title(title or f"predicted: {names[int(probs.argmax())]}")
    fig.tight_layout()
    return fig


def confusion_matrix_figure(confusion, classes=None, *, title: str = "Confusion matrix",
                            unit: str = "images"):
    """Confusion matrix as a heat map with counts (rows: true class); ``unit`` labels the counts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    confusion = np.asarray(confusion)
    n = confusion.shape[0]
    names = list(classes) if classes else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(confusion, cmap="Blues")
    threshold = confusion.max() / 2 if confusion.size else 0
    fontsize = 7 if n > 6 else 11  # counts stay readable in a 2x2 matrix
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if confusion[i, j] > threshold else "black")
    # long class names ("myocardial infarction") wrap instead of squeezing the matrix
    wrapped = [textwrap.fill(name, 12) for name in names]
    ax.set_xticks(range(n), wrapped)
    ax.set_yticks(range(n), wrapped)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    # a colour bar as tall as the matrix, so that a long title never runs into it
    fig.colorbar(im, ax=ax, label=unit, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def training_curve(histories: dict, *, title: str = "Training"):
    """Loss and accuracy per epoch for one or more :class:`~akida_workflows.training.TrainHistory`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    for label, hist in histories.items():
        epochs = range(1, len(hist.loss) + 1)
        ax_loss.plot(epochs, hist.loss, marker="o", label=label)
        ax_acc.plot(epochs, [100 * a for a in hist.accuracy], marker="o", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("training accuracy (%)")
    ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def batchnorm_scale_figure(model, *, title: str = "BatchNorm scale per channel"):
    """Per-channel scale ``|gamma| / sqrt(running_var + eps)`` of every BatchNorm.

    Folding multiplies each output channel of the neighbouring layer by this
    scale, so the spread shown here is the spread folding adds to the weight
    ranges that quantization must then cover.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, with trained BatchNorm layers.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import torch

    from .folding import bn_scale_shift

    plt = _plt()
    bns = [(n, m) for n, m in model.named_modules()
           if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    if not bns:
        raise ValueError("the model has no BatchNorm layer")
    fig, axes = plt.subplots(1, len(bns), figsize=(3.2 * len(bns), 3), squeeze=False)
    for ax, (name, bn) in zip(axes[0], bns):
        scale = bn_scale_shift(bn, name)[0].abs().detach().numpy()
        ax.bar(np.arange(len(scale)), np.sort(scale)[::-1], width=1.0, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({type(bn).__name__}, {len(scale)} ch.)", fontsize=9)
        ax.set_xlabel("channel (sorted)")
        ratio = scale.max() / max(scale.min(), 1e-12)
        ax.text(0.95, 0.92, f"max/min = {ratio:.0f}", transform=ax.transAxes,
                ha="right", va="top", fontsize=8)
    axes[0][0].set_ylabel("|gamma| / sigma")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def weight_distribution_figure(model, *, title: str = "Weights per layer"):
    """For each Conv/Linear layer: the weight histogram and each channel's largest magnitude.

    The second row shows why one scale per tensor wastes int4 codes: channels
    whose range is far below the layer's largest are quantized with a step
    sized for the largest.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from torch import nn

    plt = _plt()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    fig, axes = plt.subplots(2, len(layers), figsize=(2.8 * len(layers), 5), squeeze=False)
    for i, (name, m) in enumerate(layers):
        w = m.weight.detach().cpu().numpy()
        axes[0][i].hist(w.ravel(), bins=60, color="tab:blue")
        axes[0][i].set_yscale("log")
        axes[0][i].set_title(f"{name} ({type(m).__name__})", fontsize=9)
        axes[0][i].set_xlabel("weight value")
        per_channel = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        axes[1][i].bar(np.arange(len(per_channel)), np.sort(per_channel)[::-1], width=1.0,
                       color="tab:orange")
        axes[1][i].axhline(per_channel.max(), color="k", lw=0.8, ls="--")
        axes[1][i].set_xlabel("output channel (sorted)")
    axes[0][0].set_ylabel("count")
    axes[1][0].set_ylabel("max |w| of the channel")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sqnr_figure(rows: dict, *, title: str = "int4 weight SQNR per layer"):
    """Grouped bars of SQNR (dB) per layer for several quantization schemes.

    Parameters
    ----------
    rows : dict
        ``{scheme name: {layer name: sqnr_db}}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    schemes = list(rows)
    layers = list(next(iter(rows.values())))
    fig, ax = plt.subplots(figsize=(1.4 * len(layers) + 5, 3.4))
    width = 0.8 / len(schemes)
    for j, scheme in enumerate(schemes):
        values = [rows[scheme][layer] for layer in layers]
        ax.bar(np.arange(len(layers)) + (j - (len(schemes) - 1) / 2) * width, values, width,
               label=scheme)
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("SQNR (dB, higher is better)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


# --- Hardware map -------------------------------------------------------------------------

#: Fill and edge colours of a layer box: on an NP, in software, no computation.
MAPPING_COLORS = {
    "hardware": ("#d7efdb", "#2e7d32"),
    "software": ("#fde1c6", "#c65102"),
    "none": ("#eeeeee", "#8c8c8c"),
}
_BOX_W, _SMALL_W, _BOX_H = 1.45, 0.42, 1.4  # inches
_GAP, _ROW_GAP, _MARGIN = 0.26, 0.45, 0.08
_DEFAULT_WIDTH = 10.0
_REASON_CHARS, _REASON_LINES = 26, 5


@dataclass
class _Box:
    layer: object
    kind: str  # "hardware", "software" or "none"
    x: float
    row: int
    width: float


def _kind(layer) -> str:
    if getattr(layer, "backend", "") == "hardware" and getattr(layer, "compute", True):
        return "hardware"
    if not getattr(layer, "compute", True):
        return "none"
    return "software"


def _mapping_rows(report, width: float) -> list[_Box]:
    """Place each layer left to right, starting a new row when ``width`` is full."""
    boxes, x, row = [], _MARGIN, 0
    for layer in report.layers:
        kind = _kind(layer)
        w = _BOX_W if kind != "none" else _SMALL_W
        if x > _MARGIN and x + w > width - _MARGIN:
            x, row = _MARGIN, row + 1
        boxes.append(_Box(layer, kind, x, row, w))
        x += w + _GAP
    return boxes


def _shorten(text: str, chars: int) -> str:
    text = str(text)
    if len(text) <= chars:
        return text
    keep = chars - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


def _status(layer, kind: str) -> str:
    nps = getattr(layer, "nps", "") or ""
    note = getattr(layer, "note", "") or ""
    if kind == "hardware":
        return nps or note or "no NP needed"
    if kind == "none":
        return "no NP needed" if getattr(layer, "backend", "") == "hardware" else "no computation"
    return "in software"


def _detail(layer, kind: str) -> str:
    """Small print under the status: the mapper's reason in software, a note otherwise."""
    if kind == "software":
        return getattr(layer, "reason", "") or "(no reason given by the mapper)"
    note = getattr(layer, "note", "") or ""
    return note if note and note != _status(layer, kind) else ""


def _wrap(text: str, chars: int = _REASON_CHARS, lines: int = _REASON_LINES) -> str:
    wrapped = textwrap.wrap(" ".join(str(text).split()), chars)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: chars - 1].rstrip() + "…"
    return "\n".join(wrapped)


def _width_inches(ax, artist) -> float | None:
    try:
        renderer = ax.figure.canvas.get_renderer()
    except AttributeError:  # a backend without a renderer: keep the character limits
        return None
    return artist.get_window_extent(renderer).width / ax.figure.dpi


def _fit(ax, artist, text: str, width: float) -> None:
    """Set ``text``, shortened in the middle until it fits ``width`` inches."""
    text = str(text)
    for chars in range(max(len(text), 1), 0, -1):
        artist.set_text(_shorten(text, chars))
        measured = _width_inches(ax, artist)
        if measured is None:
            artist.set_text(_shorten(text, 18))
            return
        if measured <= width:
            return


def _fit_wrapped(ax, artist, text: str, width: float) -> None:
    """Set ``text`` wrapped onto at most a few lines that fit ``width`` inches."""
    for chars in range(_REASON_CHARS + 6, 10, -1):
        artist.set_text(_wrap(text, chars))
        measured = _width_inches(ax, artist)
        if measured is None:
            artist.set_text(_wrap(text))
            return
        if measured <= width:
            return


def _mapping_height(n_rows: int) -> float:
    return n_rows * _BOX_H + (n_rows - 1) * _ROW_GAP + 2 * _MARGIN


def _axes_width_inches(ax) -> float:
    fig = ax.figure
    return ax.get_position().width * fig.get_figwidth()


def plot_mapping(map_report, ax=None, *, title: str | None = None, legend: bool = True,
                 width: float | None = None):
    """Draw how a model sits on an Akida device: one box per layer, along the data flow.

    Each layer of ``map_report`` is a box, in the model's order, left to right
    and wrapped onto new rows. The box says the layer's name and type, and is
    coloured by where it runs: green on the device's neural processors (labelled
    with the NPs it uses, e.g. ``13 CNP1``, ``1 FNP3``, ``1 HRC``), orange in
    software on the host CPU (with the mapper's reason, wrapped), grey for
    layers that compute nothing (input quantizer, dequantizer).

    Parameters
    ----------
    map_report : akida_workflows.deploy.MapReport
        From :func:`~akida_workflows.deploy.map_report`. Only the fields of
        :class:`~akida_workflows.deploy.LayerMapping` (``name``, ``layer_type``,
        ``backend``, ``nps``, ``reason``, ``compute``) are read; an optional
        ``note`` on a layer is shown under its status.
    ax : matplotlib.axes.Axes, optional
        Where to draw. Its width decides how many boxes fit on a row; the
        boxes keep their size (in inches), so give it room: see
        :func:`mapping_figure` to stack several models. By default a figure
        is made to fit the model.
    title : str, optional
        First title line (e.g. the model's name); the second line is the
        report's summary (device, share of compute layers in hardware, NPs).
    legend : bool, default True
        Add the colour legend under the boxes.
    width : float, optional
        Row width in inches when ``ax`` is None (default 10).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the report has no layers.

    Examples
    --------
    >>> report = map_report(akida_model, "SixNodesIPv2")  # doctest: +SKIP
    >>> plot_mapping(report, title="BrainChip's MNIST CNN")  # doctest: +SKIP
    """
    plt = _plt()
    layers = list(getattr(map_report, "layers", None) or [])
    if not layers:
        raise ValueError("the mapping report has no layers to draw")
    if ax is None:
        ax = _mapping_axes(plt, map_report, width or _DEFAULT_WIDTH, legend)
    boxes = _mapping_frame(ax, map_report)
    for box in boxes:
        _draw_box(ax, box)
    _draw_arrows(ax, boxes)
    _mapping_titles(ax, map_report, title)
    if legend:
        _mapping_legend(ax)
    return ax


def _mapping_axes(plt, map_report, row_width: float, legend: bool):
    """A new figure's axes, sized to the model's rows of boxes (and the legend)."""
    boxes = _mapping_rows(map_report, row_width)
    used = max(b.x + b.width for b in boxes) + _MARGIN
    content = _mapping_height(boxes[-1].row + 1)
    head, foot = 0.72, (0.42 if legend else 0.05)
    fig, ax = plt.subplots(figsize=(max(used, 4.0), content + head + foot))
    fig.subplots_adjust(left=0.0, right=1.0, top=1.0 - head / (content + head + foot),
                        bottom=foot / (content + head + foot))
    return ax


def _mapping_frame(ax, map_report) -> list:
    """The boxes laid out for ``ax``'s width, its limits set so a data unit is an inch."""
    row_width = _axes_width_inches(ax)
    boxes = _mapping_rows(map_report, row_width)
    content = _mapping_height(boxes[-1].row + 1)
    # One data unit is one inch: boxes and fonts keep their size whatever the axes.
    box_h = ax.get_position().height * ax.figure.get_figheight()
    ax.set_xlim(0, row_width)
    ax.set_ylim(max(content, box_h), 0)
    ax.set_aspect("equal", adjustable="box", anchor="NW")
    ax.axis("off")
    return boxes


def _y_top(row: int) -> float:
    return _MARGIN + row * (_BOX_H + _ROW_GAP)


def _draw_box(ax, box) -> None:
    """One layer's box: name, type, where it runs and the small print under it."""
    from matplotlib.patches import FancyBboxPatch

    fill, edge = MAPPING_COLORS[box.kind]
    y0 = _y_top(box.row)
    ax.add_patch(FancyBboxPatch(
        (box.x, y0), box.width, _BOX_H, boxstyle="round,pad=0,rounding_size=0.08",
        facecolor=fill, edgecolor=edge, linewidth=1.4 if box.kind != "none" else 0.9,
    ))
    cx, layer = box.x + box.width / 2, box.layer
    if box.kind == "none":  # a narrow box, its name written upwards
        ax.text(cx, y0 + _BOX_H / 2, _shorten(layer.name, 16), ha="center", va="center",
                rotation=90, fontsize=7.5, color="#444444")
        return
    inner = box.width - 0.1
    _fit(ax, ax.text(cx, y0 + 0.2, "", ha="center", va="center", fontsize=8.5,
                     fontweight="bold"), layer.name, inner)
    _fit(ax, ax.text(cx, y0 + 0.4, "", ha="center", va="center", fontsize=8,
                     color="#444444"), layer.layer_type, inner)
    _fit(ax, ax.text(cx, y0 + 0.63, "", ha="center", va="center", fontsize=8.5,
                     fontweight="bold", color=edge), _status(layer, box.kind), inner)
    detail = _detail(layer, box.kind)
    if detail:
        _fit_wrapped(ax, ax.text(cx, y0 + 0.79, "", ha="center", va="top", fontsize=6.8,
                                 style="italic", color="#333333", linespacing=1.15),
                     detail, inner)


def _draw_arrows(ax, boxes) -> None:
    """The data flow: along a row, and down from a row's end to the next row's start."""
    arrow = dict(arrowstyle="-|>", color="#555555", lw=1.0, shrinkA=0, shrinkB=0,
                 mutation_scale=9)
    for a, b in zip(boxes, boxes[1:]):
        ya, yb = _y_top(a.row) + _BOX_H / 2, _y_top(b.row)
        if a.row == b.row:
            ax.annotate("", xy=(b.x, ya), xytext=(a.x + a.width, ya), arrowprops=arrow)
        else:  # down from the end of a row, back to the start of the next
            xa, xb = a.x + a.width / 2, b.x + b.width / 2
            ymid = _y_top(a.row) + _BOX_H + _ROW_GAP / 2
            ax.plot([xa, xa, xb], [_y_top(a.row) + _BOX_H, ymid, ymid], color="#555555",
                    lw=1.0, solid_joinstyle="round")
            ax.annotate("", xy=(xb, yb), xytext=(xb, ymid), arrowprops=arrow)


def _mapping_titles(ax, map_report, title: str | None) -> None:
    """The report's summary line above the boxes, and ``title`` above it."""
    summary = map_report.summary_line() if hasattr(map_report, "summary_line") else ""
    if summary:
        ax.text(_MARGIN, -0.1, summary, ha="left", va="bottom", fontsize=9.5, clip_on=False)
    if title:
        ax.text(_MARGIN, -0.1 - (0.26 if summary else 0.0), title, ha="left", va="bottom",
                fontsize=11, fontweight="bold", clip_on=False)


def _mapping_legend(ax) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=MAPPING_COLORS["hardware"][0], edgecolor=MAPPING_COLORS["hardware"][1],
              label="on the device's NPs (hardware)"),
        Patch(facecolor=MAPPING_COLORS["software"][0], edgecolor=MAPPING_COLORS["software"][1],
              label="in software on the host, with the mapper's reason"),
        Patch(facecolor=MAPPING_COLORS["none"][0], edgecolor=MAPPING_COLORS["none"][1],
              label="no computation (input quantizer, dequantizer)"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 0.0), ncol=3,
              frameon=False, fontsize=8, handlelength=1.4, borderaxespad=0.2)


def mapping_figure(reports, *, width: float = _DEFAULT_WIDTH, title: str = ""):
    """Several hardware maps stacked in one figure, each sized to its model.

    Parameters
    ----------
    reports : dict
        ``{title: MapReport}``, drawn top to bottom with :func:`plot_mapping`
        (the colour legend once, under the last one).
    width : float, default 10
        Figure width in inches (boxes per row follow from it).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    items = list(dict(reports).items())
    if not items:
        raise ValueError("no mapping report to draw")
    heads = 0.75
    heights = [_mapping_height(_mapping_rows(r, width)[-1].row + 1) + heads for _, r in items]
    legend_h = 0.35
    total = sum(heights) + legend_h + (0.45 if title else 0.0)
    fig = plt.figure(figsize=(width, total))
    y = total - (0.45 if title else 0.0)
    for i, ((name, report), h) in enumerate(zip(items, heights)):
        # Each axes spans the figure width and its model's height, below its title.
        ax = fig.add_axes((0.0, (y - h) / total, 1.0, (h - heads) / total))
        plot_mapping(report, ax=ax, title=name, legend=i == len(items) - 1)
        y -= h
    if title:
        fig.suptitle(title, fontsize=12, x=0.005, ha="left", y=1 - 0.12 / total)
    return fig


def signals_per_class(signals, labels, classes=None, *, per_class: int = 6,
                      title: str = "Signals per class", ylabel: str = "amplitude"):
    """One panel per class: a few of its signals and the class mean.

    Parameters
    ----------
    signals : numpy.ndarray
        ``(N, C, L)`` or ``(N, L)`` signals (the first channel is drawn).
    labels : numpy.ndarray
        Integer class of each signal.
    classes : sequence of str, optional
    per_class : int, default 6
        Signals drawn per class (thin lines); the mean of all is drawn thick.
    title, ylabel : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    x = np.asarray(signals)
    x = x[:, 0] if x.ndim == 3 else x
    labels = np.asarray(labels)
    n = int(labels.max()) + 1 if labels.size else 0
    names = list(classes) if classes is not None else [str(i) for i in range(n)]
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), sharex=True,
                             sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        members = x[labels == k]
        for s in members[:per_class]:
            ax.plot(s, color="C0", alpha=0.35, linewidth=0.8)
        if len(members):
            ax.plot(members.mean(axis=0), color="C3", linewidth=1.8, label="class mean")
        label = f"class {names[k]}" if str(names[k]).isdigit() else str(names[k])
        ax.set_title(f"{label} ({len(members)} signals)", fontsize=9)
        if k >= (rows - 1) * cols:
            ax.set_xlabel("sample")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.supylabel(ylabel, fontsize=10)  # once: per-row labels of long text overlap
    fig.tight_layout()
    return fig


def accuracy_per_seed_figure(accuracies: dict, n_test: int, *, published: dict | None = None,
                             confidence: float = 0.95, title: str = "Accuracy per seed"):
    """Each stage's test accuracy for every seed, with its Wilson interval.

    On a small test set the interval of one run is wider than the differences
    between stages; drawing both shows which differences the data can resolve.

    Parameters
    ----------
    accuracies : dict of str to sequence of float
        Stage name -> accuracy (fraction) of each seed, in the same seed order.
    n_test : int
        Test samples each accuracy was measured on.
    published : dict of str to float, optional
        Reference accuracies (fractions) drawn as labelled horizontal lines.
    confidence : float, default 0.95
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .evaluate import wilson_interval

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    stages = list(accuracies)
    seeds = max(len(v) for v in accuracies.values())
    offsets = np.linspace(-0.25, 0.25, seeds) if seeds > 1 else np.zeros(1)
    for s in range(seeds):
        xs, ys, lows, highs = [], [], [], []
        for i, stage in enumerate(stages):
            if s >= len(accuracies[stage]):
                continue
            acc = float(accuracies[stage][s])
            low, high = wilson_interval(round(acc * n_test), n_test, confidence)
            xs.append(i + offsets[s])
            ys.append(100 * acc)
            lows.append(100 * (acc - low))
            highs.append(100 * (high - acc))
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", color=f"C{s}", capsize=3,
                    markersize=5, label=f"seed {s}" if seeds > 1 else "measured")
    for k, (name, value) in enumerate((published or {}).items()):
        ax.axhline(100 * value, color="0.4", linestyle=(0, (4, 2 + k)), linewidth=0.9)
        ax.annotate(f"{name} {100 * value:.1f} %", (1.0, 100 * value),
                    xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", fontsize=7, color="0.3", va="center",
                    ha="left")
    ax.set_xticks(range(len(stages)), stages, fontsize=8)
    ax.set_xlim(-0.5, len(stages) - 0.5)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}\n(bars: {100 * confidence:.0f} % Wilson interval, "
                 f"{n_test} test samples)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=min(seeds, 5))
    fig.tight_layout()
    return fig


def few_shot_figure(shots, curves: dict, *, chance: float | None = None, title: str = ""):
    """Accuracy against examples per class, one panel per group of classes.

    Parameters
    ----------
    shots : sequence of int
        Examples per class, the x axis.
    curves : dict
        ``{method: {group: accuracies}}`` with ``accuracies`` of shape
        ``(draws, len(shots))`` (fractions): the mean is drawn with a band from
        the lowest to the highest draw. Groups (e.g. ``"seen classes"``,
        ``"unseen classes"``) become panels, side by side.
    chance : float, optional
        Chance accuracy, drawn as a dotted line.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    groups = list(dict.fromkeys(g for per_group in curves.values() for g in per_group))
    if not groups:
        raise ValueError("no accuracies to draw")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), sharey=True,
                             squeeze=False)
    x = np.asarray(shots)
    for ax, group in zip(axes[0], groups):
        for (method, per_group), marker in zip(curves.items(), "osD^v"):
            if group not in per_group:
                continue
            acc = 100 * np.asarray(per_group[group], dtype=float).reshape(-1, len(x))
            line, = ax.plot(x, acc.mean(axis=0), marker=marker, label=method)
            ax.fill_between(x, acc.min(axis=0), acc.max(axis=0), alpha=0.2,
                            color=line.get_color(), linewidth=0)
        if chance is not None:
            ax.axhline(100 * chance, color="grey", linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.set_xticks(x, [str(s) for s in x])
        ax.minorticks_off()
        ax.set_xlabel("examples learned per class")
        ax.set_title(group)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].set_ylim(0, 100)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
