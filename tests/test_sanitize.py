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


# The same cells run on two machines (lines from real outputs of the examples, made
# with the same code under the same pinned environment on an AMD EPYC (A) and an Intel
# Xeon (B), 2026-12-05): what differs is wall time, paths, addresses, parity diffs at the
# ulp level, throughput, and every figure that follows from trained weights.
A = """       class  precision  recall      f1  support
           0      0.990   0.981   0.986      104
           1      0.974   0.991   0.982      113
    accuracy     0.9710
model            stage                   accuracy  size        build time
---------------  ----------------------  --------  ----------  ----------
BrainChip CNN    ONNX float              96.93 %   3309.1 KiB  12.3 s
BrainChip CNN on Akida:   97.10 %  (25 % of compute layers in hardware)
SixNodesIPv2: 4/4 compute layers in hardware (100 %); NPs used: 1 HRC, 20 CNP1
maxabs: Akida 1.0 w4/a4 85.73 % (-1.78 pt vs float), AKD1000: 4/4 compute layers in hardware (100 %)
0 (Conv2d)  72       21.2 dB          24.7 dB         0.0333      0.0330
dense_8: Akida weights == int4 MSE codes for all 10 channels; 48 % of them differ from max-abs
chosen calibrator: mse; max-abs loses 1.78 pt, mse 0.29 pt: 84 % of the loss recovered without training
Akida 2.0 8-bit              87.28 %   -0.01 pt       SixNodesIPv2  100 %
0     92 % (85–96)  92 % (85–96)     93 % (86–97)     90 % (83–94)            +0     -2     100 %
Akida 1.0 4-bit              91.33 %  1.53 pt       90 – 93 %
Akida 1.0 4-bit, fine-tuned: worst seed -2 signals vs float (goal >= -1): MISSED by 1 signal(s)
fine-tuning: agreement with float on held-out copies 98.7 % → 99.1 % (epoch 4 kept)
active features per image: 70.5 of 256
1        82.5      26.7        82.2              37.9            29.8
mean SQNR 20.6 dB, max |diff| 4.8e-06 in /tmp/abc/x.onnx at 0x7f00aa, 1,234 img/s
learned 900 examples in 0.47 s: 0.52 ms per example"""
B = """       class  precision  recall      f1  support
           0      0.990   0.981   0.986      104
           1      0.957   0.991   0.974      113
    accuracy     0.9700
model            stage                   accuracy  size        build time
---------------  ----------------------  --------  ----------  -----------
BrainChip CNN    ONNX float              96.80 %   3309.1 KiB  123.4 s
BrainChip CNN on Akida:   97.00 %  (25 % of compute layers in hardware)
SixNodesIPv2: 4/4 compute layers in hardware (100 %); NPs used: 1 HRC, 20 CNP1
maxabs: Akida 1.0 w4/a4 86.26 % (-1.32 pt vs float), AKD1000: 4/4 compute layers in hardware (100 %)
0 (Conv2d)  72       22.1 dB          24.2 dB         0.0327      0.0305
dense_8: Akida weights == int4 MSE codes for all 10 channels; 46 % of them differ from max-abs
chosen calibrator: mse; max-abs loses 1.32 pt, mse 0.56 pt: 58 % of the loss recovered without training
Akida 2.0 8-bit              86.07 %   +0.45 pt       SixNodesIPv2  100 %
0     92 % (85–96)  91 % (84–95)     95 % (89–98)     91 % (84–95)            -1     -1     100 %
Akida 1.0 4-bit              92.33 %  2.31 pt       91 – 95 %
Akida 1.0 4-bit, fine-tuned: worst seed -1 signals vs float (goal >= -1): met
fine-tuning: agreement with float on held-out copies 98.7 % → 98.9 % (epoch 3 kept)
active features per image: 70.3 of 256
1        83.0      26.2        82.2              37.8            29.2
mean SQNR 20.6 dB, max |diff| 3.1e-06 in /work/x/y.onnx at 0x55ffbb, 987 img/s
learned 900 examples in 1.2 s: 1.33 ms per example"""


def test_machine_dependent_numbers_are_masked():
    assert sanitize(A) == sanitize(B)


@pytest.mark.parametrize("old, new", [
    # what the hardware runs is structural: shares, NP counts, layer counts
    ("4/4 compute layers in hardware (100 %); NPs", "3/4 compute layers in hardware (75 %); NPs"),
    ("(25 % of compute layers", "(50 % of compute layers"),
    ("20 CNP1", "18 CNP1"),
    ("for all 10 channels", "for all 9 channels"),
    ("      104", "      105"),  # support counts come from the data
    ("0 (Conv2d)  72  ", "0 (Conv2d)  64  "),  # weights per layer
    ("BrainChip CNN    ONNX", "Akida-ready CNN  ONNX"),
    ("Akida 1.0 w4/a4", "Akida 2.0 w4/a4"),  # version numbers are not figures
    ("chosen calibrator: mse", "chosen calibrator: percentile"),
    ("(goal >= -1)", "(goal >= -2)"),  # stated goals are constants
    ("of 256", "of 128"),
    ("\n1        82.5", "\n2        82.5"),  # shots per class
])
def test_changes_of_structural_figures_are_caught(old, new):
    assert old in A
    assert sanitize(A) != sanitize(A.replace(old, new))


def test_trained_figures_are_masked_and_nothing_around_them():
    """Masks replace the figure only: the words, units and columns around it stay."""
    text = sanitize(A)
    assert "BrainChip CNN on Akida:<PAD><FIG> %<PAD>(25 % of compute layers in hardware)" in text
    assert "maxabs: Akida 1.0 w4/a4 <FIG> % (<FIG> pt vs float), AKD1000: 4/4" in text
    assert "<FIG> % of them differ from max-abs" in text
    assert "worst seed <FIG> signals vs float (goal >= -1): <FIG>" in text


# The HTML form of the same tables (nbval compares it too), from the golden notebooks
# (made on one machine) and a run on an AMD EPYC without AVX-512 (2026-12-06).
HTML_A = ("<tr><td>0 (Conv2d)</td><td>72</td><td>21.2 dB</td><td>0.0333</td><td>0.0330</td>"
          "</tr><tr><td>Akida 1.0 4-bit</td><td>90.00 %</td><td>0.90</td><td>0.95</td>"
          "<td>100 %</td></tr><tr><td>0</td><td>+0</td><td>-2</td><td>100 %</td></tr>"
          "<tr><td>1</td><td>82.5</td><td>26.7</td></tr>")
HTML_B = ("<tr><td>0 (Conv2d)</td><td>72</td><td>21.4 dB</td><td>0.0327</td><td>0.0305</td>"
          "</tr><tr><td>Akida 1.0 4-bit</td><td>91.00 %</td><td>0.93</td><td>0.96</td>"
          "<td>100 %</td></tr><tr><td>0</td><td>-1</td><td>-1</td><td>100 %</td></tr>"
          "<tr><td>1</td><td>83.0</td><td>26.2</td></tr>")


def test_html_tables_mask_the_same_figures_as_text_tables():
    assert sanitize(HTML_A) == sanitize(HTML_B)
    for old, new in [("<td>100 %</td></tr><tr><td>0", "<td>75 %</td></tr><tr><td>0"),
                     ("<td>72</td>", "<td>64</td>"), ("<td>1</td><td>82.5", "<td>2</td><td>82.5"),
                     ("<td>0 (Conv2d)</td>", "<td>0 (Linear)</td>")]:
        assert old in HTML_A
        assert sanitize(HTML_A) != sanitize(HTML_A.replace(old, new)), old


GOLDEN = CFG.parent
KEPT = [  # lines the sanitizer must leave exactly as they are, in every golden notebook
    re.compile(r"\d+/\d+ compute layers in hardware \(\d+ %\)"),
    re.compile(r"NPs used: [\w ,]+"),
    re.compile(r"\(\d+ % of compute layers in hardware\)"),
]


@pytest.mark.parametrize("notebook", sorted(p.name for p in GOLDEN.glob("*.ipynb")))
def test_golden_notebooks_keep_their_hardware_figures(notebook):
    """In the real golden outputs, every hardware share and NP count is compared exactly."""
    import nbformat

    nb = nbformat.read(GOLDEN / notebook, as_version=4)
    found = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            clean = sanitize(text)
            for pattern in KEPT:
                for match in pattern.finditer(text):
                    found += 1
                    assert match.group(0) in clean, (notebook, match.group(0))
    if notebook.startswith(("plot_0", "plot_2", "plot_4", "plot_6")):
        assert found, f"{notebook}: no hardware figure found (did the wording change?)"
