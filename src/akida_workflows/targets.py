"""Akida's limits, one table per target: the single source of truth.

Every limit the library checks lives here, once per target, as a
:class:`Limits`; :data:`akida_workflows.rules.LIMITS`,
:data:`akida_workflows.lowering.HARDWARE_LIMITS` and
:data:`akida_workflows.compat.TARGETS` are built from it.

Each value was measured with the real toolchain (:data:`MEASURED_WITH`): a tiny
model at the boundary converts and maps with ``map(device, hw_only=True)`` and
the first value past it does not. ``tests/test_targets.py`` builds both sides of
every boundary, so a new toolchain release that moves a limit fails a test.

Targets:

- ``"akida2"``: Akida 2.0, 8-bit, PyTorch → ONNX → QuantizeML → CNN2SNN,
  mapped on ``akida.SixNodesIPv2()``;
- ``"akida1"``: Akida 1.0, 4-bit weights and activations, PyTorch → tf-keras →
  QuantizeML → CNN2SNN, mapped on ``akida.AKD1000()``.

Measured where the older tables were wrong: Akida 2.0's input layer takes
kernel 4 at stride 1 too (``padding='same'`` or 0), and stride 3; Akida 1.0's
input layer takes kernels 2 and 6 (CNN2SNN pads them) but not 1, 4 or 8, its
later convolutions every kernel 1 to 7 (even ones with ``padding='same'``), stride 2
with kernels 2 and 3 (2 where the padding is Keras 'same', e.g. an odd map), only
1 or 3 input channels, and a Dense of any input size (no 2048 limit); Akida
2.0's Dense refuses a map wider than 256 columns even under 2048 inputs.

>>> from akida_workflows.targets import limits
>>> limits("akida2").gap_area
144
>>> limits("akida1").dense_inputs is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MEASURED_WITH", "Limits", "TARGETS", "limits"]

#: The toolchain the limits were measured with.
MEASURED_WITH = "quantizeml 1.2.5, cnn2snn 2.19.3, akida 2.19.3"


@dataclass(frozen=True)
class Limits:
    """What one Akida target takes (measured with :data:`MEASURED_WITH`).

    ``None`` means no limit was found: the toolchain converted and mapped the
    largest case tried.

    Attributes
    ----------
    name : str
        ``"akida2"`` or ``"akida1"``.
    description : str
        The target in words (precision and conversion path).
    device : str
        The virtual device mapped onto: the name of its ``akida`` class
        (``getattr(akida, device)()``).
    input_kernels : tuple of int
        Square kernel sizes the input layer (the first convolution) takes.
        Even sizes need asymmetric or no padding: ``padding='same'`` at stride
        1, ``padding=0``, or on Akida 2.0 ``padding=k//2 - 1`` at stride 2 on
        an even map.
    kernels : tuple of int
        Square kernel sizes of the convolutions after the input layer (stride 1).
    stride2_kernels : tuple of int
        Kernel sizes a convolution after the input layer takes with stride 2.
    input_strides : tuple of int
        Strides the input layer takes (with its kernels and ``padding=0``, or
        padding that is TensorFlow 'same' there: at stride 3 ``k//2`` on a
        16x16 map but not 15, 17 or 18 on Akida 2.0, which needs 'same' to be
        symmetric; Akida 1.0 also takes 17, on the flipped map; see
        :mod:`akida_workflows.padding`).
    strides : tuple of int
        Strides of the convolutions after the input layer.
    input_channels : tuple of int
        Channel counts the input layer takes.
    max_width : int
        Widest input (columns).
    min_height, min_width : int
        Fewest input rows and columns.
    rows_cover_input_kernel : bool
        The input needs at least as many rows as the input layer's kernel.
    dense_inputs : int or None
        Most inputs of a Dense (``Linear``) layer.
    dense_map_width : int or None
        Most columns of a spatial map read by a Dense layer (``Flatten`` →
        ``Linear``), whatever its input count: the mapper refuses a wider map
        with the Dense-input message.
    gap_area : int or None
        Largest map (rows x columns) a global average pooling takes.
    """

    name: str
    description: str
    device: str
    input_kernels: tuple[int, ...]
    kernels: tuple[int, ...]
    stride2_kernels: tuple[int, ...]
    input_strides: tuple[int, ...]
    strides: tuple[int, ...]
    input_channels: tuple[int, ...]
    max_width: int
    min_height: int
    min_width: int
    rows_cover_input_kernel: bool
    dense_inputs: int | None
    dense_map_width: int | None
    gap_area: int | None


#: target name -> :class:`Limits`.
TARGETS: dict[str, Limits] = {
    "akida2": Limits(
        name="akida2",
        description="Akida 2.0, 8-bit (QuantizeML ONNX path)",
        device="SixNodesIPv2",
        input_kernels=(3, 4, 5, 7),
        kernels=(1, 3, 5, 7),
        stride2_kernels=(1, 3),
        input_strides=(1, 2, 3),
        strides=(1, 2),
        input_channels=(1, 3),
        max_width=384,
        min_height=5,
        min_width=5,
        rows_cover_input_kernel=False,
        dense_inputs=2048,
        dense_map_width=256,
        gap_area=144,
    ),
    "akida1": Limits(
        name="akida1",
        description="Akida 1.0, 4-bit weights and activations (AKD1000/AKD1500)",
        device="AKD1000",
        input_kernels=(2, 3, 5, 6, 7),
        kernels=(1, 2, 3, 4, 5, 6, 7),
        stride2_kernels=(2, 3),
        input_strides=(1, 2, 3),
        strides=(1, 2),
        input_channels=(1, 3),
        max_width=256,
        min_height=5,
        min_width=5,
        rows_cover_input_kernel=True,
        dense_inputs=None,
        dense_map_width=None,
        gap_area=None,
    ),
}


def limits(target: str) -> Limits:
    """The :class:`Limits` of ``target``.

    Raises
    ------
    ValueError
        ``target`` is not one of :data:`TARGETS`; the message names the valid ones.
    """
    try:
        return TARGETS[target]
    except (KeyError, TypeError):
        raise ValueError(f"unknown Akida target {target!r}: valid targets are "
                         f"{', '.join(sorted(TARGETS))}") from None
