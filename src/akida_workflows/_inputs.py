"""Loaded data as models take it: images scaled to float NCHW, PyTorch loaders, and
signals longer than the hardware takes brought down to size (resampled or windowed).

Part of :mod:`akida_workflows.datasets`, which re-exports the public names.
"""

from __future__ import annotations

import numpy as np

from ._datacore import Dataset
from .errors import DatasetError


def preprocess(
    images: np.ndarray, normalize: tuple[float, float] | None = (0.5, 0.5)
) -> np.ndarray:
    """Turn ``uint8`` images into the float NCHW array the models take.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` images, ``(N, H, W)`` (one channel added) or ``(N, 1, H, W)``.
    normalize : (mean, std) or None, default (0.5, 0.5)
        Applied after scaling to [0, 1]: ``(x - mean) / std``. ``None`` keeps [0, 1].

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(N, 1, H, W)``.

    Raises
    ------
    DatasetError
        If the images are not ``uint8`` or not 3-D / 4-D channel-first.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DatasetError(
            f"expected uint8 images (0..255), got {images.dtype}; "
            "pass the raw images, preprocess() scales them"
        )
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DatasetError(
            f"expected images shaped (N, H, W) or (N, C, H, W) with C in (1, 3), "
            f"got {images.shape}"
        )
    x = images.astype(np.float32) / np.float32(255.0)
    if normalize is not None:
        mean, std = normalize
        if std <= 0:
            raise DatasetError(f"normalize std must be > 0, got {std}")
        x = (x - np.float32(mean)) / np.float32(std)
    return x


def to_torch_loaders(
    dataset: Dataset,
    batch_size: int,
    normalize: tuple[float, float] | None = (0.5, 0.5),
    *,
    seed: int = 0,
):
    """Wrap a :class:`Dataset` as PyTorch train and test loaders (no torchvision).

    Parameters
    ----------
    dataset : Dataset
    batch_size : int
    normalize : (mean, std) or None, default (0.5, 0.5)
        See :func:`preprocess`.
    seed : int, default 0
        Seeds the train loader's shuffling, so epochs are reproducible.

    Returns
    -------
    (torch.utils.data.DataLoader, torch.utils.data.DataLoader)
        ``(train_loader, test_loader)`` yielding ``(float32 NCHW tensor, int64 labels)``
        (``(N, C, L)`` for time series, unchanged); the train loader shuffles, the
        test loader does not.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def make(x, y, shuffle):
        # Images are scaled from uint8; float signals (load_timeseries) are used as they are.
        x = preprocess(x, normalize) if x.dtype == np.uint8 else np.asarray(x, np.float32)
        tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(tensors, batch_size=batch_size, shuffle=shuffle, generator=generator)

    return (
        make(dataset.x_train, dataset.y_train, True),
        make(dataset.x_test, dataset.y_test, False),
    )




def resample_signals(x, length: int) -> np.ndarray:
    """Resample ``(N, C, L)`` signals to ``length`` samples, with anti-aliasing.

    Polyphase filtering (:func:`scipy.signal.resample_poly`): decimating a
    signal longer than the hardware takes (Akida 2.0: 384 samples, Akida 1.0:
    256) low-pass filters it first, so no alias of its fast content remains.

    Parameters
    ----------
    x : array-like
        ``(N, C, L)`` (or ``(N, L)``) signals.
    length : int
        The new length.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, length)``.

    Examples
    --------
    >>> resample_signals(np.zeros((4, 1, 427)), 214).shape
    (4, 1, 214)
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[-1] < 1:
        raise DatasetError(f"expected (N, C, L) signals, got shape {x.shape}")
    length = int(length)
    if length < 2:
        raise DatasetError(f"length must be >= 2, got {length}")
    n = x.shape[-1]
    if length == n:
        return x.astype(np.float32)
    ratio = Fraction(length, n).limit_denominator(1000)
    out = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
    if out.shape[-1] != length:  # ratio approximated: finish with linear interpolation
        old = np.linspace(0.0, 1.0, out.shape[-1])
        new = np.linspace(0.0, 1.0, length)
        out = np.apply_along_axis(lambda s: np.interp(new, old, s), -1, out)
    return np.ascontiguousarray(out, dtype=np.float32)


def window_signals(x, length: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(N, C, L)`` signals into windows of ``length`` samples.

    For recordings longer than the hardware takes when their full resolution
    matters (decimating would lose it): classify each window and combine the
    windows' scores per recording (e.g. their mean).

    Parameters
    ----------
    x : array-like
        ``(N, C, L)`` signals.
    length : int
        Window length (``<= L``).
    stride : int, optional
        Step between windows (default ``length``: no overlap). The last window
        ends at the signal's end, so no sample is dropped.

    Returns
    -------
    windows : numpy.ndarray
        float32 ``(N * W, C, length)``.
    source : numpy.ndarray
        ``int64`` ``(N * W,)``: the signal each window comes from (repeat the
        labels with ``y[source]``).

    Examples
    --------
    >>> windows, source = window_signals(np.zeros((2, 1, 500)), 256, 122)
    >>> windows.shape, source.tolist()
    ((6, 1, 256), [0, 0, 0, 1, 1, 1])
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3:
        raise DatasetError(f"expected (N, C, L) signals, got shape {x.shape}")
    n = x.shape[-1]
    length = int(length)
    stride = int(stride or length)
    if not 1 <= length <= n or stride < 1:
        raise DatasetError(f"window length must be in 1..{n} and stride >= 1, got "
                           f"{length} and {stride}")
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    windows = np.stack([x[:, :, s:s + length] for s in starts], axis=1)
    source = np.repeat(np.arange(len(x)), len(starts))
    return windows.reshape(-1, x.shape[1], length), source
