"""One test per rule of the table: a model that violates only that rule, and the same model
with the rule's printed fix applied. The real toolchain decides both (slow tests); the rule
table must flag the first and nothing in the second (fast tests)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from zoo import _Attention as AttentionNet
from zoo import _LSTMNet as LSTMNet
from zoo import real_toolchain

from akida_workflows.rules import RULES, check_graph, limits_table, rule_at, trace_graph

S = (1, 16, 16)
R6 = nn.ReLU6


def net(first=None, mid=(), shape=S, c=8, head=None, flatten_relu=False):
    """first conv → ReLU6 → mid… → Flatten → Linear(…, 10) (head replaces the Flatten/Linear)."""
    torch.manual_seed(0)
    layers = [first if first is not None else nn.Conv2d(shape[0], c, 3, padding=1), R6()]
    layers += list(mid)
    body = nn.Sequential(*layers).eval()
    with torch.no_grad():
        features = body(torch.zeros(1, *shape)).numel()
    layers += list(head) if head is not None else [nn.Flatten(), nn.Linear(features, 10)]
    return nn.Sequential(*layers).eval()


def conv(cin=8, cout=8, k=3, **kw):
    kw.setdefault("padding", k // 2 if isinstance(k, int) else tuple(v // 2 for v in k))
    return nn.Conv2d(cin, cout, k, **kw)


class _Cropped(nn.Module):
    """Keeps the first 12 columns of its 16x16 input (x[..., :12]) before the first conv."""

    def __init__(self, crop=True):
        super().__init__()
        torch.manual_seed(0)
        self.crop = crop
        self.body = nn.Sequential(conv(1, 8), R6(), nn.MaxPool2d(2), conv(), R6(),
                                  nn.Flatten(), nn.Linear(8 * 8 * 6, 10))

    def forward(self, x):
        return self.body(x[..., :12] if self.crop else x)


def _bn_stats(model, negative=False):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                if negative:
                    m.weight[0] = -1.0
    return model.eval()


class PoolAfterAdd(nn.Module):
    """Residual block, then max pooling of the sum (Akida 2.0 pools only a convolution)."""

    def __init__(self, fixed=False, skip=True):
        super().__init__()
        self.fixed, self.skip = fixed, skip
        self.stem, self.act = conv(1, 8), R6()
        self.conv, self.act2 = conv(), R6()
        self.merge, self.act3 = conv(), R6()
        self.pool = nn.MaxPool2d(2)
        self.conv2, self.act4 = conv(), R6()
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = self.act(self.stem(x))
        y = self.act2(self.conv(x))
        x = x + y if self.skip else y
        if self.fixed:
            x = self.act3(self.merge(x))
        x = self.act4(self.conv2(self.pool(x)))
        return self.fc(torch.flatten(x, 1))


class _TimeMean(nn.Module):
    """Averages its 8x8x8 map over the height only (x.mean(2)) before the Linear."""

    def __init__(self, whole=False):
        super().__init__()
        torch.manual_seed(0)
        self.whole = whole
        self.body = nn.Sequential(conv(1, 8), R6(), nn.MaxPool2d(2), conv(), R6())
        self.fc = nn.Linear(8 if whole else 64, 10)

    def forward(self, x):
        x = self.body(x)
        x = x.mean((2, 3)) if self.whole else x.mean(2)
        return self.fc(x.flatten(1))


def _conv_head():
    """The convolutional replacement suggested for recurrent / attention layers."""
    return net(conv(1, 16), [nn.MaxPool2d(2), conv(16, 16), R6()])


@dataclass
class Case:
    rule: str
    targets: tuple
    bad: object  # () -> (model, input_shape)
    fixed: object  # () -> (model, input_shape)
    fix_says: tuple = ()  # fragments the printed fix must contain (what `fixed` applies)


PAD_MID = [nn.MaxPool2d(2), conv(), R6()]

CASES = [
    Case("recurrent", ("akida2", "akida1"), lambda: (LSTMNet().eval(), S),
         lambda: (_conv_head(), S), ("Conv2d(1, 16, 3, padding=1)", "MaxPool2d(2)")),
    Case("attention", ("akida2", "akida1"), lambda: (AttentionNet().eval(), S),
         lambda: (_conv_head(), S), ("convolutions",)),
    Case("padding-mode", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(padding_mode="reflect"), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("padding_mode='zeros'",)),
    Case("slicing", ("akida2", "akida1"),  # KWS code that crops its input inside forward
         lambda: (_Cropped().eval(), S), lambda: (_Cropped(crop=False).eval(), (1, 16, 12)),
         ("crop the input on the host", "16x12")),
    Case("partial-mean", ("akida2", "akida1"),  # a mean over the height only
         lambda: (_TimeMean().eval(), S), lambda: (_TimeMean(whole=True).eval(), S),
         ("x.mean((2, 3))", "8x8x8 map into the Linear (512 inputs)")),
    Case("input-layer-dense", ("akida1",),
         lambda: (nn.Sequential(nn.Flatten(), nn.Linear(256, 64), R6(),
                                nn.Linear(64, 10)).eval(), S),
         lambda: (nn.Sequential(conv(1, 8), R6(), nn.Flatten(), nn.Linear(2048, 64), R6(),
                                nn.Linear(64, 10)).eval(), S),
         ("nn.Conv2d(1, 8, 3, padding=1)",)),
    Case("input-channels", ("akida2", "akida1"),
         lambda: (net(conv(2, 8), PAD_MID, shape=(2, 16, 16)), (2, 16, 16)),
         lambda: (net(conv(3, 8), PAD_MID, shape=(3, 16, 16)), (3, 16, 16)),
         ("3 input channels", "nn.Conv2d(3, 8")),
    Case("input-size", ("akida2",),
         lambda: (_wide(392), (1, 8, 392)), lambda: (_wide(196), (1, 8, 196)),
         ("decimate the signal by 2", "392 → 196")),
    Case("input-size", ("akida1",),
         lambda: (_wide(264), (1, 8, 264)), lambda: (_wide(132), (1, 8, 132)),
         ("decimate the signal by 2", "264 → 132")),
    Case("square-kernel", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(k=(3, 5)), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(k=5), R6()]), S),
         ("kernel_size=5, padding=2",)),
    Case("kernel-size", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(k=9), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(k=7), R6()]), S),
         ("kernel_size=7, padding=3",)),
    Case("dilation", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(padding=2, dilation=2), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(k=5), R6()]), S),
         ("dilation=1 with kernel_size=5, padding=2",)),
    Case("groups", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(groups=2), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), R6()]), S), ("groups=1",)),
    Case("groups", ("akida2",),  # a depthwise convolution with 2 filters per channel
         lambda: (net(None, [nn.MaxPool2d(2), conv(8, 16, groups=8), R6(), conv(16, 8, 1),
                             R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(groups=8), conv(8, 16, 1), R6(),
                             conv(16, 8, 1), R6()]), S),
         ("one filter per channel", "groups=8")),
    Case("stride", ("akida2",),
         lambda: (net(None, [conv(stride=4), R6(), conv(), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(stride=2), R6(), conv(), R6()]), S),
         ("stride=2", "1 x nn.MaxPool2d(2) after the activation of an earlier convolution")),
    Case("stride", ("akida1",),
         lambda: (net(None, [conv(stride=4), R6(), conv(), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), R6(), nn.MaxPool2d(2), conv(), R6()]), S),
         ("stride=1", "2 x nn.MaxPool2d(2)")),
    Case("same-padding", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), conv(padding=0), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("padding=1",)),
    # stride 3 at the input: 'same' must be symmetric on Akida 2.0 (16x16, not 17x17) …
    Case("input-stride-padding", ("akida2",),
         lambda: (net(conv(1, 8, stride=3), shape=(1, 17, 17)), (1, 17, 17)),
         lambda: (net(conv(1, 8, stride=3, padding=0), shape=(1, 17, 17)), (1, 17, 17)),
         ("padding=0 (output 5x5 instead of 6x6", "a 16x16 input")),
    # … Akida 1.0 also takes it on the flipped map (17x17), not where 'same' pads nothing
    Case("input-stride-padding", ("akida1",),
         lambda: (net(conv(1, 8, stride=3), shape=(1, 18, 18)), (1, 18, 18)),
         lambda: (net(conv(1, 8, stride=3, padding=0), shape=(1, 18, 18)), (1, 18, 18)),
         ("padding=0 (the same output size)", "a 17x17 input")),
    Case("max-pool", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(3, 2, 1), conv(), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("nn.MaxPool2d(2)",)),
    Case("pool-after-conv", ("akida2",), lambda: (PoolAfterAdd().eval(), S),
         lambda: (PoolAfterAdd(fixed=True).eval(), S),
         ("nn.Conv2d(8, 8, 3, padding=1) → nn.ReLU6() before this pooling",)),
    Case("avg-pool", ("akida2", "akida1"),
         lambda: (net(None, [nn.AvgPool2d(2), conv(), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("nn.MaxPool2d(2)",)),
    Case("gap-area", ("akida2",),
         lambda: (net(None, [conv(), R6(), nn.AdaptiveAvgPool2d(1)]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), R6(), nn.AdaptiveAvgPool2d(1)]), S),
         ("at most 12x12", "nn.MaxPool2d(2)")),
    Case("pooled-before-dense", ("akida2",),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), R6(), nn.MaxPool2d(2)]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), R6(), nn.MaxPool2d(2), conv(), R6()]), S),
         ("nn.Conv2d(8, 8, 3, padding=1) → nn.ReLU6()",)),
    Case("dense-inputs", ("akida2",),
         lambda: (net(conv(1, 9)), S), lambda: (net(conv(1, 8)), S),
         ("at most 8 output channels",)),
    Case("bounded-activation", ("akida1",),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), nn.ReLU()]), S),
         lambda: (net(None, PAD_MID), S), ("nn.ReLU6()",)),
    Case("signed-clamp", ("akida2",),  # a signed Hardtanh: no quantized pattern
         lambda: (net(None, [nn.MaxPool2d(2), conv(), nn.Hardtanh(-1, 1)]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), nn.Hardtanh(0, 2)]), S),
         ("nn.Hardtanh(0, m)", "instead of nn.Hardtanh(-1, 1)")),
    Case("pool-after-stride2", ("akida2",),  # a ResNet-style stem: strided conv, then pool
         lambda: (net(nn.Conv2d(1, 8, 3, stride=2, padding=1), [nn.MaxPool2d(2), conv(), R6()]),
                  S),
         lambda: (net(nn.Conv2d(1, 8, 3, stride=2, padding=1),
                      [conv(stride=2), R6(), conv(), R6()]), S),
         ("another stride-2 convolution", "nn.Conv2d(8, 8, 3, stride=2, padding=1)")),
    Case("activation-between", ("akida1",),  # Hello Edge's fc1 → fc2
         lambda: (net(None, PAD_MID, head=[nn.Flatten(), nn.Linear(512, 16),
                                           nn.Linear(16, 10)]), S),
         lambda: (net(None, PAD_MID, head=[nn.Flatten(), nn.Linear(512, 16), R6(),
                                           nn.Linear(16, 10)]), S),
         ("nn.ReLU6()", "after 6, before 7")),
    Case("activation", ("akida1",),
         lambda: (net(None, [nn.MaxPool2d(2), conv(), nn.GELU()]), S),
         lambda: (net(None, PAD_MID), S), ("nn.ReLU6()",)),
    Case("activation", ("akida2",),  # a GELU that pools (Conv → GELU alone maps)
         lambda: (nn.Sequential(conv(1, 8), nn.GELU(), *PAD_MID, nn.Flatten(),
                                nn.Linear(512, 10)).eval(), S),
         lambda: (net(None, PAD_MID), S), ("nn.ReLU6()",)),
    Case("squashing-inside", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), nn.Tanh(), conv(), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("remove it",)),
    Case("softmax-inside", ("akida2", "akida1"),
         lambda: (net(None, [nn.MaxPool2d(2), nn.Softmax(dim=1), conv(), R6()]), S),
         lambda: (net(None, PAD_MID), S), ("remove it",)),
    Case("batchnorm", ("akida2", "akida1"),  # conv → ReLU6 → BN → pool → padded conv
         lambda: (_bn_stats(net(None, [nn.BatchNorm2d(8), nn.MaxPool2d(2), conv(), R6()])), S),
         lambda: (_bn_stats(nn.Sequential(conv(1, 8), nn.BatchNorm2d(8), R6(), *PAD_MID,
                                          nn.Flatten(), nn.Linear(512, 10))), S),
         ("move the BatchNorm right after 0", "fine-tune")),
    Case("batchnorm", ("akida2", "akida1"),  # conv → pool → BN → ReLU, a negative BN scale
         lambda: (_bn_stats(nn.Sequential(conv(1, 8), nn.MaxPool2d(2), nn.BatchNorm2d(8), R6(),
                                          conv(), R6(), nn.Flatten(), nn.Linear(512, 10)),
                            negative=True), S),
         lambda: (_bn_stats(nn.Sequential(conv(1, 8), nn.BatchNorm2d(8), nn.MaxPool2d(2), R6(),
                                          conv(), R6(), nn.Flatten(), nn.Linear(512, 10)),
                            negative=True), S),
         ("move the BatchNorm right after 0 (Conv2d → BN → MaxPool2d)", "scales are negative")),
    Case("residual", ("akida1",), lambda: (PoolAfterAdd(fixed=True).eval(), S),
         lambda: (PoolAfterAdd(fixed=True, skip=False).eval(), S),
         ("drop the skip connection",)),
    Case("depthwise-separable", ("akida1",),
         lambda: (net(None, [nn.MaxPool2d(2), conv(groups=8), R6(), conv(8, 16, 1), R6()]), S),
         lambda: (net(None, [nn.MaxPool2d(2), conv(groups=8), conv(8, 16, 1), R6()]), S),
         ("feed it straight into the 1x1 Conv2d", "remove 4")),
]


def _wide(width):
    return net(conv(1, 4), [nn.MaxPool2d(2), conv(4, 4), R6(), nn.MaxPool2d(2), conv(4, 2), R6()],
               shape=(1, 8, width))


def _params():
    out, seen = [], {}
    for case in CASES:
        for target in case.targets:
            name = f"{case.rule}-{target}"
            seen[name] = seen.get(name, 0) + 1
            ident = name if seen[name] == 1 else f"{name}-{seen[name]}"
            out.append(pytest.param(case, target, id=ident))
    return out


PARAMS = _params()


def _findings(model, shape, target):
    """The rules on the graph the target's flow leaves (as check_compatibility runs them)."""
    from akida_workflows.passes import run_plans

    flow = run_plans(model, shape, target, trace_graph(model, shape))
    return check_graph(flow.planned_graph or flow.graph, target)


@pytest.mark.parametrize("case, target", PARAMS)
def test_rule_flags_only_its_violation(case, target):
    model, shape = case.bad()
    findings = _findings(model, shape, target)
    assert {f.rule.id for f in findings} == {case.rule}, [(f.rule.id, f.reason) for f in findings]
    for fragment in case.fix_says:
        assert any(fragment in f.fix for f in findings), (fragment, [f.fix for f in findings])
    assert all(f.reason and f.fix for f in findings)


@pytest.mark.parametrize("case, target", PARAMS)
def test_fixed_model_violates_no_rule(case, target):
    model, shape = case.fixed()
    findings = _findings(model, shape, target)
    assert not findings, [(f.rule.id, f.site.name, f.reason) for f in findings]


@pytest.mark.slow
@pytest.mark.parametrize("case, target", PARAMS)
def test_toolchain_refuses_violation_and_accepts_fix(case, target):
    torch.manual_seed(0)  # the same weights whatever ran before: the same model each run
    bad, bad_shape = case.bad()
    ok, why = real_toolchain(bad, bad_shape, target)
    assert not ok, f"the toolchain accepts a model that violates {case.rule}"
    if case.rule == "batchnorm" and "fold_batchnorm" in " ".join(
            f.fix for f in _findings(bad, bad_shape, target)):
        pytest.fail("expected the move-the-BatchNorm fix")
    torch.manual_seed(0)
    fixed, fixed_shape = case.fixed()
    ok, why = real_toolchain(fixed, fixed_shape, target)
    assert ok, f"the fix of {case.rule} does not make the model pass on {target}: {why}"


def test_batchnorm_after_max_pool_with_positive_scales_is_fine_on_akida2():
    model = _bn_stats(nn.Sequential(conv(1, 8), nn.MaxPool2d(2), nn.BatchNorm2d(8), R6(),
                                    conv(), R6(), nn.Flatten(), nn.Linear(512, 10)))
    assert not _findings(model, S, "akida2")  # QuantizeML folds it through the pooling
    assert [f.rule.id for f in _findings(model, S, "akida1")] == ["batchnorm"]


def test_foldable_batchnorm_fix_is_fold_batchnorm():
    from akida_workflows.folding import fold_batchnorm

    model = _bn_stats(net(None, [nn.MaxPool2d(2), conv(), R6()],
                          head=[nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(512, 10)]))
    findings = _findings(model, S, "akida2")
    assert [f.rule.id for f in findings] == ["batchnorm"]
    assert "fold_batchnorm(model)" in findings[0].fix
    assert not _findings(fold_batchnorm(model), S, "akida2")


@pytest.mark.slow
def test_foldable_batchnorm_fix_works():
    from akida_workflows.folding import fold_batchnorm

    model = _bn_stats(net(None, [nn.MaxPool2d(2), conv(), R6()],
                          head=[nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(512, 10)]))
    assert not real_toolchain(model, S, "akida2")[0]
    assert real_toolchain(fold_batchnorm(model), S, "akida2")[0]


def test_every_rule_has_a_case_and_a_limit():
    covered = {case.rule for case in CASES}
    assert covered == {rule.id for rule in RULES}
    for rule in RULES:
        assert rule.limit and rule.stage in ("export", "quantization", "conversion", "mapping")
        assert rule.status in ("fixable", "unsupported")
        assert set(rule.targets) <= {"akida2", "akida1"}
    table = str(limits_table("akida1"))
    assert "bounded-activation" in table and "dense-inputs" not in table


def test_a_refused_operation_is_tied_to_the_rule_its_geometry_breaks():
    # How compat ties a toolchain refusal to the table: the operation's own attributes
    # and shapes, whatever the toolchain's message says (or a later version rewords).
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(),
                          nn.Conv2d(8, 8, (3, 5), padding=(1, 2)), nn.ReLU6(),
                          nn.Flatten(), nn.Linear(8 * 48 * 48, 10)).eval()
    graph = trace_graph(model, (1, 48, 48))
    by_name = {site.name: site for site in graph.sites}
    assert rule_at(by_name["0"], graph, "akida2") is None
    assert rule_at(by_name["2"], graph, "akida2").id == "square-kernel"
    assert rule_at(by_name["5"], graph, "akida2").id == "dense-inputs"
    assert rule_at(by_name["5"], graph, "akida1") is None  # Akida 1.0 splits it over FNP2s
    # the first rule in table order when a site breaks several
    relu = nn.Sequential(nn.Conv2d(1, 8, (3, 5), dilation=2), nn.ReLU()).eval()
    graph = trace_graph(relu, (1, 32, 32))
    assert rule_at(graph.named("0")[0], graph, "akida1").id == "square-kernel"


def test_fixes_do_not_send_the_user_in_a_circle():
    # A pooling-padding error never gets "stride 1 + MaxPool2d" (the edit that causes it) …
    bad, shape = CASES[[c.rule for c in CASES].index("max-pool")].bad()
    for target in ("akida2", "akida1"):
        (finding,) = _findings(bad, shape, target)
        assert "stride 1" not in finding.fix and "stride=1" not in finding.fix
    # … and a kernel fix gives the padding that keeps the map size.
    bad, shape = CASES[[c.rule for c in CASES].index("square-kernel")].bad()
    (finding,) = _findings(bad, shape, "akida2")
    assert "padding=2" in finding.fix


@pytest.mark.parametrize("k", [3, 5, 7])
def test_input_stride_padding_predicts_the_measured_maps(k):
    """Measured with the real toolchain (stride 3, padding=k//2, maps 15 to 18): Akida 2.0
    maps only 16 (symmetric 'same'), Akida 1.0 also 17 (flipped); padding=0 maps always."""
    from akida_workflows.padding import strided_padding_maps

    sizes = (15, 16, 17, 18)
    assert [strided_padding_maps(n, k, 3, k // 2, "akida2") for n in sizes] == [0, 1, 0, 0]
    assert [strided_padding_maps(n, k, 3, k // 2, "akida1") for n in sizes] == [0, 1, 1, 0]
    assert all(strided_padding_maps(n, k, 3, 0, t) for n in sizes for t in ("akida2", "akida1"))


def test_input_stride_padding_fix_never_proposes_the_current_size():
    """Every size and padding the rule flags gets a fix with another size or padding=0,
    and the stand-in that lets the check go on keeps the output shape."""
    from akida_workflows.padding import _input_stride_stand_in

    for target in ("akida2", "akida1"):
        for n in range(9, 40):
            for k in (3, 5, 7):
                model = net(conv(1, 8, k, stride=3), shape=(1, n, n))
                found = [f for f in _findings(model, (1, n, n), target)
                         if f.rule.id == "input-stride-padding"]
                if not found:
                    continue
                assert f"a {n}x{n} input" not in found[0].fix and "padding=0" in found[0].fix
                stand_in = _input_stride_stand_in(found[0].site, trace_graph(model, (1, n, n)),
                                                  target)
                assert stand_in is not None and stand_in.stride == (3, 3)
                out = stand_in(torch.zeros(1, 1, n, n)).shape
                assert out == model[0](torch.zeros(1, 1, n, n)).shape, (target, n, k)


def test_graph_of_untraceable_model_uses_hooks():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv(1, 8)
            self.act = nn.ReLU()
            self.fc = nn.Linear(8 * 16 * 16, 10)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = -x
            return self.fc(torch.flatten(self.act(self.conv(x)), 1))

    graph = trace_graph(Branchy().eval(), S)
    assert not graph.traced
    assert [s.name for s in graph.sites] == ["conv", "act", "fc"]
    assert [f.rule.id for f in check_graph(graph, "akida1")] == ["bounded-activation"]


def _proposed_conv(fix: str):
    """(kernel, padding, stride) of the first ``kernel_size=K, padding=P[, stride=S]`` in a fix."""
    import re

    m = re.search(r"kernel_size=(\d+), padding=(\d+)(?:, stride=(\d+))?", fix)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)) if m else None


@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_square_kernel_fix_states_the_output_it_gives(target):
    """A non-square kernel's fix proposes a kernel the target takes at that stride and says
    truthfully whether the output size stays (Hello Edge's 10x4 'valid' kernels on 49x10
    MFCC used to get "same output size" for a 49x10 output instead of 40x7)."""
    from akida_workflows.targets import limits

    lim = limits(target)
    checked = 0
    for (kh, kw), stride, padding, n in [((10, 4), 1, 0, (49, 10)), ((3, 5), 1, 1, (16, 16)),
                                         ((1, 9), 1, (0, 4), (8, 33)), ((5, 3), 2, 0, (17, 17)),
                                         ((3, 1), 2, (1, 0), (15, 15)), ((7, 5), 1, 3, (20, 12))]:
        body = [nn.Conv2d(1, 8, 3, padding=1), R6(), nn.MaxPool2d(2) if min(n) > 9 else
                nn.Identity(), nn.Conv2d(8, 8, (kh, kw), stride=stride, padding=padding), R6()]
        model = nn.Sequential(*body).eval()
        shape = (1, *(2 * v if min(n) > 9 else v for v in n))
        found = [f for f in _findings(net(None, body[2:], shape=shape), shape, target)
                 if f.rule.id == "square-kernel"]
        assert len(found) == 1, (kh, kw, [f.rule.id for f in _findings(model, shape, target)])
        fix = found[0].fix
        k, p, s = _proposed_conv(fix)
        assert k in (lim.stride2_kernels if s == 2 else lim.kernels), fix
        x = torch.zeros(1, 8, *n)
        before = tuple(nn.Conv2d(8, 8, (kh, kw), stride=stride, padding=padding)(x).shape[2:])
        after = tuple(nn.Conv2d(8, 8, k, stride=s, padding=p)(x).shape[2:])
        if after == before:
            assert "(same output size)" in fix, fix
        else:
            size = "x".join(map(str, after))
            assert f"output {size} instead of {'x'.join(map(str, before))}" in fix, fix
            assert "same output size" not in fix
        checked += 1
    assert checked == 6


@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_conv2d_on_a_one_high_map_is_pointed_to_conv1d(target):
    """TC-ResNet style: MFCC as channels, time as width, (1, k) kernels and (1, 2) strides.
    The reason says the strides differ between the axes (not "take stride 1 or 2" of a
    stride the layer has) and the fix proposes the Conv1d form, with a kernel the target
    takes at that stride."""
    from akida_workflows.targets import limits

    lim = limits(target)
    shape = (1, 5, 101)
    body = [nn.Conv2d(1, 16, (5, 3), padding=(0, 1)), R6(),  # 1 x 101
            nn.Conv2d(16, 24, (1, 9), stride=(1, 2), padding=(0, 4)), R6(),
            nn.Conv2d(24, 24, 1, stride=(1, 2)), R6()]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 4)).eval()
    by_module = {}
    for f in _findings(model, shape, target):
        by_module.setdefault(f.site.name, []).append(f)
    stride_reason = [f.reason for f in by_module["2"] if f.rule.id == "stride"]
    assert stride_reason and "differs between height and width" in stride_reason[0]
    # (it used to read "stride (1, 2): Akida convolutions after the input take stride 1 or 2")
    assert "stride (1, 2): " not in " ".join(f.reason for f in by_module["2"])
    square = [f.fix for f in by_module["2"] if f.rule.id == "square-kernel"][0]
    import re

    (k,) = map(int, re.findall(r"nn\.Conv1d\(16, 24, (\d+), padding=\d+, stride=2\)", square))
    assert k in lim.stride2_kernels, square
    pointwise = " ".join(f.fix for f in by_module["4"])
    assert re.search(r"nn\.Conv1d\(24, 24, \d+, padding=\d+, stride=2\)", pointwise), pointwise


def test_max_pool_fix_never_proposes_what_the_pooling_already_is():
    odd = (1, 15, 15)
    kept = net(None, [nn.MaxPool2d(2), conv(), R6()], shape=odd)
    (finding,) = [f for f in _findings(kept, odd, "akida2") if f.rule.id == "max-pool"]
    assert "use nn.MaxPool2d(2)" not in finding.fix, finding.fix
    assert finding.fix.startswith("keep nn.MaxPool2d(2) but give it an even-sized map (this "
                                  "one is 15x15"), finding.fix
    changed = net(None, [nn.MaxPool2d(3, 2), conv(), R6()], shape=odd)
    (finding,) = [f for f in _findings(changed, odd, "akida2") if f.rule.id == "max-pool"]
    assert finding.fix.startswith("use nn.MaxPool2d(2) (kernel 2, stride 2, padding 0) on an "
                                  "even-sized map"), finding.fix


@pytest.mark.parametrize("between, flagged", [
    ([nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)], True),  # conv → GAP → Dense
    ([nn.MaxPool2d(2), conv(), R6(), nn.Flatten(), nn.Linear(512, 10)], True),
    ([nn.BatchNorm2d(8), conv(), R6(), nn.Flatten(), nn.Linear(2048, 10)], True),
    ([nn.Dropout(0.1), conv(), R6(), nn.Flatten(), nn.Linear(2048, 10)], True),
    ([R6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)], False),
    ([R6(), conv(groups=8), conv(8, 8, 1), R6(), nn.Flatten(), nn.Linear(2048, 10)],
     False),  # depthwise → 1x1 with nothing between: one SeparableConv2D
])
def test_activation_between_weighted_layers(between, flagged):
    """Conv → ReLU6 → Conv → ``between``. The first three kinds were run through the real
    toolchain on 2026-12-06: CNN2SNN refuses each for Akida 1.0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), R6(), conv(), *between).eval()
    ids = [f.rule.id for f in _findings(model, S, "akida1")]
    assert ("activation-between" in ids) is flagged, ids
    assert "activation-between" not in [f.rule.id for f in _findings(model, S, "akida2")]


@pytest.mark.parametrize("block, reason, fix", [
    # the 1x1 after the depthwise is strided: no separable layer (the bridge does not merge)
    ([conv(groups=8), conv(8, 16, 1, stride=2), R6()], "1x1 convolution (4) with stride 2",
     "move the stride into the depthwise convolution: 3 with stride=2, padding=1 and 4 with "
     "stride=1"),
    # two filters per channel: Akida 1.0's separable layer takes one
    ([nn.Conv2d(8, 16, 3, padding=1, groups=8), conv(16, 16, 1), R6()],
     "2 filters per channel (8 → 16 channels)",
     "use one filter per channel, nn.Conv2d(8, 8, 3, padding=1, groups=8), then a 1x1 "
     "nn.Conv2d(8, 16, 1)"),
    ([conv(groups=8), R6(), conv(8, 8, 1), R6()], "depthwise convolution followed by ReLU6",
     "feed it straight into the 1x1 Conv2d: remove 4 between them"),
])
def test_depthwise_blocks_the_bridge_does_not_merge(block, reason, fix):
    """Conv → ReLU6 → MaxPool → ``block`` (the depthwise is module 3). Each is a depthwise convolution
    the Keras bridge leaves alone (``separable_blocks``), which CNN2SNN refuses for Akida 1.0;
    the fix never proposes what the block already is. Run through the real toolchain on
    2026-12-06: the strided 1x1 and the two-filters-per-channel blocks are refused (CNN2SNN,
    QuantizeML), and each fix as printed converts and maps on AKD1000."""
    model = net(None, [nn.MaxPool2d(2), *block], shape=S)
    everything = _findings(model, S, "akida1")
    findings = [f for f in everything if f.rule.id == "depthwise-separable"]
    assert [f.site.name for f in findings] == ["3"], findings
    # one fix for the module: no 'put a ReLU6 after it' from activation-between as well
    assert [f.rule.id for f in everything if f.site.name == "3"] == ["depthwise-separable"]
    assert reason in findings[0].reason, findings[0].reason
    assert findings[0].fix.startswith(fix), findings[0].fix


@pytest.mark.parametrize("conv_cls, bn", [(nn.Conv2d, nn.BatchNorm2d), (nn.Conv1d, nn.BatchNorm1d)])
def test_a_separable_pair_is_one_layer_in_every_rule_and_pass(conv_cls, bn):
    """depthwise → BatchNorm → 1x1 (2-D, and 1-D, which the lowering makes 2-D): no rule
    flags it and the merge pass announces it, with the same predicate."""
    from akida_workflows.geometry import separable_partner
    from akida_workflows.graph import trace_graph
    from akida_workflows.passes import run_plans

    torch.manual_seed(0)
    shape = (1, 16, 16) if conv_cls is nn.Conv2d else (1, 64)
    pool = nn.MaxPool2d(2) if conv_cls is nn.Conv2d else nn.MaxPool1d(2)
    model = nn.Sequential(conv_cls(1, 8, 3, padding=1), R6(), pool,
                          conv_cls(8, 8, 3, padding=1, groups=8), bn(8), conv_cls(8, 16, 1),
                          R6(), nn.Flatten(), nn.Linear(16 * 8 * 8 if len(shape) == 3 else 16 * 32, 4))
    model.eval()
    graph = trace_graph(model, shape)
    pairs = [(s.name, separable_partner(s, graph).name) for s in graph.sites
             if separable_partner(s, graph) is not None]
    assert pairs == [("3", "5")]
    ids = {f.rule.id for f in _findings(model, shape, "akida1")}
    assert not ids & {"depthwise-separable", "activation-between"}, ids
    flow = run_plans(model, shape, "akida1", trace_graph(model, shape))
    (merge,) = [p for p in flow.plans if p.pass_name == "merge_separable"]
    assert [c.nodes for c in merge.changes] == [("3", "5")]


def test_a_dilated_depthwise_gets_one_finding_the_dilation():
    model = net(None, [nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),
                       conv(8, 8, 1), R6()], shape=S)
    assert [f.rule.id for f in _findings(model, S, "akida1") if f.site.name == "3"] == \
        ["dilation"]


def test_activation_between_names_the_users_1d_layers():
    """On a lowered 1-D model the reason names the Conv1d layers the user wrote (it said
    'Conv2d feeds … (Conv2d)' on Kachuee's ECG ResNet)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.Conv1d(8, 8, 5, padding=2), R6(),
                          nn.Flatten(), nn.Linear(8 * 64, 4)).eval()
    (finding,) = [f for f in _findings(model, (1, 64), "akida1")
                  if f.rule.id == "activation-between"]
    assert finding.reason.startswith("Conv1d feeds 1 (Conv1d) with no activation"), finding.reason


def test_padding_mode_matters_only_where_the_convolution_pads():
    # padding_mode='reflect' with padding=0 or 'valid' pads nothing: no row
    for padding in (0, "valid"):
        model = net(None, [nn.MaxPool2d(2), conv(padding=padding, padding_mode="reflect"), R6()])
        assert "padding-mode" not in [f.rule.id for f in _findings(model, S, "akida2")], padding
    for padding in (1, "same"):
        model = net(None, [nn.MaxPool2d(2), conv(padding=padding, padding_mode="reflect"), R6()])
        assert "padding-mode" in [f.rule.id for f in _findings(model, S, "akida2")], padding
