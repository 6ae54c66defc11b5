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
import io
import os
import sys
import warnings

__all__ = ["import_toolchain", "quiet_toolchain_logs"]


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


@contextlib.contextmanager
def quiet_toolchain_logs():
    """Run toolchain steps without their log lines on the terminal.

    ONNX Runtime logs warnings from C++ (its default logger is set to errors
    only, severity 3), the TorchScript exporter and TensorFlow write to file
    descriptor 2 (pointed at ``/dev/null`` for the duration), and Python
    warnings are ignored. Exceptions propagate unchanged: what went wrong is
    reported from them, not from the logs.
    """
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except Exception:  # pragma: no cover - onnxruntime is a dependency
        pass
    with _stderr_fd_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def quiet_logs():
    """Silence what the toolchain prints: QuantizeML's progress, ONNX Runtime, TorchScript, fx."""
    # torch.fx's ShapeProp prints a traceback (traceback.print_exc) before it re-raises:
    # Python-level stderr too, not only file descriptor 2 (captured streams, notebooks).
    with quiet_toolchain_logs(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        yield
