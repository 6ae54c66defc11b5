"""Where a CI phase spends its CPU: a sampling profile of every process, summed by work.

CI time here is CPU time (both phases keep two cores ~94 % busy), so the question
"what would make CI faster" is "what uses the CPU". This samples a command and all its
child processes (pytest workers, notebook kernels, CLI subprocesses, sphinx-gallery's
workers) from outside with py-spy, then attributes each sample to one kind of work:
the innermost frame of the stack that matches a category (QuantizeML's Keras
quantization, CNN2SNN, the Akida simulator, PyTorch training, imports, ...).

Usage::

    python -m pip install py-spy          # a development tool, not a dependency
    python benchmarks/cpu_profile.py record OUT.raw -- pytest -n 2 ... tests
    python benchmarks/cpu_profile.py report OUT.raw [--rate 20] [--top 25]

``record`` runs ``py-spy record --subprocesses --format raw`` (``--rate`` samples per
second and process; 20 keeps py-spy's own load low on two cores). ``report`` prints the
CPU seconds per category and per process kind, and the functions with the most samples
of their own. Seconds are samples / rate: py-spy drops samples when it falls behind
(it says so), so read the shares, not the absolute figures.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (category, test on one frame): a sample goes to the category of the innermost
#: (deepest) frame that matches one. py-spy names a frame ``function (path:line)`` with
#: site-packages paths relative. Native code (the Akida simulator's C++, oneDNN) has no
#: frame of its own: its samples land on the Python frame that called it.
CATEGORIES: list[tuple[str, re.Pattern]] = [
    ("QuantizeML: Keras quantization", re.compile(r"^quantize_keras \((.*/)?quantizeml/")),
    ("QuantizeML: ONNX quantization", re.compile(r"\((.*/)?quantizeml/onnx_support/")),
    ("CNN2SNN conversion", re.compile(r"\((.*/)?cnn2snn/")),
    ("Akida simulator", re.compile(r"\((.*/)?akida/|^(predict|summarize) \((.*/)?akida_workflows/"
                                   r"(evaluate|deploy)\.py")),
    ("Keras training and inference",
     re.compile(r"^Model\.(fit|predict|evaluate) \((.*/)?tf_keras/")),
    ("PyTorch training", re.compile(r"^_train \((.*/)?akida_workflows/training\.py")),
    ("PyTorch inference", re.compile(r"\((.*/)?torch/nn/modules/")),
    ("ONNX export", re.compile(r"\((.*/)?torch/onnx/")),
    ("ONNX Runtime", re.compile(r"\((.*/)?onnxruntime/")),
    ("imports", re.compile(r"^_find_and_load \(")),
    ("matplotlib", re.compile(r"\((.*/)?matplotlib/")),
    ("sphinx and sphinx-gallery", re.compile(r"\((.*/)?(sphinx|sphinx_gallery)/")),
    ("test code (tests/)", re.compile(r"\((.*/)?(tests/)?(test_\w+|zoo|conftest|models)\.py:")),
    ("pytest, xdist and nbval", re.compile(r"\((.*/)?(_pytest|xdist|nbval|execnet)/")),
]
OTHER = "other (own code, numpy, ...)"

#: Process kinds, from the command line py-spy prints for each process.
PROCESS_KINDS: list[tuple[str, re.Pattern]] = [
    ("notebook kernels (nbval)", re.compile(r"ipykernel")),
    ("CLI subprocesses", re.compile(r"akida_workflows|akida-workflows")),
    ("sphinx-gallery workers (joblib)", re.compile(r"loky|joblib")),
    ("sphinx-build", re.compile(r"sphinx")),
    ("pytest workers", re.compile(r"python -u -c|pytest|xdist")),
]


def parse_line(line: str) -> tuple[list[str], int] | None:
    """``(frames, samples)`` of one line of py-spy's raw (collapsed-stack) output.

    A line is ``frame;frame;...;leaf COUNT``; with ``--subprocesses`` the first frame
    names the process (``process 123:"command line"``), then the thread. Lines that do
    not end in a count (a frame name broken over lines) are skipped (None).
    """
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not count.isdigit() or not stack:
        return None
    return stack.split(";"), int(count)


def category(frames: list[str]) -> str:
    """The category of the innermost frame that matches one (:data:`CATEGORIES`)."""
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return OTHER


def process_kind(frames: list[str]) -> str:
    """The kind of the innermost process in the stack (:data:`PROCESS_KINDS`)."""
    for frame in reversed(frames):
        if frame.startswith("process "):
            return next((kind for kind, pattern in PROCESS_KINDS if pattern.search(frame)),
                        "other processes")
    return "other processes"


def summarize(lines, rate: float = 20.0) -> dict:
    """Seconds per category, per process kind and per leaf function (own samples)."""
    categories, kinds, leaves = Counter(), Counter(), Counter()
    total = 0
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        frames, count = parsed
        total += count
        categories[category(frames)] += count
        kinds[process_kind(frames)] += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    seconds = {k: v / rate for k, v in categories.items()}
    return {"total": total / rate, "categories": seconds,
            "processes": {k: v / rate for k, v in kinds.items()},
            "leaves": {k: v / rate for k, v in leaves.items()}}


def _table(title: str, figures: dict, total: float, top: int) -> str:
    rows = sorted(figures.items(), key=lambda kv: -kv[1])[:top]
    width = max([len(title)] + [len(k) for k, _ in rows])
    out = [f"{title:<{width}}  CPU s  share", f"{'-' * width}  -----  -----"]
    out += [f"{k:<{width}}  {v:5.0f}  {100 * v / total:4.0f} %" for k, v in rows]
    return "\n".join(out)


def report(path: Path, rate: float = 20.0, top: int = 25) -> str:
    with open(path) as f:
        result = summarize(f, rate)
    total = result["total"] or 1.0
    return "\n\n".join([
        f"{path.name}: {result['total']:.0f} CPU seconds sampled at {rate:g}/s per process",
        _table("category", result["categories"], total, top),
        _table("process kind", result["processes"], total, top),
        _table("function (own samples)", result["leaves"], total, top),
    ])


def record(out: Path, command: list[str], rate: float = 20.0) -> int:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: python -m pip install py-spy")
    return subprocess.call([spy, "record", "--subprocesses", "--nonblocking", "--rate",
                            f"{rate:g}", "--format", "raw", "-o", str(out), "--", *command])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="sample a command and its child processes")
    rec.add_argument("out", type=Path)
    rec.add_argument("--rate", type=float, default=20.0)
    rec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    rep = sub.add_parser("report", help="CPU seconds per kind of work")
    rep.add_argument("raw", type=Path)
    rep.add_argument("--rate", type=float, default=20.0)
    rep.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.command == "record":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("record needs a command after --")
        return record(args.out, cmd, args.rate)
    print(report(args.raw, args.rate, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
