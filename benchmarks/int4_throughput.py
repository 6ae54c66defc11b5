"""Throughput of int4 per-channel quantization + packing, vectorised vs a plain loop.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/int4_throughput.py [--sizes 1e7 1e8]
[--channels 512] [--out docs/results]``

Measures ``quantize_per_channel(method="maxabs")`` followed by ``pack_int4`` on
float32 weights shaped ``(channels, n / channels)``, in weights per second, on
one core (``OMP_NUM_THREADS=1``; numpy's element-wise kernels are single-threaded
anyway). The reference is a straightforward per-element Python loop with the
same semantics, timed on a sample and extrapolated. Target: >= 200 M weights/s.
Writes ``int4_throughput.json`` (the format of ``results_io.py``) into ``--out``;
the site's Results page renders it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from akida_workflows.int4 import pack_int4, quantize_per_channel, unpack_int4  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

#: Throughput the vectorised path must reach on one core (weights/s).
TARGET = 200e6


def loop_reference(w: np.ndarray) -> bytes:
    """Per-channel max-abs int4 quantization and packing, one weight at a time."""
    out = bytearray()
    nibbles = []
    for row in w:
        maxabs = max(abs(float(v)) for v in row)
        scale = maxabs / 7 if maxabs > 0 else 0.0
        for v in row:
            q = 0 if scale == 0 else max(-8, min(7, round(float(v) / scale)))
            nibbles.append(q & 0xF)
    if len(nibbles) % 2:
        nibbles.append(0)
    for lo, hi in zip(nibbles[0::2], nibbles[1::2]):
        out.append(lo | (hi << 4))
    return bytes(out)


def best_of(fn, repeat: int) -> tuple[float, float]:
    """Best CPU time of this process and best wall time, in seconds, over ``repeat`` runs.

    On one thread the CPU time is the time the work took; the wall time also counts
    the time other programs of a shared machine held the core.
    """
    cpu, wall = [], []
    for _ in range(repeat):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e7, 1e8])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "results",
                        help="folder of the result file (default: docs/results)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    sample = rng.standard_normal((8, 2500)).astype(np.float32)
    loop_seconds, _ = best_of(lambda: loop_reference(sample), 3)
    loop_rate = sample.size / loop_seconds
    q, _ = quantize_per_channel(sample, axis=0, method="maxabs")
    assert loop_reference(sample) == pack_int4(q).tobytes(), "loop and vectorised differ"

    rows = []
    print("| weights | vectorised (M weights/s) | loop (M weights/s, extrapolated) | speed-up |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        n = int(size) // args.channels * args.channels
        w = rng.standard_normal((args.channels, n // args.channels)).astype(np.float32)

        def run(w=w):
            q, _ = quantize_per_channel(w, axis=0, method="maxabs")
            return pack_int4(q)

        packed = run()
        assert np.array_equal(unpack_int4(packed, n)[:1000],
                              quantize_per_channel(w, 0)[0].ravel()[:1000])
        seconds, wall = best_of(run, args.repeat)
        rate = n / seconds
        print(f"| {n:,} | {rate / 1e6:.0f} | {loop_rate / 1e6:.2f} | {rate / loop_rate:,.0f}x |")
        rows.append({
            "weights": n,
            "vectorised (M weights/s)": rate / 1e6,
            "per-element loop (M weights/s)": loop_rate / 1e6,
            "speed-up (x)": rate / loop_rate,
            "vectorised, wall clock (M weights/s)": n / wall / 1e6,
        })
        del w
    met = [r["weights"] for r in rows if r["vectorised (M weights/s)"] * 1e6 >= TARGET]
    verdict = ("met at every size" if len(met) == len(rows) else
               "not met at " + ", ".join(f"{r['weights']:,}" for r in rows
                                         if r["weights"] not in met) + " weights")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    path = write_result(
        args.out / "int4_throughput.json", rows, benchmark="int4_throughput",
        title="int4 quantization + packing throughput",
        data=f"float32 weights shaped ({args.channels}, n / {args.channels}), standard normal, "
             f"seed 0; best of {args.repeat} runs; OMP_NUM_THREADS={threads}",
        notes=(f"Target of {TARGET / 1e6:.0f} M weights/s on one core: {verdict}. Rates are "
               "weights per second of the process's CPU time (best of the runs), so other "
               "work on a shared machine does not lower them; the last column is the wall-"
               f"clock rate of the same runs (load average {load:.1f} on {os.cpu_count()} "
               f"CPUs at the start). The loop is timed on {sample.size:,} weights and checked "
               "byte for byte against the vectorised result."),
        command=" ".join(["OMP_NUM_THREADS=1 python benchmarks/int4_throughput.py", *(
            argv if argv is not None else sys.argv[1:])]),
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
