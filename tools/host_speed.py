"""How fast this host's cores run right now: a fixed one-thread workload, timed.

CI time on a shared host moves with the host: the same commit has taken 1 003 s and
1 042 s in consecutive runs, and a run that did less work took longer than both, at the
same share of the two cores (benchmarks/ci_times.md). ``.ci/run`` prints this figure at
its start and end so that a slow run can be told from a slow host.

Usage::

    python tools/host_speed.py   # "host speed: 0.97 of the reference; python 0.152 s ..."

The figure is the reference time over this run's (above 1: faster than the reference);
the reference is this workload measured on the CI machine kind (2-core AMD EPYC with
AVX-512), idle, on 2026-12-07, with the interpreter ``.ci/run`` calls it with (the
machine's Python 3.11, numpy 2.4). Each part is the median of five repeats; idle, runs
a minute apart read the Python part 0.139-0.164 s: readings within ±10 % are the same
speed.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Seconds of each part on the reference machine, idle (median of five).
REFERENCE = {"python": 0.150, "numpy": 0.155}


def _python_part() -> None:
    total = 0
    for i in range(2_500_000):
        total += i * i % 7
    assert total > 0


def _numpy_part() -> None:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((256, 256))
    for _ in range(250):
        a = np.tanh(a @ a.T / 256.0)


def measure(repeats: int = 5) -> dict[str, float]:
    """Median seconds of each part over ``repeats`` runs (no numpy part without numpy)."""
    parts = {"python": _python_part, "numpy": _numpy_part}
    try:
        import numpy  # noqa: F401
    except ImportError:  # a bare interpreter: the Python part alone
        del parts["numpy"]
    result = {}
    for name, part in parts.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            part()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    return result


def speed(seconds: dict[str, float], reference: dict[str, float] = REFERENCE) -> float:
    """Geometric mean of reference / measured over the parts (1.0: as fast as the reference)."""
    ratios = [reference[name] / seconds[name] for name in reference if name in seconds]
    return statistics.geometric_mean(ratios)


def main() -> int:
    seconds = measure()
    parts = ", ".join(f"{name} {s:.3f} s (reference {REFERENCE[name]:.3f})"
                      for name, s in seconds.items())
    print(f"host speed: {speed(seconds):.2f} of the reference; {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
