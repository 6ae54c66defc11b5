"""Entry points into the toolchain: tf-keras and CNN2SNN's Akida version.

TensorFlow, tf-keras and CNN2SNN are imported inside the functions, quietly
(:func:`akida_workflows._quiet.import_toolchain`), so that importing this
package stays cheap.
"""

from __future__ import annotations

from ..._quiet import import_toolchain
from ...errors import IncompatibleModelError

AKIDA_VERSIONS = ("v1", "v2")


def _keras():
    import_toolchain()
    import tf_keras as keras

    return keras


def _version(akida_version: str):
    import_toolchain()
    from cnn2snn import AkidaVersion

    if akida_version not in AKIDA_VERSIONS:
        raise IncompatibleModelError(
            f"akida_version must be one of {AKIDA_VERSIONS}, got {akida_version!r}")
    return AkidaVersion.v1 if akida_version == "v1" else AkidaVersion.v2


def _inbound(layer) -> list:
    """The layers a Keras layer reads (through its first inbound node), as a list."""
    nodes = getattr(layer, "inbound_nodes", None) or getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]
