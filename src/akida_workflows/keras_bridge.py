"""The 4-bit path: PyTorch → tf-keras → QuantizeML (4-bit) → CNN2SNN → Akida 1.0.

Its code lives in :mod:`akida_workflows.backends.keras_cnn2snn` (see there for
the route, the supported layers and the exact rewrites); this module re-exports
it under its established name.
"""

from __future__ import annotations

# Besides __all__: the private helpers tests import, and the constants.
from .backends.keras_cnn2snn.build import to_keras
from .backends.keras_cnn2snn.calibration import _quantizer_output, _weight_kernels  # noqa: F401
from .backends.keras_cnn2snn.convert import convert_keras
from .backends.keras_cnn2snn.geometry import FLIPPED_SUFFIX, input_flip, to_nhwc  # noqa: F401
from .backends.keras_cnn2snn.layers import converter
from .backends.keras_cnn2snn.quantize import (
    fine_tune,
    quantize_4bit,
    separable_blocks,
    unbounded_relus,
)
from .backends.keras_cnn2snn.toolchain import AKIDA_VERSIONS  # noqa: F401

__all__ = [
    "to_keras",
    "quantize_4bit",
    "fine_tune",
    "convert_keras",
    "to_nhwc",
    "input_flip",
    "unbounded_relus",
    "separable_blocks",
    "converter",
]
