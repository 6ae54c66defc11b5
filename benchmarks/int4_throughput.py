"""Throughput of int4 per-channel quantization + packing, vectorised vs a plain loop.

Usage: ``python benchmarks/int4_throughput.py [--sizes 1e7 1e8] [--channels 512]``

Measures ``quantize_per_channel(method="maxabs")`` followed by ``pack_int4`` on
float32 weights shaped ``(channels, n / channels)``, in weights per second, on
one core (``OMP_NUM_THREADS=1``; numpy's element-wise kernels are single-threaded
anyway). The reference is a straightforward per-element Python loop with the
same semantics, timed on a sample and extrapolated. Target: >= 200 M weights/s.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from akida_workflows.int4 import pack_int4, quantize_per_channel, unpack_int4  # noqa: E402


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


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e7, 1e8])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    sample = rng.standard_normal((8, 2500)).astype(np.float32)
    loop_seconds = best_of(lambda: loop_reference(sample), 1)
    loop_rate = sample.size / loop_seconds
    q, _ = quantize_per_channel(sample, axis=0, method="maxabs")
    assert loop_reference(sample) == pack_int4(q).tobytes(), "loop and vectorised differ"

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
        seconds = best_of(run, args.repeat)
        rate = n / seconds
        print(f"| {n:,} | {rate / 1e6:.0f} | {loop_rate / 1e6:.2f} | {rate / loop_rate:,.0f}x |")
        del w
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
