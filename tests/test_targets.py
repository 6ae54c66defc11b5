"""Every limit of :mod:`akida_workflows.targets`, per target, at its boundary with the real
toolchain: tiny models whose value maps in hardware (``map(device, hw_only=True)``) and
models one step past it that do not. The fast tests check that the older tables
(``rules.LIMITS``, ``lowering.HARDWARE_LIMITS``, ``compat.TARGETS``) are views of it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo import DEVICES, real_toolchain

from akida_workflows import compat, lowering, rules
from akida_workflows.targets import MEASURED_WITH, TARGETS, Limits, limits

R6 = nn.ReLU6


def build(shape, k_in=3, s_in=1, p_in=None, later=(), c=4, head="dense"):
    """conv(k_in, s_in, p_in) → ReLU6 → [conv(k, s, p) → ReLU6]… → Flatten → Linear(…, 4)
    (``head="gap"``: global average pooling → Linear)."""
    torch.manual_seed(0)
    pad = p_in if p_in is not None else k_in // 2
    layers = [nn.Conv2d(shape[0], c, k_in, s_in, pad), R6()]
    for k, s, p in later:
        layers += [nn.Conv2d(c, c, k, s, p if p is not None else k // 2), R6()]
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 4)]
    else:
        with torch.no_grad():
            features = nn.Sequential(*layers)(torch.zeros(1, *shape)).numel()
        layers += [nn.Flatten(), nn.Linear(features, 4)]
    return nn.Sequential(*layers).eval(), shape


class DenseDense(nn.Module):
    """conv → Flatten → Linear(512, n) → ReLU6 → Linear(n, 4): a Dense with exactly n inputs
    (two channels: QuantizeML cannot quantize a one-channel first layer for Akida 1.0)."""

    def __init__(self, n):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act = nn.Conv2d(1, 2, 3, padding=1), R6()
        self.fc1, self.act1, self.fc2 = nn.Linear(512, n), R6(), nn.Linear(n, 4)

    def forward(self, x):
        return self.fc2(self.act1(self.fc1(torch.flatten(self.act(self.conv(x)), 1))))


S = (1, 16, 16)
ODD = (1, 15, 15)  # a stride-2 padding=1 conv is 'same' here in both toolchains


def _input_kernel(k):
    return lambda: build(S, k_in=k, p_in="same")


def _later_kernel(k):
    return lambda: build(S, later=[(k, 1, "same")])


def _stride2_kernel(k):
    return lambda: build(ODD, later=[(k, 2, None)])


def _width(w):
    return lambda: build((1, 5, w), s_in=2, later=[(3, 1, None)], c=2)


def _gap(h, w):
    return lambda: build((1, h, w), later=[(3, 1, None)], head="gap")


# (limit, target, what, model builder, maps in hardware)
CASES = []


def case(limit, target, what, builder, maps):
    CASES.append(pytest.param(limit, target, builder, maps, id=f"{target}-{limit}-{what}"))


for t in TARGETS:
    lim = TARGETS[t]
    for k in range(1, 10):
        if k in lim.input_kernels or k in (1, 9) or k - 1 in lim.input_kernels:
            case("input_kernels", t, f"k{k}", _input_kernel(k), k in lim.input_kernels)
        if k in lim.kernels or k - 1 in lim.kernels:
            case("kernels", t, f"k{k}", _later_kernel(k), k in lim.kernels)
    for k in range(1, 8):
        case("stride2_kernels", t, f"k{k}", _stride2_kernel(k), k in lim.stride2_kernels)
    top = max(lim.input_strides)
    case("input_strides", t, f"s{top}", lambda: build(S, s_in=3, p_in=1), True)
    # stride 3, padding 1: 'same' is symmetric at 16 (both), asymmetric at 17 (Akida 1.0's
    # flipped route takes it), nothing at 18 (neither): akida_workflows.padding
    case("input_strides", t, f"s{top}-p1-n17", lambda: build((1, 17, 17), s_in=3, p_in=1),
         t == "akida1")
    case("input_strides", t, f"s{top}-p1-n18", lambda: build((1, 18, 18), s_in=3, p_in=1), False)
    case("input_strides", t, f"s{top}-p0-n17", lambda: build((1, 17, 17), s_in=3, p_in=0), True)
    case("input_strides", t, "s1-p0", lambda: build(S, s_in=1, p_in=0), True)  # 'valid' input
    if t == "akida2":  # an even kernel at stride 3 (the check's stand-in for 17x17 above)
        case("input_strides", t, "s3-k4-p1-n17",
             lambda: build((1, 17, 17), k_in=4, s_in=3, p_in=1), True)
    case("input_strides", t, f"s{top + 1}-valid", lambda: build(S, s_in=4, p_in=0), False)
    case("input_strides", t, f"s{top + 1}-padded", lambda: build(S, s_in=4, p_in=1), False)
    for c in (1, 2, 3, 4):
        case("input_channels", t, f"c{c}", lambda c=c: build((c, 16, 16)),
             c in lim.input_channels)
    w = lim.max_width
    case("max_width", t, f"w{w}", _width(w), True)
    case("max_width", t, f"w{w + 1}", _width(w + 1), False)
    h = lim.min_height
    case("min_height", t, f"h{h}", lambda h=h: build((1, h, 16), c=2), True)
    case("min_height", t, f"h{h - 1}", lambda h=h: build((1, h - 1, 16), c=2), False)
    w = lim.min_width
    case("min_width", t, f"w{w}", lambda w=w: build((1, 16, w), c=2), True)
    case("min_width", t, f"w{w - 1}", lambda w=w: build((1, 16, w - 1), c=2), False)
    case("rows_cover_input_kernel", t, "k7-rows7", lambda: build((1, 7, 16), k_in=7, c=2), True)
    case("rows_cover_input_kernel", t, "k7-rows6", lambda: build((1, 6, 16), k_in=7, c=2),
         not lim.rows_cover_input_kernel)
    n = lim.dense_inputs
    if n is None:
        case("dense_inputs", t, "8192", lambda: (DenseDense(8192).eval(), S), True)
    else:
        case("dense_inputs", t, f"{n}", lambda n=n: (DenseDense(n).eval(), S), True)
        case("dense_inputs", t, f"{n + 1}", lambda n=n: (DenseDense(n + 1).eval(), S), False)
    cols = lim.dense_map_width
    if cols is None:  # the widest input, read whole by a Dense
        case("dense_map_width", t, f"5x{lim.max_width}",
             lambda w=lim.max_width: build((1, 5, w), c=2), True)
    else:  # 1 channel x 5 rows: far fewer inputs than dense_inputs
        case("dense_map_width", t, f"5x{cols}", lambda w=cols: build((1, 5, w), c=1), True)
        case("dense_map_width", t, f"5x{cols + 1}", lambda w=cols: build((1, 5, w + 1), c=1),
             False)
    a = lim.gap_area
    if a is None:
        case("gap_area", t, "32x32", _gap(32, 32), True)
    else:
        case("gap_area", t, "9x16", _gap(9, 16), True)
        case("gap_area", t, "5x29", _gap(5, 29), False)


# ------------------------------------------------------------------------------ fast


def test_every_limit_has_a_boundary_case():
    limits_ = {f for f in Limits.__dataclass_fields__} - {"name", "description", "device",
                                                          "strides"}
    for t in TARGETS:
        tested = {p.values[0] for p in CASES if p.values[1] == t}
        assert tested == limits_, limits_ ^ tested


def test_limits_names_the_valid_targets():
    assert limits("akida2") is TARGETS["akida2"]
    with pytest.raises(ValueError, match="akida1, akida2"):
        limits("akida3")
    assert "quantizeml 1.2.5" in MEASURED_WITH and "akida 2.19.3" in MEASURED_WITH


def test_old_tables_are_views_of_targets():
    assert set(rules.LIMITS) == set(lowering.HARDWARE_LIMITS) == set(compat.TARGETS) == \
        set(TARGETS) == set(rules.TARGETS) == set(DEVICES)
    for t, lim in TARGETS.items():
        assert compat.TARGETS[t] == (lim.description, lim.device) and DEVICES[t] == lim.device
        r = rules.LIMITS[t]
        for key in ("input_kernels", "kernels", "stride2_kernels", "input_strides", "strides",
                    "input_channels", "max_width", "min_height", "min_width", "dense_inputs",
                    "dense_map_width", "gap_area"):
            assert r[key] == getattr(lim, key), (t, key)
        h = lowering.HARDWARE_LIMITS[t]
        assert (h.target, h.max_width, h.min_rows, h.input_channels, h.input_kernels,
                h.kernels, h.max_dense_inputs, h.max_pool_area, h.rows_cover_input_kernel,
                h.max_dense_width) == (
            t, lim.max_width, lim.min_height, lim.input_channels, lim.input_kernels,
            lim.kernels, lim.dense_inputs, lim.gap_area, lim.rows_cover_input_kernel,
            lim.dense_map_width)


def test_targets_imports_nothing_heavy():
    import ast
    from pathlib import Path

    import akida_workflows.targets as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert imported <= {"__future__", "dataclasses"}, imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


# ------------------------------------------------------------------------------ slow


@pytest.mark.slow
@pytest.mark.parametrize("limit, target, builder, maps", CASES)
def test_boundary_with_the_real_toolchain(limit, target, builder, maps):
    model, shape = builder()
    ok, why = real_toolchain(model, shape, target)
    if maps:
        assert ok, f"{target} {limit}: expected to convert and map, got: {why}"
    else:
        assert not ok, f"{target} {limit}: expected a refusal, but it converts and maps"
