"""The golden notebooks' sanitizer masks what varies by machine, and nothing structural."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

CFG = Path(__file__).resolve().parent / "notebooks" / "sanitize.cfg"


def sanitize(text: str) -> str:
    for regex, replacement in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replacement, text)
    return text


# The same cell run on two machines (lines from real outputs of example 0): what differs
# is wall time, paths, addresses, parity diffs at the ulp level and throughput.
A = """       class  precision  recall      f1  support
           0      0.990   0.981   0.986      104
    accuracy     0.9670
model            stage                   accuracy  size        build time
---------------  ----------------------  --------  ----------  ----------
BrainChip CNN    ONNX float              96.93 %   3309.1 KiB  12.3 s
SixNodesIPv2: 4/4 compute layers in hardware (100 %); NPs used: 1 HRC, 20 CNP1
mean SQNR 20.6 dB, max |diff| 4.8e-06 in /tmp/abc/x.onnx at 0x7f00aa, 1,234 img/s
learned 900 examples in 0.47 s: 0.52 ms per example"""
B = """       class  precision  recall      f1  support
           0      0.990   0.981   0.986      104
    accuracy     0.9670
model            stage                   accuracy  size        build time
---------------  ----------------------  --------  ----------  -----------
BrainChip CNN    ONNX float              96.93 %   3309.1 KiB  123.4 s
SixNodesIPv2: 4/4 compute layers in hardware (100 %); NPs used: 1 HRC, 20 CNP1
mean SQNR 20.6 dB, max |diff| 3.1e-06 in /work/x/y.onnx at 0x55ffbb, 987 img/s
learned 900 examples in 1.2 s: 1.33 ms per example"""


def test_machine_dependent_numbers_are_masked():
    assert sanitize(A) == sanitize(B)


@pytest.mark.parametrize("old, new", [
    ("4/4 compute layers", "3/4 compute layers"),  # hardware share is structural
    ("(100 %)", "(75 %)"),
    ("20 CNP1", "18 CNP1"),
    ("      104", "      105"),  # support counts come from the data
    ("BrainChip CNN", "Akida-ready CNN"),
    # Trained figures are compared exactly (the notebooks run in REPRODUCIBLE_ENV):
    ("96.93 %", "96.92 %"),  # an accuracy one test image lower
    ("0.9670", "0.9671"),
    ("0.990   0.981", "0.989   0.981"),  # a precision
    ("SQNR 20.6 dB", "SQNR 20.5 dB"),
])
def test_changes_of_figures_are_caught(old, new):
    assert old in A
    assert sanitize(A) != sanitize(A.replace(old, new))


def test_integer_percentages_and_signs_are_compared():
    """The figures that differed between CPUs before the environment was pinned."""
    line = "52 % of them differ from max-abs; 83 % of the loss recovered; delta +0.12"
    for old, new in [("52 %", "48 %"), ("83 %", "87 %"), ("+0.12", "-0.12")]:
        assert sanitize(line) != sanitize(line.replace(old, new))
