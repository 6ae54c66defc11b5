"""check_compatibility agrees with the real toolchain on a zoo of models, in one run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from zoo import (
    SHAPE,
    USER_MODELS,
    hw_only,
    two_inputs,
    zoo,
    zoo_conversion,
    zoo_report,
)

from akida_workflows.compat import (
    STATUSES,
    CompatibilityReport,
    check_compatibility,
)
from akida_workflows.errors import AkidaWorkflowError, IncompatibleModelError

ZOO = zoo()
SAMPLES = np.random.default_rng(0).uniform(-1, 1, (16, *SHAPE)).astype(np.float32)


def report_for(name, target) -> CompatibilityReport:
    """check_compatibility of a zoo model, once per session."""
    return zoo_report(name, target)


def real_verdict(name, target) -> bool:
    akida_model, _ = zoo_conversion(name, target)
    return akida_model is not None and hw_only(akida_model, target)[0]


#: Zoo models whose report is complete (no "not reached") after one run: the rules see
#: everything, or stand-ins let the toolchain judge the rest. The others stop the
#: toolchain at an operation without a stand-in (1-D layers, recurrence, attention, …).
_STOPS_EVERYWHERE = {"lstm", "attention", "lstm_kws", "keyword_transformer",
                     # no 2-D form (M5) or no stand-in for a 4-channel input / an AvgPool1d
                     # (TEMPONet): every limit is named by the rules, the toolchain stops
                     "m5_raw_audio", "ppg_temponet"}
COMPLETE = {
    "akida2": set(ZOO) - _STOPS_EVERYWHERE - {"lenet5"},  # valid input conv + pool: conversion
    # depthwise → pointwise is refused by today's 4-bit bridge; ResNet-8's shortcut branches
    # are taken out to check the rest; DS-CNN's strided 49x10 input conv has no stand-in.
    "akida1": set(ZOO) - _STOPS_EVERYWHERE - {"depthwise_separable", "mobilenet_v1_vww",
                                             "resnet8", "kws_dscnn"},
}


#: The zoo in reverse: tests/test_cli.py's agreement test takes it in order, and the two
#: files usually run at the same time on the two workers. In the same order, each waited
#: on the other's lock for the model it was computing (about 110 s of an idle core per
#: run, measured); in opposite orders each computes half and reads the other half.
ZOO_REVERSED = sorted(ZOO, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["akida2", "akida1"])
@pytest.mark.parametrize("name", ZOO_REVERSED)
def test_report_agrees_with_the_toolchain(name, target):
    model = ZOO[name]
    real = real_verdict(name, target)
    report = report_for(name, target)  # never raises: a 1-D model past limits is reported
    assert report.ok == real, f"{name}/{target}: report says ok={report.ok}, toolchain {real}\n{report}"
    assert all(r.status in STATUSES for r in report.rows)
    # Never "ok" by default: only when the toolchain mapped the whole (working) model.
    if any(r.status == "ok" for r in report.rows):
        assert report.toolchain == "mapped", report
    if report.ok:
        assert report.mapping.fully_mapped and report.hw_fraction == 1.0
    else:
        modules = {n for n, _ in model.named_modules()}
        assert all(issue.reason and issue.fix for issue in report.issues), report
        # Issues are reported in PyTorch terms: module names (or the fx name of a
        # functional op such as a residual `add`), never ONNX or Keras names.
        assert all("/" not in issue.module for issue in report.issues), report
        assert any(issue.module in modules | {"model"} or issue.module.isidentifier()
                   for issue in report.issues), report
        assert not any("inbound layers" in issue.reason for issue in report.issues), report
    if name in COMPLETE[target]:
        assert report.complete, report


EXPECTED = {  # (model, target): {module: status}
    ("bn_after_activation", "akida2"): {"3": "fixable"},
    ("valid_padding", "akida2"): {"3": "fixable", "0": "fixable"},
    ("pooled_last_conv", "akida2"): {"5": "fixable"},
    ("dense_over_2048", "akida2"): {"3": "fixable"},
    ("unbounded_relu", "akida1"): {"1": "fixable", "4": "fixable"},
    ("lstm", "akida2"): {"lstm": "unsupported", "fc": "not reached"},
    ("attention", "akida1"): {"attn": "unsupported"},
    ("sigmoid_inside", "akida1"): {"3": "unsupported"},
    ("gelu", "akida2"): {"1": "fixable", "4": "ok"},  # only a pooled GELU is refused
    ("gelu", "akida1"): {"1": "fixable", "4": "fixable"},
    ("residual_add", "akida1"): {"add": "unsupported"},
    ("resnet8", "akida1"): {"add": "unsupported", "add_1": "unsupported"},
    ("lenet5", "akida1"): {"relu": "fixable", "fc3": "ok"},  # x.view: a plain reshape
}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(EXPECTED), ids="-".join)
def test_expected_verdicts(key):
    name, target = key
    report = report_for(name, target)
    assert not report.ok
    statuses = {r.module: r.status for r in report.rows}
    for module, status in EXPECTED[key].items():
        assert statuses.get(module) == status, report


@pytest.mark.slow
def test_akida1_collects_every_violation_in_one_run():
    # MobileNetV1 as published: unbounded ReLUs everywhere and depthwise → BN → ReLU →
    # pointwise blocks; all of them are reported at once, not one per run.
    report = report_for("mobilenet_v1_vww", "akida1")
    rules = [r.rule for r in report.issues]
    relus = [r for r in report.issues if "bounded-activation" in r.rule]
    assert len(relus) == 17, report  # every ReLU of the 17 conv blocks
    assert sum("depthwise-separable" in r for r in rules) == 8, report


@pytest.mark.slow
def test_resnet8_maps_entirely_on_akida2_adds_included():
    report = report_for("resnet8", "akida2")
    assert report.ok and report.hw_fraction == 1.0, report
    assert {r.status for r in report.rows} == {"ok"}


@pytest.mark.slow
def test_final_softmax_runs_on_the_host_for_akida1():
    # The Akida model returns the logits (same argmax); the softmax runs on the host.
    report = check_compatibility(ZOO["softmax_head"], SHAPE, "akida1", samples=SAMPLES)
    assert report.ok, report
    assert {r.module: r.status for r in report.rows}["7"] == "ok"


def test_bn_fix_depends_on_foldability():
    report = check_compatibility(ZOO["bn_after_activation"], SHAPE, "akida2", samples=SAMPLES)
    fix = next(r.fix for r in report.issues if r.kind == "BatchNorm2d")
    assert "move the BatchNorm right after 0" in fix


def test_report_api():
    report = check_compatibility(ZOO["valid_padding"], SHAPE, "akida2", samples=SAMPLES)
    assert isinstance(report, CompatibilityReport)
    assert [r.module for r in report.rows][:3] == ["0", "1", "2"]
    assert "fixable" in str(report) and "<table" in report._repr_html_()
    assert report.complete and report.toolchain == "mapped"
    rules = {r.module: r.rule for r in report.issues}
    assert rules["3"] == "same-padding"
    with pytest.raises(IncompatibleModelError) as info:
        report.raise_for_status()
    assert "3" in info.value.nodes
    good = check_compatibility(ZOO["mappable"], SHAPE, "akida2", samples=SAMPLES)
    assert good.ok and good.hw_fraction == 1.0 and good.mapping.fully_mapped
    good.raise_for_status()


def test_not_reached_is_never_ok():
    report = check_compatibility(ZOO["lstm"], SHAPE, "akida2", samples=SAMPLES)
    statuses = {r.module: r.status for r in report.rows}
    assert statuses == {"lstm": "unsupported", "fc": "not reached"}
    assert not report.ok and not report.complete
    assert "1 not reached" in report.summary_line()
    assert "not reached" in report._repr_html_()


def test_two_inputs_is_a_report_not_a_crash():
    report = check_compatibility(two_inputs(), SHAPE, "akida2")
    (row,) = report.rows[-1:]
    assert row.module == "model" and row.status == "unsupported"
    assert "takes 2 inputs" in row.reason and row.fix
    assert not report.ok


@pytest.mark.slow
def test_dilated_conv1d_is_lowered_then_reported_not_a_crash():
    # 1-D models are checked as their exact 2-D form (the lower_1d pass); the dilated
    # kernel becomes a zero-filled 5x5 one. Past the target's limits: a report, every limit.
    model = nn.Sequential(nn.Conv1d(4, 8, 3, dilation=2, padding="same"), nn.ReLU6(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    for target in ("akida2", "akida1"):
        report = check_compatibility(model, (4, 64), target)
        assert "lowered to their exact 2-D form (5 rows)" in str(report)
        assert "0: dilation 2 expanded to 5 taps" in report.rewrites
        rows = {r.module: r for r in report.rows}
        assert rows["0"].kind == "Conv1d" and rows["0"].status == "fixable"
        assert "input-channels" in rows["0"].rule and "nn.Conv1d(3, 8" in rows["0"].fix
        assert not report.ok


def test_mlp_runs_on_akida2_from_an_int8_input(tmp_path):
    from akida_workflows.convert import first_compute_op, quantize_onnx, to_akida
    from akida_workflows.deploy import map_report
    from akida_workflows.export import export_onnx

    model = ZOO["mlp"]
    exported = export_onnx(model, torch.from_numpy(SAMPLES[:1]), tmp_path / "mlp.onnx")
    assert first_compute_op(exported) == "Gemm"  # Flatten is followed through
    akida_model = to_akida(quantize_onnx(exported, SAMPLES))
    assert map_report(akida_model, "SixNodesIPv2").hw_fraction == 1.0
    with torch.no_grad():
        ref = model(torch.from_numpy(SAMPLES)).numpy()
    out = akida_model.predict(SAMPLES).reshape(len(SAMPLES), -1)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_first_compute_op_follows_layout_ops_only(tmp_path):
    from akida_workflows.convert import first_compute_op
    from akida_workflows.export import export_onnx

    x = torch.from_numpy(SAMPLES[:1])
    conv_first = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                               nn.Linear(4 * (SHAPE[1] - 2) * (SHAPE[2] - 2), 3)).eval()
    assert first_compute_op(export_onnx(conv_first, x, tmp_path / "c.onnx")) == "Conv"
    pooled_first = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(SHAPE[1] * SHAPE[2] // 4, 3)).eval()
    assert first_compute_op(export_onnx(pooled_first, x, tmp_path / "p.onnx")) == "MaxPool"


def test_mlp_with_an_unsigned_input_names_the_cause(tmp_path):
    from akida_workflows.convert import quantize_onnx
    from akida_workflows.export import export_onnx

    exported = export_onnx(ZOO["mlp"], torch.from_numpy(SAMPLES[:1]), tmp_path / "mlp.onnx")
    with pytest.raises(IncompatibleModelError) as info:
        quantize_onnx(exported, SAMPLES, input_dtype="uint8")
    message = str(info.value)
    assert not message.rstrip().endswith(":")
    assert "AssertionError at" in message and "dense.py" in message
    assert "input_dtype='int8'" in message


def test_check_works_on_a_copy_in_eval_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = check_compatibility(model, (1, 8, 8), "akida2")
    assert model.training and all(torch.equal(before[k], v) for k, v in
                                  model.state_dict().items())
    assert report.rewrites == ["1 BatchNorm folded by the ONNX export (1 → 0)"]


def test_bad_arguments():
    with pytest.raises(AkidaWorkflowError, match="target"):
        check_compatibility(ZOO["mappable"], SHAPE, "akida3")
    with pytest.raises(AkidaWorkflowError, match="input_shape"):
        check_compatibility(ZOO["mappable"], (0, 16, 16))
    with pytest.raises(AkidaWorkflowError, match="does not run on an input of shape"):
        check_compatibility(ZOO["mappable"], (3, 16, 16))


@pytest.mark.slow
@pytest.mark.parametrize("name", USER_MODELS)
def test_user_models_never_crash_and_name_their_modules(name):
    for target in ("akida2", "akida1"):
        report = report_for(name, target)
        assert report.rows and all(r.status in STATUSES for r in report.rows)
        named = {n for n, _ in ZOO[name].named_modules()}
        assert {r.module for r in report.rows if r.kind != "model"} - named <= {
            r.module for r in report.rows if r.module.isidentifier()}


@pytest.mark.slow
def test_a_model_mapped_over_several_passes_says_so_in_its_headline():
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 128, 3, padding=1), nn.ReLU6()]
    for _ in range(14):
        layers += [nn.Conv2d(128, 128, 3, padding=1), nn.ReLU6()]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(128, 10)).eval()
    report = check_compatibility(model, (1, 8, 8), "akida2")
    assert report.ok and report.mapping.hardware_passes > 1, report
    assert f"compatible over {report.mapping.hardware_passes} hardware passes" in str(report)
    small = check_compatibility(ZOO["mappable"], SHAPE, "akida2", samples=SAMPLES)
    assert small.mapping.hardware_passes == 1 and "passes" not in small.summary_line()


class _MeanOverTime(nn.Module):
    """Conv1d stack ending in ``x.mean(-1)`` (MatchboxNet / QuartzNet heads): the lowering
    computes the mean with modules of its own (``mean_gap``, ``mean_flatten``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv1d(1, 8, 3, padding=1), nn.Conv1d(8, 8, 3, padding=1)
        self.act1, self.act2, self.fc = nn.ReLU6(), nn.ReLU6(), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(-1))


def test_modules_the_lowering_adds_are_named_after_the_users_op():
    from akida_workflows.graph import trace_graph
    from akida_workflows.lowering import lower_1d
    from akida_workflows.passes import run_plans
    from akida_workflows.rules import check_graph

    model = _MeanOverTime().eval()
    lowered = lower_1d(model, (1, 64))
    assert lowered.model.lowering_helpers == {"mean_gap": "mean", "mean_flatten": "mean"}
    flow = run_plans(model, (1, 64), "akida2", trace_graph(model, (1, 64)))
    assert flow.graph.helpers == lowered.model.lowering_helpers
    assert flow.graph.origin_name("mean_gap") == "mean" == flow.graph.origin_name("mean")
    (gap,) = [f for f in check_graph(flow.graph, "akida2") if f.rule.id == "gap-area"]
    # worded for the user's 1-D signal (its length is what the user can change)
    assert "64 samples x 5 identical rows = 320" in gap.reason, gap.reason
    assert "shorten the signal to at most 28 samples" in gap.fix, gap.fix


@pytest.mark.slow
def test_report_names_the_users_op_not_the_lowerings_modules():
    """MatchboxNet-style ``x.mean(-1)`` head: one row ``mean`` (type ``mean``) with the
    limit it breaks, no row of the lowering's own ``mean_gap`` / ``mean_flatten``."""
    report = check_compatibility(_MeanOverTime(), (1, 64), "akida2")
    rows = {r.module: r for r in report.rows}
    assert not {"mean_gap", "mean_flatten"} & set(rows), list(rows)
    assert rows["mean"].kind == "mean" and rows["mean"].status == "fixable", rows["mean"]
    assert "identical rows" in rows["mean"].reason
    assert "mean_" not in report.toolchain and "mean_" not in str(report)
    assert [r.module for r in report.rows][-2:] == ["mean", "fc"]


def test_rows_the_toolchain_never_judged_say_so_and_name_every_issue():
    """Conv1d → MaxPool1d(2) on 15 samples → Conv1d: the rules flag the pooling (odd map)
    and the lowering the conv after it; nothing is converted. The other rows say the
    rules found nothing there, and their fix names both issues, not only the first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(2),
                          nn.Conv1d(4, 4, 3, padding=1), nn.ReLU6(), nn.Flatten(),
                          nn.Linear(28, 3)).eval()
    rows = {r.module: r for r in check_compatibility(model, (1, 15), "akida2").rows}
    assert [m for m, r in rows.items() if r.status == "fixable"] == ["2", "3"], rows
    first = rows["0"]
    assert first.status == "not reached", first
    assert first.reason.startswith("no rule is broken here; not judged by the toolchain, "
                                   "which stopped at 3"), first.reason
    assert first.fix == "fix 2, 3 and check again", first.fix
    # the pooling is already 2/2/0: its fix keeps it and asks for an even map
    assert rows["2"].fix.startswith("keep nn.MaxPool1d(2) but give it an even-sized map "
                                    "(this one is 15"), rows["2"].fix


class _ShapeBranchSkip(nn.Module):
    """Branches on a static shape (torch.fx cannot trace it), functional activations, and an
    activation that feeds both a convolution and a skip connection."""

    def __init__(self, bn=False):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.c3, self.fc = nn.Conv2d(8, 8, 5, padding=2), nn.Linear(8 * 8 * 8, 4)
        self.bn = nn.BatchNorm2d(8) if bn else nn.Identity()

    def forward(self, x):
        x = torch.nn.functional.relu6(self.bn(self.c1(x)))
        if x.shape[-1] > 8:
            x = torch.nn.functional.max_pool2d(x, 2)
        y = torch.nn.functional.relu6(self.c2(x))
        z = torch.nn.functional.relu6(self.c3(y)) + y
        return self.fc(torch.flatten(z, 1))


@pytest.mark.slow
@pytest.mark.parametrize("bn", [False, True])
def test_a_model_fx_cannot_trace_is_reported_layer_by_layer_without_false_rows(bn):
    """Traced by hooks, the graph does not show F.relu6: no 'no activation between' rows
    (found on such a model: three of them, each with a wrong fix), and the Akida 1.0 row
    says what to change in forward() (with a BatchNorm too: the fold step is what stops
    first; its row had the BatchNorm rule's fix); Akida 2.0 (ONNX export) converts it."""
    torch.manual_seed(0)
    model = _ShapeBranchSkip(bn).eval()
    v2 = check_compatibility(model, (1, 16, 16), "akida2")
    assert v2.ok and {"c1", "c2", "c3", "fc"} <= {r.module for r in v2.rows}, v2
    v1 = check_compatibility(model, (1, 16, 16), "akida1")
    (issue,) = [r for r in v1.issues if r.status != "not reached"]
    assert issue.module == "model" and issue.status == "fixable", v1
    assert issue.fix.lower().startswith("make forward() traceable by torch.fx"), issue.fix
    assert ("BatchNorm" in issue.reason) == bn, issue.reason
    assert all(r.status == "not reached" for r in v1.rows if r.module != "model"), v1


def test_a_layer_the_mapper_refuses_for_the_pooling_inside_it_points_at_that_pooling():
    """Akida 2.0 runs a global average pooling inside the convolution before it: the
    mapper refuses *that convolution* when the pooled map exceeds 144 positions. Its
    row points at the pooling's finding (the one fix) instead of a second, generic
    "no Akida layer computes this operation" — found on a padding='same' BN net."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding="same", bias=False), nn.BatchNorm2d(16),
                          nn.ReLU6(), nn.Conv2d(16, 16, 3, padding="same"), nn.ReLU6(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()
    report = check_compatibility(model, (3, 16, 16), "akida2")
    rows = {row.module: row for row in report.rows}
    assert rows["5"].rule == "gap-area" and "16x16 = 256" in rows["5"].reason
    assert rows["3"].status == "fixable" and "it maps once 5 is fixed" in rows["3"].fix
    assert not report.ok and all(row.status != "unsupported" for row in report.rows), report
    # the limit is real: on a 12x12 map (144 positions) the same network maps entirely
    assert check_compatibility(model, (3, 12, 12), "akida2").ok


class _Fire(nn.Module):
    """A SqueezeNet fire module (squeeze 1x1 → expand 1x1 ‖ expand 3x3, concatenated)."""

    def __init__(self, concat=True):
        super().__init__()
        self.concat = concat
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.e1 = nn.Conv2d(4, 8, 1)
        self.e3 = nn.Conv2d(4, 8 if concat else 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 8 * 8, 3)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.stem(x))
        s = torch.nn.functional.relu6(self.squeeze(x))
        e3 = torch.nn.functional.relu6(self.e3(s))
        x = torch.cat([torch.nn.functional.relu6(self.e1(s)), e3], 1) if self.concat else e3
        return self.fc(torch.flatten(self.pool(x), 1))


def test_a_concatenation_on_akida1_is_one_row_and_the_rest_is_still_judged():
    """Akida 1.0 runs chain-shaped models: a concatenation (a SqueezeNet fire module) is
    its own row with the fix, and a stand-in (a 1x1 convolution of the last branch to the
    concatenated channels) lets the toolchain judge everything after it in the same run.
    Before, the bridge's refusal landed on e1 ("the model branches") with the generic fix."""
    from zoo import real_toolchain

    torch.manual_seed(0)
    model = _Fire().eval()
    report = check_compatibility(model, (1, 16, 16), "akida1")
    rows = {row.module: row for row in report.rows}
    assert rows["cat"].rule == "residual" and rows["cat"].status == "unsupported", report
    assert "concatenation of 2 branches" in rows["cat"].reason and "akida2" in rows["cat"].fix
    assert rows["e1"].status == "not reached" and "branch was taken out" in rows["e1"].reason
    assert all(rows[m].status == "ok" for m in ("stem", "squeeze", "e3", "fc")), report
    # SqueezeNet pools the concatenation: Akida 1.0 pools only right after a convolution
    assert rows["pool"].rule == "pool-after-conv" and rows["pool"].status == "fixable"
    assert "stand_in" not in str(report)  # the stand-in never shows
    assert real_toolchain(model, (1, 16, 16), "akida1")[0] is False
    # the fix the row gives (one branch, widened) converts and maps entirely on AKD1000
    # (a private class name, _Fire, once made QuantizeML's calibration fail: "'_fire/' is
    # not a valid root scope name")
    fixed = _Fire(concat=False).eval()
    assert check_compatibility(fixed, (1, 16, 16), "akida1").ok
    assert real_toolchain(fixed, (1, 16, 16), "akida1") == (True, "")
    # Akida 2.0 merges branches: there the concatenation waits only on the pooling after it
    v2 = {row.module: row for row in check_compatibility(model, (1, 16, 16), "akida2").rows}
    assert v2["cat"].rule == "" and "it maps once pool is fixed" in v2["cat"].fix, v2["cat"]


def test_a_model_with_two_outputs_is_told_to_return_one():
    """forward() returning (logits_a, logits_b): the Akida 2.0 row showed the exporter's
    internal error "'tuple' object has no attribute 'numpy'"."""
    from akida_workflows.errors import ExportError
    from akida_workflows.export import export_onnx

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 8, 3, padding=1)
            self.a, self.b = nn.Linear(8 * 8 * 8, 3), nn.Linear(8 * 8 * 8, 2)

        def forward(self, x):
            x = torch.relu(self.c(x)).flatten(1)
            return self.a(x), self.b(x)

    report = check_compatibility(TwoHeads().eval(), (1, 8, 8), "akida2")
    row = next(r for r in report.rows if r.module == "model")
    assert "returns 2 outputs" in row.reason and "numpy" not in row.reason, report
    assert row.fix.startswith("return one tensor"), row.fix
    with pytest.raises(ExportError, match="returns 2 outputs, not one tensor"):
        export_onnx(TwoHeads().eval(), torch.zeros(1, 1, 8, 8), "/tmp/never.onnx")


def test_input_normalisation_and_a_signed_hardtanh_get_fixes_that_name_them():
    """Found on unseen models: ``(x - mu) / sd`` in forward got the generic "no Akida layer"
    fix on Akida 1.0, and nn.Hardtanh(-1, 1) was told to replace "nn.ReLU()"."""

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mu", torch.tensor(0.5))
            self.register_buffer("sd", torch.tensor(0.25))
            self.c = nn.Conv2d(1, 8, 3, padding=1)
            self.a = nn.Hardtanh(-1, 1)
            self.fc = nn.Linear(8 * 8 * 8, 3)

        def forward(self, x):
            return self.fc(self.a(self.c((x - self.mu) / self.sd)).flatten(1))

    report = check_compatibility(Normalised().eval(), (1, 8, 8), "akida1")
    rows = {row.module: row for row in report.rows}
    assert "normalise the input on the host" in rows["sub"].fix, report
    assert rows["a"].rule == "bounded-activation", report
    assert rows["a"].fix.endswith("instead of nn.Hardtanh(-1, 1)"), rows["a"].fix


@pytest.mark.slow
@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_a_mean_over_the_height_only_is_one_row_with_its_own_fix(target):
    """x.mean(2) of an NCHW map (time-pooling KWS code) is not global average pooling: one
    row on the user's mean (Akida 2.0 called it "global average pooling over 8x8", and
    added a second, unsupported ReduceMean row with the generic fix; Akida 1.0 gave the
    generic fix)."""

    class HeightMean(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.act = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6()
            self.fc = nn.Linear(8 * 10, 4)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean(2).flatten(1))

    report = check_compatibility(HeightMean().eval(), (1, 20, 10), target)
    judged = [r for r in report.rows if r.status != "not reached"]
    assert [(r.module, r.rule, r.status) for r in judged] == \
        [("mean", "partial-mean", "fixable")], report
    assert "height (dim 2)" in judged[0].reason and "global average pooling over 20" \
        not in judged[0].reason, report
    assert "x.mean((2, 3))" in judged[0].fix and "1600 inputs" in judged[0].fix, report
    # a mean over both spatial axes stays the pooling rules' (global average pooling)
    assert not any(r.rule == "partial-mean" for r in check_compatibility(
        _GapNet().eval(), (1, 16, 16), target).rows)


class _GapNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


@pytest.mark.slow
def test_a_signed_hardtanh_on_akida2_is_reported_on_itself():
    """nn.Hardtanh(-1, 1) has no quantized pattern on Akida 2.0; QuantizeML's refusal ("No
    quantizable pattern found") landed on the convolution before it with the generic fix.
    The row is the activation's, and the rest of the model is judged (a ReLU6 stands in)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Hardtanh(-1, 1), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(),
                          nn.Linear(512, 4)).eval()
    report = check_compatibility(model, (1, 16, 16), "akida2")
    judged = [(r.module, r.rule, r.status) for r in report.rows if r.status != "ok"]
    assert judged == [("1", "signed-clamp", "fixable")], report
    assert report.complete, report
    assert "instead of nn.Hardtanh(-1, 1)" in report.issues[0].fix, report


@pytest.mark.slow
def test_a_resnet_stem_names_both_of_its_limits_on_akida2():
    """A 7x7 stride-2 stem padded 3 and MaxPool2d(3, 2, 1) (torchvision's ResNet): CNN2SNN
    refuses the convolution for the pooling run inside it ("MaxPool is not supported with
    'SameUpper' padding"), which was an unsupported row with the generic fix. Now both
    limits are rules: the convolution's (pool-after-stride2) and the pooling's (max-pool)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 7, stride=2, padding=3), nn.BatchNorm2d(16),
                          nn.ReLU6(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(16, 16, 3, padding=1),
                          nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4)).eval()
    report = check_compatibility(model, (3, 32, 32), "akida2")
    rows = {r.module: r for r in report.rows}
    assert (rows["0"].rule, rows["0"].status) == ("pool-after-stride2", "fixable"), report
    assert (rows["3"].rule, rows["3"].status) == ("max-pool", "fixable"), report
    assert not any(r.status == "unsupported" for r in report.rows), report
    assert "drop 3" in rows["0"].fix and "stride 1" in rows["0"].fix, report
    # Akida 1.0 takes the strided stem; MaxPool2d(2) stands in for the pooling (same 8x8
    # output), so the stem is judged by the toolchain instead of being reported for it.
    v1 = check_compatibility(model, (3, 32, 32), "akida1")
    assert [(r.module, r.rule) for r in v1.rows if r.status != "ok"] == [("3", "max-pool")], v1
    assert v1.complete, v1
