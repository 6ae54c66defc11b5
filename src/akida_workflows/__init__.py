"""akida-workflows: take a trained PyTorch model onto BrainChip's Akida processor.

One module per pipeline stage: :mod:`~akida_workflows.datasets`, :mod:`~akida_workflows.loading`,
:mod:`~akida_workflows.training`, :mod:`~akida_workflows.lowering` (1-D models to their
exact 2-D form), :mod:`~akida_workflows.export`,
:mod:`~akida_workflows.convert`, :mod:`~akida_workflows.evaluate`,
:mod:`~akida_workflows.deploy`, :mod:`~akida_workflows.edge` (learning on the chip),
:mod:`~akida_workflows.plots`.
Heavy dependencies (torch, tensorflow via QuantizeML, akida) are imported only
by the functions that need them.
"""

from .errors import (
    AkidaWorkflowError,
    ChecksumError,
    DatasetError,
    ExportError,
    FoldingError,
    IncompatibleModelError,
    InvalidInputError,
    MappingError,
    ModelFileError,
    QuantizationError,
    UnsafeModelFileError,
)

__version__ = "0.1.0"

__all__ = [
    "AkidaWorkflowError",
    "ChecksumError",
    "DatasetError",
    "ExportError",
    "FoldingError",
    "IncompatibleModelError",
    "InvalidInputError",
    "MappingError",
    "ModelFileError",
    "QuantizationError",
    "UnsafeModelFileError",
    "reset_seeds",
    "__version__",
]


def reset_seeds(gallery_conf=None, fname=None, when=None) -> None:
    """Reset every random seed; sphinx-gallery calls it before each example.

    Parameters
    ----------
    gallery_conf, fname, when
        Passed by sphinx-gallery's ``reset_modules``; unused.
    """
    from .training import seed_everything

    seed_everything(0)
