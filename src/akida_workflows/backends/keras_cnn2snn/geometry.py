"""Window geometry: PyTorch padding as Keras/Akida padding, and flipped coordinates.

PyTorch pads ``padding`` on both sides of a map; Keras/Akida ``'same'`` pads
``total // 2`` before and the rest after. These helpers find the Keras padding
whose windows are PyTorch's, in the original coordinates or on the spatially
flipped map, choose the orientation a network is built in, and prepare its
input (:func:`to_nhwc`, :func:`input_flip`).
"""

from __future__ import annotations

import numpy as np

from ...errors import IncompatibleModelError
from ...geometry import keras_modes as _keras_modes
from ...geometry import torch_pads as _torch_pads

#: Name suffix of the input (Keras) and input quantizer (Akida) of a model that takes
#: spatially flipped input: it survives quantization, conversion and ``.fbz`` files.
FLIPPED_SUFFIX = "_flipped"


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pool_pads(m, kernel, stride, size):
    """The padding of a PyTorch pool: ``m.padding``, or with ``ceil_mode`` the explicit
    (before, after) pairs of the windows it really takes (the last window may run past
    the map; PyTorch drops one that would start in the right padding)."""
    if not m.ceil_mode:
        return m.padding
    pads = []
    for k, s, p, n in zip(kernel, stride, _pair(m.padding), size):
        out = -(-(n + 2 * p - k) // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        pads.append((p, max((out - 1) * s + k - n - p, 0)))
    return tuple(pads)


def _geometry(name, kernel, stride, padding, size, what):
    """Text describing a window geometry, for messages."""
    return (f"{name} ({what}): kernel {tuple(kernel)}, stride {tuple(stride)}, padding "
            f"{padding!r} on a {size[0]}x{size[1]} map")


def _keras_padding(name, kernel, stride, padding, size, what="Conv2d", flip=False) -> str:
    """'valid' or 'same' when Keras pads exactly as PyTorch did, else an error."""
    modes = _keras_modes(kernel, stride, _torch_pads(padding, kernel), size, flip)
    if modes:
        return modes[0]
    raise IncompatibleModelError(
        f"{_geometry(name, kernel, stride, padding, size, what)} is not Keras/Akida 'same' "
        f"padding{' in flipped coordinates' if flip else ''} (which pads total // 2 before and "
        "the rest after) nor 'valid'. Use stride 1 with padding=k//2 (then down-sample with "
        "MaxPool2d), or padding=0.", nodes=[name])


def _linear_after(sequence, index):
    """Index of the Linear an average pooling at ``index`` feeds through Flatten, Dropout
    and Identity only; None otherwise."""
    from torch import nn

    for i in range(index + 1, len(sequence)):
        nxt = sequence[i][1]
        if isinstance(nxt, nn.Linear):
            return i
        if isinstance(nxt, (nn.Dropout, nn.Identity)):
            continue
        if not (isinstance(nxt, nn.Flatten) and nxt.start_dim == 1 and nxt.end_dim == -1):
            return None
    return None


def _windows(sequence, shape):
    """(name, what, kernel, stride, padding, (h, w)) of each conv/pool whose padding decides
    whether the network can run in original or flipped coordinates."""
    import torch
    from torch import nn

    out, x = [], torch.zeros(2, *shape)
    with torch.no_grad():
        for index, (name, m) in enumerate(sequence):
            if x.dim() == 4:
                size = tuple(x.shape[2:])
                if isinstance(m, nn.Conv2d):
                    out.append((name, "Conv2d", _pair(m.kernel_size), _pair(m.stride),
                                m.padding, size))
                elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and not (
                        isinstance(m, nn.AvgPool2d) and _linear_after(sequence, index)):
                    kernel = _pair(m.kernel_size)
                    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
                    out.append((name, type(m).__name__, kernel, stride,
                                _pool_pads(m, kernel, stride, size), size))
            x = m(x)
    return out


def _choose_flip(sequence, shape, flip: bool | None) -> bool:
    """Run the network in flipped coordinates only where that is what makes it exact.

    PyTorch pads ``padding`` on both sides; Keras/Akida 'same' pads ``total // 2``
    before and the rest after. A stride-2, ``padding=1`` conv on an even map is
    therefore not 'same' (Keras pads 0 before, 1 after) — but on the spatially
    flipped map with flipped kernels its windows are exactly Keras' 'same'
    windows. Flipping is all or nothing (every layer then sees flipped maps).
    """
    windows = _windows(sequence, shape)
    fits = {False: [], True: []}  # orientation -> layers it fails
    for name, what, kernel, stride, padding, size in windows:
        for orientation in (False, True):
            if not _keras_modes(kernel, stride, _torch_pads(padding, kernel), size, orientation):
                fits[orientation].append((name, what, kernel, stride, padding, size))
    choices = [o for o in ((False, True) if flip is None else (flip,)) if not fits[o]]
    if choices:
        return choices[0]
    either = [w for w in fits[False] if w in fits[True]]
    if either:
        w = either[0]
        reason = (f"{_geometry(w[0], *w[2:5], w[5], w[1])}: neither Keras/Akida 'same' nor "
                  "'valid' padding, in original or flipped coordinates")
        fix = ("use padding=k//2 (odd k) with stride 1 and down-sample with MaxPool2d(2), or a "
               "stride-2 conv with padding=k//2 on even maps, or padding=0")
        raise IncompatibleModelError(f"{reason}. {fix[0].upper()}{fix[1:]}.", nodes=[w[0]],
                                     reason=reason, fix=fix)
    if flip is not None:
        w = fits[flip][0]
        raise IncompatibleModelError(
            f"{_geometry(w[0], *w[2:5], w[5], w[1])} cannot run in "
            f"{'flipped' if flip else 'original'} coordinates; use flip=None (automatic).",
            nodes=[w[0]])
    need, block = fits[False][0], fits[True][0]
    reason = (f"{_geometry(need[0], *need[2:5], need[5], need[1])} is Keras/Akida 'same' "
              "padding only on the spatially flipped map (Keras pads 0 before and 1 after where "
              f"PyTorch pads 1 and 1), but {_geometry(block[0], *block[2:5], block[5], block[1])}"
              " cannot run on flipped maps (its windows drop the last row/column, which becomes "
              "the first)")
    fix = (f"make the map before {block[0]} even (an input size divisible by 2 for each "
           "stride-2 layer before it), or pool with MaxPool2d(3, stride=2, padding=1), which "
           "is exact either way")
    raise IncompatibleModelError(f"{reason}. Fix: {fix}.", nodes=[block[0]], reason=reason,
                                 fix=fix)


def input_flip(model) -> bool:
    """Whether a model built by :func:`to_keras` takes spatially flipped input.

    Parameters
    ----------
    model : tf_keras.Model or akida.Model
        The float or quantized Keras model, or the Akida model converted from
        it (the mark is kept in ``.fbz`` files).

    Returns
    -------
    bool
    """
    recorded = getattr(model, "input_flip", None)
    if isinstance(recorded, bool):
        return recorded
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    first = layers[0]
    return str(getattr(first, "name", "")).endswith(FLIPPED_SUFFIX)


def to_nhwc(x, flip=False) -> np.ndarray:
    """Float32 NHWC copy of an NCHW image batch (the layout PyTorch models take).

    Parameters
    ----------
    x : array-like
        ``(N, C, H, W)``, or ``(N, H, W)`` for one channel.
    flip : bool, tf_keras.Model or akida.Model, default False
        Flip H and W, as a model built in flipped coordinates expects. Pass
        the Keras or Akida model itself to read it from the model
        (:func:`input_flip`): ``to_nhwc(x, flip=model)`` is always right.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W, C)`` float32.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise IncompatibleModelError(f"expected an NCHW image batch, got shape {x.shape}")
    x = np.transpose(x, (0, 2, 3, 1))
    if flip if isinstance(flip, (bool, np.bool_)) else input_flip(flip):
        x = x[:, ::-1, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32)
