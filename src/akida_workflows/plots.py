"""Figures of the gallery: sample grids, predictions, confusion matrices."""

from __future__ import annotations

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
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if confusion[i, j] > threshold else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=unit)
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
        if k % cols == 0:
            ax.set_ylabel(ylabel)
        if k >= (rows - 1) * cols:
            ax.set_xlabel("sample")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
