"""Python's garbage collector in processes that hold TensorFlow graphs (private).

Every quantization and conversion leaves TensorFlow graphs behind (traced functions
that QuantizeML's layers and tf-keras keep alive): a process that converted a few
models tracks millions of container objects. Python's cyclic collector walks all of
them at every full collection, and several times more when the interpreter shuts
down. Measured here (2 cores, akida 2.19.3 stack): the ``akida-workflows convert``
of a small CNN spent 2.0 s exiting, 0.25 s with :func:`skip_final_collection`; a test
process that ran ``tests/test_keras_bridge.py`` (2.5 million tracked objects) spent
15 s exiting and 18-20 s of its 130 s in collections, 9 s with
:data:`LONG_RUN_THRESHOLDS`.

Neither changes any number a model computes. The thresholds change when garbage is
collected, not what (full collections become rarer; peak memory barely moves); the
objects frozen at exit are released by the operating system as the process ends.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["LONG_RUN_THRESHOLDS", "for_long_runs", "skip_final_collection"]

#: ``gc.set_threshold`` for processes that run many conversions in turn (test and
#: gallery workers): a young-generation collection every 10 000 allocations instead
#: of 700, a full one after 100 middle-generation ones instead of 10 (Python adds
#: its own condition: the long-lived objects grew by a quarter). Peak memory of the
#: test process above: 3.06 GB with the defaults, 3.14 GB with these.
LONG_RUN_THRESHOLDS = (10_000, 10, 100)


def skip_final_collection() -> None:
    """At exit, freeze the objects Python tracks instead of collecting them again.

    ``gc.freeze`` in an ``atexit`` handler: the handlers registered before it (and
    those registered later, which run first) still run; the interpreter's shutdown
    then has no cycles to walk among objects the operating system releases anyway.
    Registered once however often it is called.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def for_long_runs() -> None:
    """:data:`LONG_RUN_THRESHOLDS` and :func:`skip_final_collection` for this process."""
    gc.set_threshold(*LONG_RUN_THRESHOLDS)
    skip_final_collection()
