"""Import TensorFlow (pulled in by QuantizeML/CNN2SNN) without its C++ start-up noise.

On a CPU-only machine TensorFlow's C++ runtime prints lines such as "Unable to
register cuDNN factory" to the process's stderr before Python logging exists;
``TF_CPP_MIN_LOG_LEVEL`` does not silence them. They are not errors, but they
bury the output that matters in examples and notebooks. This module imports
TensorFlow once with file descriptor 2 pointed at ``/dev/null``; Python
exceptions still propagate normally.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["import_toolchain"]


@contextlib.contextmanager
def _stderr_fd_silenced():
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def import_toolchain() -> None:
    """Import tensorflow quietly, once; later imports of quantizeml/cnn2snn are silent."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_fd_silenced():
        import tensorflow  # noqa: F401
