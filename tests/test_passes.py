"""The passes: plans that read the one graph, a flow per target, check sees every rewrite."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from zoo import M5, TEMPONetPPGDalia, input_shape, zoo

from akida_workflows.compat import check_compatibility
from akida_workflows.graph import trace_graph
from akida_workflows.passes import FLOWS, PASSES, Pass, register, run_plans


def _he(model):
    """He-normal weights and random BatchNorm statistics (default init hides mistakes)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, generator=g)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1, generator=g)
            m.running_var.uniform_(0.5, 2, generator=g)
    return model.eval()


def test_every_registered_pass_is_in_a_flow_and_flows_name_registered_passes():
    in_flows = {name for names in FLOWS.values() for name in names}
    assert in_flows == set(PASSES)
    for target, names in FLOWS.items():
        assert names[0] == "lower_1d"  # every later pass reads the 2-D graph
        assert all(target in PASSES[n].targets for n in names)


def test_register_refuses_a_duplicate_name():
    class Again(Pass):
        name = "lower_1d"

    with pytest.raises(ValueError, match="already registered"):
        register(Again)


@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_plans_change_nothing(target):
    model = _he(TEMPONetPPGDalia())
    before = copy.deepcopy(model.state_dict())
    graph = trace_graph(model, (4, 256))
    run_plans(model, (4, 256), target, graph)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(isinstance(m, (nn.Conv1d,)) for n, m in model.named_modules() if n.endswith("tcb10.0"))


def _rows(report):
    return {r.module: r for r in report.rows}


@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_temponet_every_dilated_kernel_and_stride_in_one_report(target):
    # Published TEMPONet (PPG-Dalia, 4 x 256): dilations 4 and 8 spread 3 taps over 9 and 17
    # samples; the last conv block is strided 4 with padding 4. One run names all of them.
    report = check_compatibility(_he(TEMPONetPPGDalia()), (4, 256), target)
    rows = _rows(report)
    for name, span in (("tcb10.0", 9), ("tcb11.0", 9), ("tcb20.0", 17), ("tcb21.0", 17)):
        assert f"over {span} samples" in rows[name].reason, report
        assert "dilation=3" in rows[name].fix  # 3 taps over 7 samples: the widest kernel
        assert rows[name].kind == "Conv1d"
    assert "stride 4" in rows["cb2.0"].reason and "no exact 2-D form" in rows["cb2.0"].reason
    assert "1 or 3 channels" in rows["tcb00.0"].reason
    assert "nn.Conv1d(3, 32" in rows["tcb00.0"].fix
    assert "tcb00.0" not in {r.module for r in report.issues if "dilation" in r.reason}
    assert not report.ok and report.toolchain.startswith("stopped at cb2.0")
    # the fixes speak 1-D: no Conv2d / MaxPool2d advice for a Conv1d model
    assert not any("2d(" in r.fix for r in report.issues), report


@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_m5_width_kernel_and_stride_each_with_a_fix(target):
    report = check_compatibility(_he(M5()), (1, 8000), target)
    conv1 = _rows(report)["conv1"]
    limit = 384 if target == "akida2" else 256
    assert f"input width 8000 > {limit}" in conv1.reason
    assert "kernel size 80" in conv1.reason and "stride 16" in conv1.reason
    assert "MelSpectrogram" in conv1.fix and f"≤ {limit}" in conv1.fix
    assert "stride=16" not in conv1.fix  # never propose the refused stride
    assert "needs more than 256 identical rows" not in str(report)
    pools = [r for r in report.issues if r.kind == "MaxPool1d"]
    assert len(pools) == 4 and all("nn.MaxPool1d(2)" in r.fix for r in pools)


def test_lowered_report_announces_the_rewrites_and_checks_the_lowered_graph():
    model = _he(nn.Sequential(nn.Conv1d(1, 8, 3, dilation=4, padding="same"), nn.ReLU6(),
                              nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2)))
    report = check_compatibility(model, (1, 64), "akida2")
    assert report.rewrites[0] == "1-D layers lowered to their exact 2-D form (9 rows)"
    assert "0: dilation 4 expanded to 9 taps" in report.rewrites
    row = _rows(report)["0"]
    assert row.kind == "Conv1d" and "over 9 samples" in row.reason


def test_akida1_plans_announce_what_the_keras_bridge_does():
    from akida_workflows.keras_bridge import separable_blocks, to_keras

    models = zoo()
    models["separable"] = _he(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8), nn.Conv2d(8, 16, 1), nn.ReLU6(), nn.Flatten(),
        nn.Linear(16 * 16 * 16, 4)))
    # pairs the bridge does not merge: a strided 1x1 after the depthwise, a depthwise
    # with two filters per channel (the rule table and this pass once disagreed on both)
    models["strided_pointwise"] = _he(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1, stride=2), nn.ReLU6(), nn.Flatten(), nn.Linear(16 * 8 * 8, 4)))
    models["multiplier"] = _he(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 16, 3, padding=1, groups=8),
        nn.Conv2d(16, 16, 1), nn.ReLU6(), nn.Flatten(), nn.Linear(16 * 16 * 16, 4)))
    announced = set()
    for name in ("depthwise_separable", "resnet8", "pooled_last_conv", "mappable",
                 "mobilenet_v1_vww", "kws_dscnn", "separable", "strided_pointwise",
                 "multiplier"):
        model, shape = models[name].eval(), input_shape(name)
        flow = run_plans(model, shape, "akida1", trace_graph(model, shape))
        planned = {p.pass_name: p.changes for p in flow.plans}
        try:
            keras_model = separable_blocks(to_keras(model, shape))
        except Exception:  # e.g. ResNet-8's residual adds: the bridge refuses the model
            assert name == "resnet8"
            continue
        done = " ".join(keras_model.rewrites)
        assert bool(planned["flip_stride2"]) == ("flipped coordinates" in done), name
        assert bool(planned["merge_separable"]) == ("SeparableConv2D" in done), name
        assert bool(planned["pool_head"]) == ("folded into one Dense" in done
                                              or "identity 1x1" in done), name
        for change in planned["pool_head"] + planned["merge_separable"]:
            assert change.nodes[0] in done, (name, change, done)
        announced |= {p for p, changes in planned.items() if changes}
    assert {"flip_stride2", "pool_head", "fold_batchnorm", "merge_separable"} <= announced  # not vacuous
